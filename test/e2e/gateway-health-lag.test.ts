/**
 * End-to-end: a busy gateway does not eject healthy engines. The gateway runs in this process in
 * front of real sim engines with quick health checks (timeout 100 ms, one failure ejects); the test
 * blocks the event loop for 3x the timeout again and again (as parsing large bodies back to back
 * does), yielding one turn between blocks so health checks start and then wait behind the next
 * block. No engine may be ejected. A killed engine and a frozen one (SIGSTOP) are still ejected,
 * the frozen one re-admitted once it runs again. Deadlines here only guard against hangs.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import {
  getJson,
  type SimCluster,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';

/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 30_000;
const TIMEOUT_MS = 100;
const ADMIN_KEY = 'health-lag-admin';

const teardown = new Teardown();
after(() => teardown.run());

/** Keeps the event loop busy for `ms` (what a large JSON.parse does to the gateway). */
function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Spin.
  }
}

/** `blocks` blocks of `blockMs`, one event-loop turn apart (timers due then run, then the next block). */
async function blockRepeatedly(blocks: number, blockMs: number): Promise<void> {
  for (let i = 0; i < blocks; i++) {
    busyWait(blockMs);
    await nextTurn();
  }
}

async function healthyIds(g: TestGateway): Promise<string[]> {
  const body = await getJson<{ instances: { id: string; healthy: boolean }[] }>(`${g.url}/admin/instances`, {
    authorization: `Bearer ${ADMIN_KEY}`,
  });
  return body.instances.filter((i) => i.healthy).map((i) => i.id);
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + HANG_GUARD_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const ejections = (g: TestGateway): string[] => g.logs.filter((l) => l.includes(' ejected'));

let sims: SimCluster;
let gateway: TestGateway;

test('a blocked event loop ejects no healthy engine; a killed or frozen engine is still ejected', {
  timeout: HANG_GUARD_MS * 2,
}, async () => {
  sims = await startSims(3, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  gateway = await startTestGateway(
    {
      backends: sims.engines.map((e, i) => simBackend(`engine-${i}`, e, false)),
      healthCheck: { intervalMs: 20, timeoutMs: TIMEOUT_MS, failuresToEject: 1, successesToReadmit: 1 },
      adminKey: ADMIN_KEY,
    },
    teardown,
  );
  assert.deepEqual(await healthyIds(gateway), ['engine-0', 'engine-1', 'engine-2']);

  // Twelve blocks of 300 ms: every health check started between two blocks waits behind one.
  await blockRepeatedly(12, 3 * TIMEOUT_MS);
  await sleep(5 * TIMEOUT_MS);
  assert.deepEqual(ejections(gateway), [], gateway.logs.join('\n'));
  assert.deepEqual(await healthyIds(gateway), ['engine-0', 'engine-1', 'engine-2']);

  // A dead engine refuses connections: ejected even while the loop keeps stalling.
  await sims.engines[2]!.kill('SIGKILL');
  await blockRepeatedly(6, 3 * TIMEOUT_MS);
  await until('engine-2 ejected', () => ejections(gateway).length > 0);
  assert.equal(ejections(gateway).length, 1, gateway.logs.join('\n'));
  assert.match(ejections(gateway)[0]!, /instance engine-2 ejected/);
  assert.deepEqual(await healthyIds(gateway), ['engine-0', 'engine-1']);

  // A frozen engine accepts connections and never answers: the timeout still ejects it.
  const frozen = sims.engines[1]!;
  process.kill(frozen.pid, 'SIGSTOP');
  try {
    await until('engine-1 ejected', () => ejections(gateway).some((l) => l.includes('engine-1 ejected')));
    assert.match(ejections(gateway).find((l) => l.includes('engine-1'))!, /health check failed/);
  } finally {
    process.kill(frozen.pid, 'SIGCONT');
  }
  await until('engine-1 re-admitted', async () => (await healthyIds(gateway)).includes('engine-1'));
  assert.deepEqual(await healthyIds(gateway), ['engine-0', 'engine-1']);
});
