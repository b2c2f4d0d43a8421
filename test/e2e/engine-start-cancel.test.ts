/**
 * A start of local engines that is cancelled (its AbortSignal) stops the child still starting and
 * rejects at once, with real processes: the child is a llama engine in standby (node-llama-cpp
 * loaded, waiting for a model it is never given), so it never prints a ready line, as an engine
 * loading a large model would not for minutes. Before the signal existed the start waited out its
 * ready timeout with the child alive. A standby engine's cancelled hand-over likewise rejects only
 * once the engine exited (it rejected as it sent the SIGTERM, the process still alive, so a slot
 * freed on the rejection could start another engine beside it). Deadlines here only guard against
 * hangs.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { startLocalEngines } from '../../src/adapters/local-engines.ts';
import { StandbyEngines } from '../../src/adapters/standby-engines.ts';
import { tinyLlamaModel } from './support/llama.ts';
import { pidsWith } from './support/processes.ts';
import { until } from './support/wait.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

test('an aborted start stops the engine still starting and rejects without waiting for its ready line', async () => {
  const marker = `cancel-${randomUUID()}`;
  const lines: string[] = [];
  const abort = new AbortController();
  const started = startLocalEngines({
    count: 1,
    engine: 'llama',
    args: ['--standby', '--served-model-name', marker],
    readyTimeoutMs: HANG_GUARD_MS,
    stopGraceMs: HANG_GUARD_MS,
    log: (line) => lines.push(line),
    signal: abort.signal,
  });
  const outcome = started.then(
    () => 'started',
    (error: Error) => error.message,
  );
  // The child runs (its runtime loaded) and will never be ready.
  await until('the standby line', () => lines.some((l) => l.includes('"event":"standby"')), HANG_GUARD_MS);
  assert.equal(pidsWith(marker).length, 1, 'one engine child runs');
  abort.abort();
  assert.match(await outcome, /engine start cancelled/);
  assert.deepEqual(pidsWith(marker), [], 'the child exited before the start rejected');
});

/** Whether process `pid` exists (a child not yet reaped counts). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('an aborted hand-over to a standby engine rejects once the engine exited', async () => {
  const pool = new StandbyEngines({ size: 1, args: [], standbyTimeoutMs: HANG_GUARD_MS, log: () => {} });
  pool.start();
  try {
    await until('a standby engine', () => pool.stats().idle === 1, HANG_GUARD_MS);
    const taken = pool.take();
    assert.ok(taken !== undefined);
    const abort = new AbortController();
    const outcome = taken
      .hand(
        { model: tinyLlamaModel(), servedModelName: 'standby-cancel' },
        () => {},
        HANG_GUARD_MS,
        () => {},
        abort.signal,
      )
      .then(
        () => 'ready',
        (error: Error) => error.message,
      );
    abort.abort();
    assert.match(await outcome, /was cancelled/);
    assert.equal(alive(taken.pid), false, 'the engine exited before the hand-over rejected');
  } finally {
    await pool.close();
  }
});
