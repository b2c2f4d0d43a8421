/**
 * With minReplicas 0 the SLO planner gives its last replica back once the load has gone: its count
 * decays towards zero (README, rule 5). Before stop 33 it never did: the level's EWMA decays
 * geometrically and in floating point stops at the smallest subnormal instead of 0, and `ceil` of
 * that kept one replica for ever (`sim --workload constant --stages 10:60,0:3600,10:60 --autoscaler
 * slo-planner --min-instances 0` held 1 instance through the hour of no arrivals).
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import type { CapacityFn } from '../../capacity.ts';
import { repeat, ScriptedCluster, testContext } from '../test-support.ts';
import { createSloPlanner, sloPlannerParams } from './planner.ts';

const capacity: CapacityFn = () => ({
  requestsPerS: 8,
  limitedBy: 'decode',
  prefillMs: 50,
  decodeBatch: 32,
  itlMs: 20,
});

for (const arrivals of [20, 5]) {
  test(`min 0: after ${arrivals / 2} req/s stops, the count reaches 0 and stays there`, () => {
    const ctx = testContext({ intervalMs: 2_000, startupMs: 46_700, minReplicas: 0, maxReplicas: 4 });
    const loop = createSloPlanner(ctx, sloPlannerParams.parse({}), capacity);
    const cluster = new ScriptedCluster(ctx, 1);
    assert.ok((cluster.run(loop, repeat(30, { arrivals })).at(-1) as number) >= 1);
    // Three hours of nothing: the level is then far below any rate (or stuck at a subnormal).
    const idle = cluster.run(loop, repeat(5_400, { arrivals: 0 }));
    const first = idle.indexOf(0);
    assert.ok(first > 0, `never back to 0: ${idle.at(-1)} at the end`);
    // The release decays from 1 with the hold as time constant (two start-ups, 93.4 s) until under
    // its 1e-9 epsilon: about 21 of them from a level of 2 (2,624 s here), under an hour.
    assert.ok(first * 2 < 3_600, `back to 0 only after ${first * 2} s`);
    assert.ok(first * 2 > 93.4, 'not before the scale-down hold');
    assert.ok(idle.slice(first).every((n) => n === 0));
    // and a returning load starts again.
    assert.ok((cluster.run(loop, repeat(5, { arrivals })).at(-1) as number) >= 1);
  });
}

test('min 1 is unchanged: the floor never goes under the pool minimum', () => {
  const ctx = testContext({ intervalMs: 2_000, startupMs: 46_700, minReplicas: 1, maxReplicas: 4 });
  const loop = createSloPlanner(ctx, sloPlannerParams.parse({}), capacity);
  const cluster = new ScriptedCluster(ctx, 1);
  cluster.run(loop, repeat(30, { arrivals: 20 }));
  const idle = cluster.run(loop, repeat(2_000, { arrivals: 0 }));
  assert.equal(idle.at(-1), 1);
  assert.ok(
    idle.every((n) => n >= 1),
    String(idle.filter((n) => n < 1).length),
  );
});
