import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.ts';
import { TEST_VARIANT } from './autoscalers/test-support.ts';
import {
  type BackendPool,
  type EngineLauncher,
  type LaunchedEngine,
  LocalActuator,
} from './local-actuator.ts';
import type { ControlDecision } from './types.ts';

/** A launch the test resolves or rejects by hand. */
interface PendingLaunch {
  readonly index: number;
  resolve(): void;
  reject(why: string): void;
}

/** A launcher whose launches wait for the test, and engines whose stops are recorded. */
class ScriptedLauncher implements EngineLauncher {
  readonly launches: PendingLaunch[] = [];
  readonly stopped: number[] = [];
  launch(index: number): Promise<LaunchedEngine> {
    return new Promise((resolve, reject) => {
      this.launches.push({
        index,
        resolve: () =>
          resolve({
            url: `http://127.0.0.1:${1000 + index}`,
            kvEvents: null,
            model: 'm',
            pid: index,
            stop: async () => {
              this.stopped.push(index);
            },
          }),
        reject: (why) => reject(new Error(why)),
      });
    });
  }
}

/** The gateway as the actuator sees it. */
class FakePool implements BackendPool {
  readonly added: string[] = [];
  readonly removed: string[] = [];
  readonly draining = new Set<string>();
  readonly inFlightById = new Map<string, number>();
  add(id: string): void {
    this.added.push(id);
  }
  setDraining(id: string, draining: boolean): void {
    if (draining) this.draining.add(id);
    else this.draining.delete(id);
  }
  inFlight(id: string): number {
    return this.inFlightById.get(id) ?? 0;
  }
  remove(id: string): void {
    this.removed.push(id);
  }
}

const want = (replicas: number): ControlDecision => ({
  targets: [{ variant: TEST_VARIANT, replicas }],
  reason: 'test',
});

/** Lets the actuator's promise callbacks run. */
const flush = () => new Promise((resolve) => setImmediate(resolve));

function setup(maxInstances: number, initial = 1) {
  const launcher = new ScriptedLauncher();
  const pool = new FakePool();
  const clock = new ManualClock(0);
  const engines: LaunchedEngine[] = Array.from({ length: initial }, (_, k) => ({
    url: `http://127.0.0.1:${900 + k}`,
    kvEvents: null,
    model: 'm',
    pid: 900 + k,
    stop: async () => {
      launcher.stopped.push(k);
    },
  }));
  const actuator = new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances,
    launcher,
    backends: pool,
    clock,
    initial: engines,
  });
  return { launcher, pool, clock, actuator };
}

const phases = (a: LocalActuator) => a.instances().map((i) => `${i.id}:${i.phase}`);

describe('LocalActuator', () => {
  it('starts the lowest free slots, and adds each to the gateway only once its launch succeeded', async () => {
    const { launcher, pool, actuator } = setup(3);
    const actions = actuator.apply('m', want(3), 1000);
    assert.deepEqual(
      actions.map((a) => `${a.kind}:${a.instanceId}`),
      ['start:engine-1', 'start:engine-2'],
    );
    assert.deepEqual(phases(actuator), ['engine-0:ready', 'engine-1:starting', 'engine-2:starting']);
    assert.deepEqual(pool.added, []);
    launcher.launches[1]?.resolve();
    await flush();
    assert.deepEqual(pool.added, ['engine-2']);
    assert.deepEqual(phases(actuator), ['engine-0:ready', 'engine-1:starting', 'engine-2:ready']);
  });

  it('never runs more than maxInstances, whatever the loop asks', () => {
    const { launcher, actuator } = setup(2);
    actuator.apply('m', want(50), 0);
    actuator.apply('m', want(50), 1);
    assert.equal(launcher.launches.length, 1);
    assert.equal(actuator.counts().starting + actuator.counts().ready, 2);
  });

  it('counts a failed start and retries it at the next decision only', async () => {
    const { launcher, actuator } = setup(2);
    actuator.apply('m', want(2), 0);
    launcher.launches[0]?.reject('port taken');
    await flush();
    assert.equal(actuator.startFailures, 1);
    assert.deepEqual(phases(actuator), ['engine-0:ready']);
    assert.equal(launcher.launches.length, 1, 'no retry between decisions');
    actuator.apply('m', want(2), 2000);
    assert.equal(launcher.launches.length, 2);
    assert.equal(launcher.launches[1]?.index, 1);
  });

  it('drains the highest ready slot, stops it only when nothing is in flight, and reuses it after its exit', async () => {
    const { launcher, pool, actuator } = setup(3, 3);
    pool.inFlightById.set('engine-2', 2);
    const actions = actuator.apply('m', want(2), 0);
    assert.deepEqual(
      actions.map((a) => `${a.kind}:${a.instanceId}`),
      ['drain:engine-2'],
    );
    assert.ok(pool.draining.has('engine-2'));
    assert.deepEqual(pool.removed, []);
    actuator.settle(10);
    assert.deepEqual(pool.removed, [], 'requests in flight keep it');
    pool.inFlightById.set('engine-2', 0);
    actuator.settle(20);
    assert.deepEqual(pool.removed, ['engine-2']);
    assert.equal(actuator.counts().stopping, 1);
    // Stopping: the slot is not free until its process exited.
    actuator.apply('m', want(3), 30);
    assert.equal(launcher.launches.length, 0);
    await flush();
    assert.deepEqual(launcher.stopped, [2]);
    assert.equal(actuator.stops, 1);
    // Wanted while it was stopping: it starts again as soon as its process exited, not at a tick.
    assert.equal(launcher.launches[0]?.index, 2);
    actuator.apply('m', want(3), 40);
    assert.equal(launcher.launches.length, 1);
  });

  it('scales a pool of zero from and to zero, telling each failed start with what is left up', async () => {
    const failures: [string, number][] = [];
    const launcher = new ScriptedLauncher();
    const pool = new FakePool();
    const actuator = new LocalActuator({
      variant: TEST_VARIANT,
      maxInstances: 1,
      launcher,
      backends: pool,
      clock: new ManualClock(0),
      slotId: (k) => `m-engine-${k}`,
      onStartFailed: (error, active) => failures.push([error.message, active]),
    });
    assert.equal(actuator.active, 0);
    actuator.apply('m', want(1), 0);
    launcher.launches[0]?.reject('exited (code 2) before it was ready');
    await flush();
    assert.deepEqual(failures, [['exited (code 2) before it was ready', 0]]);
    actuator.apply('m', want(1), 10);
    launcher.launches[1]?.resolve();
    await flush();
    assert.deepEqual(pool.added, ['m-engine-0']);
    actuator.apply('m', want(0), 20);
    assert.deepEqual(pool.removed, ['m-engine-0']);
    await flush();
    assert.deepEqual(phases(actuator), []);
    assert.equal(actuator.counts().stopped, 1);
  });

  it('brings a draining slot back before starting a new one', () => {
    const { launcher, pool, actuator } = setup(2, 2);
    pool.inFlightById.set('engine-1', 1);
    actuator.apply('m', want(1), 0);
    assert.ok(pool.draining.has('engine-1'));
    actuator.apply('m', want(2), 1);
    assert.ok(!pool.draining.has('engine-1'));
    assert.deepEqual(phases(actuator), ['engine-0:ready', 'engine-1:ready']);
    assert.equal(launcher.launches.length, 0);
  });

  it('cancels a start when the loop wants fewer: the engine is stopped, never added', async () => {
    const { launcher, pool, actuator } = setup(2);
    actuator.apply('m', want(2), 0);
    actuator.apply('m', want(1), 1);
    assert.deepEqual(phases(actuator), ['engine-0:ready']);
    launcher.launches[0]?.resolve();
    await flush();
    await flush();
    assert.deepEqual(pool.added, []);
    assert.deepEqual(launcher.stopped, [1]);
    assert.equal(actuator.counts().stopped, 1);
  });

  it('drains out an engine its supervisor gave up on', () => {
    const { pool, actuator } = setup(2, 2);
    actuator.engineLost(1);
    assert.ok(pool.draining.has('engine-1'));
    actuator.settle(0);
    assert.deepEqual(pool.removed, ['engine-1']);
  });
  it("keeps a re-targeted launch's time out of lastStartupMs (a fresh start's, as the twin's policies read)", async () => {
    const pool = new FakePool();
    const clock = new ManualClock(0);
    let retargeted = false;
    const engine = (index: number): LaunchedEngine => ({
      url: `http://127.0.0.1:${1000 + index}`,
      kvEvents: null,
      model: 'm',
      pid: index,
      stop: async () => {},
      ...(retargeted ? { retargeted: true } : {}),
    });
    const launcher: EngineLauncher = { launch: async (index) => engine(index) };
    const actuator = new LocalActuator({
      variant: TEST_VARIANT,
      maxInstances: 2,
      launcher,
      backends: pool,
      clock,
    });
    actuator.apply('m', want(1), 0);
    clock.set(5000);
    await flush();
    assert.equal(actuator.lastStartupMs, 5000);
    retargeted = true;
    actuator.apply('m', want(2), 6000);
    clock.set(6300);
    await flush();
    assert.equal(actuator.counts().ready, 2);
    assert.equal(actuator.lastStartupMs, 5000, 'the swap is not a start-up');
    assert.equal(actuator.lastRetargetMs, 300);
  });
});
