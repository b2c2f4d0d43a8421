/**
 * Load predictors of Dynamo's SLA planner, written for one-step-ahead forecasts of a per-interval
 * series (request count, mean input length, mean output length): constant (the last value), an
 * ARIMA-like model (ARIMA(p, 1, 0) fitted by least squares) and a Kalman filter (Dynamo's local
 * linear trend, or a local level). Deterministic: the same series gives the same forecasts.
 * README.md says why each is built the way it is.
 */
import { invalidArgument } from '../../../core/errors.ts';

/** A one-step-ahead forecaster over a series fed one value per adjustment interval. */
export interface LoadPredictor {
  readonly kind: PredictorKind;
  /** Adds the latest value (non-finite counts as 0; a run of leading zeros is skipped). */
  observe(value: number): void;
  /** The forecast of the next value, >= 0; 0 before any value. */
  predict(): number;
}

export type PredictorKind = 'constant' | 'arima' | 'kalman';

/** Kalman state models: Dynamo's local linear trend (level and slope) or a local level alone. */
export type KalmanModel = 'local-linear-trend' | 'local-level';

/** Predictor options; defaults are Dynamo's (components/src/dynamo/planner/defaults.py). */
export interface PredictorOptions {
  /** Fit in log(1 + y) space and forecast back with exp(y) - 1 (Dynamo's load_predictor_log1p, default false). */
  readonly log1p?: boolean;
  /** Autoregressive order on the differenced series (default 2). */
  readonly arimaOrder?: number;
  /** Process noise of the level (kalman_q_level, default 1.0). */
  readonly kalmanQLevel?: number;
  /** Process noise of the slope (kalman_q_trend, default 0.1). */
  readonly kalmanQTrend?: number;
  /** Measurement noise (kalman_r, default 10.0). */
  readonly kalmanR?: number;
  /** Values before the filter forecasts; until then, the last value (kalman_min_points, default 5). */
  readonly kalmanMinPoints?: number;
  readonly kalmanModel?: KalmanModel;
}

/** Values a predictor keeps; older ones fall off (a week of 3-minute intervals is 3360). */
export const PREDICTOR_HISTORY_MAX = 4096;
/** Values the ARIMA-like fit uses, the most recent: enough for a few periods of a daily cycle. */
export const ARIMA_FIT_WINDOW_MAX = 256;
/** Values before the ARIMA-like model fits (Dynamo's ARIMA and Prophet minimum_data_points). */
export const ARIMA_MIN_POINTS = 5;
/** Initial state variance of the Kalman filter (Dynamo: P *= 1000). */
const KALMAN_P0 = 1000;

/** Builds a predictor of `kind`. Throws SY_ERR_INVALID_ARGUMENT for bad options. */
export function createPredictor(kind: PredictorKind, options: PredictorOptions = {}): LoadPredictor {
  switch (kind) {
    case 'constant':
      return new ConstantPredictor();
    case 'arima':
      return new ArimaPredictor(options);
    case 'kalman':
      return new KalmanPredictor(options);
    default: {
      const never: never = kind;
      throw invalidArgument('predictor', never, 'constant, arima or kalman');
    }
  }
}

/** The shared buffer: non-finite as 0, leading idle zeros skipped (as Dynamo's BasePredictor). */
abstract class BufferedPredictor {
  protected readonly values: number[] = [];
  private seenNonZero = false;

  observe(value: number): void {
    const v = Number.isFinite(value) ? Math.max(0, value) : 0;
    if (v === 0 && !this.seenNonZero) return;
    if (v !== 0) this.seenNonZero = true;
    this.values.push(v);
    if (this.values.length > PREDICTOR_HISTORY_MAX) this.values.shift();
    this.added(v);
  }

  protected added(_value: number): void {}

  protected last(): number {
    return this.values.at(-1) ?? 0;
  }
}

class ConstantPredictor extends BufferedPredictor implements LoadPredictor {
  readonly kind = 'constant';

  predict(): number {
    return this.last();
  }
}

/**
 * ARIMA(p, 1, 0) by conditional least squares: the first differences d_t follow
 * d_t = c + phi_1 d_{t-1} + ... + phi_p d_{t-p}, fitted over the last ARIMA_FIT_WINDOW_MAX values;
 * the forecast is y_t + d-hat. The order shrinks while there are too few differences to fit it
 * (order 0 is the mean drift). Fewer than ARIMA_MIN_POINTS values, or a constant series: the last value.
 */
class ArimaPredictor extends BufferedPredictor implements LoadPredictor {
  readonly kind = 'arima';
  private readonly order: number;
  private readonly log1p: boolean;

  constructor(options: PredictorOptions) {
    super();
    this.order = options.arimaOrder ?? 2;
    if (!Number.isInteger(this.order) || this.order < 0 || this.order > 16) {
      throw invalidArgument('arimaOrder', this.order, 'an integer in 0..16');
    }
    this.log1p = options.log1p ?? false;
  }

  predict(): number {
    const n = this.values.length;
    if (n < ARIMA_MIN_POINTS) return this.last();
    const raw = this.values.slice(-ARIMA_FIT_WINDOW_MAX);
    if (raw.every((v) => v === raw[0])) return this.last();
    const y = this.log1p ? raw.map(Math.log1p) : raw;
    const d = y.slice(1).map((v, i) => v - (y[i] as number));
    // Rows available for order p: d.length - p; parameters p + 1. Keep at least one spare row.
    const p = Math.max(0, Math.min(this.order, Math.floor((d.length - 2) / 2)));
    const next = (y.at(-1) as number) + forecastDifference(d, p);
    const out = this.log1p ? Math.expm1(next) : next;
    return Math.max(0, out);
  }
}

/** The one-step forecast of an AR(p) with intercept fitted to `d` by least squares. */
function forecastDifference(d: readonly number[], p: number): number {
  if (p === 0) return mean(d);
  const rows: number[][] = [];
  const targets: number[] = [];
  for (let t = p; t < d.length; t++) {
    const row = [1];
    for (let k = 1; k <= p; k++) row.push(d[t - k] as number);
    rows.push(row);
    targets.push(d[t] as number);
  }
  const beta = leastSquares(rows, targets);
  let f = beta[0] as number;
  for (let k = 1; k <= p; k++) f += (beta[k] as number) * (d[d.length - k] as number);
  return f;
}

/**
 * Solves min |X b - y| through the normal equations with a tiny ridge on the lags (so a flat or
 * collinear stretch gives a finite answer), by Gaussian elimination with partial pivoting.
 */
function leastSquares(x: readonly (readonly number[])[], y: readonly number[]): number[] {
  const m = (x[0] as readonly number[]).length;
  const a: number[][] = Array.from({ length: m }, () => new Array<number>(m + 1).fill(0));
  for (let r = 0; r < x.length; r++) {
    const row = x[r] as readonly number[];
    for (let i = 0; i < m; i++) {
      const ai = a[i] as number[];
      for (let j = 0; j < m; j++) ai[j] = (ai[j] as number) + (row[i] as number) * (row[j] as number);
      ai[m] = (ai[m] as number) + (row[i] as number) * (y[r] as number);
    }
  }
  let trace = 0;
  for (let i = 1; i < m; i++) trace += (a[i] as number[])[i] as number;
  const ridge = 1e-9 * (trace > 0 ? trace : 1);
  for (let i = 1; i < m; i++) (a[i] as number[])[i] = ((a[i] as number[])[i] as number) + ridge;
  return solve(a, m);
}

function solve(a: number[][], m: number): number[] {
  for (let col = 0; col < m; col++) {
    let pivot = col;
    for (let r = col + 1; r < m; r++) {
      if (Math.abs((a[r] as number[])[col] as number) > Math.abs((a[pivot] as number[])[col] as number))
        pivot = r;
    }
    [a[col], a[pivot]] = [a[pivot] as number[], a[col] as number[]];
    const pr = a[col] as number[];
    const pv = pr[col] as number;
    if (pv === 0) continue;
    for (let r = 0; r < m; r++) {
      if (r === col) continue;
      const row = a[r] as number[];
      const f = (row[col] as number) / pv;
      if (f === 0) continue;
      for (let c = col; c <= m; c++) row[c] = (row[c] as number) - f * (pr[c] as number);
    }
  }
  return a.map((row, i) => {
    const pv = row[i] as number;
    return pv === 0 ? 0 : (row[m] as number) / pv;
  });
}

function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return xs.length > 0 ? s / xs.length : 0;
}

/**
 * Dynamo's Kalman predictor: state [level, slope] with x_t = x_{t-1} + v_{t-1} + w, v_t = v_{t-1} + u,
 * Q = diag(qLevel, qTrend), R = r, initialised at the first value with zero slope and P = 1000 I.
 * `local-level` drops the slope (x_t = x_{t-1} + w). The forecast is the predicted level.
 */
class KalmanPredictor extends BufferedPredictor implements LoadPredictor {
  readonly kind = 'kalman';
  private readonly qLevel: number;
  private readonly qTrend: number;
  private readonly r: number;
  private readonly minPoints: number;
  private readonly trend: boolean;
  private readonly log1p: boolean;
  private initialised = false;
  // State and covariance [[p00, p01], [p01, p11]].
  private level = 0;
  private slope = 0;
  private p00 = KALMAN_P0;
  private p01 = 0;
  private p11 = KALMAN_P0;

  constructor(options: PredictorOptions) {
    super();
    this.qLevel = Math.max(1e-12, options.kalmanQLevel ?? 1.0);
    this.qTrend = Math.max(1e-12, options.kalmanQTrend ?? 0.1);
    this.r = Math.max(1e-9, options.kalmanR ?? 10.0);
    this.minPoints = options.kalmanMinPoints ?? 5;
    this.trend = (options.kalmanModel ?? 'local-linear-trend') === 'local-linear-trend';
    this.log1p = options.log1p ?? false;
    if (!this.trend) this.p11 = 0;
  }

  protected override added(value: number): void {
    const z = this.log1p ? Math.log1p(value) : value;
    if (!this.initialised) {
      this.level = z;
      this.slope = 0;
      this.initialised = true;
      return;
    }
    this.predictStep();
    // Update with H = [1, 0]: gain K = P H' / (H P H' + R).
    const s = this.p00 + this.r;
    const k0 = this.p00 / s;
    const k1 = this.p01 / s;
    const innovation = z - this.level;
    this.level += k0 * innovation;
    this.slope += k1 * innovation;
    const p00 = (1 - k0) * this.p00;
    const p01 = (1 - k0) * this.p01;
    const p11 = this.p11 - k1 * this.p01;
    this.p00 = p00;
    this.p01 = p01;
    this.p11 = p11;
  }

  /** Time update: x = F x, P = F P F' + Q with F = [[1, 1], [0, 1]] (or [[1]] without a slope). */
  private predictStep(): void {
    if (!this.trend) {
      this.p00 += this.qLevel;
      return;
    }
    this.level += this.slope;
    const p00 = this.p00 + 2 * this.p01 + this.p11 + this.qLevel;
    const p01 = this.p01 + this.p11;
    this.p00 = p00;
    this.p01 = p01;
    this.p11 += this.qTrend;
  }

  predict(): number {
    if (!this.initialised || this.values.length < this.minPoints) return this.last();
    const next = this.trend ? this.level + this.slope : this.level;
    return Math.max(0, this.log1p ? Math.expm1(next) : next);
  }
}
