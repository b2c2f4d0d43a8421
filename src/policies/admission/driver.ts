/**
 * The one admission drive loop both hosts run: offer a request, drain the queue into routing, answer
 * what left the queue, and keep one wake-up armed. Host-neutral and pure: the host supplies the
 * clock, the view, and the three things only it can do (send a request, answer a refusal, arm a
 * timer). The twin arms an event in virtual time, the gateway a `setTimeout` in wall time; the
 * order of calls into the controller is the same in both (see README.md, "How a host drives it").
 */
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import { admissionStep, type BatchTracker } from './batch.ts';
import type { AdmissionQueue, OfferHints, OfferResult, QueueRejection } from './types.ts';

/** What a host does for the driver. */
export interface AdmissionHost {
  /** The host's clock, in ms (virtual in the twin, wall live). */
  nowMs(): number;
  /** The view settled at `nowMs`, as policies see it. */
  view(nowMs: number): ClusterView;
  /**
   * Routes and sends a request that `drain` released. False when it was not sent (routing refused
   * it, or the client left while it was queued): the driver then tells admission it failed.
   */
  send(request: Request, nowMs: number): boolean;
  /** A queued request leaves without being sent (deadline passed, pushed out): answer its code. */
  reject(rejection: QueueRejection, nowMs: number): void;
  /**
   * Arms the one wake-up at `atMs` (replacing any later one), after which the host calls `wake()`.
   * Returns the time actually armed (a host may round it up, never down).
   */
  armWake(atMs: number, nowMs: number): number;
}

/**
 * Drives one admission controller (and optionally a batch tracker) for a host. Re-entrant calls to
 * `drain` (a send that fails at once, a completion heard while dispatching) coalesce into one more
 * round instead of nesting.
 */
export class AdmissionDriver {
  /** The armed wake-up, Infinity when none. */
  private wakeMs = Number.POSITIVE_INFINITY;
  private draining = false;
  private again = false;

  constructor(
    readonly admission: AdmissionQueue,
    private readonly host: AdmissionHost,
    private readonly batches: BatchTracker | undefined = undefined,
  ) {}

  /** The armed wake-up time (Infinity when none); the twin treats it as an event barrier. */
  get wakeAtMs(): number {
    return this.wakeMs;
  }

  /**
   * Offers an arriving request. On 'dispatch' it is sent at once through `sendNow` (the host's
   * per-request send: the gateway builds its exchange there); 'queued' and 'reject' are the host's
   * to answer. The host calls `drain()` after handling the verdict.
   */
  offer(request: Request, sendNow: () => boolean, hints?: OfferHints): OfferResult {
    const nowMs = this.host.nowMs();
    const verdict = this.admission.offer(request, this.host.view(nowMs), hints);
    if (verdict.kind === 'dispatch') this.settle(request, sendNow(), nowMs);
    return verdict;
  }

  /** Drains the queue into routing, answers expired requests and re-arms the wake-up. */
  drain(): void {
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = true;
    try {
      do {
        this.again = false;
        this.drainOnce();
      } while (this.again);
    } finally {
      this.draining = false;
    }
  }

  /** The armed wake-up fired. */
  wake(): void {
    this.wakeMs = Number.POSITIVE_INFINITY;
    this.drain();
  }

  private drainOnce(): void {
    const host = this.host;
    const admission = this.admission;
    const nowMs = host.nowMs();
    const { dispatch, expired } = admissionStep(admission, this.batches, host.view(nowMs));
    for (const request of dispatch) this.settle(request, host.send(request, nowMs), nowMs);
    for (const rejection of expired) host.reject(rejection, nowMs);
    this.rearm();
  }

  /** Tells admission (and the batch tracker) whether a released request went out. */
  private settle(request: Request, sent: boolean, nowMs: number): void {
    if (sent) {
      this.admission.onDispatched(request, nowMs);
      this.batches?.onDispatched(request, nowMs);
    } else {
      this.admission.onFailed(request, nowMs);
      this.batches?.onFailed(request, nowMs);
    }
  }

  private rearm(): void {
    const nowMs = this.host.nowMs();
    let wake = this.admission.nextWakeMs(nowMs);
    const batchWake = this.batches?.nextWakeMs(nowMs);
    if (batchWake !== undefined && (wake === undefined || batchWake < wake)) wake = batchWake;
    if (wake !== undefined && wake < this.wakeMs) this.wakeMs = this.host.armWake(wake, nowMs);
  }
}
