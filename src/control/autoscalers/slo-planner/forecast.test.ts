import assert from 'node:assert/strict';
import test from 'node:test';
import { bestAutocorrelationLag, RateForecaster } from './forecast.ts';

const MIN = 60_000;

/** Feeds `minutes` of 10 s windows at rate `rateAt(tMs)` (arrivals rounded to whole requests). */
function feed(f: RateForecaster, fromMs: number, minutes: number, rateAt: (tMs: number) => number): number {
  let t = fromMs;
  for (let i = 0; i < minutes * 6; i++) {
    f.observe(t, t + 10_000, Math.round(rateAt(t) * 10));
    t += 10_000;
  }
  return t;
}

const sinusoid = (periodMs: number) => (tMs: number) =>
  12.5 + 11.5 * Math.sin((2 * Math.PI * tMs) / periodMs);

test('autocorrelation finds the period of a noisy-free sine and none in a flat or trending series', () => {
  const xs = Float64Array.from({ length: 200 }, (_, i) => Math.sin((2 * Math.PI * i) / 40));
  assert.equal(bestAutocorrelationLag(xs, 5, 0.5), 40);
  assert.equal(bestAutocorrelationLag(new Float64Array(100).fill(3), 5, 0.5), 0);
  const ramp = Float64Array.from({ length: 100 }, (_, i) => i);
  assert.equal(bestAutocorrelationLag(ramp, 5, 0.5), 0);
});

test('the forecaster detects a 30-minute season and sees the rise coming a start-up ahead', () => {
  const f = new RateForecaster({ bucketMs: MIN });
  const rate = sinusoid(30 * MIN);
  // Three and a half periods of history, ending near a trough (112 min: 3.73 periods, sin ~ -1).
  const nowMs = feed(f, 0, 112, rate);
  assert.ok(Math.abs(f.periodMs - 30 * MIN) <= MIN, `period ${f.periodMs / MIN} min`);
  const ahead = f.forecast(nowMs, 10 * MIN);
  // At the trough the level is near 1 req/s; ten minutes (120 degrees) later the sine is at 12.5 + 11.5 / 2.
  assert.ok(ahead.levelRps < 4, `level ${ahead.levelRps}`);
  assert.ok(ahead.seasonalPeakRps > 15, `seasonal peak ${ahead.seasonalPeakRps}`);
  assert.equal(ahead.peakRps, Math.max(ahead.levelRps, ahead.trendRps, ahead.seasonalPeakRps));
  // A clean sine repeats closely: the confidence the planner's season release needs.
  assert.ok(ahead.periodCorrelation > 0.9, `autocorrelation at the period ${ahead.periodCorrelation}`);
  // Unshifted, one period back: the trough's level is close to a period ago, so near the shifted peak.
  assert.ok(
    Math.abs(ahead.seasonalNaivePeakRps - ahead.seasonalPeakRps) < 2,
    `${ahead.seasonalNaivePeakRps}`,
  );
});

test('without a season the forecast is the level, or the trend when the rate climbs', () => {
  const flat = new RateForecaster({ bucketMs: MIN });
  const t = feed(flat, 0, 30, () => 5);
  const ff = flat.forecast(t, 2 * MIN);
  assert.equal(flat.periodMs, 0);
  assert.ok(Math.abs(ff.peakRps - 5) < 0.2, `flat peak ${ff.peakRps}`);
  const ramp = new RateForecaster({ bucketMs: MIN });
  const t2 = feed(ramp, 0, 30, (tMs) => tMs / MIN); // +1 req/s per minute
  const fr = ramp.forecast(t2, 5 * MIN);
  assert.ok(fr.trendRps > fr.levelRps + 3, `trend ${fr.trendRps} level ${fr.levelRps}`);
});

test('a fixed period is used as given, and periodMs 0 turns seasonality off', () => {
  const fixed = new RateForecaster({ bucketMs: MIN, periodMs: 20 * MIN });
  assert.equal(fixed.periodMs, 20 * MIN);
  const off = new RateForecaster({ bucketMs: MIN, periodMs: 0 });
  const t = feed(off, 0, 100, sinusoid(30 * MIN));
  assert.equal(off.periodMs, 0);
  assert.ok(Number.isNaN(off.forecast(t, MIN).seasonalPeakRps));
  assert.equal(off.forecast(t, MIN).periodCorrelation, 0);
  assert.equal(fixed.forecast(0, MIN).periodCorrelation, 1, 'a configured period is taken as certain');
});

test('same windows, same forecast', () => {
  const a = new RateForecaster();
  const b = new RateForecaster();
  const ta = feed(a, 0, 90, sinusoid(25 * MIN));
  feed(b, 0, 90, sinusoid(25 * MIN));
  assert.deepEqual(a.forecast(ta, 3 * MIN), b.forecast(ta, 3 * MIN));
});

/** Feeds 2 s windows with these arrival counts from `fromMs`; returns the time after the last. */
function feedWindows(f: RateForecaster, fromMs: number, counts: readonly number[]): number {
  let t = fromMs;
  for (const n of counts) {
    f.observe(t, t + 2_000, n);
    t += 2_000;
  }
  return t;
}

test('a step out of silence moves the level within the confirmation time, though single windows dip', () => {
  // As the planner sets it: a level time constant of half a 46.7 s start-up.
  const f = new RateForecaster({ levelTauMs: 23_350 });
  const quiet = feedWindows(f, 0, new Array(300).fill(0)); // ten minutes without arrivals
  // The first 2 s windows of a ServeGen day after an all-zero gap (a bursty client at about 6 req/s):
  // the 9s and the 7 are under four standard deviations of the climbing level on their own.
  const t = feedWindows(f, quiet, [16, 21, 9, 15, 9, 7]);
  const level = f.forecast(t, 60_000).levelRps;
  // The five windows' mean is 7 req/s; judged window by window the level was still at 2.5 req/s.
  assert.ok(level > 5, `level ${level} req/s 12 s after the step`);
});

test("a burst's quiet aftermath ends its run: one window's burst does not move the level", () => {
  const f = new RateForecaster({ levelTauMs: 23_350 });
  const steady = feedWindows(
    f,
    0,
    Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? 8 : 12)),
  );
  const t = feedWindows(f, steady, [100, 10, 12, 9, 11, 10, 12]);
  const level = f.forecast(t, 60_000).levelRps;
  // The burst's kick in the EWMA decays; no jump to the run's mean (about 12 req/s) is taken.
  assert.ok(level < 9, `level ${level} req/s after one burst on 5 req/s`);
});
