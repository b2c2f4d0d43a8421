/**
 * NVIDIA Dynamo's SLA planner, throughput-based scaling: every adjustment interval, forecast the next
 * interval's request count and mean input and output lengths, ask how many requests per second one
 * replica sustains at the TTFT and ITL targets, and run ceil(demand / per-replica rate) replicas per
 * pool within a GPU budget. Rule, defaults, sources and the queue blindness behind ai-dynamo/dynamo
 * issue 10528: README.md.
 */
import { z } from 'zod';
import type { CapacityFn } from '../../capacity.ts';
import { perfModelCapacity } from '../../capacity.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlLoop,
  ControlObservation,
  ReplicaTarget,
  TrafficWindow,
  Variant,
} from '../../types.ts';
import { variantKey } from '../../types.ts';
import { createPredictor } from './predictors.ts';

/** Parameters, with Dynamo's defaults (components/src/dynamo/planner/defaults.py). */
export const dynamoPlannerParams = z.strictObject({
  /** Load predictor (Dynamo's default: arima). */
  predictor: z.enum(['constant', 'arima', 'kalman']).default('arima'),
  /** Seconds between adjustments (adjustment_interval, 180). */
  adjustmentIntervalS: z.number().positive().default(180),
  /** GPUs the model's replicas may hold in all (max_gpu_budget, 8). */
  gpuBudget: z.number().int().positive().default(8),
  /** Fewest replicas per pool (min_endpoint, 1). */
  minEndpoint: z.number().int().min(0).default(1),
  /**
   * What counts as demand: `completions` (Dynamo: the frontend's request counter over the interval,
   * which counts requests as they finish; ai-dynamo/dynamo PR 8861) or `arrivals`.
   */
  demand: z.enum(['completions', 'arrivals']).default('completions'),
  /** Predict in log(1 + y) space (load_predictor_log1p, false). */
  log1p: z.boolean().default(false),
  /** AR order of the ARIMA-like predictor on the differenced series (ours: 2). */
  arimaOrder: z.number().int().min(0).max(16).default(2),
  kalmanQLevel: z.number().positive().default(1.0),
  kalmanQTrend: z.number().positive().default(0.1),
  kalmanR: z.number().positive().default(10.0),
  kalmanMinPoints: z.number().int().min(1).default(5),
  kalmanModel: z.enum(['local-linear-trend', 'local-level']).default('local-linear-trend'),
  /**
   * One replica's sustainable rate at the objectives; default the performance model
   * (`perfModelCapacity`). A host or test may pass its own (profiled tables, a stub).
   */
  capacity: z.custom<CapacityFn>((v) => typeof v === 'function', 'a capacity function').optional(),
});

/** Parsed parameters of the Dynamo planner. */
export type DynamoPlannerParams = z.infer<typeof dynamoPlannerParams>;

/** What the planner measured over one adjustment interval. */
export interface IntervalLoad {
  readonly durationS: number;
  /** Requests counted as demand (completions or arrivals) in the interval. */
  readonly requests: number;
  /** Arrival-weighted mean prompt tokens; NaN with no arrivals. */
  readonly inputTokens: number;
  /** Completion-weighted mean output tokens; NaN with no completions. */
  readonly completedOutputTokensMean: number;
}

/** The pools the planner sizes: one aggregated pool, or a prefill and a decode pool. */
type Pools =
  | { readonly mode: 'agg'; readonly both: Variant }
  | { readonly mode: 'disagg'; readonly prefill: Variant; readonly decode: Variant };

/** Builds the planner for one model. */
export function createDynamoPlanner(context: ControlContext, params: DynamoPlannerParams): ControlLoop {
  const capacity = params.capacity ?? perfModelCapacity();
  const pools = poolsOf(context.variants);
  const predictorOptions = {
    log1p: params.log1p,
    arimaOrder: params.arimaOrder,
    kalmanQLevel: params.kalmanQLevel,
    kalmanQTrend: params.kalmanQTrend,
    kalmanR: params.kalmanR,
    kalmanMinPoints: params.kalmanMinPoints,
    kalmanModel: params.kalmanModel,
  };
  const requests = createPredictor(params.predictor, predictorOptions);
  const inputs = createPredictor(params.predictor, predictorOptions);
  const outputs = createPredictor(params.predictor, predictorOptions);
  const intervalMs = params.adjustmentIntervalS * 1000;
  let sinceMs: number | undefined;
  let last: ControlDecision | undefined;
  let held: ControlDecision | undefined;

  return {
    name: 'dynamo-planner',
    decide(obs: ControlObservation): ControlDecision {
      sinceMs ??= obs.history[0]?.startMs ?? obs.window.startMs;
      const woken = wake(obs);
      if (woken !== undefined) {
        // Held until the next adjustment, a whole interval after the pool's last tick with none
        // ready: the instances just started are not drained at once, and the interval it measures
        // starts when the pool can serve (a cold start completes nothing).
        held = woken;
        sinceMs = obs.nowMs;
        return woken;
      }
      if (obs.nowMs - sinceMs < intervalMs) {
        if (last === undefined) {
          return current(
            context,
            pools,
            obs,
            `warming up: first adjustment after ${params.adjustmentIntervalS} s`,
          );
        }
        held ??= { targets: last.targets, reason: `hold until next adjustment: ${last.reason}` };
        return held;
      }
      const load = intervalLoad(obs.history, sinceMs, obs.nowMs, params.demand);
      sinceMs = obs.nowMs;
      feed(load);
      last = plan(load, obs);
      held = undefined;
      return last;
    },
  };

  /**
   * Scale from zero: a pool with no ready instance serves nothing, so its completions (the default
   * demand) and its engines' signals stay at zero and the interval rule would keep it empty while
   * requests wait. Dynamo's planner counts requests at the frontend, which sees them with no worker
   * up; here the host's window (arrivals, requests held) stands in for it. While no instance is
   * ready and requests arrive or are held, every tick sizes the pool for the window's arrival rate
   * (at least 1, never fewer than already on the way), not the next adjustment. It goes on through
   * the cold start, whether the host started one instance at the first request (the live gateway's
   * wake-up) or left that to this tick (the twin), so both hosts get the same count. The rate is
   * arrivals per second, which count every held request once as it arrived; the number held is a
   * backlog, not a rate. Only with a minimum of 0: above it the host never lets a pool empty.
   */
  function wake(obs: ControlObservation): ControlDecision | undefined {
    const w = obs.window;
    if (context.minReplicas > 0 || (w.arrivals === 0 && w.queuedAtEnd === 0)) return undefined;
    const ready = countsWhere(pools, obs, (i) => i.phase === 'ready');
    const cold = pools.mode === 'agg' ? ready.both === 0 : ready.prefill === 0 || ready.decode === 0;
    if (!cold) return undefined;
    const now = currentCounts(pools, obs);
    const spanS = (w.endMs - w.startMs) / 1000;
    const rateRps = spanS > 0 ? w.arrivals / spanS : 0;
    const isl = Number.isFinite(w.meanInputTokens) ? w.meanInputTokens : inputs.predict();
    const osl = outputs.predict();
    const facts = `${w.arrivals} arrived, ${w.queuedAtEnd} waiting at the host with no instance ready (${rateRps.toFixed(2)} req/s)`;
    const sized = rateRps > 0 && isl > 0 && osl > 0 ? sizePools(pools, rateRps, isl, osl) : undefined;
    const at = (n: number): number => Math.max(1, n);
    const counts =
      sized === undefined || typeof sized === 'string'
        ? { both: at(now.both), prefill: at(now.prefill), decode: at(now.decode) }
        : {
            both: at(Math.max(now.both, sized.counts.both)),
            prefill: at(Math.max(now.prefill, sized.counts.prefill)),
            decode: at(Math.max(now.decode, sized.counts.decode)),
          };
    return decision(context, pools, counts, `scale from zero: ${facts}`);
  }

  function feed(load: IntervalLoad): void {
    requests.observe(load.requests);
    // Dynamo turns an idle interval's undefined means into 0s; a 0-token forecast would then size
    // the next busy interval for empty requests, so lengths from idle intervals are skipped here.
    if (Number.isFinite(load.inputTokens)) inputs.observe(load.inputTokens);
    if (Number.isFinite(load.completedOutputTokensMean)) outputs.observe(load.completedOutputTokensMean);
  }

  function plan(load: IntervalLoad, obs: ControlObservation): ControlDecision {
    const nextRequests = requests.predict();
    const demandRps = nextRequests / load.durationS;
    const isl = inputs.predict();
    const osl = outputs.predict();
    const facts = `predicted ${nextRequests.toFixed(1)} req (${demandRps.toFixed(2)} req/s), isl ${isl.toFixed(0)}, osl ${osl.toFixed(0)}`;
    if (demandRps === 0) {
      const n = params.minEndpoint;
      return decision(context, pools, { both: n, prefill: n, decode: n }, `no demand: ${facts}`);
    }
    const sized = isl > 0 && osl > 0 ? sizePools(pools, demandRps, isl, osl) : 'no request lengths seen yet';
    if (typeof sized === 'string') return current(context, pools, obs, `hold: ${sized}; ${facts}`);
    return decision(context, pools, sized.counts, `${sized.why}; ${facts}`);
  }

  function sizePools(p: Pools, demandRps: number, isl: number, osl: number): Sized | string {
    const need = (v: Variant): number | string => {
      const rps = capacity(v, context.objectives, isl, osl).requestsPerS;
      if (!(rps > 0)) return `${variantKey(v)} cannot meet the objectives at isl ${isl.toFixed(0)}`;
      return Math.max(Math.ceil(demandRps / rps - 1e-9), params.minEndpoint);
    };
    if (p.mode === 'agg') {
      const n = need(p.both);
      if (typeof n === 'string') return n;
      const cap = Math.floor(params.gpuBudget / p.both.tp);
      const counts = { both: Math.min(n, cap), prefill: 0, decode: 0 };
      return {
        counts,
        why: n > cap ? `${n} replicas capped by the ${params.gpuBudget}-GPU budget` : `${n} replicas`,
      };
    }
    const np = need(p.prefill);
    if (typeof np === 'string') return np;
    const nd = need(p.decode);
    if (typeof nd === 'string') return nd;
    const [bp, bd] = budgetPair(np, nd, p.prefill.tp, p.decode.tp, params.gpuBudget, params.minEndpoint);
    const capped =
      bp !== np || bd !== nd ? ` (wanted ${np}P ${nd}D, over the ${params.gpuBudget}-GPU budget)` : '';
    return { counts: { both: 0, prefill: bp, decode: bd }, why: `${bp}P ${bd}D${capped}` };
  }
}

interface PoolCounts {
  readonly both: number;
  readonly prefill: number;
  readonly decode: number;
}

interface Sized {
  readonly counts: PoolCounts;
  readonly why: string;
}

/** Disaggregated when the context lists a prefill and a decode variant; else one aggregated pool. */
function poolsOf(variants: readonly Variant[]): Pools {
  const prefill = variants.find((v) => v.role === 'prefill');
  const decode = variants.find((v) => v.role === 'decode');
  if (prefill !== undefined && decode !== undefined) return { mode: 'disagg', prefill, decode };
  return { mode: 'agg', both: variants[0] as Variant };
}

/**
 * The interval's load from the host's windows that started at or after `sinceMs`: the demand count,
 * the arrival-weighted mean input and the completion-weighted mean output.
 */
export function intervalLoad(
  history: readonly TrafficWindow[],
  sinceMs: number,
  nowMs: number,
  demand: 'completions' | 'arrivals',
): IntervalLoad {
  let requests = 0;
  let arrivals = 0;
  let inputSum = 0;
  let completions = 0;
  let outputSum = 0;
  for (const w of history) {
    if (w.startMs < sinceMs || w.endMs > nowMs) continue;
    requests += demand === 'completions' ? w.completions : w.arrivals;
    if (w.arrivals > 0 && Number.isFinite(w.meanInputTokens)) {
      arrivals += w.arrivals;
      inputSum += w.arrivals * w.meanInputTokens;
    }
    if (w.completions > 0 && Number.isFinite(w.meanOutputTokens)) {
      completions += w.completions;
      outputSum += w.completions * w.meanOutputTokens;
    }
  }
  return {
    durationS: (nowMs - sinceMs) / 1000,
    requests,
    inputTokens: arrivals > 0 ? inputSum / arrivals : Number.NaN,
    completedOutputTokensMean: completions > 0 ? outputSum / completions : Number.NaN,
  };
}

/**
 * Dynamo's ceiling clamp for a prefill/decode pair over a GPU budget: when the pair needs more GPUs
 * than the budget, shrink both in proportion (prefill first, floored; decode takes what is left),
 * keeping at least `minEndpoint` of each.
 */
export function budgetPair(
  prefill: number,
  decode: number,
  prefillGpus: number,
  decodeGpus: number,
  budget: number,
  minEndpoint: number,
): [number, number] {
  const total = prefill * prefillGpus + decode * decodeGpus;
  if (total <= budget) return [prefill, decode];
  const scale = budget / total;
  const maxPrefill = Math.floor((budget - minEndpoint * decodeGpus) / prefillGpus);
  const p = Math.max(minEndpoint, Math.min(maxPrefill, Math.floor(prefill * scale)));
  const d = Math.max(minEndpoint, Math.floor((budget - p * prefillGpus) / decodeGpus));
  return [p, d];
}

/** The decision for pool counts, each clamped so the model's total stays within the context's bounds. */
function decision(
  context: ControlContext,
  pools: Pools,
  counts: PoolCounts,
  reason: string,
): ControlDecision {
  const targets: ReplicaTarget[] = [];
  if (pools.mode === 'agg') {
    const n = Math.max(context.minReplicas, Math.min(context.maxReplicas, counts.both));
    targets.push({ variant: pools.both, replicas: n });
  } else {
    const total = counts.prefill + counts.decode;
    const scale = total > context.maxReplicas ? context.maxReplicas / total : 1;
    const p = Math.max(1, Math.floor(counts.prefill * scale));
    const d = Math.max(1, Math.min(context.maxReplicas - p, Math.floor(counts.decode * scale)));
    targets.push({ variant: pools.prefill, replicas: p }, { variant: pools.decode, replicas: d });
  }
  return { targets, reason };
}

/** Before the first adjustment: the deployment as it stands (Dynamo starts from the deployed counts). */
function current(
  context: ControlContext,
  pools: Pools,
  obs: ControlObservation,
  reason: string,
): ControlDecision {
  return decision(context, pools, currentCounts(pools, obs), reason);
}

/** Each pool's instances that are not draining (pending, starting or ready). */
function currentCounts(pools: Pools, obs: ControlObservation): PoolCounts {
  return countsWhere(pools, obs, (i) => i.phase !== 'draining');
}

/** Each pool's instances that pass `keep`. */
function countsWhere(
  pools: Pools,
  obs: ControlObservation,
  keep: (i: ControlObservation['instances'][number]) => boolean,
): PoolCounts {
  const count = (v: Variant): number =>
    obs.instances.filter((i) => keep(i) && variantKey(i.variant) === variantKey(v)).length;
  return pools.mode === 'agg'
    ? { both: count(pools.both), prefill: 0, decode: 0 }
    : { both: 0, prefill: count(pools.prefill), decode: count(pools.decode) };
}
