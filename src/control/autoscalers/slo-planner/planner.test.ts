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

test('a sustained rise is taken within two windows; scale-down waits out the delay (two start-ups)', () => {
  const loop = createSloPlanner(
    ctx,
    params({ periodMs: 0, burstLookbackMs: 60_000, releaseTimeConstantMs: 0 }),
    flatCapacity(2.5),
  );
  const cluster = new ScriptedCluster(ctx, 1);
  cluster.run(loop, repeat(6, { arrivals: 20 })); // 2 req/s: 1 replica
  const up = cluster.run(loop, repeat(3, { arrivals: 200 })); // 20 req/s: 10 replicas
  // The first window moves the smoothed level part of the way; the second confirms the jump.
  assert.ok((up[0] as number) > 1, `first tick of the rise asks ${up[0]}`);
  assert.equal(up[1], 10);
  assert.equal(up.at(-1), 10);
  const down = cluster.run(loop, repeat(20, { arrivals: 20 }));
  // Still 10 within 120 s (12 ticks) of the last tick that wanted 10; back to 1 after.
  assert.equal(down[10], 10);
  assert.equal(down.at(-1), 1);
});

test('after the hold the count decays, never a step down: one replica a tick at most from 10', () => {
  const loop = createSloPlanner(ctx, params({ periodMs: 0, burstLookbackMs: 60_000 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 1);
  cluster.run(loop, repeat(6, { arrivals: 20 }));
  cluster.run(loop, repeat(3, { arrivals: 200 })); // 10 replicas
  const down = cluster.run(loop, repeat(45, { arrivals: 20 }));
  assert.equal(down[10], 10, 'the hold (two start-ups) is unchanged');
  // Time constant = the hold (120 s, 12 ticks): 10 x e^(-10/120) = 9.2 a tick later, so no tick
  // gives back more than one replica; the step release would fall from 10 to 1 in one tick.
  for (let i = 1; i < down.length; i++)
    assert.ok((down[i - 1] as number) - (down[i] as number) <= 1, `tick ${i}: ${down[i - 1]} -> ${down[i]}`);
  assert.ok((down[15] as number) > 1, `still releasing at tick 15: ${down[15]}`);
  assert.equal(down.at(-1), 1, 'the level reaches the need: 10 e^(-t/120 s) <= 1 after ~28 ticks');
  // The count itself decays (towards zero, floored at the need): j ticks after the hold ends it is
  // max(1, ceil(10 e^(-10 j / 120))), so it reaches the need 120 s x ln(10 / 1) = 276 s after the
  // hold; a decay towards the need (1 + 9 e^(-t/120 s)) would still be above it then.
  const law = (start: number) =>
    down.map((n, i) => (i <= start ? n : Math.max(1, Math.ceil(10 * Math.exp(-(i - start) / 12) - 1e-9))));
  const start = down.lastIndexOf(10) - 1;
  assert.deepEqual(down, law(start));
  assert.equal(down.indexOf(1) - start, Math.ceil(12 * Math.log(10)));
});

test('the release decays from the pool bound, not from a need above it', () => {
  const run = (maxReplicas: number) => {
    const c = testContext({ intervalMs: 10_000, startupMs: 60_000, minReplicas: 1, maxReplicas });
    const loop = createSloPlanner(c, params({ periodMs: 0, burstLookbackMs: 60_000 }), flatCapacity(2.5));
    const cluster = new ScriptedCluster(c, 1);
    cluster.run(loop, repeat(6, { arrivals: 20 }));
    cluster.run(loop, repeat(3, { arrivals: 200 })); // needs 10
    return cluster.run(loop, repeat(40, { arrivals: 20 }));
  };
  const free = run(50);
  const bounded = run(4); // granted 4
  // The hold ends at the same tick in both (the unbounded pool's first drop comes ~2 ticks after it:
  // 10 e^(-1/12) still rounds up to 10); from there the bounded pool decays from 4, below the bound
  // after ceil(12 ln(4/3)) = 4 ticks. Decaying from the need (10) instead would keep it at the bound
  // until 10 e^(-t/120 s) <= 3, 15 ticks.
  const freeDrops = free.findIndex((n) => n < 10);
  assert.ok(freeDrops > 0, 'the unbounded pool releases');
  const lag = bounded.findIndex((n) => n < 4) - freeDrops;
  assert.ok(
    lag >= 0 && lag <= 4,
    `the bound is given back ${lag} ticks after the unbounded pool's first drop`,
  );
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

test('attainment short of the target grows the headroom, bounded; met attainment lets it decay', () => {
  // The 5-minute feedback alone (the error-budget floor, tested below, off).
  const loop = createSloPlanner(ctx, params({ periodMs: 0, budgetHeadroomMax: 1 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 5);
  const short = { arrivals: 100, window: { completions: 100, sloAttainment: 0.5 } };
  const missed = cluster.run(loop, repeat(60, short));
  // 1.1 a minute up to 1.5: 1.5 x 10 req/s at 2 per replica is 8 at most, whatever the misses.
  assert.equal(Math.max(...missed), 8);
  // It grows over minutes, not at once.
  assert.ok(missed.indexOf(8) > 10, `reached 8 at tick ${missed.indexOf(8)}`);
  const met = cluster.run(
    loop,
    repeat(200, { arrivals: 100, window: { completions: 100, sloAttainment: 1 } }),
  );
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

test('a one-window burst does not move the level; the bursts it sees size the replicas for TTFT', () => {
  // Prefill 300 ms a prompt, TTFT 3 s at 80%: 8 prompts per replica per TTFT.
  const capacity: CapacityFn = () => ({
    requestsPerS: 2.5,
    limitedBy: 'decode',
    prefillMs: 300,
    decodeBatch: 32,
    itlMs: 20,
  });
  const c = testContext({
    intervalMs: 3000,
    startupMs: 60_000,
    minReplicas: 1,
    maxReplicas: 50,
    objectives: { ttftMs: 3000, tpotMs: 50 },
  });
  const loop = createSloPlanner(c, params({ periodMs: 0 }), capacity);
  const cluster = new ScriptedCluster(c, 1);
  // 2 req/s (6 a window) with a 64-request burst every tenth window: 10% of requests come in bursts.
  const ticks = Array.from({ length: 200 }, (_, i) => ({ arrivals: i % 10 === 9 ? 64 : 6 }));
  const counts = cluster.run(loop, ticks);
  // Bursts of 64 within one TTFT need 64 x 0.3 s / (3 s x 0.8) = 8 replicas; the mean rate alone ~1.
  assert.equal(counts.at(-1), 8);
  const lastDecision = loop.decide(cluster.observe({ arrivals: 6 }));
  assert.match(lastDecision.reason, /bursts of 6\d a TTFT need 8/);
});

test('error budget: a burst of misses that overspends the day holds a floor until the budget recovers', () => {
  const met = { arrivals: 100, window: { completions: 100, sloAttainment: 1 } };
  const missing = { arrivals: 100, window: { completions: 100, sloAttainment: 0.5 } };
  const script = [...repeat(60, met), ...repeat(6, missing), ...repeat(200, met)];
  const run = (p: Record<string, unknown>) => {
    const loop = createSloPlanner(ctx, params({ periodMs: 0, ...p }), flatCapacity(2.5));
    const cluster = new ScriptedCluster(ctx, 5);
    return { counts: cluster.run(loop, script), loop, cluster };
  };
  const without = run({});
  const withTerm = run({ budgetHeadroomMax: 1.5 });
  // 300 misses against a budget of 1% of 6,600 requests: overspent; the hour burns at 4.5x and
  // falls as met requests accrue (300 / (1% x requests)), its integral reaching the 0.5 cap.
  // 200 ticks later the 5-minute feedback has long let go (5 replicas); the floor holds 1.5 x 5.
  assert.equal(without.counts.at(-1), 5);
  assert.equal(withTerm.counts.at(-1), 8);
  assert.match(withTerm.loop.decide(withTerm.cluster.observe(met)).reason, /budget floor 1\.50/);
  // Before the burst both are the same; the floor never lowers a count.
  assert.deepEqual(withTerm.counts.slice(0, 60), without.counts.slice(0, 60));
  for (let i = 0; i < script.length; i++)
    assert.ok((withTerm.counts[i] as number) >= (without.counts[i] as number), `tick ${i}`);
  // 30,000 requests recover the budget (tick ~300); the floor then falls at one a window (an
  // hour), 0.5 in 30 minutes, and the count comes back to the need.
  const after = withTerm.cluster.run(withTerm.loop, repeat(300, met));
  assert.ok((after[20] as number) > 5, `still held just before recovery: ${after[20]}`);
  assert.equal(after.at(-1), 5);
});

test('error budget: misses within the budget, burning under 1 over the hour, never raise the floor', () => {
  const met = { arrivals: 100, window: { completions: 100, sloAttainment: 1 } };
  // 5 misses a tick in 10 ticks (50) against 1% of 12,000 requests (120): within the day's budget,
  // and the hour's burn rate peaks at 50 / (1% x 7,000) = 0.71.
  const script = [
    ...repeat(60, met),
    ...repeat(10, { ...met, window: { completions: 100, sloAttainment: 0.95 } }),
    ...repeat(50, met),
  ];
  const counts = (p: Record<string, unknown>) =>
    new ScriptedCluster(ctx, 5).run(
      createSloPlanner(ctx, params({ periodMs: 0, ...p }), flatCapacity(2.5)),
      script,
    );
  assert.deepEqual(counts({ budgetHeadroomMax: 1.5 }), counts({}));
});

test('a confident season releases past the need within the hold; without one the hold stays', () => {
  // A 10-minute square wave (10 req/s for 5 minutes, then 1), 60 ticks a period: the season is
  // detected after two periods with an autocorrelation near 1.
  const wave = (periods: number) =>
    Array.from({ length: periods * 60 }, (_, i) => ({ arrivals: i % 60 < 30 ? 100 : 10 }));
  const run = (p: Record<string, unknown>) => {
    const loop = createSloPlanner(ctx, params({ burstLookbackMs: 60_000, ...p }), flatCapacity(2.5));
    return { loop, cluster: new ScriptedCluster(ctx, 1), counts: [] as number[] };
  };
  const seasonal = run({});
  const held = run({ seasonMinCorrelation: 1 });
  for (const r of [seasonal, held]) r.counts = r.cluster.run(r.loop, wave(5));
  const lastFall = 4 * 60 + 30; // the high half of the fifth period ends here
  assert.match(
    seasonal.loop.decide(seasonal.cluster.observe({ arrivals: 100 })).reason,
    /season (10|20) min r (0\.9\d|1\.00)/,
  );
  // 10 req/s needs 5 replicas, 1 req/s needs 1. The hold keeps 5 for two start-ups (12 ticks)
  // after the fall, then decays; the season already says the low half lasts 5 minutes.
  assert.equal(held.counts[lastFall + 10], 5, 'without the season rule the hold keeps 5');
  assert.ok(
    (seasonal.counts[lastFall + 3] as number) <= 2,
    `released within three ticks of the fall: ${seasonal.counts.slice(lastFall - 1, lastFall + 13)}`,
  );
  // Scaling up for the next high half is unchanged: the season asks for it a start-up ahead.
  assert.ok(
    (seasonal.counts[4 * 60 - 2] as number) >= 5,
    `ready before the rise: ${seasonal.counts[4 * 60 - 2]}`,
  );
});

test('no confident season: the count is the hold and decay as before', () => {
  // Steps without a period: 5-minute steps whose rates never repeat in order. The detector finds a
  // weak 15-minute "season" in them for a while (autocorrelation 0.64 to 0.72), under the threshold.
  const steps = [20, 200, 30, 80, 140, 10, 60, 180, 40, 110, 20, 150, 70, 90, 10];
  const script = Array.from({ length: 450 }, (_, i) => ({ arrivals: steps[Math.floor(i / 30)] as number }));
  const run = (p: Record<string, unknown>) => {
    const loop = createSloPlanner(ctx, params(p), flatCapacity(2.5));
    const cluster = new ScriptedCluster(ctx, 1);
    const reasons: string[] = [];
    const counts = script.map((t) => {
      const d = cluster.step(loop, t);
      reasons.push(d.reason);
      return d.targets[0]?.replicas ?? 0;
    });
    return { counts, reasons };
  };
  const today = run({ seasonMinCorrelation: 1 });
  const withRule = run({});
  assert.ok(
    withRule.reasons.some((r) => /season \d+ min r 0\.[5-7]\d/.test(r)),
    'a weak season is detected at some tick',
  );
  assert.deepEqual(withRule.counts, today.counts);
});

test("a confident season's trough does not keep standing capacity for its peak's arrivals", () => {
  // Prefill 1 s a prompt (TTFT 2 s at 80%, a span of one 10 s window counted at 2/10): a window of
  // 100 arrivals needs 13 replicas of prefill as a burst, while its rate needs 5.
  const capacity: CapacityFn = () => ({
    requestsPerS: 2.5,
    limitedBy: 'decode',
    prefillMs: 1000,
    decodeBatch: 32,
    itlMs: 20,
  });
  // A smooth 10-minute wave, 1 to 10 req/s: no step, so no window is far above the level.
  const wave = Array.from({ length: 360 }, (_, i) => ({
    arrivals: Math.round(55 - 45 * Math.cos((2 * Math.PI * i) / 60)),
  }));
  const run = (p: Record<string, unknown>) =>
    new ScriptedCluster(ctx, 1).run(createSloPlanner(ctx, params(p), capacity), wave);
  const seasonal = run({});
  const today = run({ seasonMinCorrelation: 1 });
  const trough = 5 * 60; // the last period's trough (1 req/s)
  // Without the season rule the 30-minute burst lookback keeps the peak's 100-request spans: 13.
  assert.equal(today[trough], 13);
  // With it, bursts are the spans' excess over the level that expected them, on top of a span at
  // the forecast peak: a handful of replicas at the trough, all 13 again at the peak.
  assert.ok((seasonal[trough] as number) <= 6, `at the trough: ${seasonal[trough]}`);
  assert.equal(seasonal[trough + 30], today[trough + 30], 'the peak is sized as before');
});

test('the attainment feedback lets go five minutes after the misses stop, not when an average forgets them', () => {
  // Five minutes of deep misses (half the requests), then none. The feedback reads the attainment of
  // the last five minutes: once the misses have left it, the headroom shrinks back (1.5 to 1 in
  // about four minutes) and the count follows after the scale-down hold and release. An EWMA with a
  // five-minute time constant stayed under 99% for ln(0.5 / 0.01) = 3.9 time constants (20 minutes)
  // after them, holding 1.5x capacity for a quarter of an hour that met every request.
  const loop = createSloPlanner(ctx, params({ periodMs: 0, budgetHeadroomMax: 1 }), flatCapacity(2.5));
  const cluster = new ScriptedCluster(ctx, 5);
  const met = { arrivals: 100, window: { completions: 100, sloAttainment: 1 } };
  cluster.run(loop, repeat(30, met));
  const missed = cluster.run(
    loop,
    repeat(30, { arrivals: 100, window: { completions: 100, sloAttainment: 0.5 } }),
  );
  assert.equal(missed.at(-1), 8, 'the headroom reached its bound: 1.5 x 5');
  const after = cluster.run(loop, repeat(120, met));
  // Still held while the misses are in the window (30 ticks of 10 s).
  assert.equal(after[25], 8);
  // Window clear at tick 30, headroom back to 1 by ~56, hold and release by ~75.
  assert.equal(after[90], 5, `count 15 minutes after the misses stopped: ${after[90]}`);
});
