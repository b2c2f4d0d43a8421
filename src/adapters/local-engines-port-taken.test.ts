/**
 * The supervisor's restarts against a taken port, with real sim engine processes: an engine is
 * killed, the test binds its port before the restart listens, and the restart is tried again on the
 * same port (outside the restart budget) until the test lets the port go; the engine then answers on
 * its old URL with its budget untouched. A real crash loop still spends the budget and is given up.
 * Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLocalEngines } from './local-engines.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Listens on 127.0.0.1:`port` as soon as the process that held it is gone. */
async function bindWhenFree(port: number): Promise<Server> {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (bound) return server;
    if (Date.now() > deadline) throw new Error(`port ${port} never came free`);
    await sleep(2);
  }
}

test('a restart that finds its port taken tries it again without spending the restart budget; a crash loop still does', async () => {
  const restarts: number[] = [];
  const portTaken: number[] = [];
  const gaveUp: number[] = [];
  const readyPids: number[] = [];
  const lines: string[] = [];
  const local = await startLocalEngines({
    count: 1,
    engine: 'sim',
    args: ['--served-model-name', 'm', '--time-scale', '0.05', '--kv-events', 'none'],
    // One restart allowed: a port-taken failure counted as a crash would exhaust it at once.
    restart: { backoffMsMin: 100, backoffMsMax: 100, restartsMax: 1, windowMs: 600_000 },
    log: (line) => lines.push(line),
    onReady: (_, engine) => readyPids.push(engine.pid),
    onRestart: (_, n) => restarts.push(n),
    onGiveUp: (_, n) => gaveUp.push(n),
    onPortTaken: (_, tries) => portTaken.push(tries),
  });
  try {
    const engine = local.engines[0]!;
    const firstPid = engine.pid;
    const port = Number(new URL(engine.url).port);

    // The crash: one restart of the budget. The port is taken before the restarted child listens.
    process.kill(firstPid, 'SIGKILL');
    const blocker = await bindWhenFree(port);
    await until('two tries on the taken port', () => portTaken.length >= 2 || gaveUp.length > 0);
    assert.deepEqual(gaveUp, [], lines.join('\n'));
    assert.deepEqual(portTaken.slice(0, 2), [1, 2]);
    assert.ok(
      lines.some((l) => l.includes(`port ${port} is taken`)),
      lines.join('\n'),
    );
    await new Promise<void>((resolve) => blocker.close(() => resolve()));

    await until('the engine back', () => readyPids.length === 2 || gaveUp.length > 0);
    assert.deepEqual(gaveUp, [], lines.join('\n'));
    assert.deepEqual(restarts, [1], 'the taken port spent nothing of the budget');
    assert.notEqual(engine.pid, firstPid);
    assert.equal((await fetch(`${engine.url}/health`)).status, 200, 'back on its old URL');

    // A crash loop still exhausts the budget: the next death is past restartsMax.
    process.kill(engine.pid, 'SIGKILL');
    await until('the supervisor gives up', () => gaveUp.length === 1);
    assert.deepEqual(gaveUp, [1]);
    assert.deepEqual(restarts, [1]);
  } finally {
    await local.stop();
  }
});
