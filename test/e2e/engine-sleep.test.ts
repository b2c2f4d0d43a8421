/**
 * End-to-end: vLLM's sleep mode on `switchyard engine sim` as a real process. With
 * `--enable-sleep-mode`: `POST /sleep?level=1` returns once asleep (empty 200), `GET /is_sleeping`
 * says so, generations get 503 SY_ERR_ENGINE_ASLEEP (never a hang), the prefix cache is gone after
 * the wake, KV-event subscribers hear AllBlocksCleared, a sleep with a request running is refused
 * 409, `POST /wake_up` takes the twin's modelled wake (`wakeTimeMs` of the shard over the host
 * link), tags wake parts, level 2 reloads from the checkpoint tier. Without the flag the routes
 * answer 404, as vLLM's do without VLLM_SERVER_DEV_MODE. Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KvEventSubscriber } from '../../src/adapters/kv-events/subscriber.ts';
import { resolveSleep, wakeTimeMs } from '../../src/control/serverless/sleep.ts';
import type { KvEvent } from '../../src/core/kv-events.ts';
import { weightBytesPerGpu } from '../../src/model/kv.ts';
import { HOST_TO_GPU_BYTES_PER_S, weightLoadTimeMs } from '../../src/model/loading.ts';
import { perfModelFor } from '../../src/model/perf.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
const HANG_GUARD_MS = 30_000;
const children: ChildProcess[] = [];

interface Engine {
  url: string;
  kvEvents: string | null;
}

async function startEngine(args: string[]): Promise<Engine> {
  const child = spawn(process.execPath, [BIN, 'engine', 'sim', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  const ready = JSON.parse(line) as Record<string, unknown>;
  return { url: ready['url'] as string, kvEvents: ready['kvEvents'] as string | null };
}

const PROMPT = `${'A long shared system prompt that the prefix cache keeps. '.repeat(40)}Go.`;

interface ChatBody {
  usage: { prompt_tokens_details: { cached_tokens: number } };
  error: { code: string };
}

async function chat(e: Engine, maxTokens = 3): Promise<{ status: number; body: ChatBody }> {
  const res = await fetch(`${e.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'sleepy',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: maxTokens,
    }),
  });
  return { status: res.status, body: (await res.json()) as ChatBody };
}

async function call(e: Engine, method: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${e.url}${path}`, { method });
  return { status: res.status, text: await res.text() };
}

async function sleeping(e: Engine): Promise<boolean> {
  const r = await call(e, 'GET', '/is_sleeping');
  assert.equal(r.status, 200);
  return (JSON.parse(r.text) as { is_sleeping: boolean }).is_sleeping;
}

const lastWakeS = async (e: Engine) =>
  (await scrapeMetrics(e.url)).get('switchyard_engine_last_wake_model_seconds{model_name="sleepy"}');

let engine: Engine;
let plain: Engine;
const events: KvEvent[] = [];
let subscriber: KvEventSubscriber;

before(async () => {
  const common = [
    '--model',
    'llama-3.1-8b',
    '--gpu',
    'h100',
    '--served-model-name',
    'sleepy',
    '--time-scale',
    '0.1',
  ];
  [engine, plain] = await Promise.all([
    startEngine([...common, '--enable-sleep-mode']),
    startEngine([...common, '--kv-events', 'none']),
  ]);
  subscriber = new KvEventSubscriber({ onEvents: (_id, batch) => events.push(...batch) });
  subscriber.connect('sleepy', engine.kvEvents!);
});

after(async () => {
  subscriber?.close();
  await killAll(children);
});

test('without --enable-sleep-mode the sleep routes answer 404, as vLLM without dev mode', async () => {
  for (const [method, path] of [
    ['POST', '/sleep?level=1'],
    ['POST', '/wake_up'],
    ['GET', '/is_sleeping'],
  ] as const) {
    const r = await call(plain, method, path);
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.equal(JSON.parse(r.text).error.code, 'SY_ERR_NOT_FOUND');
  }
  assert.equal((await chat(plain)).status, 200);
});

test('level 1: asleep refuses work, forgets its prefix cache, wakes in the twin’s modelled time', async () => {
  assert.equal(await sleeping(engine), false);
  // Warm the prefix cache, and see it hit.
  assert.equal((await chat(engine)).status, 200);
  const hit = await chat(engine);
  assert.ok(hit.body.usage.prompt_tokens_details.cached_tokens > 0, 'the prefix cache hits before sleep');
  await until(
    'KV events of the prompt',
    () => events.some((e) => e.type === 'BlockStored'),
    HANG_GUARD_MS,
    20,
  );

  // A request still running: the sleep is refused (vLLM would crash its engine, issue #45520).
  const running = fetch(`${engine.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sleepy', prompt: 'long one', max_tokens: 400 }),
  });
  await until(
    'the long request running',
    async () =>
      ((await scrapeMetrics(engine.url)).get('vllm:num_requests_running{model_name="sleepy",engine="0"}') ??
        0) > 0,
    HANG_GUARD_MS,
    10,
  );
  const busy = await call(engine, 'POST', '/sleep');
  assert.equal(busy.status, 409);
  assert.equal(JSON.parse(busy.text).error.code, 'SY_ERR_ENGINE_BUSY');
  assert.equal(await sleeping(engine), false);
  assert.equal((await running).status, 200);

  const asleep = await call(engine, 'POST', '/sleep?level=1');
  assert.deepEqual(asleep, { status: 200, text: '' });
  assert.equal(await sleeping(engine), true);
  await until('AllBlocksCleared', () => events.some((e) => e.type === 'AllBlocksCleared'), HANG_GUARD_MS, 20);
  const refused = await chat(engine);
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'SY_ERR_ENGINE_ASLEEP');
  const embeddings = await fetch(`${engine.url}/v1/embeddings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sleepy', input: 'hello' }),
  });
  assert.equal(embeddings.status, 503);
  assert.equal(((await embeddings.json()) as ChatBody).error.code, 'SY_ERR_ENGINE_ASLEEP');
  const m = await scrapeMetrics(engine.url);
  assert.equal(m.get('switchyard_engine_sleeping{model_name="sleepy"}'), 1);
  assert.equal(m.get('vllm:kv_cache_usage_perc{model_name="sleepy",engine="0"}'), 0);

  // Two wakes at once: both return once awake; one wake is charged.
  const [w1, w2] = await Promise.all([call(engine, 'POST', '/wake_up'), call(engine, 'POST', '/wake_up')]);
  assert.deepEqual([w1.status, w2.status], [200, 200]);
  assert.equal(await sleeping(engine), false);
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
  const twinMs = wakeTimeMs(weightBytesPerGpu(perf.model, 1), HOST_TO_GPU_BYTES_PER_S, resolveSleep());
  assert.ok(Math.abs((await lastWakeS(engine))! - twinMs / 1000) < 1e-9, `twin's wake ${twinMs} ms`);
  assert.equal(
    (await scrapeMetrics(engine.url)).get('switchyard_engine_wakes_total{model_name="sleepy"}'),
    1,
  );

  // Awake again, with an empty prefix cache.
  const after = await chat(engine);
  assert.equal(after.status, 200);
  assert.equal(after.body.usage.prompt_tokens_details.cached_tokens, 0, 'the prefix cache was dropped');
});

test('tags wake parts; level 2 reloads the weights from the checkpoint tier; bad input is refused', async () => {
  assert.equal((await call(engine, 'POST', '/sleep?level=2')).status, 200);
  const weights = await call(engine, 'POST', '/wake_up?tags=weights');
  assert.equal(weights.status, 200);
  assert.equal(await sleeping(engine), true, 'the KV cache still sleeps');
  assert.equal((await chat(engine)).status, 503);
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
  const reloadMs = weightLoadTimeMs(perf.gpu, perf.model, 1, 'nvme') + resolveSleep().wakeOverheadMs;
  assert.ok(Math.abs((await lastWakeS(engine))! - reloadMs / 1000) < 1e-9, `level-2 weights ${reloadMs} ms`);
  assert.equal((await call(engine, 'POST', '/wake_up?tags=kv_cache')).status, 200);
  assert.equal(await sleeping(engine), false);
  assert.equal((await chat(engine)).status, 200);

  const level = await call(engine, 'POST', '/sleep?level=3');
  assert.equal(level.status, 400);
  assert.equal(JSON.parse(level.text).error.param, 'level');
  const tag = await call(engine, 'POST', '/wake_up?tags=everything');
  assert.equal(tag.status, 400);
  assert.equal(JSON.parse(tag.text).error.param, 'tags');
  const method = await call(engine, 'GET', '/sleep');
  assert.equal(method.status, 405);
  assert.equal(await sleeping(engine), false);
});
