/** The local actuator's sleep mode: sleep instead of stop, wake before start, and the fallbacks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../core/clock.ts';
import { TEST_VARIANT } from './autoscalers/test-support.ts';
import { type BackendPool, type LaunchedEngine, LocalActuator } from './local-actuator.ts';
import {
  type LiveBootCandidate,
  liveBootList,
  liveSleepVerdict,
  resolveLiveSleep,
  SleeperCount,
} from './serverless/live-sleep.ts';
import { bootQueue } from './serverless/sleep.ts';
import type { ControlDecision } from './types.ts';

/** An engine whose sleep and wake the test scripts. */
class Engine implements LaunchedEngine {
  readonly kvEvents = null;
  readonly model = 'm';
  stops = 0;
  sleeps = 0;
  wakes = 0;
  wakeFails = false;
  sleepFails = false;
  /** Set: the next sleep waits until the test calls `finishSleep`. */
  holdSleep = false;
  finishSleep: () => void = () => {};
  constructor(
    readonly pid: number,
    readonly url = `http://127.0.0.1:${pid}`,
  ) {}
  async stop(): Promise<void> {
    this.stops++;
  }
  async sleep(): Promise<void> {
    this.sleeps++;
    if (this.sleepFails) throw new Error('409 work in flight');
    if (this.holdSleep) await new Promise<void>((resolve) => (this.finishSleep = resolve));
  }
  async wakeUp(): Promise<void> {
    this.wakes++;
    if (this.wakeFails) throw new Error('connection refused');
  }
}

class Pool implements BackendPool {
  readonly added: string[] = [];
  readonly removed: string[] = [];
  readonly inFlightById = new Map<string, number>();
  add(id: string): void {
    this.added.push(id);
  }
  setDraining(): void {}
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
const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

function setup(sleepersMax = 1, sleepMaxMs = 60_000, maxInstances = 1) {
  const clock = new ManualClock(0);
  const pool = new Pool();
  const first = new Engine(100);
  const launched: Engine[] = [];
  const count = new SleeperCount(resolveLiveSleep({ sleepersMax, sleepMaxMs }));
  const actuator = new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances,
    clock,
    initial: [first],
    backends: pool,
    launcher: {
      launch: async () => {
        const e = new Engine(200 + launched.length);
        launched.push(e);
        return e;
      },
    },
    sleep: { take: () => count.take('m', 1), release: () => count.release('m'), sleepMaxMs },
  });
  return { clock, pool, first, launched, count, actuator };
}

describe('LocalActuator sleep mode', () => {
  it('a drained engine sleeps instead of stopping, and more wanted wakes it rather than starting one', async () => {
    const { clock, pool, first, launched, count, actuator } = setup();
    actuator.apply('m', want(0), clock.nowMs());
    await flush();
    assert.equal(first.sleeps, 1);
    assert.equal(first.stops, 0);
    assert.deepEqual(pool.removed, ['engine-0']);
    assert.equal(actuator.counts().asleep, 1);
    assert.equal(actuator.instances().length, 0, 'a sleeper is no instance');
    assert.equal(count.size, 1);

    clock.advance(5_000);
    actuator.apply('m', want(1), clock.nowMs());
    assert.equal(actuator.counts().starting, 1, 'waking counts as starting');
    assert.equal(count.size, 0);
    await flush();
    assert.equal(first.wakes, 1);
    assert.equal(launched.length, 0, 'no launch');
    assert.deepEqual(pool.added, ['engine-0']);
    assert.equal(actuator.counts().ready, 1);
    assert.deepEqual(
      { ...actuator.sleepCounts },
      { sleeps: 1, wakes: 1, wakeFailures: 0, sleepFailures: 0, sleepersStopped: 0 },
    );
  });

  it('gives an asleep engine up to another pool without stopping it; its next demand launches afresh', async () => {
    const { clock, pool, first, launched, count, actuator } = setup();
    assert.equal(actuator.giveUpSleeper(clock.nowMs()), undefined, 'none asleep: nothing to give');
    actuator.apply('m', want(0), clock.nowMs());
    await flush();
    assert.equal(actuator.giveUpSleeper(clock.nowMs()), first);
    assert.deepEqual([first.stops, first.wakes], [0, 0], "its process is the taker's now");
    assert.equal(count.size, 0, 'its sleeper place is free');
    assert.deepEqual([actuator.counts().asleep, actuator.counts().stopped], [0, 1]);
    assert.equal(actuator.sleepersGivenUp, 1);
    assert.equal(actuator.giveUpSleeper(clock.nowMs()), undefined);
    // Its process exiting later is no business of this pool's slot any more.
    actuator.engineExited(0);
    actuator.apply('m', want(1), clock.nowMs());
    await flush();
    assert.equal(launched.length, 1, 'a fresh launch');
    assert.equal(first.wakes, 0);
    assert.equal(actuator.counts().ready, 1);
    assert.deepEqual(pool.added, ['engine-0']);
  });

  it('a request while an engine is still going to sleep waits for its wake, not a second engine', async () => {
    const { clock, pool, first, launched, count, actuator } = setup(1, 60_000, 2);
    first.holdSleep = true;
    actuator.apply('m', want(0), clock.nowMs());
    assert.equal(actuator.counts().sleeping, 1);
    actuator.apply('m', want(1), clock.nowMs());
    await flush();
    assert.equal(launched.length, 0, 'no cold start beside the sleeper');
    first.finishSleep();
    await flush();
    assert.equal(first.wakes, 1);
    assert.equal(launched.length, 0);
    assert.equal(count.size, 0, 'no sleeper left');
    assert.equal(actuator.counts().ready, 1);
    assert.equal(actuator.counts().asleep, 0);
    assert.deepEqual(pool.added, ['engine-0']);
  });

  it('a sleep that fails stops the engine and counts as a failed sleep, not a sleeper stopped', async () => {
    const { clock, first, count, actuator } = setup();
    first.sleepFails = true;
    actuator.apply('m', want(0), clock.nowMs());
    await flush();
    assert.equal(first.stops, 1);
    assert.equal(count.size, 0);
    assert.deepEqual(
      { ...actuator.sleepCounts },
      { sleeps: 0, wakes: 0, wakeFailures: 0, sleepFailures: 1, sleepersStopped: 0 },
    );
  });

  it('a wake that fails stops that process and starts the slot afresh', async () => {
    const { clock, pool, first, launched, actuator } = setup();
    actuator.apply('m', want(0), clock.nowMs());
    await flush();
    first.wakeFails = true;
    actuator.apply('m', want(1), clock.nowMs());
    await flush();
    assert.equal(first.stops, 1);
    assert.equal(launched.length, 1, 'a fresh launch');
    assert.equal(actuator.sleepCounts.wakeFailures, 1);
    assert.equal(actuator.counts().ready, 1);
    assert.deepEqual(pool.added, ['engine-0']);
  });

  it('stops rather than sleeps past the bound on sleepers, and stops a sleeper past sleepMaxMs or whose process died', async () => {
    const full = setup();
    // Another model holds the node's one sleeper place.
    assert.equal(full.count.take('other', 1), true);
    full.actuator.apply('m', want(0), full.clock.nowMs());
    await flush();
    assert.equal(full.first.sleeps, 0);
    assert.equal(full.first.stops, 1);

    const old = setup(1, 1_000);
    old.actuator.apply('m', want(0), old.clock.nowMs());
    await flush();
    old.clock.advance(999);
    old.actuator.settle(old.clock.nowMs());
    assert.equal(old.first.stops, 0);
    old.clock.advance(1);
    old.actuator.settle(old.clock.nowMs());
    await flush();
    assert.equal(old.first.stops, 1);
    assert.equal(old.count.size, 0);
    assert.equal(old.actuator.sleepCounts.sleepersStopped, 1);

    const dead = setup();
    dead.actuator.apply('m', want(0), dead.clock.nowMs());
    await flush();
    dead.actuator.engineExited(0);
    await flush();
    assert.equal(dead.first.stops, 1);
    dead.actuator.apply('m', want(1), dead.clock.nowMs());
    await flush();
    assert.equal(dead.first.wakes, 0, 'never woken');
    assert.equal(dead.launched.length, 1);
  });
});

describe('liveSleepVerdict', () => {
  const c = resolveLiveSleep({ sleepersPerModelMax: 2, sleepersMax: 3 });
  it('sleeps a ready engine within both counts and the model instance bound, stops otherwise', () => {
    const base = { modelSleepers: 0, sleepers: 0, maxInstances: 4, ready: true };
    assert.equal(liveSleepVerdict(base, c), 'sleep');
    assert.equal(liveSleepVerdict({ ...base, ready: false }, c), 'stop');
    assert.equal(liveSleepVerdict({ ...base, modelSleepers: 2 }, c), 'stop');
    assert.equal(liveSleepVerdict({ ...base, modelSleepers: 1, maxInstances: 1 }, c), 'stop');
    assert.equal(liveSleepVerdict({ ...base, sleepers: 3 }, c), 'stop');
  });
  it('refuses bad bounds', () => {
    assert.throws(() => resolveLiveSleep({ sleepersMax: 0 }), /sleepersMax/);
    assert.throws(() => resolveLiveSleep({ sleepMaxMs: -1 }), /sleepMaxMs/);
  });
});

/** A pool at zero whose launches the test resolves or fails by hand. */
function zeroSetup(sleepersMax = 1) {
  const clock = new ManualClock(0);
  const pool = new Pool();
  const launches: { resolve: (e: Engine) => void; reject: (e: Error) => void }[] = [];
  const failed: Error[] = [];
  const count = new SleeperCount(resolveLiveSleep({ sleepersMax }));
  const actuator = new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances: 1,
    clock,
    backends: pool,
    launcher: { launch: () => new Promise((resolve, reject) => launches.push({ resolve, reject })) },
    onStartFailed: (e) => failed.push(e),
    sleep: { take: () => count.take('m', 1), release: () => count.release('m'), sleepMaxMs: 60_000 },
  });
  return { clock, pool, launches, failed, count, actuator };
}

describe('LocalActuator boot into sleep', () => {
  it('launches a never-started pool straight into sleep, out of the gateway, and a request wakes it', async () => {
    const { clock, pool, launches, count, actuator } = zeroSetup();
    assert.equal(actuator.everStarted, false);
    assert.equal(actuator.boot(clock.nowMs()), true);
    assert.equal(count.size, 1, 'the sleeper place is taken at the boot');
    assert.deepEqual([actuator.counts().booting, actuator.active, actuator.instances().length], [1, 0, 0]);
    // Once per pool.
    assert.equal(actuator.boot(clock.nowMs()), false);
    const engine = new Engine(300);
    launches[0]?.resolve(engine);
    await flush();
    assert.deepEqual([engine.sleeps, actuator.counts().asleep, pool.added.length], [1, 1, 0]);
    assert.deepEqual({ ...actuator.bootCounts }, { boots: 1, bootFailures: 0, bootsAbandoned: 0 });
    assert.deepEqual([actuator.sleepCounts.sleeps, actuator.starts], [1, 0]);
    actuator.apply('m', want(1), clock.nowMs());
    await flush();
    assert.deepEqual(
      [engine.wakes, actuator.sleepCounts.wakes, actuator.starts, launches.length],
      [1, 1, 0, 1],
    );
    assert.deepEqual(pool.added, ['engine-0']);
    assert.equal(count.size, 0);
  });

  it('demand while a boot launches takes the launch over as a start: no second launch, no sleep', async () => {
    const { clock, pool, launches, count, actuator } = zeroSetup();
    actuator.boot(clock.nowMs());
    actuator.apply('m', want(1), clock.nowMs());
    assert.deepEqual([actuator.counts().starting, actuator.counts().booting, count.size], [1, 0, 0]);
    assert.equal(launches.length, 1);
    const engine = new Engine(301);
    launches[0]?.resolve(engine);
    await flush();
    assert.deepEqual([engine.sleeps, actuator.counts().ready, actuator.starts], [0, 1, 1]);
    assert.deepEqual(pool.added, ['engine-0']);
  });

  it('a boot that fails to start is counted, frees its place, is not retried, and the pool stays at zero', async () => {
    const { clock, launches, failed, count, actuator } = zeroSetup();
    actuator.boot(clock.nowMs());
    launches[0]?.reject(new Error('spawn failed'));
    await flush();
    assert.deepEqual({ ...actuator.bootCounts }, { boots: 1, bootFailures: 1, bootsAbandoned: 0 });
    assert.deepEqual([actuator.startFailures, failed.length, count.size], [0, 0, 0], 'no held request fails');
    assert.equal(actuator.counts().stopped, 1);
    assert.equal(actuator.boot(clock.nowMs()), false, 'once per pool');
    // Its first request starts it as without boots.
    actuator.apply('m', want(1), clock.nowMs());
    assert.deepEqual([launches.length, actuator.starts], [2, 1]);
  });

  it('an abandoned boot frees its place at once and its engine stops when the launch completes', async () => {
    const { clock, launches, count, actuator } = zeroSetup();
    assert.equal(actuator.abandonBoot(clock.nowMs(), 'test'), false, 'nothing booting');
    actuator.boot(clock.nowMs());
    assert.equal(actuator.abandonBoot(clock.nowMs(), 'test'), true);
    assert.equal(count.size, 0);
    const engine = new Engine(302);
    launches[0]?.resolve(engine);
    await flush();
    assert.deepEqual([engine.stops, engine.sleeps, actuator.counts().stopped], [1, 0, 1]);
    assert.equal(actuator.bootCounts.bootsAbandoned, 1);
    assert.equal(actuator.boot(clock.nowMs()), false);
  });

  it('is refused past the bound on sleepers and for a pool that already ran', async () => {
    const full = zeroSetup();
    full.count.take('other', 1);
    assert.equal(full.actuator.boot(full.clock.nowMs()), false);
    assert.equal(full.launches.length, 0);
    const ran = setup();
    assert.equal(ran.actuator.everStarted, true);
    assert.equal(ran.actuator.boot(ran.clock.nowMs()), false);
  });
});

describe('liveBootList', () => {
  // Boot is opt-in (`--boot-sleep`): these cases turn it on.
  const c = resolveLiveSleep({ sleepersPerModelMax: 1, sleepersMax: 2, boot: true });
  const m = (id: string, over: Partial<LiveBootCandidate> = {}): LiveBootCandidate => ({
    id,
    everStarted: false,
    active: 0,
    held: 0,
    modelSleepers: 0,
    maxInstances: 1,
    ...over,
  });
  it("is bootQueue's order cut by the sleeper counts and the room", () => {
    const models = ['a', 'b', 'c', 'd'].map((id) => m(id));
    const order = bootQueue(models);
    assert.deepEqual(liveBootList(models, 0, Infinity, c), order.slice(0, 2), 'sleepersMax 2');
    assert.deepEqual(liveBootList(models, 1, Infinity, c), order.slice(0, 1));
    assert.deepEqual(liveBootList(models, 0, 1, c), order.slice(0, 1), 'the room under a cap');
    assert.deepEqual(liveBootList(models, 0, 0, c), []);
    const skip = order[0] as string;
    const withSleeper = models.map((x) => (x.id === skip ? m(skip, { modelSleepers: 1 }) : x));
    assert.deepEqual(liveBootList(withSleeper, 0, Infinity, c), order.slice(1, 3), 'per-model bound');
  });
  it('boots nothing while demand waits, nor when boot is off', () => {
    assert.deepEqual(liveBootList([m('a'), m('b', { everStarted: true, held: 2 })], 0, Infinity, c), []);
    assert.deepEqual(liveBootList([m('a')], 0, Infinity, { ...c, boot: false }), []);
    // Off by default, as in the twin.
    assert.deepEqual(liveBootList([m('a')], 0, Infinity, resolveLiveSleep()), []);
    assert.deepEqual(liveBootList([m('a'), m('b', { everStarted: true })], 0, Infinity, c), ['a']);
  });
});
