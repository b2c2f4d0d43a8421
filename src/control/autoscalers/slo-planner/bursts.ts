/**
 * How large the bursts are that the planner must absorb: the number of requests arriving within one
 * TTFT-long span, at a request-weighted quantile over a trailing lookback. Requests in a burst all
 * need their prefill within the TTFT target, so the replicas ready must be able to prefill that many
 * prompts in that time, whatever the mean rate says (a bursty client's 10-second counts can be many
 * times its mean). Bounded memory: a ring of the lookback's span sums and a log-binned histogram.
 */

/** Counts below this have a bin each (exact); above, bins grow by BIN_GROWTH (2% resolution). */
const EXACT_BINS = 128;
const BIN_GROWTH = 1.02;
/** 128 exact bins and 384 growing ones: up to about 256,000 requests in one span. */
const BINS = 512;

function binOf(count: number): number {
  if (count < EXACT_BINS) return Math.max(0, Math.ceil(count));
  return Math.min(BINS - 1, EXACT_BINS + Math.floor(Math.log(count / EXACT_BINS) / Math.log(BIN_GROWTH)));
}

/** The largest count a bin holds (its upper edge). */
function binUpper(bin: number): number {
  return bin < EXACT_BINS ? bin : EXACT_BINS * BIN_GROWTH ** (bin - EXACT_BINS + 1);
}

/** Trailing request-weighted quantiles of arrivals per span of `spanWindows` control windows. */
export class BurstTracker {
  private readonly recent: Float64Array;
  private recentHead = 0;
  private readonly sums: Float64Array;
  private sumsHead = 0;
  private sumsCount = 0;
  /** Request weight per bin: a span of n arrivals weighs n (what its requests see). */
  private readonly weight = new Float64Array(BINS);
  private total = 0;
  /** Expected arrivals of the windows in `recent` (same ring positions), for the excess. */
  private readonly recentExpected: Float64Array;
  /** Each span's excess over its expected arrivals (>= 0), and its request weight per excess bin. */
  private readonly excesses: Float64Array;
  private readonly excessWeight = new Float64Array(BINS);

  constructor(
    /** Control windows in one span (the TTFT target over the control interval, at least 1). */
    readonly spanWindows: number,
    /** Spans kept (the lookback over the control interval). */
    readonly lookbackWindows: number,
  ) {
    this.recent = new Float64Array(Math.max(1, spanWindows));
    this.sums = new Float64Array(Math.max(1, lookbackWindows));
    this.recentExpected = new Float64Array(this.recent.length);
    this.excesses = new Float64Array(this.sums.length);
  }

  /**
   * Records one control window's arrivals, and the arrivals its rate forecast expected (for
   * `excessQuantile`; 0 when unknown, which makes the excess the span's count).
   */
  observe(arrivals: number, expected = 0): void {
    this.recent[this.recentHead] = arrivals;
    this.recentExpected[this.recentHead] = expected;
    this.recentHead = (this.recentHead + 1) % this.recent.length;
    let span = 0;
    let spanExpected = 0;
    for (let i = 0; i < this.recent.length; i++) {
      span += this.recent[i] as number;
      spanExpected += this.recentExpected[i] as number;
    }
    const excess = Math.max(0, span - spanExpected);
    if (this.sumsCount === this.sums.length) {
      const old = this.sums[this.sumsHead] as number;
      this.weight[binOf(old)] = (this.weight[binOf(old)] as number) - old;
      const oldExcess = binOf(this.excesses[this.sumsHead] as number);
      this.excessWeight[oldExcess] = (this.excessWeight[oldExcess] as number) - old;
      this.total -= old;
    } else {
      this.sumsCount++;
    }
    this.sums[this.sumsHead] = span;
    this.excesses[this.sumsHead] = excess;
    this.sumsHead = (this.sumsHead + 1) % this.sums.length;
    this.weight[binOf(span)] = (this.weight[binOf(span)] as number) + span;
    this.excessWeight[binOf(excess)] = (this.excessWeight[binOf(excess)] as number) + span;
    this.total += span;
  }

  /**
   * The largest span count among the last `spans` spans recorded (0 before any), as the upper edge
   * of its histogram bin (the unit `quantile` answers in): what the bursts of the recent past
   * reached, to tell a burst size that recurs from one seen once.
   */
  recentMax(spans: number): number {
    const n = Math.min(Math.max(0, Math.floor(spans)), this.sumsCount);
    let max = 0;
    for (let k = 1; k <= n; k++) {
      const v = this.sums[(this.sumsHead - k + this.sums.length) % this.sums.length] as number;
      if (v > max) max = v;
    }
    return binUpper(binOf(max));
  }

  /**
   * The excess of a span's arrivals over what the rate expected that a fraction `q` of the
   * lookback's requests arrived in or under (request-weighted, as `quantile`): the burst on top of
   * the rate, for a load whose rate is forecast well enough that the rest is known in advance.
   */
  excessQuantile(q: number): number {
    return weightedQuantile(this.excessWeight, this.total, q);
  }

  /**
   * The span count that a fraction `q` of the lookback's requests arrived in or under (exact below
   * 128, to 2% above): 0 before any arrival.
   */
  quantile(q: number): number {
    return weightedQuantile(this.weight, this.total, q);
  }
}

/** The upper edge of the bin where `q` of `total` weight is reached; 0 without weight. */
function weightedQuantile(weight: Float64Array, total: number, q: number): number {
  if (!(total > 0)) return 0;
  const target = q * total;
  let seen = 0;
  for (let b = 0; b < BINS; b++) {
    seen += weight[b] as number;
    if (seen >= target - 1e-9) return binUpper(b);
  }
  return binUpper(BINS - 1);
}
