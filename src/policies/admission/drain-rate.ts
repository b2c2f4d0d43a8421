/**
 * The recent drain rate of one band's queue: dispatches out of the queue per millisecond, as an
 * exponentially weighted average over the time the queue was busy (non-empty).
 *
 *   on each advance of dt busy milliseconds:  d = exp(-dt / windowMs)
 *     count  <- count * d               (dispatches, each weighing exp(-age / windowMs))
 *     spanMs <- spanMs * d + windowMs * (1 - d)   (the same weighting applied to elapsed time)
 *   on each dispatch from the queue:          count <- count + 1
 *   rate = count / spanMs
 *
 * Dividing by the weighted span instead of `windowMs` removes the start-up bias (the first second
 * of history is not read as a tenth of the rate). The clock stops while the queue is empty: an idle
 * queue says nothing about how fast the cluster frees capacity, and pass-through dispatches measure
 * demand, not capacity, so only dispatches out of a backlog count.
 *
 * It is a record of the past, not a bound on the future: behind engines full of long generations a
 * queue may see no dispatch for seconds and then hundreds as the running batch ends, so shedding
 * does not read a quiet start as the cluster's speed (see the controller's `shedPerMs`).
 */
export class DrainRate {
  private count = 0;
  private spanMs = 0;
  private clockMs: number | undefined = undefined;
  private busy = false;

  constructor(readonly windowMs: number) {}

  /** Records whether the queue holds requests from `nowMs` on; time counts only while it does. */
  setBusy(busy: boolean, nowMs: number): void {
    this.advance(nowMs);
    this.busy = busy;
  }

  /** One request left the backlog at `nowMs`. */
  observe(nowMs: number): void {
    this.advance(nowMs);
    this.count += 1;
  }

  /**
   * Dispatches per millisecond at `nowMs`, or undefined while there is too little history to say:
   * less than a tenth of the window of busy time, or fewer than one (weighted) dispatch in it.
   * A query changes nothing, so dashboards may read it without shifting later decisions.
   */
  perMs(nowMs: number): number | undefined {
    const decay = this.decayTo(nowMs);
    const count = this.count * decay;
    const spanMs = this.spanMs * decay + this.windowMs * (1 - decay);
    if (spanMs < this.windowMs * MIN_SPAN_FRACTION || count < 1) return undefined;
    return count / spanMs;
  }

  /** The decay factor from the last update to `nowMs`: 1 unless the queue was busy meanwhile. */
  private decayTo(nowMs: number): number {
    if (!this.busy || this.clockMs === undefined || nowMs <= this.clockMs) return 1;
    return Math.exp(-(nowMs - this.clockMs) / this.windowMs);
  }

  private advance(nowMs: number): void {
    const decay = this.decayTo(nowMs);
    this.count *= decay;
    this.spanMs = this.spanMs * decay + this.windowMs * (1 - decay);
    if (this.clockMs === undefined || nowMs > this.clockMs) this.clockMs = nowMs;
  }
}

/** Busy history needed before the rate is trusted, as a fraction of the window. */
const MIN_SPAN_FRACTION = 0.1;
