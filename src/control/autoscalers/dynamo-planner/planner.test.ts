import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../../core/errors.ts';
import type { CapacityFn, ReplicaCapacity } from '../../capacity.ts';
import { perfModelCapacity } from '../../capacity.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlObservation,
  TrafficWindow,
  Variant,
} from '../../types.ts';
import { totalReplicas, variantKey } from '../../types.ts';
import { createAutoscaler } from '../registry.ts';
import { ScriptedCluster, testContext, trafficWindow } from '../test-support.ts';
import {
  budgetPair,
  createDynamoPlanner,
  type DynamoPlannerParams,
  dynamoPlannerParams,
  intervalLoad,
} from './planner.ts';

const BOTH: Variant = { model: 'llama-3.1-8b', gpu: 'h100', tp: 1, role: 'both' };
const OBJECTIVES = { ttftMs: 3000, tpotMs: 50 };

/** A capacity stub: `rps` requests per second for every variant, or per role. */
function fixedCapacity(rps: number | Partial<Record<Variant['role'], number>>): CapacityFn {
  return (v) => {
    const r = typeof rps === 'number' ? rps : (rps[v.role] ?? 0);
    return {
      requestsPerS: r,
      limitedBy: 'decode',
      prefillMs: 100,
      decodeBatch: 8,
      itlMs: 40,
    } as ReplicaCapacity;
  };
}

function params(overrides: Record<string, unknown>): DynamoPlannerParams {
  return dynamoPlannerParams.parse({ capacity: fixedCapacity(2), ...overrides });
}

function context(overrides: Partial<ControlContext> = {}): ControlContext {
  return testContext({
    intervalMs: 60_000,
    minReplicas: 1,
    maxReplicas: 100,
    objectives: OBJECTIVES,
    ...overrides,
  });
}

/** One minute's traffic: `completions` finished and as many arrived, of 8000 / 1000 tokens. */
function minute(completions: number, extra: Partial<TrafficWindow> = {}) {
  return {
    window: {
      arrivals: completions,
      completions,
      meanInputTokens: 8000,
      meanOutputTokens: 1000,
      ...extra,
    },
  };
}

test('the rule each tick: wait out the interval, then ceil(predicted req/s / per-replica req/s)', () => {
  const loop = createDynamoPlanner(context(), params({ predictor: 'constant', gpuBudget: 64 }));
  const cluster = new ScriptedCluster(context(), 2);
  const replicas = cluster.run(loop, [
    minute(600), // t = 60 s: warming up, the deployed 2
    minute(600), // 120 s: still warming
    minute(600), // 180 s: 1800 req / 180 s = 10 req/s over 2 req/s per replica -> 5
    minute(1200), // 240 s: hold
    minute(1200), // 300 s: hold
    minute(1200), // 360 s: (1200 x 3) / 180 = 20 req/s -> 10
    minute(0), // 420 s: hold
    minute(0), // 480 s: hold
    minute(0), // 540 s: idle interval -> min_endpoint 1
  ]);
  assert.deepEqual(replicas, [2, 2, 5, 5, 5, 10, 10, 10, 1]);
});

test("demand is the frontend's completions by default, arrivals on request", () => {
  const tick = minute(300, { arrivals: 900 });
  const byCompletions = new ScriptedCluster(context(), 1).run(
    createDynamoPlanner(context(), params({ predictor: 'constant', adjustmentIntervalS: 60 })),
    [tick],
  );
  const byArrivals = new ScriptedCluster(context(), 1).run(
    createDynamoPlanner(
      context(),
      params({ predictor: 'constant', adjustmentIntervalS: 60, demand: 'arrivals' }),
    ),
    [tick],
  );
  assert.deepEqual(byCompletions, [3], '300 / 60 s = 5 req/s over 2 -> 3');
  assert.deepEqual(byArrivals, [8], '900 / 60 s = 15 req/s over 2 -> 8');
});

test('the GPU budget caps an aggregated pool at floor(budget / tp), and the context bounds apply', () => {
  const tp2: Variant = { ...BOTH, tp: 2 };
  const ctx = context({ variants: [tp2] });
  const loop = createDynamoPlanner(ctx, params({ predictor: 'constant', adjustmentIntervalS: 60 }));
  const d = loop.decide(new ScriptedCluster(ctx, 1).observe(minute(6000)));
  assert.equal(totalReplicas(d), 4, '50 replicas wanted; 8 GPUs / 2 per replica');
  assert.match(d.reason, /capped by the 8-GPU budget/);
  const bounded = context({ maxReplicas: 3 });
  const d2 = createDynamoPlanner(bounded, params({ predictor: 'constant', adjustmentIntervalS: 60 })).decide(
    new ScriptedCluster(bounded, 1).observe(minute(6000)),
  );
  assert.equal(totalReplicas(d2), 3);
});

test('disaggregated: prefill and decode pools sized apart, shrunk in proportion over the budget', () => {
  const p: Variant = { ...BOTH, role: 'prefill' };
  const dv: Variant = { ...BOTH, role: 'decode' };
  const ctx = context({ variants: [p, dv] });
  const cap = fixedCapacity({ prefill: 4, decode: 1 });
  const plan = (completions: number, gpuBudget = 8): ControlDecision =>
    createDynamoPlanner(
      ctx,
      params({ predictor: 'constant', adjustmentIntervalS: 60, capacity: cap, gpuBudget }),
    ).decide(new ScriptedCluster(ctx, 2).observe(minute(completions)));
  const counts = (d: ControlDecision) => d.targets.map((t) => `${t.variant.role}:${t.replicas}`).join(' ');
  assert.equal(counts(plan(240)), 'prefill:1 decode:4', '4 req/s: 1 prefill at 4, 4 decode at 1');
  assert.equal(
    counts(plan(480)),
    'prefill:1 decode:7',
    'wants 2P 8D = 10 GPUs: floor(2 x 0.8) P, the rest D',
  );
  assert.equal(counts(plan(480, 16)), 'prefill:2 decode:8', 'within a 16-GPU budget');
  assert.deepEqual(budgetPair(2, 8, 1, 1, 8, 1), [1, 7], 'floor(2 x 0.8) = 1 prefill, the rest decode');
  assert.deepEqual(budgetPair(6, 2, 2, 1, 8, 1), [3, 2], 'prefill at 2 GPUs each');
  assert.deepEqual(budgetPair(1, 3, 1, 1, 8, 1), [1, 3], 'within budget: unchanged');
});

test('a variant that cannot meet the objectives holds the deployed count and says why', () => {
  const loop = createDynamoPlanner(
    context(),
    params({ capacity: fixedCapacity(0), adjustmentIntervalS: 60 }),
  );
  const d = loop.decide(new ScriptedCluster(context(), 3).observe(minute(600)));
  assert.equal(totalReplicas(d), 3);
  assert.match(d.reason, /hold: .*cannot meet the objectives/);
});

test('without a capacity parameter, the performance model sizes the pool', () => {
  const loop = createDynamoPlanner(
    context(),
    dynamoPlannerParams.parse({ predictor: 'constant', adjustmentIntervalS: 60, gpuBudget: 64 }),
  );
  const d = loop.decide(new ScriptedCluster(context(), 1).observe(minute(300)));
  const perReplica = perfModelCapacity()(BOTH, OBJECTIVES, 8000, 1000).requestsPerS;
  assert.ok(perReplica > 0);
  assert.equal(totalReplicas(d), Math.ceil(5 / perReplica));
});

test('interval load: demand summed, input weighted by arrivals, output by completions, idle means skipped', () => {
  const ws = [
    trafficWindow(0, 60_000, { arrivals: 10, meanInputTokens: 1000, completions: 5, meanOutputTokens: 100 }),
    trafficWindow(60_000, 120_000, {
      arrivals: 30,
      meanInputTokens: 2000,
      completions: 15,
      meanOutputTokens: 300,
    }),
    trafficWindow(120_000, 180_000, {}),
  ];
  const l = intervalLoad(ws, 0, 180_000, 'completions');
  assert.equal(l.requests, 20);
  assert.equal(l.durationS, 180);
  assert.equal(l.inputTokens, 1750);
  assert.equal(l.completedOutputTokensMean, 250);
  assert.equal(
    intervalLoad(ws, 60_000, 180_000, 'arrivals').requests,
    30,
    'windows before the interval excluded',
  );
});

test('the registry builds it by name and rejects an unknown predictor', () => {
  const loop = createAutoscaler('dynamo-planner', context(), {
    predictor: 'kalman',
    capacity: fixedCapacity(2),
  });
  assert.equal(loop.name, 'dynamo-planner');
  assert.throws(
    () => createAutoscaler('dynamo-planner', context(), { predictor: 'prophet' }),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG' && /predictor/.test(e.message),
  );
});

// ai-dynamo/dynamo issue 10528: 1-to-24 req/s sinusoid over 900 s, 8000 / 1000 tokens, TTFT 3 s.
// A fluid plant: each replica serves ENGINE_RPS requests a second (the profiled rate is also what a
// saturated replica achieves); what it cannot serve queues at the frontend, first come first served.

const ENGINE_RPS = 3;
const TICK_S = 10;

interface PlantRun {
  readonly replicasPerAdjustment: number[];
  readonly finalQueue: number;
  /** Requests served while the queue ahead of them was under TTFT (queue / service rate <= 3 s). */
  readonly goodFraction: number;
}

function runSinusoid(overrides: Record<string, unknown>, seconds = 3600): PlantRun {
  const ctx = testContext({
    minReplicas: 1,
    maxReplicas: 16,
    intervalMs: TICK_S * 1000,
    objectives: OBJECTIVES,
  });
  const loop = createDynamoPlanner(
    ctx,
    params({ capacity: fixedCapacity(ENGINE_RPS), gpuBudget: 16, ...overrides }),
  );
  const history: TrafficWindow[] = [];
  let queue = 0;
  let ready = 1;
  let good = 0;
  let served = 0;
  const replicasPerAdjustment: number[] = [];
  for (let k = 0; k < seconds / TICK_S; k++) {
    const t0 = k * TICK_S;
    const rate = 1 + (23 * (1 - Math.cos((2 * Math.PI * (t0 + TICK_S / 2)) / 900))) / 2;
    const arrivals = rate * TICK_S;
    const done = Math.min(queue + arrivals, ready * ENGINE_RPS * TICK_S);
    queue += arrivals - done;
    served += done;
    if (queue / (ready * ENGINE_RPS) <= OBJECTIVES.ttftMs / 1000) good += done;
    const window = trafficWindow(t0 * 1000, (t0 + TICK_S) * 1000, {
      arrivals,
      completions: done,
      meanInputTokens: 8000,
      meanOutputTokens: 1000,
      queuedAtEnd: queue,
    });
    history.push(window);
    const obs: ControlObservation = {
      nowMs: (t0 + TICK_S) * 1000,
      model: BOTH.model,
      instances: Array.from({ length: ready }, (_, i) => ({
        id: `r${i}`,
        variant: BOTH,
        phase: 'ready',
        sinceMs: 0,
      })),
      view: { nowMs: (t0 + TICK_S) * 1000, instances: [] },
      window,
      history: [...history],
    };
    ready = totalReplicas(loop.decide(obs));
    if ((k + 1) % (180 / TICK_S) === 0) replicasPerAdjustment.push(ready);
  }
  return { replicasPerAdjustment, finalQueue: queue, goodFraction: good / served };
}

test('issue 10528: counting completions, an overloaded fleet sees only its own capacity and never grows', () => {
  for (const predictor of ['constant', 'arima'] as const) {
    const run = runSinusoid({ predictor });
    assert.deepEqual(
      new Set(run.replicasPerAdjustment),
      new Set([1]),
      `${predictor}: ${run.replicasPerAdjustment}`,
    );
    assert.ok(run.finalQueue > 10_000, `${predictor}: queue ${run.finalQueue.toFixed(0)}`);
    assert.ok(run.goodFraction < 0.05, `${predictor}: ${run.goodFraction}`);
  }
});

test('issue 10528: even counting arrivals, sizing to the forecast rate leaves the backlog unserved', () => {
  const run = runSinusoid({ predictor: 'constant', demand: 'arrivals' });
  assert.equal(Math.max(...run.replicasPerAdjustment), 8, 'follows the load up to ceil(24 / 3)');
  assert.ok(run.goodFraction < 0.25, `good ${run.goodFraction}`);
});

test('issue 10528: the queue at the frontend does not enter the decision', () => {
  const decide = (queuedAtEnd: number): ControlDecision =>
    createDynamoPlanner(context(), params({ predictor: 'constant', adjustmentIntervalS: 60 })).decide(
      new ScriptedCluster(context(), 2).observe(minute(240, { queuedAtEnd, ttftMsP90: queuedAtEnd * 10 })),
    );
  const calm = decide(0);
  const backlog = decide(20_000);
  assert.equal(totalReplicas(calm), 2);
  assert.deepEqual(
    backlog.targets.map((t) => [variantKey(t.variant), t.replicas]),
    calm.targets.map((t) => [variantKey(t.variant), t.replicas]),
  );
});

test('scale from zero: an empty pool with arrivals or held requests starts replicas at once', () => {
  const ctx = context({ minReplicas: 0 });
  const loop = createDynamoPlanner(ctx, params({ predictor: 'constant' }));
  const cluster = new ScriptedCluster(ctx, 0);
  const replicas = cluster.run(loop, [
    minute(0), // t = 60 s: no traffic, stays at 0
    { window: { arrivals: 0, queuedAtEnd: 5 } }, // 120 s: requests held, nothing served
  ]);
  assert.deepEqual(replicas, [0, 1], 'held requests with no instance wake the pool during warm-up');
  const sized = new ScriptedCluster(ctx, 0).run(createDynamoPlanner(ctx, params({ predictor: 'constant' })), [
    minute(0, { arrivals: 600 }),
  ]);
  assert.deepEqual(sized, [1], 'lengths unknown: one replica');
});

test('scale from zero: sized for the arrival rate through the cold start, the same in both hosts', () => {
  const ctx = context({ minReplicas: 0 });
  /** A planner that served 2 req/s of 8,000 / 1,000 tokens, then went to zero when idle. */
  const warmedThenIdle = () => {
    const loop = createDynamoPlanner(ctx, params({ predictor: 'constant', minEndpoint: 0 }));
    const cluster = new ScriptedCluster(ctx, 1);
    const n = cluster.run(loop, [minute(120), minute(120), minute(120), minute(0), minute(0), minute(0)]);
    assert.deepEqual(n, [1, 1, 1, 1, 1, 0], 'an idle interval with minEndpoint 0 empties the pool');
    return { loop, cluster };
  };
  // 600 arrivals in a minute (10 req/s over 2 per replica: 5), none served yet. The live gateway
  // started one instance at the first request; the twin leaves the start to this tick.
  const cold = (starting: number) => ({
    ready: 0,
    starting,
    window: { arrivals: 600, queuedAtEnd: 256, meanInputTokens: 8000 },
  });
  const live = warmedThenIdle();
  const twin = warmedThenIdle();
  const a = live.cluster.step(live.loop, cold(1));
  const b = twin.cluster.step(twin.loop, cold(0));
  assert.equal(totalReplicas(a), 5, 'one instance already starting does not stop the sizing');
  assert.equal(totalReplicas(b), 5);
  assert.match(a.reason, /^scale from zero: 600 arrived, 256 waiting .*\(10\.00 req\/s\)/);
  // Still none ready a tick later: sized again (never fewer than on the way), not held at 1.
  assert.equal(totalReplicas(live.cluster.step(live.loop, { ...cold(5) })), 5);
});

test('scale from zero: the interval after a cold start starts when the pool can serve', () => {
  const ctx = context({ minReplicas: 0 });
  const loop = createDynamoPlanner(ctx, params({ predictor: 'constant', minEndpoint: 0 }));
  const cluster = new ScriptedCluster(ctx, 1);
  cluster.run(loop, [minute(120), minute(120), minute(120), minute(0), minute(0), minute(0)]);
  const cold = { ready: 0, starting: 0, window: { arrivals: 600, queuedAtEnd: 256, meanInputTokens: 8000 } };
  assert.equal(totalReplicas(cluster.step(loop, cold)), 5);
  // Ready, serving 10 req/s: the next adjustment is a whole interval on, over what the pool served.
  const after = cluster.run(loop, [minute(600, { arrivals: 600 }), minute(600), minute(600)]);
  assert.deepEqual(after, [5, 5, 5], 'no adjustment over the idle interval drains the new pool');
});
