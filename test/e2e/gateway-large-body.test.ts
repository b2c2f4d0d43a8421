/**
 * End-to-end: large bodies through the off-thread parse (limits.offThreadParseBytes). Two gateways
 * run side by side in front of the same real sim engine: one parses bodies of 256 KiB or more on its
 * worker pool, the other parses every body on its event loop (offThreadParseBytes 0). Both answer a
 * valid large chat request (plain and streamed) and give byte-identical errors for a large body that
 * is not JSON, names a model not served, or fails the schema; the pool's counters show which bodies
 * went to a worker.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  assertErrorBody,
  getJson,
  MODEL,
  post,
  type SimCluster,
  simBackend,
  sseData,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';

/** Lower than the default 1 MiB: a valid prompt must fit the sim engine's context (131,072 tokens). */
const OFF_THREAD_BYTES = 256 * 1024;
const teardown = new Teardown();
let sims: SimCluster;
let offThread: TestGateway;
let onLoop: TestGateway;

interface PoolStats {
  offThread: number;
  fallbacks: number;
  refused: number;
  bytes: number;
}

before(async () => {
  sims = await startSims(1, ['--time-scale', '0.1', '--kv-events', 'none'], teardown);
  const engine = sims.engines[0] as SimCluster['engines'][number];
  const config = (offThreadParseBytes: number) => ({
    backends: [simBackend('e0', engine, false)],
    limits: { offThreadParseBytes },
  });
  [offThread, onLoop] = await Promise.all([
    startTestGateway(config(OFF_THREAD_BYTES), teardown),
    startTestGateway(config(0), teardown),
  ]);
});
after(() => teardown.run());

async function poolStats(g: TestGateway): Promise<PoolStats | undefined> {
  return (await getJson<{ parsePool?: PoolStats }>(`${g.url}/stats`)).parsePool;
}

/** A chat body of about `bytes` bytes. */
function largeChat(bytes: number, extra: Record<string, unknown> = {}): string {
  const content = 'héllo wörld, 日本語 🙂 and plain ASCII text. '.repeat(Math.ceil(bytes / 50));
  return JSON.stringify({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 4, ...extra });
}

test('a 400 KB chat body (100k tokens) is parsed on a worker and answered like the event-loop path', async () => {
  const body = largeChat(400_000);
  assert.ok(Buffer.byteLength(body) > OFF_THREAD_BYTES);
  const [a, b] = await Promise.all([
    post(offThread.url, '/v1/chat/completions', body),
    post(onLoop.url, '/v1/chat/completions', body),
  ]);
  assert.equal(a.status, 200, a.text);
  assert.equal(b.status, 200, b.text);
  const answer = JSON.parse(a.text) as { model: string; usage: { prompt_tokens: number } };
  assert.equal(answer.model, MODEL);
  assert.equal(answer.usage.prompt_tokens, (JSON.parse(b.text) as typeof answer).usage.prompt_tokens);
  const streamed = await post(offThread.url, '/v1/chat/completions', largeChat(400_000, { stream: true }));
  assert.equal(streamed.status, 200, streamed.text);
  assert.equal(sseData(streamed.text).at(-1), '[DONE]');
  const stats = await poolStats(offThread);
  assert.equal(stats?.offThread, 2);
  assert.equal(stats?.fallbacks, 0);
  assert.equal(stats?.bytes, 0);
  assert.equal(await poolStats(onLoop), undefined);
});

test('a large bad body gets the same JSON error from the worker as from the event loop', async () => {
  const before = (await poolStats(offThread))?.offThread ?? 0;
  const bodies: [string, string, number][] = [
    ['not JSON', `${largeChat(2_000_000).slice(0, -3)},`, 400],
    ['a model not served', largeChat(2_000_000, { model: 'no-such-model' }), 404],
    ['a schema error', largeChat(2_000_000, { temperature: 9 }), 400],
    // Parsed and proxied whole; the engine refuses a prompt past its context.
    ['a 7.9 MB prompt', largeChat(7_900_000), 400],
  ];
  for (const [what, body, status] of bodies) {
    const [a, b] = await Promise.all([
      post(offThread.url, '/v1/chat/completions', body),
      post(onLoop.url, '/v1/chat/completions', body),
    ]);
    assertErrorBody(a.text, a.status, what);
    assert.equal(a.status, status, `${what}: ${a.text}`);
    assert.equal(b.status, status, `${what}: ${b.text}`);
    assert.equal(a.text, b.text, what);
  }
  assert.equal((await poolStats(offThread))?.offThread, before + bodies.length);
});

test('a small body stays on the event loop', async () => {
  const before = (await poolStats(offThread))?.offThread ?? 0;
  const small = await post(offThread.url, '/v1/chat/completions', largeChat(1000));
  assert.equal(small.status, 200, small.text);
  assert.equal((await poolStats(offThread))?.offThread, before);
});
