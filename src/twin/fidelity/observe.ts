/**
 * Per-request timings of a twin run, recorded through the routing hooks every host calls
 * (onRouted, onFirstToken, onCompleted, onFailed). The twin's summary pools every request; a
 * fidelity case needs them split by stage and needs the number queued at each arrival, so the
 * harness wraps the run's policy in an observer instead of reaching into the simulator.
 */
import { reject } from '../../core/decision.ts';
import type { Request } from '../../core/request.ts';
import type { RoutingPolicy } from '../../policies/routing/types.ts';
import {
  type LatencyStats,
  latencyStats,
  latencyStatsSorted,
  quantileSorted,
} from '../../stats/percentiles.ts';

/** Timings of requests r0 … r(n-1), by index; NaN where a request never got that far. */
export class RequestLog {
  /**
   * When the arrival process meant to send each request. A capped client sends later than this
   * (its source sets it before the send); otherwise the send is on time and it is `arrivalMs`.
   * Rows and stages take their requests by this time.
   */
  readonly scheduledMs: Float64Array;
  /** When the request was sent: the engine's arrival, from which TTFT and E2E are timed. */
  readonly arrivalMs: Float64Array;
  readonly firstTokenMs: Float64Array;
  readonly finishMs: Float64Array;
  readonly generatedTokens: Int32Array;
  /** Requests routed and not yet ended when this one was routed (itself excluded). */
  readonly inFlightAtArrival: Int32Array;
  /**
   * Requests routed, without a first token and not ended when this one was routed (itself
   * excluded): the engine's queue and its prefills in progress. Saturation reads this (isSaturated).
   */
  readonly queuedAtArrival: Int32Array;
  private inFlight = 0;
  private queued = 0;
  /** Requests that ended without an answer (the engine could never fit them, or a failure). */
  failed = 0;
  /** Requests that ended, answered or not. */
  ended = 0;

  constructor(readonly size: number) {
    this.scheduledMs = new Float64Array(size).fill(Number.NaN);
    this.arrivalMs = new Float64Array(size).fill(Number.NaN);
    this.firstTokenMs = new Float64Array(size).fill(Number.NaN);
    this.finishMs = new Float64Array(size).fill(Number.NaN);
    this.generatedTokens = new Int32Array(size);
    this.inFlightAtArrival = new Int32Array(size);
    this.queuedAtArrival = new Int32Array(size);
  }

  /** A capped source's scheduled time of a request it is about to send. */
  scheduled(index: number, scheduledMs: number): void {
    this.scheduledMs[index] = scheduledMs;
  }

  routed(index: number, arrivalMs: number): void {
    this.arrive(index, arrivalMs);
    this.inFlightAtArrival[index] = this.inFlight++;
    this.queuedAtArrival[index] = this.queued++;
  }

  firstToken(index: number, nowMs: number): void {
    this.leaveQueue(index);
    this.firstTokenMs[index] = nowMs;
  }

  completed(index: number, nowMs: number, tokens: number): void {
    this.leaveQueue(index);
    this.finishMs[index] = nowMs;
    this.generatedTokens[index] = tokens;
    this.inFlight--;
    this.ended++;
  }

  /** Refused by the router: arrived, never in flight, ended unanswered. */
  refused(index: number, arrivalMs: number): void {
    this.arrive(index, arrivalMs);
    this.inFlightAtArrival[index] = this.inFlight;
    this.queuedAtArrival[index] = this.queued;
    this.failed++;
    this.ended++;
  }

  /** A routed request that ended without an answer. */
  endedUnanswered(index: number): void {
    this.leaveQueue(index);
    this.failed++;
    this.inFlight--;
    this.ended++;
  }

  /** A routed request leaves the queue at its first token, or when it ends without one. */
  private leaveQueue(index: number): void {
    if (Number.isNaN(this.firstTokenMs[index] as number) && Number.isNaN(this.finishMs[index] as number))
      this.queued--;
  }

  private arrive(index: number, arrivalMs: number): void {
    this.arrivalMs[index] = arrivalMs;
    if (Number.isNaN(this.scheduledMs[index] as number)) this.scheduledMs[index] = arrivalMs;
  }
}

/** The index of request `r<index>`; every source the harness runs names its requests so. */
export function requestIndex(request: Request): number {
  return Number(request.id.slice(1));
}

/** Ids of a capped client's polls (see cappedSource): refused unrouted, never recorded. */
export const POLL_PREFIX = 'p';
const POLL_REFUSED = reject('SY_ERR_CAPACITY', 'client poll: not a request');

/**
 * `inner` with every outcome hook also recorded in `log`. Decisions are inner's, unchanged, except
 * for a capped client's polls, which are refused before inner sees them (a refusal calls no hook).
 */
export function observed(inner: RoutingPolicy, log: RequestLog): RoutingPolicy {
  return {
    name: inner.name,
    decide: (view, request, rng) => {
      if (request.id.startsWith(POLL_PREFIX)) return POLL_REFUSED;
      const decision = inner.decide(view, request, rng);
      // A refusal calls no hook: count it here, or a capped client would wait for it forever.
      if (decision.kind === 'reject') log.refused(requestIndex(request), request.arrivalMs);
      return decision;
    },
    onRouted(request, instanceId, nowMs) {
      log.routed(requestIndex(request), request.arrivalMs);
      inner.onRouted?.(request, instanceId, nowMs);
    },
    onFirstToken(request, instanceId, nowMs) {
      log.firstToken(requestIndex(request), nowMs);
      inner.onFirstToken?.(request, instanceId, nowMs);
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      // No token count is how a host reports an engine's 4xx answer (the gateway's and, since
      // 6e62a8a, the twin's hook order for a refusal): the request ended unanswered.
      if (generatedTokens === undefined) log.endedUnanswered(requestIndex(request));
      else log.completed(requestIndex(request), nowMs, generatedTokens);
      inner.onCompleted?.(request, instanceId, nowMs, generatedTokens);
    },
    onFailed(request, instanceId, nowMs) {
      log.endedUnanswered(requestIndex(request));
      inner.onFailed?.(request, instanceId, nowMs);
    },
    ...(inner.onKvEvent !== undefined ? { onKvEvent: inner.onKvEvent.bind(inner) } : {}),
  };
}

/** A latency's statistics with the p95 that load testers (inference-perf, GuideLLM, genai-perf) print. */
export interface FigureStats extends LatencyStats {
  readonly p95: number;
}

/** FigureStats of some values (zeros, count 0, for none, as latencyStats). */
export function figureStats(values: readonly number[]): FigureStats {
  const sorted = Float64Array.from(values).sort();
  return { ...latencyStatsSorted(sorted), p95: quantileSorted(sorted, 0.95) };
}

/** What the twin predicts for one window of requests. */
export interface PredictedFigures {
  readonly ttftMs: FigureStats;
  /** (finish - first token) / (tokens - 1) per request with more than one output token. */
  readonly perTokenMs: FigureStats;
  readonly e2eMs: FigureStats;
  /** Completed requests over the span from the first arrival to the last finish. */
  readonly throughputRps: number;
  /**
   * The requests queued at each arrival (routed, no first token yet) grew through the window: the
   * twin fell behind the offered load (see isSaturated). False where the window is too short for a
   * queue to form, whatever its running batch did.
   */
  readonly saturated: boolean;
  readonly requests: number;
  readonly completed: number;
  /** The client side of an open-loop row with `maxConcurrency`; absent on every other row. */
  readonly client?: ClientFigures;
}

/** What a capped client did over a row's requests (see clientFiguresOf). */
export interface ClientFigures {
  readonly maxConcurrency: number;
  /** Send − scheduled time per request: how long it waited at the client for a slot. */
  readonly waitMs: LatencyStats;
  /** Requests sent per second: (sends − 1) over the span from the first send to the last. */
  readonly sendRateRps: number;
  /**
   * The client's queue (requests due and not yet sent) grew through the row, by the rule that calls
   * an engine saturated: the cap bound, and the engine could not keep up with the offered rate at
   * `maxConcurrency` in flight.
   */
  readonly clientBound: boolean;
}

/** Figures over the requests scheduled in [fromMs, toMs) (sent then, without a client cap). */
export function figuresOf(log: RequestLog, fromMs: number, toMs: number): PredictedFigures {
  const ttft: number[] = [];
  const perToken: number[] = [];
  const e2e: number[] = [];
  const queued: number[] = [];
  let firstArrivalMs = Number.POSITIVE_INFINITY;
  let lastFinishMs = Number.NEGATIVE_INFINITY;
  let requests = 0;
  for (let i = 0; i < log.size; i++) {
    if (!inWindow(log, i, fromMs, toMs)) continue;
    const arrival = log.arrivalMs[i] as number;
    requests++;
    queued.push(log.queuedAtArrival[i] as number);
    firstArrivalMs = Math.min(firstArrivalMs, arrival);
    const finish = log.finishMs[i] as number;
    if (Number.isNaN(finish)) continue;
    const first = log.firstTokenMs[i] as number;
    const tokens = log.generatedTokens[i] as number;
    lastFinishMs = Math.max(lastFinishMs, finish);
    ttft.push(first - arrival);
    e2e.push(finish - arrival);
    if (tokens > 1) perToken.push((finish - first) / (tokens - 1));
  }
  const spanS = (lastFinishMs - firstArrivalMs) / 1000;
  return {
    ttftMs: figureStats(ttft),
    perTokenMs: figureStats(perToken),
    e2eMs: figureStats(e2e),
    throughputRps: spanS > 0 ? e2e.length / spanS : 0,
    saturated: isSaturated(queued),
    requests,
    completed: e2e.length,
  };
}

function inWindow(log: RequestLog, index: number, fromMs: number, toMs: number): boolean {
  const scheduled = log.scheduledMs[index] as number;
  return scheduled >= fromMs && scheduled < toMs;
}

/**
 * A capped client over the requests scheduled in [fromMs, toMs): the wait of each, the rate they
 * went out at, and whether the client's queue grew. Sends go out in order (first come, first sent),
 * so the requests still queued when request k falls due are those before it sent after its
 * scheduled time.
 */
export function clientFiguresOf(
  log: RequestLog,
  maxConcurrency: number,
  fromMs: number,
  toMs: number,
): ClientFigures {
  const waits: number[] = [];
  const queued: number[] = [];
  let firstSendMs = Number.POSITIVE_INFINITY;
  let lastSendMs = Number.NEGATIVE_INFINITY;
  // Requests before k sent by k's scheduled time: a prefix, since sends and schedules both rise.
  let sentBy = 0;
  for (let k = 0; k < log.size; k++) {
    const scheduled = log.scheduledMs[k] as number;
    while (sentBy < k && (log.arrivalMs[sentBy] as number) <= scheduled) sentBy++;
    if (!inWindow(log, k, fromMs, toMs)) continue;
    const sent = log.arrivalMs[k] as number;
    waits.push(sent - scheduled);
    queued.push(k - sentBy);
    firstSendMs = Math.min(firstSendMs, sent);
    lastSendMs = Math.max(lastSendMs, sent);
  }
  const spanS = (lastSendMs - firstSendMs) / 1000;
  return {
    maxConcurrency,
    waitMs: latencyStats(waits),
    sendRateRps: waits.length > 1 && spanS > 0 ? (waits.length - 1) / spanS : 0,
    clientBound: isSaturated(queued),
  };
}

/** Fewer arrivals than this in a window: too few to call a trend. */
export const SATURATION_SAMPLES_MIN = 20;

/**
 * Whether a queue grew through a window of arrivals: `queued` holds, in arrival order, the number
 * waiting at each (in the engine: routed, no first token yet; at a capped client: due, not sent).
 * Below capacity a queue hovers around rate x wait, a few requests; past it, it grows with time.
 * The mean over the last fifth of arrivals is compared with the mean over the second fifth (the
 * first is warm-up): saturated when it grew by more than half and by more than 4 requests (so that
 * a few requests of noise at low load never count).
 *
 * "Half" is of the window's own queue: what the window started with (its first arrival's count, at
 * most the second fifth's mean) is taken off. A stage of a staged run starts with the backlog the
 * stage before left; measured against that backlog, a stage whose queue grows by thousands through
 * it would pass as flat once the backlog outgrew one stage's growth (20 stages at one rate past
 * capacity: every stage after the first read 'no'). A window that starts empty (a whole run) is
 * judged on its level as it always was.
 *
 * Feed it a queue, not the number in flight: from an empty engine the running batch ramps up for
 * about one E2E, so in a run a few E2Es long the number in flight grows below capacity too. A run
 * too short for a queue to form is not saturated (docs/fidelity.md, "What each figure means").
 */
export function isSaturated(queued: readonly number[]): boolean {
  const n = queued.length;
  if (n < SATURATION_SAMPLES_MIN) return false;
  const fifth = Math.floor(n / 5);
  const mean = (from: number, to: number) => {
    let sum = 0;
    for (let i = from; i < to; i++) sum += queued[i] as number;
    return sum / (to - from);
  };
  const early = mean(fifth, 2 * fifth);
  const late = mean(n - fifth, n);
  const carried = Math.min(queued[0] as number, early);
  return late - early > Math.max(4, 0.5 * (early - carried));
}
