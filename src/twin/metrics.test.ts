import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quantileSorted } from '../stats/percentiles.ts';
import { tailWithRejected } from './metrics.ts';

test('with nothing rejected the percentiles are the usual ones', () => {
  const sorted = Float64Array.from({ length: 101 }, (_, i) => i * 10);
  const t = tailWithRejected(sorted, 0);
  assert.equal(t.p50, quantileSorted(sorted, 0.5));
  assert.equal(t.p99, quantileSorted(sorted, 0.99));
  assert.equal(t.count, 101);
});

test('rejected requests sit above every latency: a percentile among them is +∞', () => {
  const sorted = Float64Array.from({ length: 95 }, (_, i) => i);
  const t = tailWithRejected(sorted, 5);
  assert.equal(t.count, 100);
  assert.equal(t.p99, Number.POSITIVE_INFINITY);
  // p90 of 100 is rank 89.1: still among the served, and higher than the p90 of the served alone.
  assert.ok(Math.abs(t.p90 - 89.1) < 1e-9, String(t.p90));
  assert.ok(t.p90 > quantileSorted(sorted, 0.9));
  // Everything rejected: every percentile is +∞; nothing at all: zeros (JSON-safe).
  assert.equal(tailWithRejected(new Float64Array(0), 3).p50, Number.POSITIVE_INFINITY);
  assert.deepEqual(tailWithRejected(new Float64Array(0), 0), { p50: 0, p90: 0, p99: 0, count: 0 });
});
