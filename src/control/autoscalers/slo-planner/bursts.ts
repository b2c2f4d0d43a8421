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

  constructor(
    /** Control windows in one span (the TTFT target over the control interval, at least 1). */
    readonly spanWindows: number,
    /** Spans kept (the lookback over the control interval). */
    readonly lookbackWindows: number,
  ) {
    this.recent = new Float64Array(Math.max(1, spanWindows));
    this.sums = new Float64Array(Math.max(1, lookbackWindows));
  }

  /** Records one control window's arrivals. */
  observe(arrivals: number): void {
    this.recent[this.recentHead] = arrivals;
    this.recentHead = (this.recentHead + 1) % this.recent.length;
    let span = 0;
    for (const a of this.recent) span += a;
    if (this.sumsCount === this.sums.length) {
      const old = this.sums[this.sumsHead] as number;
      this.weight[binOf(old)] = (this.weight[binOf(old)] as number) - old;
      this.total -= old;
    } else {
      this.sumsCount++;
    }
    this.sums[this.sumsHead] = span;
    this.sumsHead = (this.sumsHead + 1) % this.sums.length;
    this.weight[binOf(span)] = (this.weight[binOf(span)] as number) + span;
    this.total += span;
  }

  /**
   * The span count that a fraction `q` of the lookback's requests arrived in or under (exact below
   * 128, to 2% above): 0 before any arrival.
   */
  quantile(q: number): number {
    if (!(this.total > 0)) return 0;
    const target = q * this.total;
    let seen = 0;
    for (let b = 0; b < BINS; b++) {
      seen += this.weight[b] as number;
      if (seen >= target - 1e-9) return binUpper(b);
    }
    return binUpper(BINS - 1);
  }
}
