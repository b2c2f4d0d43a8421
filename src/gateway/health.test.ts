import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Agent } from 'undici';
import { HealthChecker, HealthState, type HealthTarget, LoopFreeDeadline } from './health.ts';

/** Keeps the event loop busy for `ms`. */
function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Spin.
  }
}

function deadline(timeoutMs: number): { expired: () => boolean | undefined; done: Promise<boolean> } {
  let lagged: boolean | undefined;
  const done = new Promise<boolean>((resolve) => {
    new LoopFreeDeadline(timeoutMs, (l) => {
      lagged = l;
      resolve(l);
    });
  });
  return { expired: () => lagged, done };
}

test('a deadline does not count time the event loop was blocked', async () => {
  const d = deadline(100);
  busyWait(300);
  await nextTurn();
  await nextTurn();
  assert.equal(d.expired(), undefined, '300 ms of blocked loop is not 100 ms of free loop');
  assert.equal(await d.done, false, 'then the free loop runs it out, not lagged');
});

test('a deadline whose loop stays blocked past its wall bound expires as lagged', async () => {
  const d = deadline(20);
  for (let i = 0; i < 4 && d.expired() === undefined; i++) {
    busyWait(100);
    await nextTurn();
  }
  assert.equal(await d.done, true);
});

/** A loopback server whose /health answers `status`, or never when `status` is 0. */
const held: ServerResponse[] = [];
let status = 0;
const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
  if (status === 0) held.push(res);
  else res.writeHead(status, { 'content-length': 0 }).end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
const agent = new Agent();
after(async () => {
  for (const res of held) res.destroy();
  server.closeAllConnections();
  server.close();
  await agent.close();
});

function checker(): { checker: HealthChecker; target: HealthTarget; changes: string[] } {
  const config = { intervalMs: 1000, timeoutMs: 50, failuresToEject: 1, successesToReadmit: 1 };
  const target: HealthTarget = { id: 'a', url, headers: {}, state: new HealthState(config) };
  const changes: string[] = [];
  const c = new HealthChecker([target], config, agent, (id, healthy, reason) =>
    changes.push(`${id} ${healthy ? 'up' : 'down'}: ${reason}`),
  );
  return { checker: c, target, changes };
}

test('a check that gets no answer ejects; bytes proxied from the backend during the check excuse it', async () => {
  status = 0;
  const plain = checker();
  await plain.checker.checkAll();
  assert.deepEqual(plain.changes, ['a down: health check failed: no answer within 50 ms']);

  const busy = checker();
  const progress = setTimeout(() => busy.checker.noteProgress('a'), 10);
  await busy.checker.checkAll();
  clearTimeout(progress);
  assert.deepEqual(busy.changes, [], 'the backend delivered bytes while its check waited');
  assert.equal(busy.target.state.failureCount, 0);

  // Progress from before the check began is no evidence for this one.
  const stale = checker();
  stale.checker.noteProgress('a', performance.now() - 1000);
  await stale.checker.checkAll();
  assert.equal(stale.changes.length, 1);
});

test('an error answer is a failure whatever the progress; a 2xx re-admits', async () => {
  status = 503;
  const c = checker();
  c.checker.noteProgress('a');
  await c.checker.checkAll();
  assert.deepEqual(c.changes, ['a down: health check answered 503']);
  status = 200;
  await c.checker.checkAll();
  assert.deepEqual(c.changes.at(-1), 'a up: health checks pass');
});
