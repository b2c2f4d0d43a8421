/**
 * A token bucket refilled continuously from the caller's clock: `rate` tokens per `windowMs`, holding
 * at most `capacity` (by default the rate, so an RPM or TPM limit is both the burst and the sustained
 * rate). A rate below one request per window still needs a burst of one to let any request through:
 * that is the caller's `capacity`. Pure: the time comes in as an argument, never from a clock.
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /** A full bucket at `nowMs`. */
  constructor(
    readonly rate: number,
    readonly windowMs: number,
    nowMs: number,
    readonly capacity: number = rate,
  ) {
    this.tokens = capacity;
    this.lastMs = nowMs;
  }

  /** Tokens available at `nowMs`. A query changes nothing, so probing any time is safe. */
  available(nowMs: number): number {
    if (nowMs <= this.lastMs) return this.tokens;
    return Math.min(this.capacity, this.tokens + ((nowMs - this.lastMs) * this.rate) / this.windowMs);
  }

  /**
   * Milliseconds from `nowMs` until `cost` tokens are available: 0 when they already are, undefined
   * when `cost` exceeds the capacity (no wait is long enough). Rounded up to whole milliseconds, so
   * a caller that waits exactly this long finds room.
   */
  waitMs(cost: number, nowMs: number): number | undefined {
    if (cost > this.capacity) return undefined;
    const missing = cost - this.available(nowMs);
    if (missing <= ROUNDING_SLACK) return 0;
    // Multiply before dividing: rate / windowMs is inexact and would round some waits up by 1 ms.
    return Math.ceil((missing * this.windowMs) / this.rate - WAIT_SLACK_MS);
  }

  /** Takes `cost` tokens at `nowMs`; the caller checked `waitMs(cost) === 0` first. */
  take(cost: number, nowMs: number): void {
    this.tokens = Math.max(0, this.available(nowMs) - cost);
    this.lastMs = Math.max(this.lastMs, nowMs);
  }

  /** True when the bucket is full at `nowMs`: forgetting it then loses nothing. */
  isFull(nowMs: number): boolean {
    return this.available(nowMs) >= this.capacity - ROUNDING_SLACK;
  }
}

/** Tokens: a shortfall this small is rounding, not a real lack of room. */
const ROUNDING_SLACK = 1e-6;
/** Milliseconds: keeps an exact whole wait (60,000.000000001) from rounding up a millisecond. */
const WAIT_SLACK_MS = 1e-9;
