import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Rng } from '../core/rng.ts';
import {
  cdfPoints,
  downsampleSorted,
  EMPTY_LATENCY_STATS,
  LatencyHistogram,
  latencyStats,
  quantileSorted,
} from './percentiles.ts';

/** Type 7 written out the long way, on a comparator-sorted array. */
function bruteQuantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = s[Math.floor(h)] as number;
  const hi = s[Math.ceil(h)] as number;
  return lo + (h - Math.floor(h)) * (hi - lo);
}

function close(actual: number, expected: number, what: string): void {
  const tol = 1e-9 * Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} != ${expected}`);
}

const latency = fc.double({ min: 0, max: 1e6, noNaN: true, noDefaultInfinity: true });

test('latencyStats matches a brute-force sort on random data', () => {
  fc.assert(
    fc.property(fc.array(latency, { minLength: 1, maxLength: 400 }), (values) => {
      const stats = latencyStats(values);
      close(stats.p50, bruteQuantile(values, 0.5), 'p50');
      close(stats.p90, bruteQuantile(values, 0.9), 'p90');
      close(stats.p99, bruteQuantile(values, 0.99), 'p99');
      close(stats.mean, values.reduce((a, b) => a + b, 0) / values.length, 'mean');
      assert.equal(stats.count, values.length);
    }),
  );
});

test('latencyStats reads only the first count values of a Float64Array and leaves it unchanged', () => {
  fc.assert(
    fc.property(fc.array(latency, { minLength: 1, maxLength: 200 }), fc.nat(), (values, cut) => {
      const count = (cut % values.length) + 1;
      const buffer = new Float64Array(values.length + 5).fill(1e12);
      buffer.set(values);
      const before = buffer.slice();
      const stats = latencyStats(buffer, count);
      close(stats.p99, bruteQuantile(values.slice(0, count), 0.99), 'p99');
      assert.deepEqual(buffer, before);
    }),
  );
});

test('no samples gives zeros with count 0, which survive JSON', () => {
  assert.deepEqual(latencyStats([]), { mean: 0, p50: 0, p90: 0, p99: 0, count: 0 });
  assert.deepEqual(latencyStats(new Float64Array(10), 0), EMPTY_LATENCY_STATS);
  assert.deepEqual(JSON.parse(JSON.stringify(latencyStats([]))), EMPTY_LATENCY_STATS);
});

test('quantileSorted rejects percentages passed as fractions', () => {
  assert.throws(() => quantileSorted([1, 2, 3], 99), RangeError);
  assert.throws(() => quantileSorted([1, 2, 3], Number.NaN), RangeError);
});

test('downsampleSorted keeps the extremes and the order, and keeps quantiles', () => {
  fc.assert(
    fc.property(
      fc.array(latency, { minLength: 1, maxLength: 2000 }),
      fc.integer({ min: 2, max: 300 }),
      (v, m) => {
        const sorted = [...v].sort((a, b) => a - b);
        const out = downsampleSorted(sorted, m);
        assert.equal(out.length, Math.min(m, sorted.length));
        assert.equal(out[0], sorted[0]);
        assert.equal(out[out.length - 1], sorted[sorted.length - 1]);
        for (let i = 1; i < out.length; i++) assert.ok((out[i] as number) >= (out[i - 1] as number));
        // The median of the downsampled set is the median of the whole when m is odd.
        if (m % 2 === 1 && sorted.length > m)
          close(quantileSorted(out, 0.5), quantileSorted(sorted, 0.5), 'median');
      },
    ),
  );
});

test('cdfPoints runs from 0 to 1 over ascending x and inverts quantileSorted', () => {
  const values = [5, 1, 4, 2, 3];
  const { x, y } = cdfPoints(values);
  assert.deepEqual(x, [1, 2, 3, 4, 5]);
  assert.deepEqual(y, [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(cdfPoints([7]), { x: [7], y: [1] });
  assert.deepEqual(cdfPoints([]), { x: [], y: [] });
  const big = cdfPoints(
    Float64Array.from({ length: 10_000 }, (_, i) => i),
    101,
  );
  assert.equal(big.x.length, 101);
  close(big.x[50] as number, 4999.5, 'median point');
});

function lognormal(rng: Rng, n: number, mu: number, sigma: number): Float64Array {
  return Float64Array.from({ length: n }, () => Math.exp(mu + sigma * rng.normal()));
}

test('histogram percentiles are within 2% of exact on lognormal data', () => {
  const rng = new Rng(7);
  for (const [mu, sigma] of [
    [Math.log(20), 0.5],
    [Math.log(200), 1.5],
    [Math.log(0.05), 2],
  ] as const) {
    const values = lognormal(rng, 100_000, mu, sigma);
    const h = new LatencyHistogram();
    for (const v of values) h.record(v);
    const sorted = values.slice().sort();
    for (const q of [0.01, 0.1, 0.5, 0.9, 0.99, 0.999]) {
      const exact = quantileSorted(sorted, q);
      const got = h.percentile(q);
      assert.ok(Math.abs(got - exact) / exact < 0.02, `q=${q} sigma=${sigma}: ${got} vs exact ${exact}`);
    }
    assert.equal(h.percentile(0), sorted[0]);
    assert.equal(h.percentile(1), sorted[sorted.length - 1]);
    close(h.mean(), latencyStats(values).mean, 'mean');
    assert.equal(h.count, values.length);
  }
});

test('histogram counts, zeros, merge and reset', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  a.record(0, 50);
  a.record(10, 50);
  b.record(1000, 100);
  assert.equal(a.percentile(0.25), 0);
  assert.ok(Math.abs(a.percentile(0.75) - 10) / 10 < 0.01);
  a.merge(b);
  assert.equal(a.count, 200);
  close(a.mean(), (50 * 10 + 100 * 1000) / 200, 'mean');
  assert.ok(Math.abs(a.stats().p99 - 1000) / 1000 < 0.01);
  assert.equal(a.max(), 1000);
  assert.equal(a.min(), 0);
  // Far outside the resolved range: clamped to the exact extremes, never lost.
  a.record(1e-9);
  a.record(1e12);
  assert.equal(a.count, 202);
  assert.equal(a.percentile(1), 1e12);
  a.reset();
  assert.equal(a.count, 0);
  assert.deepEqual(a.stats(), EMPTY_LATENCY_STATS);
  assert.equal(a.percentile(0.5), 0);
});

test('recordGaps gives what one record per gap gives, to the last bit (the reference)', () => {
  // End times with runs of equal gaps (one bucket), varied gaps, zero and negative gaps, and
  // values outside the resolved range, as fused decode sub-steps report them.
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.double({ min: 0, max: 50, noNaN: true }),
          fc.double({ min: 1e-7, max: 1e10, noNaN: true }),
          fc.constantFrom(0, -1, 1e-9, 1e12, 7.25, 2 ** -20, 2 ** 30, 1 + 1 / 128),
        ),
        { minLength: 1, maxLength: 60 },
      ),
      fc.integer({ min: 0, max: 9 }),
      fc.integer({ min: 0, max: 3 }),
      (steps, count, skip) => {
        const ends = new Float64Array(steps.length + 1);
        for (let j = 0; j < steps.length; j++) ends[j + 1] = ends[j]! + steps[j]!;
        const from = Math.min(1 + skip, ends.length);
        const one = new LatencyHistogram();
        const batch = new LatencyHistogram();
        // Earlier samples, so the running sum and extremes are carried in, not started afresh.
        one.record(3.5, 2);
        batch.record(3.5, 2);
        for (let j = from; j < ends.length; j++) one.record(ends[j]! - ends[j - 1]!, count);
        batch.recordGaps(ends, from, ends.length, count);
        assert.equal(batch.count, one.count);
        assert.equal(batch.mean(), one.mean());
        assert.equal(batch.min(), one.min());
        assert.equal(batch.max(), one.max());
        for (const q of [0, 0.1, 0.25, 0.5, 0.9, 0.99, 1])
          assert.equal(batch.percentile(q), one.percentile(q));
      },
    ),
    { numRuns: 300 },
  );
});
