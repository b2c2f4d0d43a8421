import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TEST_VARIANT } from '../control/autoscalers/test-support.ts';
import { type LaunchedEngine, LocalActuator } from '../control/local-actuator.ts';
import { resolveLiveSleep, SleeperCount } from '../control/serverless/live-sleep.ts';
import { ManualClock } from '../core/clock.ts';
import { modelSleepStats } from './serve-autoscale.ts';

/** `/stats` `sleep.models[m]` keeps an engine still going to sleep apart from one asleep. */
test('an engine going to sleep counts as sleeping, not asleep, until its sleep returns', async () => {
  let finishSleep = () => {};
  const engine: LaunchedEngine = {
    pid: 1,
    url: 'http://127.0.0.1:1',
    kvEvents: null,
    model: 'm',
    stop: async () => {},
    sleep: () => new Promise<void>((resolve) => (finishSleep = resolve)),
    wakeUp: async () => {},
  };
  const count = new SleeperCount(resolveLiveSleep({}));
  const actuator = new LocalActuator({
    variant: TEST_VARIANT,
    maxInstances: 1,
    clock: new ManualClock(0),
    initial: [engine],
    backends: { add() {}, setDraining() {}, inFlight: () => 0, remove() {} },
    launcher: { launch: async () => engine },
    sleep: { take: () => count.take('m', 1), release: () => count.release('m'), sleepMaxMs: 60_000 },
  });
  actuator.apply('m', { targets: [{ variant: TEST_VARIANT, replicas: 0 }], reason: 'test' }, 0);
  assert.equal(count.size, 1, 'its sleeper place is taken at once');
  assert.deepEqual([modelSleepStats(actuator)['asleep'], modelSleepStats(actuator)['sleeping']], [0, 1]);
  finishSleep();
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  const stats = modelSleepStats(actuator);
  assert.deepEqual(
    [stats['asleep'], stats['sleeping'], stats['sleeps'], stats['sleepFailures']],
    [1, 0, 1, 0],
  );
  assert.equal(stats['sleepersGivenUp'], 0);
  // Handed to another model by a re-target: no longer asleep here, counted as given up.
  assert.equal(actuator.giveUpSleeper(0)?.pid, 1);
  const given = modelSleepStats(actuator);
  assert.deepEqual([given['asleep'], given['sleepersGivenUp'], given['sleeps']], [0, 1, 1]);
  await actuator.close();
});
