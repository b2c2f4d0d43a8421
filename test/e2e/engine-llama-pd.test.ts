/**
 * End-to-end: real P/D on the built-in llama engines. A prefill engine (`--pd-role prefill`) and a
 * decode engine (`--pd-role decode`) as real child processes on the tiny model, driven with vLLM's
 * flow (the gateway's, src/gateway/pd/): the decode's tokens equal a single engine's, the KV state
 * really moved (the decode reports the prompt as cached), a dropped transfer is retried, and a
 * transfer that cannot happen ends in a local prefill with the same answer.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { droppingProxy } from '../../src/adapters/kv-transfer/test-support.ts';
import type { LlamaPdStats } from '../../src/engine-servers/llama/pd.ts';
import {
  LLAMA_MODEL,
  type LlamaAnswer,
  type LlamaEngine,
  llamaCompletion,
  llamaPdStats,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
  vllmPdCompletion,
} from './support/llama.ts';
import { writePdConfig } from './support/pd.ts';
import { startServe } from './support/serve.ts';
import { killAll } from './support/wait.ts';

const MODEL = LLAMA_MODEL;

let single: LlamaEngine;
let prefill: LlamaEngine;
let decode: LlamaEngine;

before(async () => {
  const model = tinyLlamaModel();
  [single, prefill, decode] = await Promise.all([
    startLlamaEngine(['--model', model]),
    startLlamaEngine(['--model', model, '--pd-role', 'prefill']),
    startLlamaEngine(['--model', model, '--pd-role', 'decode']),
  ]);
});

after(async () => {
  await stopLlamaEngines([single, prefill, decode]);
});

/** vLLM's flow on this file's pair (see vllmPdCompletion). */
const pdCompletion = (
  request: Record<string, unknown>,
  edit?: (params: Record<string, unknown>) => Promise<Record<string, unknown>>,
) => vllmPdCompletion(prefill, decode, request, edit);

const PROMPTS = [
  'Once upon a time, in a land far away, there lived seven kings and twelve queens who ruled',
  'The quick brown fox jumps over the lazy dog. '.repeat(12),
];
const SAMPLINGS = [{ temperature: 0 }, { temperature: 0.8, seed: 7 }];

test('the ready lines: the prefill names its KV server, the decode has none', () => {
  assert.match(String(prefill.ready['kvTransfer']), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(decode.ready['kvTransfer'], null);
});

test('P/D gives the same tokens as one engine (greedy and seeded), from the transferred KV', async () => {
  for (const prompt of PROMPTS) {
    for (const sampling of SAMPLINGS) {
      const request = { prompt, max_tokens: 24, ...sampling };
      const alone = await llamaCompletion(single.url, request);
      const pd = await pdCompletion(request);
      assert.equal(pd.decode.text, alone.text, `${JSON.stringify(sampling)} on '${prompt.slice(0, 20)}'`);
      assert.equal(pd.decode.usage.completion_tokens, 24);
      // All but the last prompt token came from the prefill engine's KV state.
      assert.equal(pd.decode.usage.prompt_tokens_details.cached_tokens, alone.usage.prompt_tokens - 1);
      const params = pd.prefill.kv_transfer_params as Record<string, unknown>;
      assert.equal(params['do_remote_prefill'], true);
      assert.equal(params['remote_host'], '127.0.0.1');
      assert.equal(typeof params['remote_request_id'], 'string');
    }
  }
  const p = await llamaPdStats(prefill);
  const d = await llamaPdStats(decode);
  assert.equal(p.maxTokensSeen['1'], PROMPTS.length * SAMPLINGS.length);
  assert.equal(p.exported, PROMPTS.length * SAMPLINGS.length);
  assert.equal(d.imported, PROMPTS.length * SAMPLINGS.length);
  assert.ok(d.importedBytes > 0);
  // Each state was released once its decode said DONE.
  assert.equal(p.server?.releasedCollected, PROMPTS.length * SAMPLINGS.length);
});

test('a decode streams its answer, the same text', async () => {
  const request = { prompt: PROMPTS[0], max_tokens: 16, temperature: 0 };
  const alone = await llamaCompletion(single.url, request);
  const first = await llamaCompletion(prefill.url, {
    ...request,
    max_tokens: 1,
    kv_transfer_params: { do_remote_decode: true },
  });
  const r = await fetch(`${decode.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      ...request,
      stream: true,
      kv_transfer_params: first.kv_transfer_params,
    }),
  });
  let text = '';
  for (const line of (await r.text()).split('\n')) {
    if (!line.startsWith('data: {')) continue;
    text += (JSON.parse(line.slice(6)) as { choices: { text?: string }[] }).choices[0]?.text ?? '';
  }
  assert.equal(text, alone.text);
});

/**
 * `request` on one engine, then through the pair with the decode fetching its state via a proxy
 * that cuts its first `drops` connections after `afterBytes`: both answers (the same text, checked)
 * and the decode's stats before and after.
 */
async function throughDroppingProxy(
  request: Record<string, unknown>,
  afterBytes: number,
  drops: number,
): Promise<{
  alone: LlamaAnswer;
  pd: { prefill: LlamaAnswer; decode: LlamaAnswer };
  before: LlamaPdStats;
  after: LlamaPdStats;
}> {
  const before = await llamaPdStats(decode);
  const alone = await llamaCompletion(single.url, request);
  let proxy: { server: Server; port: number } | undefined;
  const pd = await pdCompletion(request, async (params) => {
    proxy = await droppingProxy(params['remote_port'] as number, afterBytes, drops);
    return { ...params, remote_port: proxy.port };
  });
  proxy?.server.close();
  const after = await llamaPdStats(decode);
  assert.equal(pd.decode.text, alone.text);
  return { alone, pd, before, after };
}

test('a transfer whose connection drops is retried, and the answer is unchanged', async () => {
  const request = { prompt: PROMPTS[1], max_tokens: 16, temperature: 0 };
  const { alone, pd, before, after } = await throughDroppingProxy(request, 4096, 1);
  assert.equal(after.transferRetries - before.transferRetries, 1);
  assert.equal(after.imported - before.imported, 1);
  assert.equal(pd.decode.usage.prompt_tokens_details.cached_tokens, alone.usage.prompt_tokens - 1);
});

test('a transfer that cannot happen ends in a local prefill with the same answer', async () => {
  const request = { prompt: PROMPTS[0], max_tokens: 16, temperature: 0.8, seed: 3 };
  const { before, after } = await throughDroppingProxy(request, 0, 100);
  assert.equal(after.localPrefills - before.localPrefills, 1);
  assert.equal(after.imported, before.imported);
});

test("through switchyard serve: the gateway's vLLM flow drives the llama pair, same text as one engine", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-llama-pd-'));
  const children: ChildProcess[] = [];
  try {
    const config = writePdConfig(
      dir,
      [
        { id: 'p0', url: prefill.url, role: 'prefill' },
        { id: 'd0', url: decode.url, role: 'decode' },
      ],
      { type: 'llama', model: MODEL, protocol: 'vllm' },
    );
    const serve = await startServe(['--config', config], children);
    const before = await llamaPdStats(decode);
    const request = { prompt: PROMPTS[1], max_tokens: 20, temperature: 0 };
    const alone = await llamaCompletion(single.url, request);
    const viaGateway = await llamaCompletion(serve.url, request);
    const after = await llamaPdStats(decode);
    assert.equal(viaGateway.text, alone.text);
    assert.equal(after.imported - before.imported, 1, "the decode engine loaded the prefill engine's state");
  } finally {
    await killAll(children);
    rmSync(dir, { recursive: true, force: true });
  }
});
