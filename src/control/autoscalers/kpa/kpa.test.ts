import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlContext, ControlDecision, ControlLoop } from '../../types.ts';
import { totalReplicas } from '../../types.ts';
import { createAutoscaler } from '../registry.ts';
import { repeat, ScriptedCluster, type ScriptTick, testContext } from '../test-support.ts';

/** Ten requests per replica (containerConcurrency 10 at 100%) keeps the arithmetic readable. */
const TEN_PER_REPLICA = { containerConcurrency: 10, targetUtilization: 1 };

function kpa(context: ControlContext, params: Record<string, unknown> = TEN_PER_REPLICA): ControlLoop {
  return createAutoscaler('kpa', context, params);
}

function steps(cluster: ScriptedCluster, loop: ControlLoop, ticks: readonly ScriptTick[]): ControlDecision[] {
  return ticks.map((t) => cluster.step(loop, t));
}

const counts = (ds: readonly ControlDecision[]): number[] => ds.map(totalReplicas);
const modes = (ds: readonly ControlDecision[]): string[] =>
  ds.map((d) => (d.reason.startsWith('kpa panic') ? 'P' : 'S'));

/** 4 replicas at 40 concurrent: 35 ticks lets the start-up panic (4 ready) expire. */
function warmAtForty(context = testContext({ minReplicas: 1 })): {
  cluster: ScriptedCluster;
  loop: ControlLoop;
} {
  const loop = kpa(context);
  const cluster = new ScriptedCluster(context, 4);
  const warm = steps(cluster, loop, repeat(35, { concurrency: 40 }));
  assert.deepEqual(counts(warm), Array(35).fill(4), 'steady 40 at 10 per replica wants 4');
  assert.equal(modes(warm).at(-1), 'S', 'the start-up panic has ended by the end of warm-up');
  return { cluster, loop };
}

test('a new KPA with more than one ready replica starts in panic and holds them for a stable window', () => {
  const context = testContext({ minReplicas: 1 });
  const loop = kpa(context);
  const ds = steps(new ScriptedCluster(context, 4), loop, repeat(34, { concurrency: 0 }));
  // First tick at 2 s: panic until a tick more than 60 s later (the 32nd, at 64 s).
  assert.deepEqual(counts(ds).slice(0, 31), Array(31).fill(4), 'no scale-down in the start-up panic');
  assert.deepEqual(modes(ds).slice(0, 31), Array(31).fill('P'));
  // Out of panic: idle wants 0, but the scale-down rate (2) halves per tick, and minReplicas is 1.
  assert.deepEqual(counts(ds).slice(31), [2, 1, 1]);
  assert.equal(modes(ds)[31], 'S');
});

test('a 1.5x step in load scales up in stable mode as the 60 s average catches up', () => {
  const { cluster, loop } = warmAtForty();
  const ds = steps(cluster, loop, repeat(20, { concurrency: 60 }));
  // Stable average after k windows at 60: 40 + 20k/30; it passes 50 (5 replicas) at k = 16.
  assert.deepEqual(counts(ds), [...Array(15).fill(5), ...Array(5).fill(6)]);
  assert.deepEqual(modes(ds), Array(20).fill('S'), 'panic wants 5 of 4 ready: under 2x');
});

test('a burst enters panic, never scales down in it, and leaves a stable window after the last trigger', () => {
  const { cluster, loop } = warmAtForty();
  const ds = steps(cluster, loop, [...repeat(3, { concurrency: 200 }), ...repeat(31, { concurrency: 40 })]);
  const n = counts(ds);
  // Tick 1: the 6 s window averages (40 + 40 + 200) / 3 = 93.3 -> 10 replicas = 2.5x the 4 ready: panic.
  assert.equal(modes(ds)[0], 'P');
  assert.deepEqual(n.slice(0, 3), [10, 15, 20], 'panic follows the 6 s window up');
  // Load is back at 40 from tick 4, but panic holds its highest count until 60 s after tick 1.
  assert.deepEqual(n.slice(3, 31), Array(28).fill(20), 'no scale-down while in panic');
  assert.deepEqual(modes(ds).slice(0, 31), Array(31).fill('P'));
  // Tick 32 (62 s after tick 1): stable mode, wants 5 but may only halve: 10, then 5, then 4.
  assert.deepEqual(modes(ds).slice(31), ['S', 'S', 'S']);
  assert.deepEqual(n.slice(31), [10, 5, 4], 'scale-down rate 2 per tick');
});

test('a second trigger during panic extends it', () => {
  const { cluster, loop } = warmAtForty();
  const script = [
    ...repeat(3, { concurrency: 200 }),
    ...repeat(20, { concurrency: 40 }),
    // 40 s into panic, 30x the load: wants 120 of 20 ready, over 2x again.
    { concurrency: 4000 },
    ...repeat(40, { concurrency: 40 }),
  ];
  const ds = steps(cluster, loop, script);
  const trigger = 23;
  assert.equal(modes(ds)[trigger], 'P');
  assert.ok(totalReplicas(ds[trigger] as ControlDecision) > 20, 'the second burst scaled up');
  // Panic now lasts until more than 60 s after the second trigger (31 ticks), not the first.
  assert.deepEqual(modes(ds).slice(trigger, trigger + 31), Array(31).fill('P'));
  assert.equal(modes(ds)[trigger + 31], 'S');
});

test('max scale-up rate bounds growth per tick relative to the ready count', () => {
  const context = testContext({ minReplicas: 1, maxReplicas: 100 });
  const slow = kpa(context, { ...TEN_PER_REPLICA, maxScaleUpRate: 2 });
  assert.deepEqual(
    new ScriptedCluster(context, 1).run(slow, repeat(7, { concurrency: 1000 })),
    [2, 4, 8, 16, 32, 64, 100],
  );
  // Knative's default rate (1000) reaches the 100 wanted at once.
  const fast = kpa(context);
  assert.deepEqual(new ScriptedCluster(context, 1).run(fast, repeat(2, { concurrency: 1000 })), [100, 100]);
});

test('scale to zero only after a whole stable window without traffic, and only when minReplicas allows', () => {
  const script = [{ concurrency: 5 }, ...repeat(31, { concurrency: 0 })];
  const toZero = testContext({ minReplicas: 0 });
  const n = new ScriptedCluster(toZero, 1).run(kpa(toZero), script);
  // The window with traffic stays in the 60 s average for 30 ticks.
  assert.deepEqual(n, [...Array(30).fill(1), 0, 0]);
  const keepOne = testContext({ minReplicas: 1 });
  assert.deepEqual(new ScriptedCluster(keepOne, 1).run(kpa(keepOne), script), Array(32).fill(1));
});

test('from zero ready replicas, load scales up (rates are relative to at least one)', () => {
  const context = testContext({ minReplicas: 0 });
  const ds = steps(new ScriptedCluster(context, 0), kpa(context), [{ concurrency: 0 }, { concurrency: 35 }]);
  // Both windows average (0 + 35) / 2 = 17.5 -> 2 replicas, 2x the one-pod floor: panic.
  assert.deepEqual(counts(ds), [0, 2]);
  assert.deepEqual(modes(ds), ['S', 'P']);
});

test('a scale-down delay holds the highest count wanted over its span', () => {
  const context = testContext({ minReplicas: 1 });
  const params = { ...TEN_PER_REPLICA, scaleDownDelayMs: 10_000, stableWindowMs: 6_000 };
  const script = [...repeat(40, { concurrency: 40 }), ...repeat(10, { concurrency: 10 })];
  const delayed = new ScriptedCluster(context, 1).run(kpa(context, params), script);
  // Wanted before the delay from tick 41: 3, 2, 2, 2, 2 (halving from 4 ready), then 1s. The delay
  // answers the highest of the last 5 ticks (10 s): the 4 of tick 40 lasts to tick 44, the 3 to 45.
  assert.deepEqual(delayed.slice(40), [4, 4, 4, 4, 3, 2, 2, 2, 2, 1]);
  const { scaleDownDelayMs: _, ...undelayed } = params;
  const prompt = new ScriptedCluster(context, 1).run(kpa(context, undelayed), script);
  assert.deepEqual(prompt.slice(40), [3, 2, 1, 1, 1, 1, 1, 1, 1, 1]);
});

test('without concurrency data it holds the instances it has', () => {
  const context = testContext({ minReplicas: 0 });
  const d = new ScriptedCluster(context, 3).step(kpa(context), { concurrency: Number.NaN, starting: 2 });
  assert.equal(totalReplicas(d), 5);
  assert.match(d.reason, /no concurrency data/);
});

test('the default target is 64 x 70% = 44.8 concurrent requests per replica', () => {
  const context = testContext({ minReplicas: 1 });
  const n = new ScriptedCluster(context, 1).run(createAutoscaler('kpa', context), [
    { concurrency: 44.8 },
    { concurrency: 44.9 },
  ]);
  // 44.9 averaged with 44.8 over the windows is still under 2 x 44.8; the first tick wants exactly 1.
  assert.equal(n[0], 1);
  assert.equal(n[1], 2);
});

test('the same script gives the same decisions', () => {
  const context = testContext({ minReplicas: 1 });
  const script = [
    ...repeat(5, { concurrency: 30 }),
    ...repeat(5, { concurrency: 300 }),
    ...repeat(40, { concurrency: 10 }),
  ];
  const a = steps(new ScriptedCluster(context, 2), kpa(context), script);
  const b = steps(new ScriptedCluster(context, 2), kpa(context), script);
  assert.deepEqual(a, b);
});

test('bad parameters fail naming the key', () => {
  const context = testContext();
  assert.throws(() => kpa(context, { panicWindowMs: 120_000 }), /panicWindowMs/);
  assert.throws(() => kpa(context, { maxScaleDownRate: 1 }), /maxScaleDownRate/);
  assert.throws(() => kpa(context, { stableWindow: 60 }), /stableWindow.*valid: .*stableWindowMs/);
});
