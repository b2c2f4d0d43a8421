/**
 * The admission controller's contract, host-neutral: the twin drives it in virtual time, the live
 * gateway in wall time, and neither needs anything else. See README.md for how a host drives it.
 */
import type { ErrorCode } from '../../core/errors.ts';
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';

/** What a finished request really consumed, as the host counted it. */
export interface CompletionUsage {
  readonly inputTokens: number;
  /**
   * Output tokens generated (usage or counted chunks live; the engine's count in the twin).
   * Undefined for a request that generates nothing (embeddings): no output charge, and the
   * output-length estimate learns nothing from it.
   */
  readonly completionTokens: number | undefined;
}

/** What happens to a request offered to admission. */
export type OfferResult =
  | { readonly kind: 'dispatch' }
  | { readonly kind: 'queued' }
  | {
      readonly kind: 'reject';
      readonly code: ErrorCode;
      readonly reason: string;
      /** A hint for the client (HTTP Retry-After live); undefined when no wait would help. */
      readonly retryAfterMs: number | undefined;
    };

/** A queued request that left the queue without being dispatched. */
export interface QueueRejection {
  readonly request: Request;
  readonly code: ErrorCode;
  readonly reason: string;
  /** A hint for the client (HTTP Retry-After live): the band's estimated wait, bounded like offer's. */
  readonly retryAfterMs: number;
}

/** What one `drain` call hands back. */
export interface DrainResult {
  /** Requests to dispatch now, in dispatch order. */
  readonly dispatch: Request[];
  /**
   * Queued requests that leave as rejections: their deadline passed while queued
   * (SY_ERR_SLO_UNREACHABLE), or a lighter tenant pushed them out of a full queue (SY_ERR_OVERLOADED).
   */
  readonly expired: QueueRejection[];
}

/** Extra facts a host knows about a request that its fields do not carry (batch jobs use them). */
export interface OfferHints {
  /** Put the request in the lowest (offline) band whatever its priority, and skip RPM/TPM limits. */
  readonly offline?: boolean;
  /** Absolute deadline on the host's clock, replacing arrival + (slo.ttftMs ?? band default). */
  readonly deadlineMs?: number;
  /**
   * The host cannot hold this request in the queue (a host resource, such as the gateway's bytes of
   * queued bodies, is at its bound): dispatch it now if the gate is open, else refuse it with this
   * code and reason (and a Retry-After from the wait estimate) instead of queueing it.
   */
  readonly unqueueable?: { readonly code: ErrorCode; readonly reason: string };
}

/** What a host tells the controller about its view (see `createAdmissionController`). */
export interface AdmissionHostOptions {
  /**
   * Engine signals older than this (view.nowMs - instance.updatedAtMs) are stale: the gate then
   * bounds the instance by the host's own accounting (gate.staleInFlightMax,
   * gate.stalePrefillTokensMax) instead of trusting `waiting`, which a stale view shows as 0.
   * Both hosts pass their view's bound (SIGNAL_STALE_AFTER_SCRAPES x scrape interval). Default:
   * Infinity (signals are always trusted), for unit tests that build views by hand.
   */
  readonly signalStaleAfterMs?: number;
}

/** The gateway-side admission queue, as every host sees it. */
export interface AdmissionController {
  /** A request arrives: dispatch now, hold in the queue, or reject (rate limit, queue full/shedding). */
  offer(request: Request, view: ClusterView, hints?: OfferHints): OfferResult;
  /**
   * Requests that may be dispatched now, in order (priority band, then VTC tenant, then EDF). The host
   * calls it after arrivals, completions and at nextWakeMs. Also returns requests whose deadline
   * expired while queued, as rejections.
   */
  drain(view: ClusterView): DrainResult;
  /** The host sent a request that `offer` or `drain` released. Feeds the drain-rate estimate. */
  onDispatched(request: Request, nowMs: number): void;
  /** A dispatched request finished; `usage` is what it really consumed (charged to its tenant). */
  onCompleted(request: Request, usage: CompletionUsage, nowMs: number): void;
  /** A dispatched request failed (routing refused it, or the engine failed). */
  onFailed(request: Request, nowMs: number): void;
  /** When the host should call drain again even if nothing happens (a deadline, a gate re-check). */
  nextWakeMs(nowMs: number): number | undefined;
  /** Requests waiting in the queue, all bands. */
  readonly queued: number;
}

/** Running totals: offered = dispatched + rejected + expired + queued, at every moment. */
export interface AdmissionStats {
  readonly offered: number;
  /** Released by `offer` ('dispatch') or `drain`. */
  readonly dispatched: number;
  /** Refused by `offer`. */
  readonly rejected: number;
  /** Left the queue through `drain`'s `expired` list (deadline or push-out). */
  readonly expired: number;
  readonly queued: number;
}

/** One band's state, for dashboards and tests. */
export interface BandSnapshot {
  readonly name: string;
  readonly minPriority: number;
  readonly offline: boolean;
  readonly queued: number;
  readonly queueDepthMax: number;
  /** Dispatches per second out of the backlog, or undefined before there is enough history. */
  readonly drainRatePerS: number | undefined;
}

/** The concrete controller: the contract plus what batch tracking and dashboards read. */
export interface AdmissionQueue extends AdmissionController {
  readonly stats: AdmissionStats;
  /** Free queue slots in the offline band: how many more batch requests it can hold now. */
  readonly offlineRoom: number;
  /** Requests released to the offline band and not yet completed or failed. */
  readonly offlineInFlight: number;
  bands(nowMs: number): BandSnapshot[];
  /** A tenant's virtual token counter in a band (undefined when it has none). */
  counter(tenant: string, band: string): number | undefined;
}
