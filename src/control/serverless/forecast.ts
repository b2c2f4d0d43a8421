/**
 * A model's arrival forecast from what the gateway saw: its last arrivals' gaps, kept in a bounded
 * ring. The question a serverless policy asks is "how likely is a request within the next h ms,
 * given the model has been idle for τ ms?" — answered from the model's own gaps, conditioned on
 * the open gap being longer than τ (a hazard estimate), and blended with a Poisson prior at the
 * model's recent rate, which carries the answer when few gaps are longer than τ. Pure: times come in
 * as arguments; no clock, no randomness.
 */

/** Gaps one model's history keeps (the newest; older ones are overwritten). */
export const ARRIVAL_GAPS_MAX = 64;
/** Weight of the Poisson prior, in gaps: with no gap longer than τ, the prior alone answers. */
export const PRIOR_WEIGHT_GAPS = 1;

/** The gaps between one model's arrivals, newest ARRIVAL_GAPS_MAX, and its last arrival. */
export class ArrivalHistory {
  private readonly gaps = new Float64Array(ARRIVAL_GAPS_MAX);
  private size = 0;
  private head = 0;
  private lastMs = Number.NaN;
  /** Arrival time of the oldest arrival the kept gaps start from. */
  private firstMs = Number.NaN;
  private readonly starts = new Float64Array(ARRIVAL_GAPS_MAX);

  /** An arrival at `atMs` (non-decreasing). */
  record(atMs: number): void {
    if (Number.isNaN(this.lastMs)) {
      this.lastMs = atMs;
      this.firstMs = atMs;
      return;
    }
    const gap = Math.max(0, atMs - this.lastMs);
    this.gaps[this.head] = gap;
    this.starts[this.head] = this.lastMs;
    this.head = (this.head + 1) % ARRIVAL_GAPS_MAX;
    // Full: the oldest kept gap is the next to be overwritten.
    if (this.size < ARRIVAL_GAPS_MAX) this.size++;
    else this.firstMs = this.starts[this.head] as number;
    this.lastMs = atMs;
  }

  /** Gaps kept. */
  get count(): number {
    return this.size;
  }

  /** The last arrival, or undefined before any. */
  get lastArrivalMs(): number | undefined {
    return Number.isNaN(this.lastMs) ? undefined : this.lastMs;
  }

  /**
   * The model's recent rate, per ms: arrivals kept over the span from the oldest kept to now, so an
   * idle model's rate falls as its silence grows. 0 before two arrivals.
   */
  rate(nowMs: number): number {
    if (this.size === 0) return 0;
    const spanMs = Math.max(1, nowMs - this.firstMs);
    return this.size / spanMs;
  }

  /**
   * The chance of an arrival within `horizonMs` after `nowMs`: among the kept gaps longer than the
   * open one (τ = now − last arrival), the share ending within τ + horizon, blended with a Poisson
   * prior at the recent rate (weight PRIOR_WEIGHT_GAPS). 0 before any arrival.
   */
  chanceWithin(nowMs: number, horizonMs: number): number {
    if (Number.isNaN(this.lastMs)) return 0;
    const open = Math.max(0, nowMs - this.lastMs);
    let longer = 0;
    let ending = 0;
    for (let i = 0; i < this.size; i++) {
      const g = this.gaps[i] as number;
      if (g <= open) continue;
      longer++;
      if (g <= open + horizonMs) ending++;
    }
    const prior = 1 - Math.exp(-this.rate(nowMs) * horizonMs);
    return (ending + PRIOR_WEIGHT_GAPS * prior) / (longer + PRIOR_WEIGHT_GAPS);
  }
}
