import assert from 'node:assert/strict';
import test from 'node:test';
import { BurstTracker } from './bursts.ts';

test('span counts and their excess over what the rate expected, request-weighted', () => {
  // One-window spans over a 100-window lookback: 99 windows of 10 expected 10, one of 50 expected 10.
  const b = new BurstTracker(1, 100);
  for (let i = 0; i < 99; i++) b.observe(10, 10);
  b.observe(50, 10);
  // 1,040 requests: the 50 in the burst are 4.8% of them, so the 99% quantile is the burst's.
  assert.equal(b.quantile(0.99), 50);
  assert.equal(b.excessQuantile(0.99), 40);
  assert.equal(b.excessQuantile(0.9), 0, 'the rest arrived as expected');
});

test('a rate that was expected is no burst, however high; without an expectation the excess is the count', () => {
  const expected = new BurstTracker(2, 50);
  const unknown = new BurstTracker(2, 50);
  for (let i = 0; i < 50; i++) {
    const arrivals = 20 + 5 * (i % 10);
    expected.observe(arrivals, arrivals);
    unknown.observe(arrivals);
  }
  assert.equal(expected.excessQuantile(0.99), 0);
  assert.equal(unknown.excessQuantile(0.99), unknown.quantile(0.99));
});
