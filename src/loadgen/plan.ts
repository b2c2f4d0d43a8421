/**
 * Plans: when each request goes out and how long it is. A synthetic plan draws Poisson or Gamma
 * arrivals and token counts from the seed; a trace plan replays a trace's arrivals (scaled in time)
 * with its lengths and prefix ids; a workload plan sends the twin's own request stream (any workload
 * kind the twin takes). Plans are lazy, so a long run never holds all its requests.
 */
import { invalidArgument } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { type ArrivalProcess, gammaArrivals } from '../workload/arrivals.ts';
import { lengthSampler } from '../workload/lengths.ts';
import type { LengthDist, RateStage } from '../workload/spec.ts';
import { arrivalTimesMs, formatStages } from '../workload/synthetic.ts';
import { traceRequests } from '../workload/trace-source.ts';
import type { RequestSource, Trace, TwinRequest } from '../workload/types.ts';
import type { BenchPlan, PlannedRequest } from './types.ts';

/** A token count: fixed, or uniform over [lo, hi] inclusive. */
export type TokenRange = { readonly lo: number; readonly hi: number };

/** A synthetic workload. */
export interface SyntheticPlanOptions {
  /** Mean arrival rate; Infinity sends every request at t = 0. */
  readonly rateRps: number;
  /** Coefficient of variation of the gaps: 1 is Poisson, above 1 burstier (Gamma arrivals). */
  readonly cv: number;
  /** Evenly paced arrivals (every gap 1 / rate) instead of random ones; cv is then unused. */
  readonly constant?: boolean;
  /**
   * Rate stages run back to back instead of one rate (rateRps is then their mean, for reports);
   * the plan ends with the last stage unless requests or durationS end it first.
   */
  readonly stages?: readonly RateStage[] | undefined;
  /** Stop after this many requests. */
  readonly requests: number | undefined;
  /** Stop scheduling after this many seconds. */
  readonly durationS: number | undefined;
  /** Unique tokens per prompt (after the group prefix, if any). */
  readonly inputTokens: TokenRange;
  readonly outputTokens: TokenRange;
  /** G shared system prompts (0: none); each request picks one uniformly. */
  readonly prefixGroups: number;
  /** Tokens of each system prompt. */
  readonly prefixTokens: number;
  readonly seed: number;
}

function dist(range: TokenRange): LengthDist {
  return range.lo === range.hi
    ? { kind: 'fixed', tokens: range.lo }
    : { kind: 'uniform', lo: range.lo, hi: range.hi };
}

function noTraces(): never {
  throw new Error('synthetic plans read no traces');
}

/** Sends all at once: every gap is zero. */
const ALL_AT_ONCE: ArrivalProcess = { nextGapMs: () => 0 };

/**
 * A synthetic plan. The first request goes at t = 0, each next one a drawn gap later (as vLLM's
 * benchmark does). Arrivals, lengths and groups draw from independent forks of the seed, so changing
 * the lengths does not move the arrivals. Needs requests or durationS (a plan must end).
 */
export function syntheticPlan(o: SyntheticPlanOptions): BenchPlan {
  if (o.requests === undefined && o.durationS === undefined && o.stages === undefined) {
    throw invalidArgument('limits', 'none', 'a request count or a duration: a synthetic plan never ends');
  }
  if (o.rateRps === Number.POSITIVE_INFINITY && o.requests === undefined) {
    throw invalidArgument('rate', 'inf', 'a request count with an infinite rate (all requests go at t = 0)');
  }
  const requestsMax = o.requests ?? Number.POSITIVE_INFINITY;
  const endMs = o.durationS === undefined ? Number.POSITIVE_INFINITY : o.durationS * 1000;
  function* generate(): Generator<PlannedRequest> {
    const rng = new Rng(o.seed);
    const arrivals =
      o.rateRps === Number.POSITIVE_INFINITY
        ? ALL_AT_ONCE
        : gammaArrivals(o.rateRps, o.cv, rng.fork('arrivals'));
    // Constant rates and stages take their times from the workload's generator (as the twin does).
    const times = timesOf(o, rng);
    const input = lengthSampler(dist(o.inputTokens), 'input', rng.fork('input'), noTraces);
    const output = lengthSampler(dist(o.outputTokens), 'output', rng.fork('output'), noTraces);
    const groups = rng.fork('groups');
    let atMs = 0;
    for (let index = 0; index < requestsMax; index++) {
      if (times !== undefined) {
        const next = times.next();
        if (next.done === true) return;
        atMs = next.value;
      } else if (index > 0) atMs += arrivals.nextGapMs();
      if (atMs >= endMs) return;
      const group = o.prefixGroups > 0 ? groups.int(o.prefixGroups) : undefined;
      const prefixTokens = group === undefined ? 0 : o.prefixTokens;
      yield {
        index,
        atMs,
        inputTokens: prefixTokens + input.sample(),
        outputTokens: output.sample(),
        hashIds: [],
        group,
        prefixTokens,
      };
    }
  }
  return {
    total: o.requests,
    requests: { [Symbol.iterator]: generate },
    workload: {
      kind: o.constant === true ? 'constant' : o.cv === 1 ? 'poisson' : 'gamma',
      rateRps: o.rateRps === Number.POSITIVE_INFINITY ? 'inf' : o.rateRps,
      ...(o.stages !== undefined ? { stages: formatStages(o.stages) } : {}),
      ...(o.cv === 1 || o.constant === true ? {} : { cv: o.cv }),
      inputTokens: o.inputTokens,
      outputTokens: o.outputTokens,
      ...(o.prefixGroups > 0 ? { prefixGroups: o.prefixGroups, prefixTokens: o.prefixTokens } : {}),
      ...(o.requests !== undefined ? { requests: o.requests } : {}),
      ...(o.durationS !== undefined ? { durationS: o.durationS } : {}),
    },
  };
}

/**
 * Arrival times of a constant-rate or staged plan (undefined for a single random rate, which keeps
 * its own path: first request at 0, then drawn gaps). A constant plan sends request k at k / rate.
 */
function timesOf(o: SyntheticPlanOptions, rng: Rng): Iterator<number> | undefined {
  if (o.constant !== true && o.stages === undefined) return undefined;
  const stages = o.stages ?? [{ rateRps: o.rateRps, durationS: Number.POSITIVE_INFINITY }];
  const arrivalRng = rng.fork('arrivals');
  const kind = o.constant === true ? 'constant' : 'gamma';
  return arrivalTimesMs(stages, (rateRps) => gammaArrivals(rateRps, o.cv, arrivalRng), kind);
}

/** A trace replay. */
export interface TracePlanOptions {
  /** Arrival-rate multiplier: 2 replays twice as fast. */
  readonly rateScale: number;
  readonly requests: number | undefined;
  /** Stop scheduling after this many seconds of the run (scaled time). */
  readonly durationS: number | undefined;
}

/**
 * A trace replay: arrival times divided by rateScale, lengths and prefix ids as in the trace
 * (output length at least 1, as max_tokens must be). The count is known up front.
 */
export function tracePlan(trace: Trace, o: TracePlanOptions): BenchPlan {
  const source = traceRequests(trace, {
    rateScale: o.rateScale,
    ...(o.requests !== undefined ? { maxRequests: o.requests } : {}),
    // traceRequests slices in trace time, before scaling.
    ...(o.durationS !== undefined ? { durationS: o.durationS * o.rateScale } : {}),
  });
  const requests: PlannedRequest[] = [];
  for (const r of source) {
    requests.push({
      index: requests.length,
      atMs: r.arrivalMs,
      inputTokens: Math.max(1, r.inputTokens),
      outputTokens: Math.max(1, r.trueOutputTokens),
      hashIds: r.prefix.hashes,
      group: undefined,
      prefixTokens: 0,
    });
  }
  return {
    total: requests.length,
    requests,
    workload: {
      kind: 'trace',
      trace: trace.source,
      format: trace.format,
      rateScale: o.rateScale,
      ...(o.requests !== undefined ? { requests: o.requests } : {}),
      ...(o.durationS !== undefined ? { durationS: o.durationS } : {}),
    },
  };
}

/** A plan from the twin's own request stream (`switchyard bench --workload FILE`). */
export interface WorkloadPlanOptions {
  /** Arrival-rate multiplier: 2 sends the workload twice as fast (every arrival time halved). */
  readonly rateScale: number;
  /** Stop after this many requests. */
  readonly requests: number | undefined;
  /** Stop scheduling after this many seconds of the run (scaled time). */
  readonly durationS: number | undefined;
  /** What the JSON report shows as the workload. */
  readonly workload: Readonly<Record<string, unknown>>;
  /** True when the requests name their own models (see BenchPlan.ownModels). */
  readonly ownModels: boolean;
}

/** Plans past this many requests are not counted ahead for the progress bar (it then shows a count). */
export const PLAN_COUNT_MAX = 1_000_000;

/** The twin's placeholder model name: such a request asks for the run's model. */
const TWIN_DEFAULT_MODEL = 'default';
/** The twin's default tenant, the gateway's name for a request without a tenant's key. */
export const TWIN_DEFAULT_TENANT = 'default';

/**
 * The plan of a twin request stream, request for request: send time = arrival time / rateScale;
 * prompt = the request's prefix chain written as prefix blocks of its own size (same chain hash,
 * same text), then unique text up to its input length; max_tokens = the tokens the twin's engine
 * generates (so an engine that honours ignore_eos does the twin's work); model = the request's
 * (the twin's placeholder `default` becomes the run's model); session id, tenant and priority as the
 * gateway reads them (x-session-id, the tenant's API key, the body's `priority`).
 * Lazy: each iteration walks the stream afresh, so a day-long workload never sits in memory.
 */
export function workloadPlan(source: RequestSource, o: WorkloadPlanOptions): BenchPlan {
  const requestsMax = o.requests ?? Number.POSITIVE_INFINITY;
  const endMs = o.durationS === undefined ? Number.POSITIVE_INFINITY : o.durationS * 1000;
  function* generate(): Generator<PlannedRequest> {
    let index = 0;
    for (const r of source) {
      if (index >= requestsMax) return;
      const atMs = r.arrivalMs / o.rateScale;
      if (atMs >= endMs) return;
      yield plannedOf(r, index, atMs);
      index++;
    }
  }
  const requests = { [Symbol.iterator]: generate };
  let total: number | null | undefined = null;
  return {
    // Counted on first use, by walking the lazy stream once (bounded by PLAN_COUNT_MAX).
    get total(): number | undefined {
      if (total === null) total = countUpTo(requests, PLAN_COUNT_MAX);
      return total;
    },
    requests,
    workload: o.workload,
    ...(o.ownModels ? { ownModels: true } : {}),
  };
}

/** One twin request as a planned request. */
function plannedOf(r: TwinRequest, index: number, atMs: number): PlannedRequest {
  const chained = r.prefix.hashes.length > 0;
  return {
    index,
    atMs,
    inputTokens: Math.max(1, r.inputTokens),
    outputTokens: Math.max(1, r.trueOutputTokens),
    hashIds: r.prefix.hashes,
    group: undefined,
    prefixTokens: 0,
    ...(chained ? { blockTokens: r.prefix.blockTokens } : {}),
    ...(r.model !== TWIN_DEFAULT_MODEL ? { model: r.model } : {}),
    ...(r.sessionId !== undefined ? { sessionId: r.sessionId } : {}),
    // The gateway's defaults (no key: tenant `default`; no body priority: 0) need nothing sent.
    ...(r.tenant !== TWIN_DEFAULT_TENANT ? { tenant: r.tenant } : {}),
    ...(r.priority !== 0 ? { priority: r.priority } : {}),
  };
}

/** How many items `items` yields, or undefined past `max`. */
function countUpTo(items: Iterable<unknown>, max: number): number | undefined {
  let n = 0;
  for (const _ of items) if (++n > max) return undefined;
  return n;
}
