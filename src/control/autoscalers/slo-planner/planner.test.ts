import assert from 'node:assert/strict';
import test from 'node:test';
import type { CapacityFn } from '../../capacity.ts';
import { repeat, ScriptedCluster, testContext } from '../test-support.ts';
import { createSloPlanner, sloPlannerParams } from './planner.ts';

/** A table capacity: every replica sustains `rps` requests per second within the objectives. */
const flatCapacity =
  (rps: number): CapacityFn =>
  () => ({ requestsPerS: rps, limitedBy: 'decode', prefillMs: 50, decodeBatch: 32, itlMs: 20 });

const ctx = testContext({ intervalMs: 10_000, startupMs: 60_000, minReplicas: 1, maxReplicas: 50 });
const params = (p: Record<string, unknown> = {}) => sloPlannerParams.parse(p);

test('steady load: replicas = demand / (capacity x target utilisation), rounded up', () => {
  const loop = createSloPlanner(ctx, params(), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 1);
  // 10 req/s (100 arrivals per 10 s window) at 2.5 x 0.8 = 2 req/s per replica: 5 replicas.
  const counts = cluster.run(loop, repeat(12, { arrivals: 100 }));
  assert.equal(counts.at(-1), 5);
});

test('scale-up is immediate; scale-down waits out the delay (one start-up by default)', () => {
  const loop = createSloPlanner(ctx, params({ periodMs: 0 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 1);
  cluster.run(loop, repeat(6, { arrivals: 20 })); // 2 req/s: 1 replica
  const up = cluster.run(loop, repeat(3, { arrivals: 200 })); // 20 req/s: 10 replicas
  assert.ok((up[0] as number) >= 7, `first tick of the burst asks ${up[0]}`);
  assert.equal(up.at(-1), 10);
  const down = cluster.run(loop, repeat(16, { arrivals: 20 }));
  // Still 10 within 60 s (6 ticks) of the last tick that wanted 10; back to 1 after.
  assert.equal(down[4], 10);
  assert.equal(down.at(-1), 1);
});

test('queue build-up in the measured latency does not move the count: only arrivals and backlog do', () => {
  const calm = createSloPlanner(ctx, params({ periodMs: 0 }), flatCapacity(2.5));
  const stormy = createSloPlanner(ctx, params({ periodMs: 0 }), flatCapacity(2.5));
  const a = new ScriptedCluster(ctx, 1);
  const b = new ScriptedCluster(ctx, 1);
  const quiet = a.run(calm, repeat(10, { arrivals: 100, window: { ttftMsP90: 80, tpotMsMean: 15 } }));
  const slow = b.run(stormy, repeat(10, { arrivals: 100, window: { ttftMsP90: 40_000, tpotMsMean: 300 } }));
  assert.deepEqual(slow, quiet);
});

test('a backlog adds what it takes to drain it after the new replicas start', () => {
  const loop = createSloPlanner(ctx, params({ periodMs: 0 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 5);
  const base = cluster.run(loop, repeat(3, { arrivals: 100 })).at(-1) as number;
  // 900 requests waiting inside the engines (180 per replica), drained over 30 s + 60 s: +10 req/s, +5 replicas.
  const withBacklog = cluster.run(loop, [{ arrivals: 100, ready: base, signals: { waiting: 180 } }])[0];
  assert.equal(base, 5);
  assert.equal(withBacklog, 10);
});

test('missed attainment grows the headroom, bounded; met attainment lets it decay', () => {
  const loop = createSloPlanner(ctx, params({ periodMs: 0 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 5);
  const missed = cluster.run(loop, repeat(20, { arrivals: 100, window: { sloAttainment: 0.5 } }));
  // 1.5 x 10 req/s at 2 per replica: 8 at most, never more whatever the misses.
  assert.equal(Math.max(...missed), 8);
  const met = cluster.run(loop, repeat(200, { arrivals: 100, window: { sloAttainment: 1 } }));
  assert.equal(met.at(-1), 5);
});

test('objectives no replica can meet ask for every replica, and say why', () => {
  const none: CapacityFn = () => ({
    requestsPerS: 0,
    limitedBy: 'unreachable',
    prefillMs: 9000,
    decodeBatch: 0,
    itlMs: Number.NaN,
  });
  const loop = createSloPlanner(ctx, params(), none);
  const d = loop.decide(new ScriptedCluster(ctx, 1).observe({ arrivals: 10 }));
  assert.equal(d.targets[0]?.replicas, 50);
  assert.match(d.reason, /unreachable/);
});

test('the performance model as capacity: a longer prompt needs more replicas at the same rate', () => {
  const short = createSloPlanner(ctx, params({ periodMs: 0, inputTokens: 512, outputTokens: 128 }));
  const long = createSloPlanner(ctx, params({ periodMs: 0, inputTokens: 8000, outputTokens: 1000 }));
  const s = new ScriptedCluster(ctx, 1).run(short, repeat(6, { arrivals: 100 })).at(-1) as number;
  const l = new ScriptedCluster(ctx, 1).run(long, repeat(6, { arrivals: 100 })).at(-1) as number;
  assert.ok(l > s, `long ${l} vs short ${s}`);
});
