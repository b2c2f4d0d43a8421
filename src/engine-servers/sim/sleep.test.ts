import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimSleep } from './sleep.ts';

/** A backend whose cache drops are counted; no requests, wakes at once (time scale 0). */
function sleeper(): { sleep: SimSleep; drops: () => number } {
  let drops = 0;
  const sleep = new SimSleep(
    {
      unfinished: () => 0,
      dropCaches: async () => {
        drops++;
      },
      timeScale: 0,
    },
    { weightsFromHostMs: 100, weightsReloadMs: 1000, kvReallocMs: 10, overheadMs: 1 },
  );
  return { sleep, drops: () => drops };
}

test('a sleep of an engine already asleep does nothing and is not counted', async () => {
  const { sleep, drops } = sleeper();
  await sleep.sleep(1);
  await sleep.sleep(1);
  await sleep.sleep(2);
  assert.equal(sleep.sleeps, 1);
  assert.equal(drops(), 1);
  assert.equal(sleep.sleepLevel, 1, 'the first sleep level stays');
  assert.equal(sleep.wakeModelMs(), 1 + 100 + 10);
  // Partly woken is still asleep: a sleep now does nothing either.
  await sleep.wakeUp(['weights']);
  await sleep.sleep(1);
  assert.equal(sleep.sleeps, 1);
  await sleep.wakeUp(undefined);
  assert.equal(sleep.isSleeping, false);
  await sleep.sleep(2);
  assert.equal(sleep.sleeps, 2);
  assert.equal(sleep.sleepLevel, 2);
  assert.equal(drops(), 2);
});
