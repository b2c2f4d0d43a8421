/**
 * Stall detection from the requests themselves. An engine that stops answering (a frozen process, a
 * hung GPU) still accepts connections and may still pass health checks for a while; what gives it
 * away is that requests sent to it get no response byte while the other engines keep answering.
 *
 * The proxy keeps one `BackendProgress` per backend (two field writes per response chunk, on a
 * coarse clock the periodic sweep advances); the sweep calls `findStalls` once per tick. A backend
 * is stalled when it has requests outstanding, has delivered nothing for `stallAfterMs` since it
 * last delivered a byte or last became busy, and either (a) its latest health check failed too
 * while another backend shows it is not the whole cluster (it delivered within that window, or its
 * own latest check passed: an engine that finished its work and sits idle sends no bytes), or (b)
 * health checks have ejected it already. When every engine is quiet and failing its checks (a
 * cluster-wide slowdown, or the gateway's own network), none is stalled. The sweep then ejects it
 * and re-routes its requests not yet answered.
 *
 * Why a failing check is required in (a): silence alone is what a healthy engine shows while it
 * works on non-streaming requests (the answer is one write at the end: a Batch API line of 2,000
 * tokens is tens of seconds without a byte). A frozen process fails its health checks within one
 * interval; an engine busy on long answers passes them. An engine whose HTTP side answers while
 * its generation hangs is left to `streamIdleTimeoutMs` and `firstByteTimeoutMs`.
 */

/** One backend's recent progress, as the proxy sees it. */
export class BackendProgress {
  /** When (host clock) a response byte last arrived from this backend; -Infinity before any. */
  lastByteMs = Number.NEGATIVE_INFINITY;
  /** When it last went from no outstanding attempt to one (a quiet idle backend is no stall). */
  busySinceMs = 0;
  /** Attempts on it whose upstream is paused because their client reads slowly (not its fault). */
  pausedAttempts = 0;
  /** Declared stalled by the sweep; cleared by its next byte or when it is re-admitted. */
  stalled = false;

  /** An attempt is going out; `outstandingBefore` is how many it had already. */
  started(nowMs: number, outstandingBefore: number): void {
    if (outstandingBefore > 0) return;
    this.busySinceMs = nowMs;
    this.stalled = false;
  }

  /** A response byte (head or body) arrived. */
  byte(nowMs: number): void {
    this.lastByteMs = nowMs;
    this.stalled = false;
  }

  /** It was re-admitted (health checks pass): it gets a fresh window. */
  readmitted(nowMs: number): void {
    this.stalled = false;
    this.busySinceMs = nowMs;
  }
}

/** What `findStalls` reads of one backend. */
export interface StallInput {
  readonly progress: BackendProgress;
  /** Attempts sent to it and not yet ended. */
  readonly outstanding: number;
  /** Health checks (or an earlier stall) have not ejected it. */
  readonly healthy: boolean;
  /** Its latest health check failed (a strike short of ejection): corroborates its silence. */
  readonly probeFailing: boolean;
}

/**
 * Indices of the backends that are stalled at `nowMs` and were not declared so before (the caller
 * sets `progress.stalled` on them). Pure: no clock, no side effects.
 */
export function findStalls(backends: readonly StallInput[], nowMs: number, stallAfterMs: number): number[] {
  // The two most recent deliveries: "another backend progressed" for each one in O(1).
  let best = Number.NEGATIVE_INFINITY;
  let bestAt = -1;
  let second = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < backends.length; i++) {
    const t = (backends[i] as StallInput).progress.lastByteMs;
    if (t > best) {
      second = best;
      best = t;
      bestAt = i;
    } else if (t > second) second = t;
  }
  const windowStartMs = nowMs - stallAfterMs;
  // Backends whose latest health check passed: responsive now, even when idle (no bytes to send).
  let answering = 0;
  for (const b of backends) if (b.healthy && !b.probeFailing) answering++;
  const out: number[] = [];
  for (let i = 0; i < backends.length; i++) {
    const b = backends[i] as StallInput;
    const p = b.progress;
    if (p.stalled || b.outstanding <= p.pausedAttempts) continue;
    if (Math.max(p.lastByteMs, p.busySinceMs) > windowStartMs) continue;
    if (!b.healthy) {
      out.push(i);
      continue;
    }
    // A healthy backend counts only with a failing check, so it is never among `answering`.
    const othersLastMs = i === bestAt ? second : best;
    if (b.probeFailing && (othersLastMs > windowStartMs || answering > 0)) out.push(i);
  }
  return out;
}
