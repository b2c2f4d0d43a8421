/**
 * SleepBooter keeps booting while a model never started: as the twin boots at every decision, a
 * model skipped for the sleeper bound boots once a sleeper's place frees. Before, passes ended as
 * soon as one found nothing to boot, so such a model was never booted (a known gap of stop 23).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { TEST_VARIANT } from '../control/autoscalers/test-support.ts';
import { type LaunchedEngine, LocalActuator } from '../control/local-actuator.ts';
import { resolveLiveSleep, SleeperCount } from '../control/serverless/live-sleep.ts';
import { ManualClock } from '../core/clock.ts';
import { SleepBooter } from './serve-sleep.ts';

const SLEEP_MAX_MS = 60_000;

/** Lets the actuators' promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

it('a model skipped for the sleeper bound is booted once a place frees', async () => {
  const clock = new ManualClock(0);
  // One sleeper on the node: two models cannot both boot.
  const count = new SleeperCount(resolveLiveSleep({ sleepersMax: 1, boot: true }));
  const engine = (pid: number): LaunchedEngine => ({
    pid,
    url: `http://127.0.0.1:${pid}`,
    kvEvents: null,
    model: 'm',
    stop: async () => {},
    sleep: async () => {},
    wakeUp: async () => {},
  });
  const pools = ['a', 'b'].map((model, k) => ({
    model,
    maxInstances: 1,
    held: () => 0,
    actuator: new LocalActuator({
      variant: TEST_VARIANT,
      maxInstances: 1,
      clock,
      backends: { add() {}, setDraining() {}, inFlight: () => 0, remove() {} },
      launcher: { launch: async () => engine(100 + k) },
      sleep: {
        take: () => count.take(model, 1),
        release: () => count.release(model),
        sleepMaxMs: SLEEP_MAX_MS,
      },
    }),
  }));
  const booter = new SleepBooter(pools, count, undefined, () => clock.nowMs());
  const boots = () => pools.map((p) => p.actuator.bootCounts.boots);

  booter.pass(clock.nowMs());
  await settle();
  const first = boots().indexOf(1);
  assert.deepEqual([...boots()].sort(), [0, 1], 'one model booted, the bound holds the other back');
  assert.equal(booter.pass(clock.nowMs()), true, 'a model never started: the passes go on');
  assert.deepEqual([...boots()].sort(), [0, 1]);

  // The sleeper is stopped past its hold: its place frees, and the next pass boots the other model.
  clock.advance(SLEEP_MAX_MS);
  pools[first]?.actuator.settle(clock.nowMs());
  await settle();
  booter.pass(clock.nowMs());
  await settle();
  assert.deepEqual(boots(), [1, 1]);
  assert.equal(booter.pass(clock.nowMs()), false, 'every model ran: done');
});
