/**
 * End-to-end: SGLang's `POST /update_weights_from_disk` on `switchyard engine sim`, a real process.
 * `model_path` is a catalogue model (or its Hugging Face name); one of the same shapes swaps in
 * within a level-2 wake's modelled time (the shard from the checkpoint tier, the wake's fixed part,
 * the KV pool re-allocated; times --time-scale), after which
 * the engine serves `served_model_name`. Generations during the load get 503; a second swap while
 * one runs, or a swap with a request running, 409; another architecture, 400 SY_ERR_MODEL_MISMATCH;
 * an unknown model, 400 SY_ERR_UNKNOWN_NAME. Asleep, a swap makes the wake a level-2 one (the
 * weights kept in host memory are the old model's). Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { simWakeTimes } from '../../src/engine-servers/sim/sleep.ts';
import { perfModelFor } from '../../src/model/perf.ts';
import { spawnSim, Teardown } from './support/cluster.ts';
import { scrapeMetrics } from './support/wait.ts';

/**
 * Modelled time runs at wall speed: the swap's load (3.0 s for an 8B) and a 400-token generation
 * (about 3 s) are the windows the 409 and 503 checks land in, once /metrics shows them open.
 */
const TIME_SCALE = 1;

const teardown = new Teardown();

/** A sim engine serving an 8B on an H100 as `ft-a` at wall speed, with `extra` flags; its URL. */
async function startEngine(extra: string[]): Promise<string> {
  const base = ['--model', 'llama-3.1-8b', '--gpu', 'h100', '--served-model-name', 'ft-a'];
  return (await spawnSim([...base, '--time-scale', String(TIME_SCALE), ...extra], 0, teardown)).url;
}

async function swap(
  url: string,
  body: Record<string, unknown>,
): Promise<{ status: number; success: boolean; message: string; code: string | undefined }> {
  const res = await fetch(`${url}/update_weights_from_disk`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { success: boolean; message: string; error?: { code: string } };
  return { status: res.status, success: json.success, message: json.message, code: json.error?.code };
}

async function chat(url: string, model: string, maxTokens = 2): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens }),
  });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, ...(body.error === undefined ? {} : { code: body.error.code }) };
}

/** Polls /metrics until `series` reads 1 or more (no wall-clock bound: the test's timeout is the guard). */
async function untilMetric(url: string, series: string): Promise<void> {
  for (;;) if (((await scrapeMetrics(url)).get(series) ?? 0) >= 1) return;
}

const models = async (url: string) =>
  ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);

let url: string;
before(async () => {
  url = await startEngine(['--enable-sleep-mode']);
});
after(() => teardown.run());

test('refuses another architecture, an unknown model, abort_all_requests and a GET; keeps serving', async () => {
  const other = await swap(url, { model_path: 'llama-3.1-70b' });
  assert.deepEqual([other.status, other.success, other.code], [400, false, 'SY_ERR_MODEL_MISMATCH']);
  assert.match(other.message, /layers 32 vs 80/);
  const unknown = await swap(url, { model_path: 'no-such-model' });
  assert.deepEqual([unknown.status, unknown.code], [400, 'SY_ERR_UNKNOWN_NAME']);
  const abort = await swap(url, { model_path: 'llama-3.1-8b', abort_all_requests: true });
  assert.deepEqual([abort.status, abort.code], [400, 'SY_ERR_UNSUPPORTED_PARAMETER']);
  assert.equal((await fetch(`${url}/update_weights_from_disk`)).status, 405);
  // Bodies refused before they are read as a swap still carry SGLang's success and message.
  for (const [headers, body, status] of [
    [{}, '{"model_path":"llama-3.1-8b"}', 415],
    [{ 'content-type': 'application/json' }, '{"model_path":', 400],
  ] as const) {
    const res = await fetch(`${url}/update_weights_from_disk`, { method: 'POST', headers, body });
    const json = (await res.json()) as { success: boolean; message: string; error: { message: string } };
    assert.deepEqual([res.status, json.success, json.message], [status, false, json.error.message]);
  }
  assert.deepEqual(await models(url), ['ft-a']);
  assert.equal((await chat(url, 'ft-a')).status, 200);
});

test('a swap with a request running gets 409 and the request ends normally', async () => {
  const running = chat(url, 'ft-a', 400);
  await untilMetric(url, 'vllm:num_requests_running{model_name="ft-a",engine="0"}');
  const busy = await swap(url, { model_path: 'llama-3.1-8b', served_model_name: 'ft-b' });
  assert.deepEqual([busy.status, busy.code], [409, 'SY_ERR_ENGINE_BUSY']);
  assert.equal((await running).status, 200);
  assert.deepEqual(await models(url), ['ft-a']);
});

test('one swap at a time; generations during the load get 503; then the new id is served', async () => {
  const first = swap(url, { model_path: 'meta-llama/Llama-3.1-8B-Instruct', served_model_name: 'ft-b' });
  await untilMetric(url, 'switchyard_engine_weight_update_running{model_name="ft-a"}');
  const second = await swap(url, { model_path: 'llama-3.1-8b', served_model_name: 'ft-c' });
  assert.deepEqual([second.status, second.code], [409, 'SY_ERR_ENGINE_BUSY']);
  const during = await chat(url, 'ft-a');
  assert.deepEqual([during.status, during.code], [503, 'SY_ERR_NO_INSTANCE']);
  const done = await first;
  assert.deepEqual([done.status, done.success], [200, true], done.message);
  const t = simWakeTimes(perfModelFor('h100', 'llama-3.1-8b', 1));
  const loadS = (t.weightsReloadMs + t.overheadMs + t.kvReallocMs) / 1000;
  assert.match(done.message, new RegExp(`loaded in ${loadS.toFixed(3)} s modelled`));
  assert.deepEqual(await models(url), ['ft-b']);
  assert.equal((await chat(url, 'ft-b')).status, 200);
  assert.deepEqual([(await chat(url, 'ft-a')).status], [404]);
  const m = await scrapeMetrics(url);
  assert.equal(m.get('switchyard_engine_weight_updates_total{model_name="ft-b"}'), 1);
});

test('asleep at level 1, a swap makes the wake reload from the checkpoint tier', async () => {
  assert.equal((await fetch(`${url}/sleep?level=1`, { method: 'POST' })).status, 200);
  const done = await swap(url, { model_path: 'llama-3.1-8b', served_model_name: 'ft-c' });
  assert.deepEqual([done.status, done.success], [200, true], done.message);
  assert.equal((await fetch(`${url}/wake_up`, { method: 'POST' })).status, 200);
  const t = simWakeTimes(perfModelFor('h100', 'llama-3.1-8b', 1));
  const m = await scrapeMetrics(url);
  const wakeS = m.get('switchyard_engine_last_wake_model_seconds{model_name="ft-c"}') ?? 0;
  assert.ok(
    Math.abs(wakeS - (t.overheadMs + t.weightsReloadMs + t.kvReallocMs) / 1000) < 1e-6,
    String(wakeS),
  );
  assert.equal((await chat(url, 'ft-c')).status, 200);
});

test('a load past --weight-update-timeout answers 504; the engine keeps its model; the late load blocks the next swap until it ends', async () => {
  const short = await startEngine(['--weight-update-timeout', '0.2']);
  const given = await swap(short, { model_path: 'llama-3.1-8b', served_model_name: 'ft-b' });
  assert.deepEqual([given.status, given.success, given.code], [504, false, 'SY_ERR_TIMEOUT']);
  // The modelled load (3.0 s) still runs: one swap at a time, and no generation meanwhile.
  const next = await swap(short, { model_path: 'llama-3.1-8b', served_model_name: 'ft-c' });
  assert.deepEqual([next.status, next.code], [409, 'SY_ERR_ENGINE_BUSY']);
  // Once it ends it is thrown away: the engine serves ft-a, and a swap goes through again.
  for (;;) {
    const m = await scrapeMetrics(short);
    if (m.get('switchyard_engine_weight_update_running{model_name="ft-a"}') === 0) break;
  }
  assert.deepEqual(await models(short), ['ft-a']);
  assert.equal((await chat(short, 'ft-a')).status, 200);
  assert.equal(
    (await scrapeMetrics(short)).get('switchyard_engine_weight_updates_total{model_name="ft-a"}'),
    0,
  );
});
