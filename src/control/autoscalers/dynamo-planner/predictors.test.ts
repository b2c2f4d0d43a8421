import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../../core/errors.ts';
import {
  createPredictor,
  type LoadPredictor,
  type PredictorKind,
  type PredictorOptions,
} from './predictors.ts';

/** Feeds `series` and returns the one-step forecast made before each value from index `from` on. */
function forecasts(p: LoadPredictor, series: readonly number[], from: number): number[] {
  const out: number[] = [];
  series.forEach((v, i) => {
    if (i >= from) out.push(p.predict());
    p.observe(v);
  });
  return out;
}

function meanAbsError(
  kind: PredictorKind,
  series: readonly number[],
  from: number,
  o: PredictorOptions = {},
) {
  const f = forecasts(createPredictor(kind, o), series, from);
  return f.reduce((s, x, i) => s + Math.abs(x - (series[from + i] as number)), 0) / f.length;
}

const ramp = Array.from({ length: 30 }, (_, i) => 100 + 10 * i);
/** The sinusoidal case's request counts per 180 s interval: 1..24 req/s over a 900 s period. */
const sinusoid = Array.from(
  { length: 40 },
  (_, i) => 180 * (1 + (23 * (1 - Math.cos((2 * Math.PI * (i * 180 + 90)) / 900))) / 2),
);

test('constant: the last value; leading idle zeros are skipped, later zeros and non-finite values count as 0', () => {
  const p = createPredictor('constant');
  assert.equal(p.predict(), 0);
  p.observe(0);
  p.observe(Number.NaN);
  assert.equal(p.predict(), 0);
  p.observe(7);
  assert.equal(p.predict(), 7);
  p.observe(Number.POSITIVE_INFINITY);
  assert.equal(p.predict(), 0);
});

test('arima: the last value until five points and on a flat series; a ramp is extrapolated', () => {
  const p = createPredictor('arima');
  for (const v of [5, 6, 7, 8]) p.observe(v);
  assert.equal(p.predict(), 8, 'four points: last value');
  const flat = createPredictor('arima');
  for (let i = 0; i < 10; i++) flat.observe(42);
  assert.equal(flat.predict(), 42);
  const r = createPredictor('arima');
  for (const v of ramp) r.observe(v);
  assert.ok(Math.abs(r.predict() - 400) < 1e-3, `${r.predict()}`);
});

test('arima: on the sinusoid, AR(2) on differences follows the turn; constant lags a whole interval', () => {
  const arima = meanAbsError('arima', sinusoid, 10);
  const constant = meanAbsError('constant', sinusoid, 10);
  assert.ok(arima < 0.25 * constant, `arima ${arima.toFixed(1)} vs constant ${constant.toFixed(1)}`);
  const order0 = meanAbsError('arima', sinusoid, 10, { arimaOrder: 0 });
  assert.ok(arima < order0, 'the lags carry the turn that mean drift cannot');
});

test('arima with log1p: exponential growth is a straight line in log space', () => {
  const p = createPredictor('arima', { log1p: true });
  for (let i = 0; i < 12; i++) p.observe(2 ** i - 1);
  assert.ok(Math.abs(p.predict() - (2 ** 12 - 1)) < 1, `${p.predict()}`);
});

test("kalman: Dynamo's filter by hand for two points (x0 = [10, 0], P0 = 1000 I, q 1 / 0.1, r 10)", () => {
  const p = createPredictor('kalman', { kalmanMinPoints: 1 });
  p.observe(10);
  assert.equal(p.predict(), 10, 'zero slope at first');
  p.observe(12);
  // Prior P = [[2001, 1000], [1000, 1000.1]], S = 2011: level 10 + 2 x 2001/2011, slope 2 x 1000/2011.
  const expected = 10 + (2 * 2001) / 2011 + (2 * 1000) / 2011;
  assert.ok(Math.abs(p.predict() - expected) < 1e-9, `${p.predict()} vs ${expected}`);
});

test('kalman: last value before kalman_min_points; the trend model tracks a ramp the level model trails', () => {
  const early = createPredictor('kalman');
  for (const v of [10, 20, 30, 40]) early.observe(v);
  assert.equal(early.predict(), 40, 'four of five points: last value');
  const trend = meanAbsError('kalman', ramp, 10);
  const level = meanAbsError('kalman', ramp, 10, { kalmanModel: 'local-level' });
  assert.ok(trend < 1, `trend error ${trend}`);
  assert.ok(level > 5 * trend, `level ${level} vs trend ${trend}`);
  const flat = createPredictor('kalman', { kalmanModel: 'local-level' });
  for (let i = 0; i < 50; i++) flat.observe(i % 2 === 0 ? 90 : 110);
  assert.ok(Math.abs(flat.predict() - 100) < 10, 'a noisy level is smoothed toward its mean');
});

test('forecasts are deterministic and never negative; bad options fail with a code', () => {
  const falling = [100, 60, 30, 10, 2, 1];
  for (const kind of ['constant', 'arima', 'kalman'] as const) {
    const a = forecasts(createPredictor(kind, { kalmanMinPoints: 2 }), falling, 1);
    const b = forecasts(createPredictor(kind, { kalmanMinPoints: 2 }), falling, 1);
    assert.deepEqual(a, b, kind);
    assert.ok(
      a.every((x) => x >= 0),
      `${kind}: ${a}`,
    );
  }
  assert.throws(
    () => createPredictor('arima', { arimaOrder: 1.5 }),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT',
  );
});
