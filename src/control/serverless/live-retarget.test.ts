import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArrivalHistory } from './forecast.ts';
import { chooseLiveRetarget, type LiveRetargetPool } from './live-retarget.ts';
import type { ServerlessModelView } from './policies.ts';

/** A pool of `model`: shape 'A', one engine asleep, nothing held, `arrivals` a second apart ending at 0. */
function pool(
  model: string,
  over: Partial<LiveRetargetPool> = {},
  view: Partial<ServerlessModelView> = {},
  arrivals = 0,
): LiveRetargetPool {
  const history = new ArrivalHistory();
  for (let i = arrivals; i > 0; i--) history.record(-i * 1000);
  return {
    model,
    shapeKey: 'A',
    gpu: 'cpu',
    asleep: 1,
    view: {
      id: model,
      gpus: 1,
      active: 0,
      inSystem: 0,
      held: 0,
      idleMs: 60_000,
      lastUsedMs: -1000,
      startupMs: 5000,
      arrivals: history,
      ...view,
    },
    ...over,
  };
}

const wanted = pool('w', { asleep: 0 }, { held: 1, inSystem: 1 });

test('chooseLiveRetarget: an asleep engine of another model of the same shape and GPU', () => {
  assert.equal(chooseLiveRetarget(wanted, [wanted, pool('v')], 0, 2000), 'v');
  assert.equal(chooseLiveRetarget(wanted, [wanted, pool('v', { shapeKey: 'B' })], 0, 2000), undefined);
  assert.equal(chooseLiveRetarget(wanted, [wanted, pool('v', { gpu: 'h100' })], 0, 2000), undefined);
  assert.equal(chooseLiveRetarget(wanted, [wanted, pool('v', { shapeKey: undefined })], 0, 2000), undefined);
  assert.equal(chooseLiveRetarget(wanted, [wanted, pool('v', { asleep: 0 })], 0, 2000), undefined);
});

test('chooseLiveRetarget: never a model holding a request, never for a model with none waiting', () => {
  assert.equal(chooseLiveRetarget(wanted, [pool('v', {}, { held: 1, inSystem: 1 })], 0, 2000), undefined);
  assert.equal(chooseLiveRetarget(wanted, [pool('v', {}, { inSystem: 1 })], 0, 2000), undefined);
  const prewarm = pool('w', { asleep: 0 });
  assert.equal(chooseLiveRetarget(prewarm, [pool('v')], 0, 2000), undefined);
  assert.equal(chooseLiveRetarget({ ...wanted, shapeKey: undefined }, [pool('v')], 0, 2000), undefined);
});

test("chooseLiveRetarget: the twin's order, least valuable sleeper first, ties by name", () => {
  // 'busy' is asked for often (its next request is likely soon); 'quiet' never was: quiet goes first.
  const busy = pool('a-busy', {}, {}, 30);
  const quiet = pool('b-quiet');
  assert.equal(chooseLiveRetarget(wanted, [busy, quiet], 0, 2000), 'b-quiet');
  assert.equal(chooseLiveRetarget(wanted, [pool('y'), pool('x')], 0, 2000), 'x');
});
