/**
 * End-to-end: the llama engine's sleep mode on the tiny GGUF, a real process. Asleep, the engine
 * has freed its context and model (a request gets 503 SY_ERR_ENGINE_ASLEEP, the prefix its sequences
 * held is gone after the wake); `POST /wake_up` reloads them and the engine answers again; without
 * the flag the routes answer 404. Prints the measured wake beside the start's weights and context
 * stages (no assertion on times). Deadlines only guard against hangs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, it } from 'node:test';
import { LLAMA_MODEL, startLlamaEngine, tinyLlamaModel } from './support/llama.ts';
import { killAll, scrapeMetrics } from './support/wait.ts';

const children: ChildProcess[] = [];
after(() => killAll(children));

const PROMPT = 'A shared beginning that the sequence keeps in its KV cache between requests. '.repeat(4);

async function chat(
  url: string,
): Promise<{ status: number; cached: number | undefined; code: string | undefined }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA_MODEL, prompt: PROMPT, max_tokens: 2, temperature: 0 }),
  });
  const body = (await res.json()) as {
    usage?: { prompt_tokens_details?: { cached_tokens: number } };
    error?: { code: string };
  };
  return {
    status: res.status,
    cached: body.usage?.prompt_tokens_details?.cached_tokens,
    code: body.error?.code,
  };
}

const post = async (url: string, path: string) => (await fetch(`${url}${path}`, { method: 'POST' })).status;
const sleeping = async (url: string) =>
  ((await (await fetch(`${url}/is_sleeping`)).json()) as { is_sleeping: boolean }).is_sleeping;

it('sleeps by freeing the context and model, refuses work asleep, and answers again after a reload', async () => {
  const model = tinyLlamaModel();
  const [engine, plain] = await Promise.all([
    startLlamaEngine(['--model', model, '--enable-sleep-mode']),
    startLlamaEngine(['--model', model]),
  ]);
  children.push(engine.child, plain.child);
  assert.equal(await post(plain.url, '/sleep'), 404);
  assert.equal(await post(plain.url, '/wake_up'), 404);

  assert.equal((await chat(engine.url)).status, 200);
  const warm = await chat(engine.url);
  assert.ok((warm.cached ?? 0) > 0, 'a sequence keeps the prompt');
  assert.equal(await post(engine.url, '/sleep?level=1'), 200);
  assert.equal(await sleeping(engine.url), true);
  const refused = await chat(engine.url);
  assert.deepEqual([refused.status, refused.code], [503, 'SY_ERR_ENGINE_ASLEEP']);

  assert.equal(await post(engine.url, '/wake_up'), 200);
  assert.equal(await sleeping(engine.url), false);
  const after = await chat(engine.url);
  assert.equal(after.status, 200);
  assert.equal(after.cached, 0, 'the context was freed: no prefix survives a sleep');
  const m = await scrapeMetrics(engine.url);
  const label = `{model_name="${LLAMA_MODEL}"}`;
  assert.equal(m.get(`switchyard_engine_wakes_total${label}`), 1);
  const wakeS = m.get(`switchyard_engine_last_wake_seconds${label}`) ?? 0;
  assert.ok(wakeS > 0);
  const stage = (s: string) =>
    m.get(`switchyard:engine_startup_stage_seconds{model_name="${LLAMA_MODEL}",engine="0",stage="${s}"}`);
  console.log(
    `llama wake ${wakeS.toFixed(3)} s; start: weights ${stage('weights')} s, context ${stage('context')} s, ready ${m.get(`switchyard:engine_startup_ready_seconds{model_name="${LLAMA_MODEL}",engine="0"}`)} s`,
  );
});
