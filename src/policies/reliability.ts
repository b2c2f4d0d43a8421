/**
 * Reliability rules both hosts share, pure: the backoff before a retry (exponential, with jitter from
 * a seeded Rng) and the health state machine that ejects an instance after consecutive failures and
 * re-admits it after consecutive successes. The gateway feeds them real connection errors and health
 * checks (src/gateway/retry.ts, health.ts); the twin feeds them modelled faults (src/twin/faults.ts).
 */
import type { Rng } from '../core/rng.ts';

/** What the health state machine needs to know. */
export interface HealthThresholds {
  /** Consecutive failures (checks or connection errors) that eject an instance. */
  readonly failuresToEject: number;
  /** Consecutive successful checks that re-admit an ejected instance. */
  readonly successesToReadmit: number;
}

/** Backoff parameters (the `limits:` section). */
export interface BackoffConfig {
  readonly retryBackoffBaseMs: number;
  readonly retryBackoffMaxMs: number;
}

/**
 * Delay before retry `attempt` (0 for the first retry): min(max, base * 2^attempt), times a jitter
 * factor uniform in [0.5, 1) ("equal jitter": never zero, never more than the cap).
 */
export function backoffMs(attempt: number, config: BackoffConfig, rng: Rng): number {
  const capped = Math.min(config.retryBackoffMaxMs, config.retryBackoffBaseMs * 2 ** Math.min(attempt, 30));
  return capped * (0.5 + 0.5 * rng.next());
}

/** The ejection state machine of one instance. Pure: the checker feeds it outcomes. */
export class HealthState {
  healthy = true;
  private failures = 0;
  private successes = 0;
  /** Whether the instance ever passed a check. */
  private answered = false;

  constructor(private readonly config: HealthThresholds) {}

  /** Records a failure; returns true when this ejects the instance. */
  fail(): boolean {
    this.successes = 0;
    this.failures++;
    if (this.healthy && this.failures >= this.config.failuresToEject) {
      this.healthy = false;
      return true;
    }
    return false;
  }

  /** Records a success; returns true when this re-admits the instance. */
  succeed(): boolean {
    this.failures = 0;
    const first = !this.answered;
    this.answered = true;
    if (this.healthy) return false;
    this.successes++;
    // An engine that was never up (still starting when the gateway did) is admitted at its first answer.
    if (first || this.successes >= this.config.successesToReadmit) {
      this.healthy = true;
      this.successes = 0;
      return true;
    }
    return false;
  }

  /** Consecutive failures so far. */
  get failureCount(): number {
    return this.failures;
  }

  /**
   * Failed every check so far and never passed one: an engine not up yet, or nothing at that address.
   * Still `healthy` until `failuresToEject` strikes (requests may try it), but no evidence it serves.
   */
  get neverAnswered(): boolean {
    return !this.answered && this.failures > 0;
  }
}
