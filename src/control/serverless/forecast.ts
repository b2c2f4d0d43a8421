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
/**
 * A gap at least this long is an idle period, not a pause within a burst: idle gaps are also kept
 * in a ring of their own, so a busy model's bursts do not push its idle periods out of memory.
 */
export const IDLE_GAP_MIN_MS = 10_000;
/** Idle gaps one model's history keeps. */
export const IDLE_GAPS_MAX = 32;

/** A bounded ring of gaps, each with the time it started. */
class GapRing {
  readonly gaps: Float64Array;
  private readonly starts: Float64Array;
  size = 0;
  private head = 0;

  constructor(readonly capacity: number) {
    this.gaps = new Float64Array(capacity);
    this.starts = new Float64Array(capacity);
  }

  push(gapMs: number, startMs: number): void {
    this.gaps[this.head] = gapMs;
    this.starts[this.head] = startMs;
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** Start of the oldest gap kept (NaN when empty). */
  get oldestStartMs(): number {
    if (this.size === 0) return Number.NaN;
    return this.starts[this.size < this.capacity ? 0 : this.head] as number;
  }

  /** Among kept gaps longer than `openMs`: how many, and how many end within `openMs + horizonMs`. */
  conditional(openMs: number, horizonMs: number): { longer: number; ending: number } {
    let longer = 0;
    let ending = 0;
    for (let i = 0; i < this.size; i++) {
      const g = this.gaps[i] as number;
      if (g <= openMs) continue;
      longer++;
      if (g <= openMs + horizonMs) ending++;
    }
    return { longer, ending };
  }
}

/**
 * The gaps between one model's arrivals (the newest ARRIVAL_GAPS_MAX), its idle periods (gaps of
 * IDLE_GAP_MIN_MS or more, the newest IDLE_GAPS_MAX) and its first and last arrivals.
 */
export class ArrivalHistory {
  private readonly all = new GapRing(ARRIVAL_GAPS_MAX);
  private readonly idle = new GapRing(IDLE_GAPS_MAX);
  private lastMs = Number.NaN;
  private firstMs = Number.NaN;

  /** An arrival at `atMs` (non-decreasing). */
  record(atMs: number): void {
    if (Number.isNaN(this.lastMs)) {
      this.lastMs = atMs;
      this.firstMs = atMs;
      return;
    }
    const gap = Math.max(0, atMs - this.lastMs);
    this.all.push(gap, this.lastMs);
    if (gap >= IDLE_GAP_MIN_MS) this.idle.push(gap, this.lastMs);
    this.lastMs = atMs;
  }

  /** Gaps kept. */
  get count(): number {
    return this.all.size;
  }

  /** The last arrival, or undefined before any. */
  get lastArrivalMs(): number | undefined {
    return Number.isNaN(this.lastMs) ? undefined : this.lastMs;
  }

  /**
   * How often the model wakes from idle, per ms: idle periods kept over the time since the oldest
   * kept one began (the open gap counts once it is long enough), so a silent model's rate falls as
   * its silence grows. Before any idle period: one wake-up (the first arrival) over the time since.
   */
  wakeRate(nowMs: number): number {
    if (Number.isNaN(this.lastMs)) return 0;
    const open = nowMs - this.lastMs >= IDLE_GAP_MIN_MS ? 1 : 0;
    if (this.idle.size === 0) return 1 / Math.max(1, nowMs - this.firstMs);
    return (this.idle.size + open) / Math.max(1, nowMs - this.idle.oldestStartMs);
  }

  /**
   * The rate while the model is busy, per ms: one over the median kept gap (a burst's pace, which
   * idle gaps do not drag down). 0 before two arrivals.
   */
  burstRate(): number {
    if (this.all.size === 0) return 0;
    const sorted = Array.from(this.all.gaps.subarray(0, this.all.size)).sort((a, b) => a - b);
    const median = sorted[Math.floor((this.all.size - 1) / 2)] as number;
    return 1 / Math.max(1, median);
  }

  /**
   * The chance of an arrival within `horizonMs` after `nowMs`, given the open gap τ = now − last
   * arrival: among the kept gaps longer than τ (idle periods once τ is one), the share ending within
   * τ + horizon, blended with a Poisson prior at the wake-up rate (weight PRIOR_WEIGHT_GAPS).
   * 0 before any arrival.
   */
  chanceWithin(nowMs: number, horizonMs: number): number {
    if (Number.isNaN(this.lastMs)) return 0;
    const open = Math.max(0, nowMs - this.lastMs);
    const ring = open >= IDLE_GAP_MIN_MS ? this.idle : this.all;
    const { longer, ending } = ring.conditional(open, horizonMs);
    const prior = 1 - Math.exp(-this.wakeRate(nowMs) * horizonMs);
    return (ending + PRIOR_WEIGHT_GAPS * prior) / (longer + PRIOR_WEIGHT_GAPS);
  }
}
