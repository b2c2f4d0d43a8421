/**
 * Offline batch jobs, shaped like OpenAI's Batch API: a job is a set of requests from one tenant with
 * a completion window (24 h there). The tracker holds each job's requests outside the admission
 * queue and feeds them into the offline band a few at a time (so the band's bound holds however large
 * the job), with deadline = submitted + window; it counts per job what was dispatched, completed,
 * failed and expired, and names the job's status the way OpenAI does. Pure, like the controller.
 */
import { z } from 'zod';
import { assert } from '../../core/assert.ts';
import type { ErrorCode } from '../../core/errors.ts';
import type { RequestId, TenantId } from '../../core/ids.ts';
import type { Request } from '../../core/request.ts';
import type { ClusterView } from '../../core/view.ts';
import type { AdmissionQueue, DrainResult, QueueRejection } from './types.ts';

/** Requests made on demand: a job of 50,000 requests need not exist in memory at once. */
export interface LazyRequests {
  readonly count: number;
  /** The request at `index` (0..count-1); called once per index, in order. */
  generate(index: number): Request;
}

/** One batch job. Every request must carry the job's tenant. */
export interface BatchJob {
  readonly id: string;
  readonly tenant: TenantId;
  readonly requests: readonly Request[] | LazyRequests;
  readonly completionWindowMs: number;
  readonly submittedMs: number;
}

/** OpenAI's names for the states a job can be in here. */
export type BatchStatus = 'in_progress' | 'completed' | 'expired';

/** A job's counts and status at one moment. */
export interface BatchJobSnapshot {
  readonly id: string;
  readonly tenant: TenantId;
  readonly status: BatchStatus;
  readonly total: number;
  /** Released to the cluster (the host sent them). */
  readonly dispatched: number;
  readonly completed: number;
  readonly failed: number;
  /** Never dispatched before the window closed. */
  readonly expired: number;
  /** Waiting in the admission queue now. */
  readonly queued: number;
  /** Not yet offered to admission. */
  readonly pending: number;
  readonly submittedMs: number;
  /** submittedMs + completionWindowMs. */
  readonly deadlineMs: number;
  /** When the last request ended (completed, failed or expired); undefined while any is open. */
  readonly finishedMs: number | undefined;
  /** Every request ended (completed or failed) by the deadline, none expired: what `completed` means. */
  readonly withinWindow: boolean;
}

/** Bounds of the tracker. */
export const batchTrackerConfigSchema = z.strictObject({
  /** Jobs not yet finished, at most (a submit beyond it is refused with SY_ERR_OVERLOADED). */
  jobsMax: z.number().int().min(1).default(1000),
  /** Requests in one job, at most (OpenAI's Batch API limit: 50,000). */
  requestsPerJobMax: z.number().int().min(1).default(50_000),
  /** Requests of one job held in the admission queue at once, so VTC sees every job's tenant. */
  queuedPerJobMax: z.number().int().min(1).default(64),
  /** Finished jobs remembered for `job()`, at most; the oldest are forgotten first. */
  finishedJobsMax: z.number().int().min(0).default(10_000),
});
export type BatchTrackerConfig = z.infer<typeof batchTrackerConfigSchema>;

/** What submitting a job gives. */
export type BatchSubmitResult =
  | { readonly kind: 'accepted' }
  | { readonly kind: 'reject'; readonly code: ErrorCode; readonly reason: string };

/** The part of the admission controller the tracker feeds. */
export type BatchSink = Pick<AdmissionQueue, 'offer' | 'offlineRoom'>;

interface JobState {
  readonly job: BatchJob;
  readonly total: number;
  readonly deadlineMs: number;
  /** Requests taken from the job's source so far. */
  nextIndex: number;
  /** Requests pushed out of the admission queue, offered again before new ones. */
  readonly retry: Request[];
  queued: number;
  dispatched: number;
  completed: number;
  failed: number;
  expired: number;
  finishedMs: number | undefined;
}

/** Where one offered request stands. */
interface Tracked {
  readonly state: JobState;
  released: boolean;
}

/** Tracks batch jobs and feeds their requests into the admission controller's offline band. */
export class BatchTracker {
  private readonly config: BatchTrackerConfig;
  /** Unfinished jobs in submission order: feeding goes round-robin over them in this order. */
  private readonly active: JobState[] = [];
  private readonly finished: JobState[] = [];
  private readonly byId = new Map<string, JobState>();
  private readonly offered = new Map<RequestId, Tracked>();

  constructor(config: z.input<typeof batchTrackerConfigSchema> = {}) {
    this.config = batchTrackerConfigSchema.parse(config);
  }

  /** Registers a job; its requests go out through `feed`. */
  submit(job: BatchJob): BatchSubmitResult {
    const total = Array.isArray(job.requests) ? job.requests.length : (job.requests as LazyRequests).count;
    if (this.byId.has(job.id))
      return { kind: 'reject', code: 'SY_ERR_INVALID_ARGUMENT', reason: `batch '${job.id}' already exists` };
    if (!(job.completionWindowMs > 0))
      return {
        kind: 'reject',
        code: 'SY_ERR_INVALID_ARGUMENT',
        reason: `completionWindowMs ${job.completionWindowMs}: expected a positive number`,
      };
    if (!Number.isInteger(total) || total < 1 || total > this.config.requestsPerJobMax)
      return {
        kind: 'reject',
        code: 'SY_ERR_INVALID_ARGUMENT',
        reason: `batch '${job.id}' has ${total} requests; expected 1..${this.config.requestsPerJobMax}`,
      };
    if (Array.isArray(job.requests)) {
      const stranger = (job.requests as readonly Request[]).find((r) => r.tenant !== job.tenant);
      if (stranger !== undefined)
        return {
          kind: 'reject',
          code: 'SY_ERR_INVALID_ARGUMENT',
          reason: `request '${stranger.id}' has tenant '${stranger.tenant}'; batch '${job.id}' belongs to '${job.tenant}'`,
        };
    }
    if (this.active.length >= this.config.jobsMax)
      return {
        kind: 'reject',
        code: 'SY_ERR_OVERLOADED',
        reason: `${this.active.length} batches in progress (jobsMax ${this.config.jobsMax})`,
      };
    const state: JobState = {
      job,
      total,
      deadlineMs: job.submittedMs + job.completionWindowMs,
      nextIndex: 0,
      retry: [],
      queued: 0,
      dispatched: 0,
      completed: 0,
      failed: 0,
      expired: 0,
      finishedMs: undefined,
    };
    this.active.push(state);
    this.byId.set(job.id, state);
    return { kind: 'accepted' };
  }

  /**
   * Offers job requests to the offline band while it has room, one per job per round in submission
   * order, keeping at most queuedPerJobMax of each job queued. Returns the requests admission released
   * at once (the host dispatches them like drain's). Call it before `drain` with the same view.
   */
  feed(sink: BatchSink, view: ClusterView): Request[] {
    const nowMs = view.nowMs;
    const released: Request[] = [];
    for (let progress = true; progress; ) {
      progress = false;
      for (const state of this.active) {
        if (sink.offlineRoom <= 0) return released;
        if (nowMs >= state.deadlineMs || state.queued >= this.config.queuedPerJobMax) continue;
        const request = this.next(state);
        if (request === undefined) continue;
        const result = sink.offer(request, view, { offline: true, deadlineMs: state.deadlineMs });
        if (result.kind === 'reject') {
          // Admission refused with room to spare (tenantsMax): try again on a later feed.
          state.retry.push(request);
          return released;
        }
        const tracked: Tracked = { state, released: result.kind === 'dispatch' };
        this.offered.set(request.id, tracked);
        if (tracked.released) {
          state.dispatched += 1;
          released.push(request);
        } else state.queued += 1;
        progress = true;
      }
    }
    return released;
  }

  /** The host sent a request (from drain). Requests of no job are ignored, as in every hook here. */
  onDispatched(request: Request, _nowMs: number): void {
    const tracked = this.offered.get(request.id);
    if (tracked !== undefined) this.markReleased(tracked);
  }

  onCompleted(request: Request, nowMs: number): void {
    this.end(request, nowMs, (state) => {
      state.completed += 1;
    });
  }

  onFailed(request: Request, nowMs: number): void {
    this.end(request, nowMs, (state) => {
      state.failed += 1;
    });
  }

  /**
   * A queued job request left admission without dispatch (drain's `expired`): past the window it
   * expires; pushed out of a full queue, it is offered again later.
   */
  onRejected(rejection: QueueRejection, nowMs: number): void {
    const tracked = this.offered.get(rejection.request.id);
    if (tracked === undefined || tracked.released) return;
    const state = tracked.state;
    state.queued -= 1;
    this.offered.delete(rejection.request.id);
    if (rejection.code === 'SY_ERR_SLO_UNREACHABLE' || nowMs >= state.deadlineMs) {
      state.expired += 1;
      this.settle(state, nowMs);
    } else state.retry.push(rejection.request);
  }

  /** Closes the window of every job whose deadline has come: requests never offered expire. */
  expire(nowMs: number): void {
    for (const state of [...this.active]) {
      if (nowMs < state.deadlineMs) continue;
      const unoffered = state.total - state.nextIndex + state.retry.length;
      if (unoffered === 0) continue;
      state.expired += unoffered;
      state.nextIndex = state.total;
      state.retry.length = 0;
      this.settle(state, nowMs);
    }
  }

  /** The next window that closes with requests still unoffered (for the host's wake-up). */
  nextWakeMs(nowMs: number): number | undefined {
    let wakeMs: number | undefined;
    for (const state of this.active) {
      const unoffered = state.nextIndex < state.total || state.retry.length > 0;
      if (unoffered && (wakeMs === undefined || state.deadlineMs < wakeMs)) wakeMs = state.deadlineMs;
    }
    return wakeMs === undefined ? undefined : Math.max(nowMs, wakeMs);
  }

  /** Whether a request belongs to a job the tracker is following. */
  tracks(requestId: RequestId): boolean {
    return this.offered.has(requestId);
  }

  /** A job's counts and status at `nowMs`, or undefined for an unknown (or forgotten) job. */
  job(id: string, nowMs: number): BatchJobSnapshot | undefined {
    const state = this.byId.get(id);
    return state === undefined ? undefined : snapshot(state, nowMs);
  }

  /** Every remembered job, unfinished ones first, each group in submission order. */
  jobs(nowMs: number): BatchJobSnapshot[] {
    return [...this.active, ...this.finished].map((state) => snapshot(state, nowMs));
  }

  private next(state: JobState): Request | undefined {
    const retried = state.retry.shift();
    if (retried !== undefined) return retried;
    if (state.nextIndex >= state.total) return undefined;
    const index = state.nextIndex++;
    const requests = state.job.requests;
    const request = Array.isArray(requests)
      ? ((requests as readonly Request[])[index] as Request)
      : (requests as LazyRequests).generate(index);
    assert(
      request.tenant === state.job.tenant,
      `batch '${state.job.id}' generated request '${request.id}' for tenant '${request.tenant}'`,
    );
    return request;
  }

  private markReleased(tracked: Tracked): void {
    if (tracked.released) return;
    tracked.released = true;
    tracked.state.queued -= 1;
    tracked.state.dispatched += 1;
  }

  private end(request: Request, nowMs: number, count: (state: JobState) => void): void {
    const tracked = this.offered.get(request.id);
    if (tracked === undefined) return;
    this.markReleased(tracked);
    this.offered.delete(request.id);
    count(tracked.state);
    this.settle(tracked.state, nowMs);
  }

  /** Marks a job finished once every request has ended, and retires it from the active list. */
  private settle(state: JobState, nowMs: number): void {
    if (state.finishedMs !== undefined || state.completed + state.failed + state.expired < state.total)
      return;
    state.finishedMs = nowMs;
    this.active.splice(this.active.indexOf(state), 1);
    this.finished.push(state);
    while (this.finished.length > this.config.finishedJobsMax) {
      const forgotten = this.finished.shift() as JobState;
      this.byId.delete(forgotten.job.id);
    }
  }
}

function snapshot(state: JobState, nowMs: number): BatchJobSnapshot {
  // A request that expired was not served within the window, however early the job settled.
  const withinWindow =
    state.finishedMs !== undefined && state.finishedMs <= state.deadlineMs && state.expired === 0;
  const status: BatchStatus = withinWindow
    ? 'completed'
    : nowMs >= state.deadlineMs
      ? 'expired'
      : 'in_progress';
  return {
    id: state.job.id,
    tenant: state.job.tenant,
    status,
    total: state.total,
    dispatched: state.dispatched,
    completed: state.completed,
    failed: state.failed,
    expired: state.expired,
    queued: state.queued,
    pending: state.total - state.nextIndex + state.retry.length,
    submittedMs: state.job.submittedMs,
    deadlineMs: state.deadlineMs,
    finishedMs: state.finishedMs,
    withinWindow,
  };
}

/**
 * One admission step for a host, batch jobs included: close overdue job windows, feed job requests,
 * drain, and tell the tracker which of its requests left the queue undispatched. The host dispatches
 * `dispatch` (then calls onDispatched on both), answers `expired` with their codes, and wakes at the
 * earlier of controller.nextWakeMs and tracker.nextWakeMs.
 */
export function admissionStep(
  controller: AdmissionQueue,
  tracker: BatchTracker | undefined,
  view: ClusterView,
): DrainResult {
  if (tracker === undefined) return controller.drain(view);
  tracker.expire(view.nowMs);
  const fed = tracker.feed(controller, view);
  const drained = controller.drain(view);
  for (const rejection of drained.expired) tracker.onRejected(rejection, view.nowMs);
  return { dispatch: [...fed, ...drained.dispatch], expired: drained.expired };
}
