/**
 * End-to-end: SGLang's `POST /update_weights_from_disk` on the llama engine, real processes. Two
 * GGUFs of the same shape with different random seeds answer a greedy prompt differently; after a
 * swap the engine answers as a fresh engine on the second file does, under the new id. A file of
 * another shape (400 SY_ERR_MODEL_MISMATCH), one trained on a shorter context than the engine runs
 * (400), a missing file (400) and a swap with a request running
 * (409) leave it serving its model. Asleep, a swap only records the file: the wake loads it.
 * Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TINY_LLAMA_SHAPE, writeLlamaGguf } from '../../src/engine-servers/llama/tiny-gguf.ts';
import { type LlamaEngine, startLlamaEngine, stopLlamaEngines } from './support/llama.ts';
import { scrapeMetrics } from './support/wait.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-swap-'));
const FILE_A = join(dir, 'ft-a.gguf');
const FILE_B = join(dir, 'ft-b.gguf');
const FILE_WIDE = join(dir, 'other-base.gguf');
/** Same shape, trained on 512 tokens: shorter than the engines' --context-size 1024. */
const FILE_SHORT = join(dir, 'short-context.gguf');
const PROMPT = 'The quick brown fox jumps over the lazy dog and then';

interface Answer {
  status: number;
  text: string;
  code: string | undefined;
}

async function complete(url: string, model: string, maxTokens = 12): Promise<Answer> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, ignore_eos: true }),
  });
  const body = (await res.json()) as { choices?: { text: string }[]; error?: { code: string } };
  return { status: res.status, text: body.choices?.[0]?.text ?? '', code: body.error?.code };
}

interface SwapAnswer {
  status: number;
  success: boolean;
  message: string;
  code: string | undefined;
}

async function swap(url: string, body: Record<string, unknown>): Promise<SwapAnswer> {
  const res = await fetch(`${url}/update_weights_from_disk`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { success: boolean; message: string; error?: { code: string } };
  return { status: res.status, success: json.success, message: json.message, code: json.error?.code };
}

const models = async (url: string) =>
  ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);

describe('llama engine: POST /update_weights_from_disk', () => {
  let engine: LlamaEngine;
  let freshB: LlamaEngine;
  let textA: string;
  let textB: string;

  before(async () => {
    writeLlamaGguf(FILE_A, { ...TINY_LLAMA_SHAPE, seed: 101 });
    writeLlamaGguf(FILE_B, { ...TINY_LLAMA_SHAPE, seed: 202 });
    writeLlamaGguf(FILE_WIDE, { ...TINY_LLAMA_SHAPE, feedForwardLength: 256, seed: 101 });
    writeLlamaGguf(FILE_SHORT, { ...TINY_LLAMA_SHAPE, contextLength: 512, seed: 101 });
    [engine, freshB] = await Promise.all([
      startLlamaEngine(['--model', FILE_A, '--enable-sleep-mode']),
      startLlamaEngine(['--model', FILE_B]),
    ]);
    const a = await complete(engine.url, 'tiny-pd');
    const b = await complete(freshB.url, 'tiny-pd');
    assert.deepEqual([a.status, b.status], [200, 200]);
    textA = a.text;
    textB = b.text;
  });
  after(async () => {
    await stopLlamaEngines([engine, freshB]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the two checkpoints answer the greedy prompt differently (the test can tell them apart)', () => {
    assert.ok(textA.length > 0);
    assert.notEqual(textA, textB);
  });

  it('refuses a file of another shape and a missing file, and keeps serving its model', async () => {
    const wide = await swap(engine.url, { model_path: FILE_WIDE });
    assert.deepEqual([wide.status, wide.success, wide.code], [400, false, 'SY_ERR_MODEL_MISMATCH']);
    assert.match(wide.message, /ffn 192 vs 256/);
    const missing = await swap(engine.url, { model_path: join(dir, 'none.gguf') });
    assert.deepEqual(
      [missing.status, missing.success, missing.code],
      [400, false, 'SY_ERR_INVALID_ARGUMENT'],
    );
    const short = await swap(engine.url, { model_path: FILE_SHORT });
    assert.deepEqual([short.status, short.code], [400, 'SY_ERR_INVALID_ARGUMENT']);
    assert.match(short.message, /at most 512 tokens per sequence, and this engine runs 1024/);
    const noPath = await swap(engine.url, {});
    assert.deepEqual([noPath.status, noPath.code], [400, 'SY_ERR_INVALID_ARGUMENT']);
    assert.deepEqual(await models(engine.url), ['tiny-pd']);
    assert.equal((await complete(engine.url, 'tiny-pd')).text, textA);
  });

  it('refuses a swap while a request runs (409), and the request ends normally', async () => {
    const controller = new AbortController();
    const res = await fetch(`${engine.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-pd',
        prompt: PROMPT,
        max_tokens: 400,
        stream: true,
        ignore_eos: true,
      }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // the generation runs
    const busy = await swap(engine.url, { model_path: FILE_B });
    assert.deepEqual([busy.status, busy.success, busy.code], [409, false, 'SY_ERR_ENGINE_BUSY']);
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /\[DONE\]/);
    assert.deepEqual(await models(engine.url), ['tiny-pd']);
  });

  it('swaps in the same-shape checkpoint: the new id, and the answers of a fresh engine on it', async () => {
    const done = await swap(engine.url, { model_path: FILE_B, served_model_name: 'ft-b' });
    assert.deepEqual([done.status, done.success], [200, true], done.message);
    assert.match(done.message, /^loaded .*ft-b\.gguf in \d+\.\d{3} s, served as 'ft-b'$/);
    assert.deepEqual(await models(engine.url), ['ft-b']);
    const old = await complete(engine.url, 'tiny-pd');
    assert.deepEqual([old.status, old.code], [404, 'SY_ERR_NOT_FOUND']);
    const after = await complete(engine.url, 'ft-b');
    assert.equal(after.status, 200);
    assert.equal(after.text, textB);
    const m = await scrapeMetrics(engine.url);
    assert.equal(m.get('switchyard_engine_weight_updates_total{model_name="ft-b"}'), 1);
    assert.ok(m.has('vllm:num_requests_running{model_name="ft-b",engine="0"}'), 'metrics follow the new id');
  });

  it('asleep, a swap records the file and the wake loads it (default id: the file name)', async () => {
    assert.equal((await fetch(`${engine.url}/sleep`, { method: 'POST' })).status, 200);
    const done = await swap(engine.url, { model_path: FILE_A });
    assert.deepEqual([done.status, done.success], [200, true], done.message);
    assert.match(done.message, /asleep/);
    const asleep = await complete(engine.url, 'ft-a');
    assert.deepEqual([asleep.status, asleep.code], [503, 'SY_ERR_ENGINE_ASLEEP']);
    assert.equal((await fetch(`${engine.url}/wake_up`, { method: 'POST' })).status, 200);
    assert.deepEqual(await models(engine.url), ['ft-a']);
    assert.equal((await complete(engine.url, 'ft-a')).text, textA);
  });

  it('an engine without sleep mode serves the route too; a wrong method gets 405', async () => {
    const get = await fetch(`${freshB.url}/update_weights_from_disk`);
    assert.equal(get.status, 405);
    const same = await swap(freshB.url, { model_path: FILE_B, served_model_name: 'tiny-pd' });
    assert.deepEqual([same.status, same.success], [200, true], same.message);
    assert.equal((await complete(freshB.url, 'tiny-pd')).text, textB);
  });
});
