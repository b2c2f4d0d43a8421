/**
 * End-to-end: requests held while a model's engine starts are counted. `switchyard serve` fronts a
 * sim model at zero engines (`--min-instances 0`); the first request starts its engine, which the
 * test freezes (SIGSTOP to its process group) as soon as it exists, so the start lasts as long as
 * the test needs: a slow start, made deterministic. Chat, completions and embeddings requests sent
 * meanwhile are held: /stats `inFlight` and `queued`, the `requests_in_flight` / `requests_queued`
 * gauges and `scaleFromZero.waiting` all show them; a client that leaves takes one off; once the
 * engine runs again every request is answered and the counts are back at 0. Linux only (/proc).
 * Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { engineChildren, freezingHooks } from './support/processes.ts';
import { ONE_REPLICA_FROM_ZERO_ARGS, startServe } from './support/serve.ts';
import { scrapeMetrics, until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 5);

const { children, freezer } = freezingHooks();

const BODIES: Record<string, Record<string, unknown>> = {
  '/v1/chat/completions': { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
  '/v1/completions': { model: 'm', prompt: 'hi', max_tokens: 3 },
  '/v1/embeddings': { model: 'm', input: 'hi' },
};

/** The answer's status, or the fetch error's name (an aborted or cut request) instead of a rejection. */
async function post(url: string, path: string, signal?: AbortSignal): Promise<number | string> {
  try {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(BODIES[path]),
      ...(signal !== undefined ? { signal } : {}),
    });
    await res.arrayBuffer();
    return res.status;
  } catch (error) {
    return (error as Error).name;
  }
}

interface Counts {
  accepted: number;
  completed: number;
  failedTotal: number;
  failed: Record<string, number>;
  inFlight: number;
  queued: number;
  scaleFromZero: { waiting: Record<string, number>; abandoned: number; released: number };
}

async function stats(url: string): Promise<Counts> {
  return (await (await fetch(`${url}/stats`)).json()) as Counts;
}

/** /stats and the two gauges, which must agree (nothing moves while the engine is frozen or idle). */
async function counts(url: string): Promise<Counts> {
  const s = await stats(url);
  const m = await scrapeMetrics(url);
  assert.equal(m.get('switchyard_gateway_requests_in_flight'), s.inFlight, JSON.stringify(s));
  assert.equal(m.get('switchyard_gateway_requests_queued'), s.queued, JSON.stringify(s));
  assert.equal(s.accepted, s.completed + s.failedTotal + s.inFlight, JSON.stringify(s));
  return s;
}

it('counts requests held while the engine starts in /stats and the gauges, and back to 0 after', {
  skip: existsSync('/proc/self/stat') ? false : 'needs /proc',
}, async () => {
  const serve = await startServe(
    ['--time-scale', '0.05', '--model', 'm=llama-3.1-8b', ...ONE_REPLICA_FROM_ZERO_ARGS],
    children,
  );
  const { url } = serve;
  const servePid = serve.proc.pid as number;
  assert.deepEqual(engineChildren(servePid), [], 'no engine at rest');
  const rest = await counts(url);
  assert.deepEqual([rest.inFlight, rest.queued], [0, 0]);

  // The first request wakes the model; its engine is frozen the moment it exists.
  const answers = [post(url, '/v1/chat/completions')];
  let engine: number | undefined;
  await waitFor('the engine process', () => {
    engine = engineChildren(servePid)[0];
    return engine !== undefined;
  });
  freezer.freeze(engine as number);
  answers.push(post(url, '/v1/completions'), post(url, '/v1/embeddings'), post(url, '/v1/chat/completions'));
  const abort = new AbortController();
  const leaver = post(url, '/v1/chat/completions', abort.signal);
  await waitFor('five requests held', async () => (await stats(url)).scaleFromZero.waiting['m'] === 5);
  assert.ok(!serve.stderr.some((l) => / engine 0 ready at /.test(l)), 'the engine is still starting');

  const held = await counts(url);
  assert.deepEqual([held.inFlight, held.queued, held.accepted], [5, 5, 5], JSON.stringify(held));

  // A client that leaves while held takes one off both counts.
  abort.abort();
  assert.equal(await leaver, 'AbortError');
  await waitFor('the leaver dropped', async () => (await stats(url)).scaleFromZero.abandoned === 1);
  const left = await counts(url);
  assert.deepEqual(
    [left.inFlight, left.queued, left.failed['client_abort']],
    [4, 4, 1],
    JSON.stringify(left),
  );
  assert.equal(left.scaleFromZero.waiting['m'], 4);

  // The engine goes on starting: every held request is sent on and answered; the counts are back at 0.
  freezer.thaw(engine as number);
  assert.deepEqual(await Promise.all(answers), [200, 200, 200, 200]);
  await waitFor('nothing in flight', async () => (await stats(url)).inFlight === 0);
  const end = await counts(url);
  assert.deepEqual(
    [end.inFlight, end.queued, end.accepted, end.completed, end.failedTotal],
    [0, 0, 5, 4, 1],
    JSON.stringify(end),
  );
  assert.equal(end.scaleFromZero.waiting['m'], 0);
  assert.equal(end.scaleFromZero.released, 4);
  assert.equal(await serve.stop(), 0);
});
