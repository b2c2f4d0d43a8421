import assert from 'node:assert/strict';
import test from 'node:test';
import { ErrorBudget } from './error-budget.ts';

const HOUR_MS = 3_600_000;
const budget = () =>
  new ErrorBudget({ target: 0.99, periodMs: 24 * HOUR_MS, burnWindowMs: HOUR_MS, maxExtra: 0.5 });

/** Feeds `n` ten-second windows of `requests` with `misses` each, starting after `fromMs`. */
function feed(b: ErrorBudget, fromMs: number, n: number, requests: number, misses: number): number {
  let t = fromMs;
  for (let i = 0; i < n; i++) {
    t += 10_000;
    b.observe(t, 10_000, requests, misses);
  }
  return t;
}

test('burn rate and spent budget are misses over 1% of the requests', () => {
  const b = budget();
  feed(b, 0, 10, 100, 2); // 2% missed: burning at 2x
  assert.ok(Math.abs(b.burnRate() - 2) < 1e-9);
  assert.ok(Math.abs(b.spentRatio() - 2) < 1e-9);
  assert.ok(b.overspent());
});

test('the floor integrates the burn above 1, is bounded, and is released after recovery', () => {
  const b = budget();
  // Ten minutes at 2x: (2 - 1) x 600 s / 3600 s = 1/6.
  let t = feed(b, 0, 60, 100, 2);
  assert.ok(Math.abs(b.floor() - (1 + 1 / 6)) < 1e-9, `floor ${b.floor()}`);
  // An hour at 11x would add 10: the clamp holds it at 0.5 (anti-windup).
  t = feed(b, t, 360, 100, 11);
  assert.equal(b.floor(), 1.5);
  // No misses: the hour's misses leave the window after an hour, but the day stays overspent
  // (the floor falls at 1 - burn a window) until 1% of its requests cover its 4,080 misses:
  // 408,000 requests, 4,080 windows; 11 clean hours bring it to 4,380.
  t = feed(b, t, 360 * 11, 100, 0);
  assert.ok(b.burnRate() === 0);
  assert.ok(!b.overspent(), `spent ${b.spentRatio()}`);
  assert.equal(b.floor(), 1);
  // Old misses leave the day too: a day later only the clean hours count.
  feed(b, t, 360 * 24, 100, 0);
  assert.equal(b.spentRatio(), 0);
});

test('a window burning under 1 within budget never raises the floor', () => {
  const b = budget();
  feed(b, 0, 720, 100, 0.5);
  assert.equal(b.floor(), 1);
});
