/**
 * `switchyard engine llama` context bounds, with real processes on the tiny model (trained on 4,096
 * tokens): a --context-size above the model's training context is refused as vLLM refuses a
 * max_model_len above the model's (it was allocated: 100M tokens grew the process past 8 GiB), and
 * --sequences above llama.cpp's 256 is refused by name (it crashed with a stack trace blaming RAM).
 * Each exits 2 with one line before listening.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';
import { tinyLlamaModel } from './support/llama.ts';

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
});
