/**
 * `switchyard engine llama` context bounds, with real processes on the tiny model (trained on 4,096
 * tokens): a --context-size above the model's training context is refused as vLLM refuses a
 * max_model_len above the model's (it was allocated: 100M tokens grew the process past 8 GiB), and
 * --sequences above llama.cpp's 256 is refused by name (it crashed with a stack trace blaming RAM).
 * Each exits 2 with one line before listening. A model whose GGUF carries YaRN RoPE scaling serves
 * the context the scaling reaches (factor x original context, as vLLM derives max_model_len; it was
 * refused above the training context, which llama.cpp itself extends from the metadata).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TINY_LLAMA_SHAPE, tinyLlamaGguf } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { runCli } from './support/cli.ts';
import { startLlamaEngine, stopLlamaEngines, tinyLlamaModel } from './support/llama.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-llama-context-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('engine llama refuses a context it cannot hold', () => {
  let model = '';
  before(() => {
    model = tinyLlamaModel();
  });

  it('a --context-size above the training context', async () => {
    const run = await runCli(
      ['engine', 'llama', '--model', model, '--port', '0', '--context-size', '100000000'],
      60_000,
    );
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /context size 100000000: expected at most the model's training context of 4096 tokens.*\[SY_ERR_INVALID_ARGUMENT\]/,
    );
    assert.doesNotMatch(run.stdout, /"event":"ready"/);
  });

  it('more --sequences than llama.cpp holds', async () => {
    const run = await runCli(
      ['engine', 'llama', '--model', model, '--port', '0', '--sequences', '100000'],
      60_000,
    );
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /sequences 100000: expected at most 256 \(llama\.cpp's LLAMA_MAX_SEQ\)/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });

  it("a context past training that the GGUF's YaRN scaling reaches is served; one past that is refused", async () => {
    const yarn = join(dir, 'tiny-yarn.gguf');
    writeFileSync(
      yarn,
      tinyLlamaGguf({ ...TINY_LLAMA_SHAPE, ropeScalingYarn: { factor: 2, originalContextLength: 4096 } }),
    );
    const engine = await startLlamaEngine(['--model', yarn, '--sequences', '1', '--context-size', '8192']);
    try {
      assert.equal(engine.ready['event'], 'ready');
    } finally {
      await stopLlamaEngines([engine]);
    }
    const run = await runCli(
      ['engine', 'llama', '--model', yarn, '--port', '0', '--context-size', '8193'],
      60_000,
    );
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      /context size 8193: expected at most the model's 8192 tokens \(trained on 4096, extended by its RoPE scaling\)/,
    );
  });
});
