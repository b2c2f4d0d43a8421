/**
 * The SLO planner's demand forecaster: what the arrival rate will be over the next `horizonMs`,
 * from the rates the host observed. Three views, combined conservatively for scaling up:
 *
 * - level: an exponentially weighted mean of the last few buckets (the rate now, smoothed);
 * - trend: the least-squares slope over the last `trendBuckets` buckets, extrapolated over the
 *   horizon (Holt's idea without its smoothing constants; bounded so a noisy slope cannot run away);
 * - season: when the history shows a period (autocorrelation of the bucketed rate), the rate one
 *   period ago, `horizonMs` ahead, shifted by how much today's level differs from one period ago
 *   (additive seasonal-naive).
 *
 * Rates are bucketed (`bucketMs`) into a bounded ring, so memory and the autocorrelation's cost do
 * not grow with the run; the period is re-estimated every `periodRecheckBuckets` buckets. Pure and
 * deterministic: time comes from the windows it is given.
 */

/** Options of the forecaster; `defaultForecastOptions` gives every field. */
export interface ForecastOptions {
  /** Bucket width of the rate history, ms. */
  readonly bucketMs: number;
  /** Most buckets kept (the ring's size): the longest period it can detect is half of this. */
  readonly bucketsMax: number;
  /** Shortest period considered, in buckets (shorter swings are noise to a planner that waits for start-ups). */
  readonly periodMinBuckets: number;
  /** A period counts when its autocorrelation reaches this. */
  readonly periodMinCorrelation: number;
  /** A fixed period in ms instead of detection (0: no seasonality). Undefined: detect. */
  readonly periodMs: number | undefined;
  /** How often the period is re-estimated, in buckets (at least; a long history is searched less often). */
  readonly periodRecheckBuckets: number;
  /** Buckets in the trend's least-squares fit. */
  readonly trendBuckets: number;
  /**
   * Time constant of the level (an EWMA over windows that look like noise around it), ms. A
   * planner whose replicas take a start-up to arrive sets it near that: shorter swings are bursts.
   */
  readonly levelTauMs: number;
  /** How long a shift must last to count as a change of level rather than a burst, ms. */
  readonly jumpConfirmMs: number;
}

/**
 * Defaults: ten-second buckets (a trend is seen within a minute), a week of them, periods from five
 * minutes.
 */
export function defaultForecastOptions(): ForecastOptions {
  return {
    bucketMs: 10_000,
    bucketsMax: 7 * 24 * 360,
    periodMinBuckets: 30,
    periodMinCorrelation: 0.5,
    periodMs: undefined,
    periodRecheckBuckets: 30,
    trendBuckets: 6,
    levelTauMs: 15_000,
    jumpConfirmMs: JUMP_CONFIRM_MS,
  };
}

/** A trend is extrapolated only when its slope is this many standard errors from zero... */
export const TREND_MIN_T = 2;
/** ...and a line explains this much of the level's variance over the fit. */
export const TREND_MIN_R2 = 0.9;

/**
 * Arrivals whose learnt index of dispersion (`dispersionIndex`) is at most this are taken as
 * Poisson: Poisson's is 1, a bursty client's several times it (the ServeGen days' stay between 2
 * and 19 after their first minutes; the planner's lone-spike rule reads it).
 */
export const POISSON_DISPERSION_MAX = 1.5;

/** Standard deviations of Poisson noise beyond which a window is a change of level, not noise. */
export const JUMP_SIGMAS = 4;

/** How long a shift must last, by default, to count as a change of level rather than a burst, ms. */
export const JUMP_CONFIRM_MS = 10_000;

/** Weight of one window in the dispersion's EWMA (about the last hundred windows). */
const DISPERSION_ALPHA = 0.01;
/**
 * One window's contribution to the dispersion is capped (at twice the jump threshold squared), so a
 * single huge burst, or the first window of a real step, cannot raise the noise it is judged by.
 */
const DISPERSION_MAX = 32;

/** Most buckets the period search scans (coarsened by summing neighbours beyond it): a bound on its cost. */
export const PERIOD_SEARCH_POINTS_MAX = 2048;

/** A forecast over one horizon, with its parts (for the decision log). */
export interface RateForecast {
  /** The smoothed rate now, req/s. */
  readonly levelRps: number;
  /** The linear extrapolation at the horizon's end, req/s (>= 0). */
  readonly trendRps: number;
  /** The largest seasonal forecast within the horizon, req/s; NaN without a period. */
  readonly seasonalPeakRps: number;
  /**
   * The largest rate one period before the horizon's buckets, unshifted (seasonal-naive: what the
   * season alone says, free of the level's noise), req/s; NaN without a period.
   */
  readonly seasonalNaivePeakRps: number;
  /** The period in use, ms; 0 when none. */
  readonly periodMs: number;
  /**
   * The autocorrelation of the bucketed rate at the detected period, as last re-estimated: how
   * confidently the history repeats (1 for a configured period; 0 without one).
   */
  readonly periodCorrelation: number;
  /** max(level, trend, seasonal peak): the rate to provision for over the horizon. */
  readonly peakRps: number;
}

/** Bucketed arrival-rate history with level, trend and seasonal forecasts. */
export class RateForecaster {
  private readonly opts: ForecastOptions;
  /** Mean rate per closed bucket, ring-ordered; `count` valid, the newest at (head - 1). */
  private readonly ring: Float64Array;
  /**
   * The level at each of the last `trendBuckets` bucket closes: the trend is fitted to the smoothed
   * rate, so one burst in the newest bucket does not read as a climb.
   */
  private readonly levels: Float64Array;
  private levelsHead = 0;
  private head = 0;
  private count = 0;
  /** The bucket being filled: its index on the time axis, and arrivals and time seen in it. */
  private openBucket = Number.NaN;
  private openArrivals = 0;
  private openSpanMs = 0;
  private level = Number.NaN;
  private periodBuckets = 0;
  /** The autocorrelation at `periodBuckets` when last detected (1 when configured). */
  private periodR = 0;
  /** The side (+1, -1) of the run of windows beyond the noise, 0 when none, and their arrivals and span. */
  private pendingJump = 0;
  private pendingArrivals = 0;
  /** The arrivals the level expected over the pending run's windows, each at its time. */
  private pendingExpected = 0;
  private pendingSpanMs = 0;
  /** The arrivals' index of dispersion as learnt (see learnDispersion). */
  private dispersion = 1;
  /** The bucket of the last jump in level; the trend fits only closed buckets after it. */
  private jumpBucket = Number.NEGATIVE_INFINITY;
  private bucketsSinceRecheck = 0;

  constructor(options: Partial<ForecastOptions> = {}) {
    this.opts = { ...defaultForecastOptions(), ...options };
    this.ring = new Float64Array(this.opts.bucketsMax);
    this.levels = new Float64Array(Math.max(3, this.opts.trendBuckets));
    if (this.opts.periodMs !== undefined)
      this.periodBuckets = Math.round(this.opts.periodMs / this.opts.bucketMs);
    if (this.periodBuckets > 0) this.periodR = 1;
  }

  /** Records `arrivals` over [startMs, endMs): one control window. */
  observe(startMs: number, endMs: number, arrivals: number): void {
    const spanMs = endMs - startMs;
    if (!(spanMs > 0)) return;
    const bucket = Math.floor(startMs / this.opts.bucketMs);
    if (Number.isNaN(this.openBucket)) this.openBucket = bucket;
    while (bucket > this.openBucket) this.closeBucket();
    this.openArrivals += arrivals;
    this.openSpanMs += spanMs;
    const rate = (arrivals * 1000) / spanMs;
    if (Number.isNaN(this.level)) {
      this.level = rate;
      return;
    }
    const expected = (this.level * spanMs) / 1000;
    const side = this.jumpSide(arrivals, spanMs);
    this.learnDispersion(arrivals, spanMs);
    if (this.runContinues(arrivals, expected)) {
      this.pendingArrivals += arrivals;
      this.pendingExpected += expected;
      this.pendingSpanMs += spanMs;
    } else {
      this.pendingJump = side;
      this.pendingArrivals = arrivals;
      this.pendingExpected = expected;
      this.pendingSpanMs = spanMs;
    }
    // Beyond the noise on the same side for `jumpConfirmMs` (two windows at least): the level has
    // moved, to the mean rate over those windows. Shorter excursions are bursts, which the burst
    // tracker sizes for and which a replica started now would arrive too late to serve.
    if (
      this.pendingJump !== 0 &&
      this.pendingSpanMs >= Math.max(this.opts.jumpConfirmMs, 2 * spanMs - 1e-9)
    ) {
      this.level = (this.pendingArrivals * 1000) / this.pendingSpanMs;
      this.jumpBucket = this.openBucket;
      this.pendingJump = 0;
      return;
    }
    this.level += this.windowAlpha(spanMs) * (rate - this.level);
  }

  /**
   * EWMA of the windows' squared deviation from the level over their expected count: the index of
   * dispersion of the arrivals (1 for Poisson, cv^2 for renewal arrivals with that CV), so a bursty
   * client's ordinary swings are not taken for a change of level.
   */
  private learnDispersion(arrivals: number, spanMs: number): void {
    const expected = Math.max((this.level * spanMs) / 1000, 1);
    const d = (arrivals - expected) ** 2 / expected;
    this.dispersion += DISPERSION_ALPHA * (Math.min(d, DISPERSION_MAX) - this.dispersion);
  }

  /**
   * Whether a window extends the pending run of windows beyond the noise. A run starts with one
   * window beyond JUMP_SIGMAS standard deviations; a later window extends it when it lies on the
   * run's side of the level and the run's pooled arrivals, this window's included, stay beyond
   * JUMP_SIGMAS of their pooled expectation. Judging each window alone missed steps of a few
   * req/s: the level's EWMA climbs towards the new rate within the run, so 2-second windows of a
   * step from silence to 6 req/s fell back under the bar and reset the run, and the level took
   * 40 s instead of 10 to move (the ServeGen days' all-zero gaps, stop 36). Below the level, a
   * burst's quiet aftermath still ends its run, as before.
   */
  private runContinues(arrivals: number, expected: number): boolean {
    if (this.pendingJump === 0 || Math.sign(arrivals - expected) !== this.pendingJump) return false;
    const pooledExpected = this.pendingExpected + expected;
    const sd = Math.sqrt(Math.max(1, this.dispersion) * Math.max(pooledExpected, 1));
    const off = this.pendingArrivals + arrivals - pooledExpected;
    return Math.sign(off) === this.pendingJump && Math.abs(off) > JUMP_SIGMAS * sd;
  }

  /**
   * +1 or -1 when a window's arrivals are more than JUMP_SIGMAS standard deviations above or below
   * the level, the deviation measured with the learnt dispersion (never below Poisson's); else 0.
   */
  private jumpSide(arrivals: number, spanMs: number): number {
    const expected = (this.level * spanMs) / 1000;
    const sd = Math.sqrt(Math.max(1, this.dispersion) * Math.max(expected, 1));
    const off = arrivals - expected;
    return Math.abs(off) > JUMP_SIGMAS * sd ? Math.sign(off) : 0;
  }

  /** The rate to provision for from `nowMs` to `nowMs + horizonMs`. */
  forecast(nowMs: number, horizonMs: number): RateForecast {
    const levelRps = Number.isNaN(this.level) ? 0 : this.level;
    const trendRps = this.trendAt(horizonMs, levelRps);
    const seasonalPeakRps = this.seasonalPeak(nowMs, horizonMs, levelRps);
    const seasonalNaivePeakRps = this.seasonalPeak(nowMs, horizonMs, Number.NaN);
    const peakRps = Math.max(levelRps, trendRps, Number.isNaN(seasonalPeakRps) ? 0 : seasonalPeakRps);
    return {
      levelRps,
      trendRps,
      seasonalPeakRps,
      seasonalNaivePeakRps,
      periodMs: this.periodBuckets * this.opts.bucketMs,
      periodCorrelation: this.periodBuckets > 0 ? this.periodR : 0,
      peakRps,
    };
  }

  /**
   * The arrivals' index of dispersion as learnt (about the last hundred windows' squared deviation
   * from the level over its expected count): about 1 for Poisson arrivals, cv^2 for a bursty client.
   */
  get dispersionIndex(): number {
    return this.dispersion;
  }

  /** The period found (or configured), ms; 0 when none. */
  get periodMs(): number {
    return this.periodBuckets * this.opts.bucketMs;
  }

  // ---- internals ----

  /** The level's weight for one window of `spanMs`. */
  private windowAlpha(spanMs: number): number {
    return 1 - Math.exp(-spanMs / this.opts.levelTauMs);
  }

  private closeBucket(): void {
    const rate = this.openSpanMs > 0 ? (this.openArrivals * 1000) / this.openSpanMs : this.newest(0);
    this.ring[this.head] = Number.isNaN(rate) ? 0 : rate;
    this.head = (this.head + 1) % this.ring.length;
    this.levels[this.levelsHead] = Number.isNaN(this.level) ? 0 : this.level;
    this.levelsHead = (this.levelsHead + 1) % this.levels.length;
    this.count = Math.min(this.count + 1, this.ring.length);
    this.openBucket++;
    this.openArrivals = 0;
    this.openSpanMs = 0;
    // The search costs O(points^2): past a short history, look again after each 1/16 of it.
    const recheck = Math.max(this.opts.periodRecheckBuckets, Math.floor(this.count / 16));
    if (this.opts.periodMs === undefined && ++this.bucketsSinceRecheck >= recheck) {
      this.bucketsSinceRecheck = 0;
      const found = this.detectPeriod();
      this.periodBuckets = found.lag;
      this.periodR = found.r;
    }
  }

  /** The level as it stood when the bucket `back` before the newest closed (within the trend's reach). */
  private levelBack(back: number): number {
    const n = this.levels.length;
    return this.levels[(this.levelsHead - 1 - back + 2 * n) % n] as number;
  }

  /** The closed bucket `back` buckets before the newest (0: the newest); NaN past the history. */
  private newest(back: number): number {
    if (back < 0 || back >= this.count) return Number.NaN;
    const i = (this.head - 1 - back + this.ring.length * 2) % this.ring.length;
    return this.ring[i] as number;
  }

  /**
   * The least-squares line through the level at the last `trendBuckets` bucket closes since the
   * last jump in level,
   * extrapolated over the horizon when its slope stands out of the noise (more than
   * TREND_MIN_T standard errors): a climb is a trend, noise is not, and a step is the level's
   * business. Bounded to [0, 3 x level].
   */
  private trendAt(horizonMs: number, levelRps: number): number {
    const sinceJump = this.openBucket - this.jumpBucket - 1;
    const n = Math.min(this.opts.trendBuckets, this.count, sinceJump);
    if (n < 3) return levelRps;
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let sxy = 0;
    let syy = 0;
    for (let k = 0; k < n; k++) {
      const x = -k;
      const y = this.levelBack(k);
      sx += x;
      sy += y;
      sxx += x * x;
      sxy += x * y;
      syy += y * y;
    }
    const varX = sxx - (sx * sx) / n;
    const slope = (sxy - (sx * sy) / n) / varX;
    const residual = Math.max(0, syy - (sy * sy) / n - slope * slope * varX);
    const standardError = Math.sqrt(residual / (n - 2) / varX);
    const varY = syy - (sy * sy) / n;
    const r2 = varY > 0 ? (slope * slope * varX) / varY : 0;
    // A climb is a line: a burst's kick and decay in the level is not one, nor is noise.
    if (!(Math.abs(slope) > TREND_MIN_T * standardError) || r2 < TREND_MIN_R2) return levelRps;
    const ahead = levelRps + slope * (horizonMs / this.opts.bucketMs);
    return Math.max(0, Math.min(ahead, 3 * Math.max(levelRps, this.newest(0))));
  }

  /**
   * The largest seasonal-naive forecast over the horizon: the bucket one period before each future
   * bucket, plus (level now - the rate one period before now); unshifted when `levelRps` is NaN.
   * NaN without a period or history.
   */
  private seasonalPeak(nowMs: number, horizonMs: number, levelRps: number): number {
    const p = this.periodBuckets;
    if (p <= 0) return Number.NaN;
    // Buckets back from the newest closed one to "now" and to the horizon's end, one period earlier.
    const nowBack = p - 1 - Math.max(0, Math.floor(nowMs / this.opts.bucketMs) - this.openBucket);
    const then = this.newest(nowBack);
    if (Number.isNaN(then)) return Number.NaN;
    const shift = Number.isNaN(levelRps) ? 0 : levelRps - then;
    const aheadBuckets = Math.ceil(horizonMs / this.opts.bucketMs);
    let peak = Number.NaN;
    for (let k = 0; k <= aheadBuckets; k++) {
      const past = this.newest(nowBack - k);
      if (Number.isNaN(past)) break;
      const f = Math.max(0, past + shift);
      if (!(f <= peak)) peak = f;
    }
    return peak;
  }

  /**
   * The lag (in buckets) with the highest autocorrelation of the bucketed rate, past the first
   * zero crossing and at least `periodMinBuckets`, if it reaches `periodMinCorrelation`; else 0.
   * Needs two periods of history. Long histories are coarsened first (see PERIOD_SEARCH_POINTS_MAX).
   */
  private detectPeriod(): { lag: number; r: number } {
    const step = Math.max(1, Math.ceil(this.count / PERIOD_SEARCH_POINTS_MAX));
    const n = Math.floor(this.count / step);
    const xs = new Float64Array(n);
    // Oldest first, each point the mean of `step` buckets.
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < step; j++) s += this.newest(this.count - 1 - (i * step + j));
      xs[i] = s / step;
    }
    const best = bestAutocorrelation(
      xs,
      Math.ceil(this.opts.periodMinBuckets / step),
      this.opts.periodMinCorrelation,
    );
    return { lag: best.lag * step, r: best.r };
  }
}

/**
 * The lag in [minLag, n / 2] with the largest autocorrelation, searched past the first lag where
 * the autocorrelation turns negative (so a slowly varying series does not call lag 1 a period);
 * 0 when none reaches `minCorrelation` or the series is flat.
 */
export function bestAutocorrelationLag(xs: Float64Array, minLag: number, minCorrelation: number): number {
  return bestAutocorrelation(xs, minLag, minCorrelation).lag;
}

/** `bestAutocorrelationLag` with the autocorrelation at that lag (lag 0, r 0 when none). */
export function bestAutocorrelation(
  xs: Float64Array,
  minLag: number,
  minCorrelation: number,
): { lag: number; r: number } {
  const none = { lag: 0, r: 0 };
  const n = xs.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += xs[i] as number;
  mean /= n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += ((xs[i] as number) - mean) ** 2;
  if (!(variance > 0)) return none;
  const maxLag = Math.floor(n / 2);
  const r = new Float64Array(maxLag + 2);
  r[0] = 1;
  for (let lag = 1; lag <= maxLag + 1 && lag < n; lag++) {
    let c = 0;
    for (let i = 0; i + lag < n; i++) c += ((xs[i] as number) - mean) * ((xs[i + lag] as number) - mean);
    // Normalised by the overlap, so long lags are not penalised for having fewer pairs.
    r[lag] = (c / (n - lag)) * (n / variance);
  }
  let crossed = false;
  let best = 0;
  let bestR = minCorrelation;
  // A period is a peak: higher than both neighbours, so a correlation still rising at the edge of
  // the history (a period longer than half of it) is not taken for a shorter one.
  for (let lag = 1; lag < maxLag; lag++) {
    const here = r[lag] as number;
    if (here < 0) crossed = true;
    const peak = here >= (r[lag - 1] as number) && here > (r[lag + 1] as number);
    if (crossed && peak && lag >= minLag && here >= bestR) {
      best = lag;
      bestR = here;
    }
  }
  return best > 0 ? { lag: best, r: bestR } : none;
}
