/**
 * End-to-end: SIGTERM while a model's engine starts, with real processes. `switchyard serve` fronts
 * sim models a and b at zero engines (`--min-instances 0`, `--max-loaded-models 1`). A request to a
 * starts a's engine, which the test freezes (SIGSTOP to its process group) as soon as it exists: a
 * slow start, made deterministic. A request to b is held too, but no engine starts for it (the cap
 * is full and a is not idle). Then serve gets SIGTERM:
 *
 * - b's request, for which nothing is starting, is answered 503 SY_ERR_DRAINING at once (while a's
 *   engine is still frozen);
 * - a's request waits for its starting engine (serve passes the gateway `scaleFromZero.starting`),
 *   which, thawed, is added during the drain and serves it: 200. Before that wiring it got 503 too.
 *
 * Serve then exits 0. Linux only (/proc). Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { engineChildren, freezingHooks } from './support/processes.ts';
import { chatAnswer, ONE_REPLICA_FROM_ZERO_ARGS, startServe } from './support/serve.ts';
import { until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;
const waitFor = (what: string, check: () => Promise<boolean> | boolean): Promise<void> =>
  until(what, check, HANG_GUARD_MS, 5);

const { children, freezer } = freezingHooks();

async function waiting(url: string): Promise<Record<string, number>> {
  const s = (await (await fetch(`${url}/stats`)).json()) as {
    scaleFromZero: { waiting: Record<string, number> };
  };
  return s.scaleFromZero.waiting;
}

it('on SIGTERM serves a request held for an engine that is starting, and refuses at once one held for none', {
  skip: existsSync('/proc/self/stat') ? false : 'needs /proc',
}, async () => {
  const serve = await startServe(
    [
      '--time-scale',
      '0.05',
      ...['a', 'b'].flatMap((m) => ['--model', `${m}=llama-3.1-8b`]),
      ...ONE_REPLICA_FROM_ZERO_ARGS,
      '--max-loaded-models',
      '1',
    ],
    children,
  );
  const { url, stderr } = serve;
  const servePid = serve.proc.pid as number;
  assert.deepEqual(engineChildren(servePid), [], 'no engine at rest');

  // a's request starts its engine, frozen the moment it exists.
  const forA = chatAnswer(url, 'a');
  let engine: number | undefined;
  await waitFor("a's engine process", () => {
    engine = engineChildren(servePid)[0];
    return engine !== undefined;
  });
  freezer.freeze(engine as number);
  await waitFor("a's request held", async () => (await waiting(url))['a'] === 1);

  // b's request is held with no engine starting: the cap's one place is a's, and a is not idle.
  const forB = chatAnswer(url, 'b');
  await waitFor("b's request held", async () => (await waiting(url))['b'] === 1);
  await waitFor('b waiting for the cap', () => stderr.some((l) => /'b' waits: 1 model\(s\) loaded/.test(l)));
  assert.deepEqual(engineChildren(servePid), [engine], 'one engine, a');
  assert.ok(!stderr.some((l) => / engine 0 ready at /.test(l)), "a's engine is still starting");

  // The drain: b fails at once, while a's engine is still frozen.
  serve.proc.kill('SIGTERM');
  assert.deepEqual(await forB, { status: 503, code: 'SY_ERR_DRAINING' });
  await waitFor('the drain line', () => stderr.some((l) => /SIGTERM: draining/.test(l)));
  assert.equal(serve.proc.exitCode, null, 'serve waits for the starting engine');

  // a's engine goes on starting, is added during the drain, and serves the held request.
  freezer.thaw(engine as number);
  assert.deepEqual(await forA, { status: 200, code: undefined });
  assert.equal(await serve.exited, 0, stderr.join('\n'));
  assert.ok(
    stderr.some((l) => / engine 0 ready at /.test(l)),
    stderr.join('\n'),
  );
});
