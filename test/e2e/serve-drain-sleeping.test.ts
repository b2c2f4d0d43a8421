/**
 * End-to-end: SIGTERM while a request is held for a model whose engine is going to sleep, with real
 * processes. `switchyard serve --min-instances 0 --sleep` fronts sim model m. A first request starts
 * m's engine; the test then freezes the engine (SIGSTOP to its process group), so that when the
 * keep-alive runs out serve's `POST /sleep` reaches a stopped process and stays in flight as long
 * as the test needs: a sleep under way, made deterministic (/stats `sleep.models.m.sleeping` is 1).
 * A second request for m is held: its wake waits for the sleep to complete. Then serve gets SIGTERM:
 *
 * - the held request is not refused: serve's drain waits for a model whose engine is going to
 *   sleep (its `scaleFromZero.starting` counts the actuator's `sleeping` engines, 380ff25), since
 *   the sleep's completion wakes the engine for it (local-actuator putToSleep). Without that count
 *   it got 503 SY_ERR_DRAINING at once;
 * - thawed, the engine completes its sleep, is woken (same process, no new start), added during the
 *   drain, and serves the held request: 200. Serve then exits 0.
 *
 * Linux only (/proc). Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { engineChildren, freezingHooks } from './support/processes.ts';
import { chatAnswer, chatStatus, oneSleepingModelArgs, startServe } from './support/serve.ts';
import { until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
/** Freezes that may lose the race with the keep-alive before the test gives up (see below). */
const ROUNDS_MAX = 20;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 5);

const { children, freezer } = freezingHooks();

interface Stats {
  sleep: { models: Record<string, { sleeps: number; wakes: number; sleeping: number; starts: number }> };
  scaleFromZero: { waiting: Record<string, number> };
}

async function stats(url: string): Promise<Stats> {
  return (await (await fetch(`${url}/stats`)).json()) as Stats;
}

it('on SIGTERM waits for a held request whose engine is going to sleep, and serves it once the engine wakes', {
  skip: existsSync('/proc/self/stat') ? false : 'needs /proc',
}, async () => {
  const serve = await startServe(oneSleepingModelArgs(0.05), children);
  const { url, stderr } = serve;
  const servePid = serve.proc.pid as number;

  // A cold start answers the first request; the engine is frozen right after, still ready.
  assert.equal(await chatStatus(url, 'm'), 200);
  const engines = engineChildren(servePid);
  assert.equal(engines.length, 1, stderr.join('\n'));
  const engine = engines[0] as number;
  const model = async () => (await stats(url)).sleep.models['m'];
  const awake = new RegExp(`engine 0 awake at .* \\(pid ${engine},`);

  // Past the keep-alive serve sends POST /sleep, which the frozen engine cannot answer. The freeze
  // races the 300 ms keep-alive: on a loaded machine the whole sleep could complete before it (the
  // engine then asleep, never 'going to sleep'). Then the engine is thawed, woken by a request, and
  // frozen again, until a freeze lands first; each such round is one more sleep and wake.
  let rounds = 0;
  for (;;) {
    freezer.freeze(engine);
    await waitFor('the engine going to sleep, or asleep', async () => {
      const m = await model();
      return m?.sleeping === 1 || (m?.sleeps ?? 0) > rounds;
    });
    if ((await model())?.sleeping === 1) break;
    freezer.thaw(engine);
    assert.ok(++rounds <= ROUNDS_MAX, `the engine fell asleep before each of ${ROUNDS_MAX} freezes`);
    assert.equal(await chatStatus(url, 'm'), 200);
  }
  const m = await model();
  assert.deepEqual(
    [m?.sleeps, m?.wakes, m?.starts],
    [rounds, rounds, 1],
    'not asleep yet (but for the rounds that lost the race); one start',
  );

  // A request for m now is held: the only engine is on its way to sleep.
  let settled = false;
  const held = chatAnswer(url, 'm').finally(() => {
    settled = true;
  });
  await waitFor('the request held', async () => (await stats(url)).scaleFromZero.waiting['m'] === 1);

  // The drain begins while the sleep is still in flight: the held request is not refused.
  serve.proc.kill('SIGTERM');
  await waitFor('the drain line', () => stderr.some((l) => /SIGTERM: draining/.test(l)));
  // Serve's own /stats still answers during the drain: the request is still held, serve still runs.
  const waitingNow = await stats(url).then(
    (s) => s.scaleFromZero.waiting['m'],
    (error: Error) => `no /stats: ${error.message}`,
  );
  if (settled) assert.fail(`answered during the drain, the engine frozen: ${JSON.stringify(await held)}`);
  assert.equal(waitingNow, 1, 'still held');
  assert.equal(serve.proc.exitCode, null, 'serve waits for the engine going to sleep');

  // Thawed: the sleep completes, the engine is woken for the held request and serves it.
  freezer.thaw(engine);
  assert.deepEqual(await held, { status: 200, code: undefined });
  assert.equal(await serve.exited, 0, stderr.join('\n'));
  assert.equal(
    stderr.filter((l) => awake.test(l)).length,
    rounds + 1,
    `woken for the held request, same process:\n${stderr.join('\n')}`,
  );
  assert.equal(stderr.filter((l) => / engine 0 ready at /.test(l)).length, 1, 'no new start');
});
