import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../../core/errors.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlObservation,
  InstancePhase,
  Variant,
} from '../../types.ts';
import { variantKey } from '../../types.ts';
import { instanceView, testContext, trafficWindow } from '../test-support.ts';
import {
  analyzeSaturation,
  createSaturation,
  type SaturationParams,
  saturationParams,
} from './saturation.ts';

const H100: Variant = { model: 'llama-3.1-8b', gpu: 'h100', tp: 1, role: 'both' };
const A100: Variant = { model: 'llama-3.1-8b', gpu: 'a100-80gb', tp: 1, role: 'both' };
const DEFAULTS: SaturationParams = saturationParams.parse({});

/** One instance of a scripted tick: its variant, phase and the signals it shows when ready. */
interface Spec {
  readonly v: Variant;
  readonly phase?: InstancePhase;
  readonly kv?: number;
  readonly waiting?: number;
  readonly healthy?: boolean;
}

let clockMs = 0;

/** The observation a host would pass for these instances (ids by position, views for ready ones). */
function observe(specs: readonly Spec[], window: { arrivals?: number } = {}): ControlObservation {
  clockMs += 60_000;
  const instances = specs.map((s, i) => ({
    id: `i${i}`,
    variant: s.v,
    phase: s.phase ?? 'ready',
    sinceMs: 0,
  }));
  const views = specs
    .map((s, i) => ({ s, id: `i${i}` }))
    .filter(({ s }) => (s.phase ?? 'ready') === 'ready')
    .map(({ s, id }) =>
      instanceView(id, {
        gpu: s.v.gpu,
        kvUsage: s.kv ?? 0,
        waiting: s.waiting ?? 0,
        healthy: s.healthy ?? true,
        updatedAtMs: clockMs,
      }),
    );
  const w = trafficWindow(clockMs - 60_000, clockMs, { arrivals: window.arrivals ?? 0 });
  return {
    nowMs: clockMs,
    model: 'llama-3.1-8b',
    instances,
    view: { nowMs: clockMs, instances: views },
    window: w,
    history: [w],
  };
}

function context(overrides: Partial<ControlContext> = {}): ControlContext {
  return testContext({
    variants: [H100, A100],
    minReplicas: 1,
    maxReplicas: 10,
    intervalMs: 60_000,
    ...overrides,
  });
}

/** The decision's replicas per variant key, listing only non-zero ones. */
function counts(d: ControlDecision): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of d.targets) if (t.replicas > 0) out[variantKey(t.variant)] = t.replicas;
  return out;
}

const h = variantKey(H100);
const a = variantKey(A100);

test("WVA's analysis: spare capacity averages over non-saturated replicas only", () => {
  const views = [
    instanceView('x', { kvUsage: 0.65 }),
    instanceView('y', { kvUsage: 0.72 }),
    instanceView('z', { kvUsage: 0.9 }),
  ];
  const r = analyzeSaturation(views, DEFAULTS);
  assert.equal(r.nonSaturated, 2, 'z is saturated at kv 0.9 >= 0.8');
  assert.ok(Math.abs(r.avgSpareKv - 0.115) < 1e-12);
  assert.equal(r.scaleUp, false, '0.115 >= kvSpareTrigger 0.1');
  const y2 = analyzeSaturation(
    [views[0], instanceView('y', { kvUsage: 0.76 })].map((v) => v!),
    DEFAULTS,
  );
  assert.equal(y2.scaleUp, true, 'mean spare 0.095 < 0.1');
  const queued = analyzeSaturation([instanceView('q', { waiting: 3 })], DEFAULTS);
  assert.equal(queued.scaleUp, true, 'spare queue 5 - 3 = 2 < 3');
  const allSaturated = analyzeSaturation([instanceView('s', { waiting: 5 })], DEFAULTS);
  assert.equal(allSaturated.nonSaturated, 0);
  assert.equal(allSaturated.scaleUp, true, 'nothing spare: scale up');
});

test("scale-down is safe only if the removed replica's load, spread over the rest, stays under the triggers", () => {
  const kv = (x: number, y: number) =>
    analyzeSaturation([instanceView('x', { kvUsage: x }), instanceView('y', { kvUsage: y })], DEFAULTS);
  assert.equal(kv(0.34, 0.34).scaleDownSafe, true, '0.68 on one: spare 0.12 >= 0.1');
  assert.equal(kv(0.36, 0.36).scaleDownSafe, false, '0.72 on one: spare 0.08 < 0.1');
  const q = (x: number, y: number) =>
    analyzeSaturation([instanceView('x', { waiting: x }), instanceView('y', { waiting: y })], DEFAULTS);
  assert.equal(q(1, 1).scaleDownSafe, true, '2 waiting on one: spare 3 >= 3');
  assert.equal(q(1, 2).scaleDownSafe, false, '3 waiting on one: spare 2 < 3');
  assert.equal(
    analyzeSaturation([instanceView('x')], DEFAULTS).scaleDownSafe,
    false,
    'needs two non-saturated',
  );
});

test('a scripted overload and its ebb: add the cheapest variant, hold while it starts, remove the dearest', () => {
  const loop = createSaturation(context(), DEFAULTS);
  // Tick 1: two H100 replicas, both near full KV -> add one A100 (1.30 $/h beats H100's 3.00).
  let d = loop.decide(
    observe([
      { v: H100, kv: 0.85 },
      { v: H100, kv: 0.78 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 2, [a]: 1 });
  assert.match(d.reason, /scale up .*a100-80gb/);
  // Tick 2: the A100 is starting; still saturated, but WVA decides nothing on a partial fleet.
  d = loop.decide(
    observe([
      { v: H100, kv: 0.9 },
      { v: H100, kv: 0.85 },
      { v: A100, phase: 'starting' },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 2, [a]: 1 });
  assert.match(d.reason, /hold/);
  // Tick 3: ready and still tight (mean spare kv (0.05 + 0.02 + 0.2) / 3 = 0.09) -> another A100.
  d = loop.decide(
    observe([
      { v: H100, kv: 0.75 },
      { v: H100, kv: 0.78 },
      { v: A100, kv: 0.6 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 2, [a]: 2 });
  // Tick 4: the actuator has not started it yet (still 3 active): hold the last decision.
  d = loop.decide(
    observe([
      { v: H100, kv: 0.5 },
      { v: H100, kv: 0.5 },
      { v: A100, kv: 0.5 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 2, [a]: 2 });
  // Tick 5: four ready, load eased to 0.5 each: 4 x 0.5 / 3 = 0.67 leaves spare 0.13 -> drop an H100.
  d = loop.decide(
    observe([
      { v: H100, kv: 0.5 },
      { v: H100, kv: 0.5 },
      { v: A100, kv: 0.5 },
      { v: A100, kv: 0.5 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 1, [a]: 2 });
  assert.match(d.reason, /scale down .*h100/);
  // Tick 6: three ready at 0.6: 3 x 0.6 / 2 = 0.9 would saturate -> steady.
  d = loop.decide(
    observe([
      { v: H100, kv: 0.6 },
      { v: A100, kv: 0.6 },
      { v: A100, kv: 0.6 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 1, [a]: 2 });
  assert.match(d.reason, /steady/);
  // Tick 7: idle: the H100 goes before any A100.
  d = loop.decide(observe([{ v: H100 }, { v: A100 }, { v: A100 }]));
  assert.deepEqual(counts(d), { [a]: 2 });
});

test('bounds: no scale-up at maxReplicas, none below max(1, minReplicas), and minReplicas is filled', () => {
  const atMax = createSaturation(context({ maxReplicas: 2 }), DEFAULTS);
  const d = atMax.decide(
    observe([
      { v: A100, kv: 0.95 },
      { v: A100, kv: 0.95 },
    ]),
  );
  assert.deepEqual(counts(d), { [a]: 2 });
  assert.match(d.reason, /maxReplicas/);
  const lone = createSaturation(context(), DEFAULTS);
  assert.deepEqual(counts(lone.decide(observe([{ v: H100 }]))), { [h]: 1 }, 'one idle replica stays');
  const floor = createSaturation(context({ minReplicas: 2 }), DEFAULTS);
  assert.deepEqual(counts(floor.decide(observe([{ v: H100 }, { v: H100 }]))), { [h]: 2 }, 'idle pair at min');
  const fill = createSaturation(context({ minReplicas: 2 }), DEFAULTS);
  assert.deepEqual(counts(fill.decide(observe([{ v: H100 }]))), { [h]: 1, [a]: 1 });
  // From an empty pool (time 0), the whole minimum at once, not one a tick.
  const empty = createSaturation(context({ minReplicas: 3 }), DEFAULTS);
  assert.deepEqual(counts(empty.decide(observe([], { arrivals: 0 }))), { [a]: 3 });
});

test('from zero: requests at the host wake one cheapest replica; no requests, no replica', () => {
  const loop = createSaturation(context({ minReplicas: 0 }), DEFAULTS);
  assert.deepEqual(counts(loop.decide(observe([], { arrivals: 0 }))), {});
  assert.deepEqual(counts(loop.decide(observe([], { arrivals: 3 }))), { [a]: 1 });
});

test('equal prices break ties by variant key: first for scale-up, last for scale-down', () => {
  const same = { costPerGpuHour: { h100: 2, 'a100-80gb': 2 } };
  const up = createSaturation(context(), saturationParams.parse(same));
  assert.deepEqual(counts(up.decide(observe([{ v: H100, kv: 0.9 }]))), { [h]: 1, [a]: 1 }, `${a} < ${h}`);
  const down = createSaturation(context(), saturationParams.parse(same));
  assert.deepEqual(counts(down.decide(observe([{ v: H100 }, { v: H100 }, { v: A100 }]))), { [h]: 1, [a]: 1 });
});

test('prices come from the parameters over the defaults: a dearer A100 flips the choice', () => {
  const loop = createSaturation(context(), saturationParams.parse({ costPerGpuHour: { 'a100-80gb': 5 } }));
  assert.deepEqual(counts(loop.decide(observe([{ v: H100, kv: 0.9 }]))), { [h]: 2 });
  const tp2 = { ...H100, tp: 2 };
  const perGpu = createSaturation(context({ variants: [tp2, A100] }), saturationParams.parse({}));
  // H100 x 2 GPUs = 6.00 $/h; the A100 replica (1.30) is cheaper.
  assert.deepEqual(counts(perGpu.decide(observe([{ v: tp2, kv: 0.9 }]))), { [variantKey(tp2)]: 1, [a]: 1 });
});

test('an unpriced GPU among several fails at creation with SY_ERR_INVALID_CONFIG; alone it needs no price', () => {
  const l4: Variant = { ...H100, gpu: 'l4' };
  assert.throws(
    () => createSaturation(context({ variants: [l4, H100] }), DEFAULTS),
    (e: unknown) =>
      e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG' && /l4/.test(e.message),
  );
  const alone = createSaturation(context({ variants: [l4] }), DEFAULTS);
  assert.deepEqual(counts(alone.decide(observe([{ v: l4, waiting: 7 }]))), { [variantKey(l4)]: 2 });
});

test('unhealthy replicas are neither analysed nor drained; with none reporting, hold', () => {
  const loop = createSaturation(context(), DEFAULTS);
  const d = loop.decide(
    observe([
      { v: H100, healthy: false },
      { v: H100, kv: 0.9 },
    ]),
  );
  assert.deepEqual(counts(d), { [h]: 2, [a]: 1 }, 'the healthy one is saturated; the sick one still counts');
  const blind = createSaturation(context(), DEFAULTS);
  const d2 = blind.decide(observe([{ v: H100, healthy: false }]));
  assert.deepEqual(counts(d2), { [h]: 1 });
  assert.match(d2.reason, /no ready replica/);
});

test('parameters are validated: out-of-range thresholds and unknown keys are rejected', () => {
  assert.equal(saturationParams.safeParse({ kvCacheThreshold: 1.5 }).success, false);
  assert.equal(saturationParams.safeParse({ queueThreshold: 3 }).success, false);
  assert.equal(saturationParams.safeParse({ costPerGpuHour: { h100: -1 } }).success, false);
});
