import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { readTrace } from '../workload/traces/read.ts';
import { type SyntheticPlanOptions, syntheticPlan, tracePlan } from './plan.ts';

const BASE: SyntheticPlanOptions = {
  rateRps: 10,
  cv: 1,
  requests: 4000,
  durationS: undefined,
  inputTokens: { lo: 100, hi: 100 },
  outputTokens: { lo: 10, hi: 50 },
  prefixGroups: 0,
  prefixTokens: 0,
  seed: 3,
};

function gaps(atMs: number[]): number[] {
  return atMs.slice(1).map((t, i) => t - (atMs[i] as number));
}

function meanAndCv(xs: number[]): { mean: number; cv: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  return { mean, cv: Math.sqrt(variance) / mean };
}

test('Poisson plan: starts at 0, mean gap 1/rate, cv 1, deterministic from the seed', () => {
  const a = [...syntheticPlan(BASE).requests];
  const b = [...syntheticPlan(BASE).requests];
  assert.deepEqual(a, b);
  assert.equal(a.length, 4000);
  assert.equal(a[0]?.atMs, 0);
  const { mean, cv } = meanAndCv(gaps(a.map((r) => r.atMs)));
  assert.ok(Math.abs(mean - 100) < 5, `mean gap ${mean}`);
  assert.ok(Math.abs(cv - 1) < 0.07, `cv ${cv}`);
  for (const r of a) {
    assert.equal(r.inputTokens, 100);
    assert.ok(r.outputTokens >= 10 && r.outputTokens <= 50);
  }
  const other = [...syntheticPlan({ ...BASE, seed: 4 }).requests];
  assert.notDeepEqual(
    other.map((r) => r.atMs),
    a.map((r) => r.atMs),
  );
});

test('Gamma plan keeps the rate and has the asked coefficient of variation', () => {
  const a = [...syntheticPlan({ ...BASE, cv: 2 }).requests];
  const { mean, cv } = meanAndCv(gaps(a.map((r) => r.atMs)));
  assert.ok(Math.abs(mean - 100) < 10, `mean gap ${mean}`);
  assert.ok(Math.abs(cv - 2) < 0.25, `cv ${cv}`);
});

test('changing the lengths does not move the arrivals', () => {
  const a = [...syntheticPlan(BASE).requests].map((r) => r.atMs);
  const b = [...syntheticPlan({ ...BASE, inputTokens: { lo: 5, hi: 500 } }).requests].map((r) => r.atMs);
  assert.deepEqual(a, b);
});

test('duration, infinite rate and groups', () => {
  const timed = [...syntheticPlan({ ...BASE, requests: undefined, durationS: 20 }).requests];
  assert.ok(timed.length > 150 && timed.length < 250, `${timed.length} requests in 20 s at 10/s`);
  assert.ok(timed.every((r) => r.atMs < 20_000));
  const burst = [...syntheticPlan({ ...BASE, rateRps: Number.POSITIVE_INFINITY, requests: 50 }).requests];
  assert.equal(burst.length, 50);
  assert.ok(burst.every((r) => r.atMs === 0));
  const grouped = [...syntheticPlan({ ...BASE, prefixGroups: 4, prefixTokens: 300 }).requests];
  const seen = new Set(grouped.map((r) => r.group));
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3]);
  assert.ok(grouped.every((r) => r.inputTokens === 400 && r.prefixTokens === 300));
  assert.throws(
    () => syntheticPlan({ ...BASE, requests: undefined }),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT',
  );
});

test('trace plan: scaled arrivals, caps, hash ids passed through', () => {
  const trace = readTrace('sample:mooncake-conversation');
  const full = tracePlan(trace, { rateScale: 1, requests: 100, durationS: undefined });
  const fast = tracePlan(trace, { rateScale: 4, requests: 100, durationS: undefined });
  const a = [...full.requests];
  const b = [...fast.requests];
  assert.equal(full.total, 100);
  assert.equal(a.length, 100);
  for (let i = 0; i < a.length; i++) {
    assert.equal(b[i]?.atMs, (a[i]?.atMs ?? 0) / 4);
    assert.deepEqual(a[i]?.hashIds, trace.records[i]?.hashIds);
    assert.equal(a[i]?.outputTokens, Math.max(1, trace.records[i]?.outputTokens ?? 0));
  }
  // --duration is run time: at x4, 10 s of run covers 40 s of trace.
  const capped = [...tracePlan(trace, { rateScale: 4, requests: undefined, durationS: 10 }).requests];
  assert.ok(capped.length > 0);
  assert.ok(capped.every((r) => r.atMs < 10_000));
  const next = trace.records[capped.length];
  assert.ok(next !== undefined && next.arrivalMs / 4 >= 10_000);
});
