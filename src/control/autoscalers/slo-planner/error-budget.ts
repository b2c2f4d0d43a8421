/**
 * The SLO's error budget as an SRE tracks it (Google's SRE Workbook, "Alerting on SLOs": the budget
 * is (1 - target) of the requests in the SLO's period, and the burn rate over a window is the
 * window's miss ratio over (1 - target), so a burn rate of 1 spends exactly the budget by the end
 * of the period). Both come from what the host measured per control window (completions, failures
 * and the share of completions that met the SLO), never from the workload.
 *
 * From them, a standing headroom floor for the planner: an integral term of the long window's burn
 * rate above 1, taken while the budget is being lost (the period's budget overspent, or the window
 * burning faster than 1), bounded (anti-windup), and released once the budget has recovered and
 * the window burns under 1. A day that misses in bursts so holds more capacity ahead of the next
 * burst for an hour or more; a day whose hours stay within budget never raises it.
 */

/** Requests and misses per bucket over a trailing span; bounded by span / bucket buckets. */
class TrailingCounts {
  private readonly requests: Float64Array;
  private readonly misses: Float64Array;
  private head = -1;
  requestsTotal = 0;
  missesTotal = 0;

  constructor(
    private readonly bucketMs: number,
    spanMs: number,
  ) {
    const n = Math.max(1, Math.ceil(spanMs / bucketMs));
    this.requests = new Float64Array(n);
    this.misses = new Float64Array(n);
  }

  add(atMs: number, requests: number, misses: number): void {
    const n = this.requests.length;
    const bucket = Math.floor(atMs / this.bucketMs);
    if (this.head < 0) this.head = bucket;
    // Buckets passed over since the last add fall out of the span (at most all of them).
    for (let b = this.head + 1; b <= Math.min(bucket, this.head + n); b++) this.clear(b % n);
    if (bucket > this.head) this.head = bucket;
    const i = this.head % n;
    this.requests[i] = (this.requests[i] as number) + requests;
    this.misses[i] = (this.misses[i] as number) + misses;
    this.requestsTotal += requests;
    this.missesTotal += misses;
  }

  private clear(i: number): void {
    this.requestsTotal -= this.requests[i] as number;
    this.missesTotal -= this.misses[i] as number;
    this.requests[i] = 0;
    this.misses[i] = 0;
  }

  /** Misses over the span as a multiple of the budget's share of its requests (NaN: none). */
  burnRate(allowedMissRatio: number): number {
    if (this.requestsTotal <= 0) return Number.NaN;
    return this.missesTotal / (allowedMissRatio * this.requestsTotal);
  }
}

export interface ErrorBudgetOptions {
  /** The attainment objective, e.g. 0.99: the budget is 1 - target of the requests. */
  target: number;
  /** The SLO's period, ms (the budget is over the requests of the trailing period). */
  periodMs: number;
  /** The long burn-rate window, ms; also the integral's and the recovery's time constant. */
  burnWindowMs: number;
  /** The most the floor may add to the headroom (0: the term is off). */
  maxExtra: number;
}

/** Error-budget accounting and the headroom floor it implies; see the module comment. */
export class ErrorBudget {
  private readonly period: TrailingCounts;
  private readonly window: TrailingCounts;
  private readonly allowed: number;
  /** The integral term: headroom the floor adds above 1, in [0, maxExtra]. */
  private extra = 0;

  constructor(private readonly o: ErrorBudgetOptions) {
    this.allowed = Math.max(1e-9, 1 - o.target);
    // Buckets of a sixtieth of the window and a 1440th of the period (a minute of a day): the
    // trailing edges are that close to exact, with bounded memory.
    this.period = new TrailingCounts(o.periodMs / 1440, o.periodMs);
    this.window = new TrailingCounts(o.burnWindowMs / 60, o.burnWindowMs);
  }

  /**
   * One control window: `requests` that ended in it (completed or failed) and `misses` among them
   * (failures and completions that missed the SLO), over `dtMs`, at `endMs`.
   */
  observe(endMs: number, dtMs: number, requests: number, misses: number): void {
    // Added even when empty: time passing moves old buckets out of both spans.
    this.period.add(endMs, requests, misses);
    this.window.add(endMs, requests, misses);
    if (this.o.maxExtra <= 0 || dtMs <= 0) return;
    const burn = this.burnRate();
    // Integral of the long window's burn rate above 1 while the budget is being lost (the period's
    // is overspent, or the window burns faster than the budget accrues): a whole window burning at
    // twice the budget's pace adds 1, one at half of it (the period still overspent) takes back
    // 0.5. Otherwise the input is -1, the pace of a window without misses, so the floor is gone
    // within maxExtra windows of the budget's recovery. Anti-windup: the clamp to [0, maxExtra].
    const losing = this.overspent() || burn > 1;
    const input = losing ? (Number.isFinite(burn) ? burn - 1 : 0) : -1;
    this.extra = Math.min(this.o.maxExtra, Math.max(0, this.extra + (input * dtMs) / this.o.burnWindowMs));
  }

  /** Misses over the period so far against its budget: above 1, the budget is overspent. */
  spentRatio(): number {
    return this.period.burnRate(this.allowed);
  }

  /** Whether the period's misses exceed its budget so far. */
  overspent(): boolean {
    return this.spentRatio() > 1;
  }

  /** The long window's burn rate (NaN before any request ended in it). */
  burnRate(): number {
    return this.window.burnRate(this.allowed);
  }

  /** The standing headroom floor, >= 1. */
  floor(): number {
    return 1 + this.extra;
  }
}
