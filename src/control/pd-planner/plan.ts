/**
 * Prefill/decode ratio and parallelism planning, after DistServe's placement search (Zhong et al.,
 * OSDI'24, Algorithm 1): each phase's goodput per instance comes from the performance model
 * (capacity.ts), for every TP degree; then the counts of prefill and decode instances are chosen
 * for the most goodput per GPU within the GPU budget. The colocated cluster on the same GPUs is
 * planned the same way, for comparison. Pure: no clock, no randomness, no I/O. README.md gives the
 * rule, the defaults and the sources.
 */
import { invalidArgument, SwitchyardError } from '../../core/errors.ts';
import type { GpuId, ModelId } from '../../core/ids.ts';
import { type KvLink, kvLink, kvTransfer } from '../../model/kv-link.ts';
import { modelSpec } from '../../model/models.ts';
import type { ModelSpec } from '../../model/types.ts';
import {
  type CapacityFn,
  type EngineLimits,
  type EngineOptions,
  engineLimits,
  perfModelCapacity,
  SATURATION_SHARE_MAX,
} from '../capacity.ts';
import { bucketize, type LengthBucket } from '../gpu-choice/workload.ts';

/**
 * One request length of the workload planned for (a declared mean, a past request of a trace, or a
 * histogram cell with its weight): what requests generate, as history or a declaration, never a
 * pending request's true output.
 */
export interface PdLength {
  readonly inputTokens: number;
  readonly generatedTokens: number;
  /** Relative weight; default 1. */
  readonly weight?: number;
}

/** The service objectives a plan meets. */
export interface PdObjectives {
  readonly ttftMs: number;
  readonly tpotMs: number;
  /** Least share of requests that must be servable within both, (0, 1]. */
  readonly attainment: number;
}

/** What to plan for. */
export interface PdPlanInput {
  readonly model: ModelId;
  readonly gpu: GpuId;
  /** GPUs available to the cluster; a plan uses at most this many. */
  readonly gpus: number;
  /**
   * Offered arrival rate, req/s. Given: the fewest GPUs whose goodput reaches it. Infinity: the most
   * goodput from the budget.
   */
  readonly rateRps: number;
  readonly lengths: readonly PdLength[];
  readonly objectives: PdObjectives;
  /** The KV link between the pools; default `ib-400` (pools on different nodes). */
  readonly link?: KvLink;
  /** The engine sends KV layer by layer (Mooncake); default false (vLLM's NIXL connector). */
  readonly layerwise?: boolean;
  /** TP degrees searched on each side; default PD_TP_DEGREES (those the model splits into and that fit). */
  readonly tpDegrees?: readonly number[];
  /** Engine settings every instance runs with (capacity.ts's EngineOptions). */
  readonly engine?: EngineOptions;
}

/** One pool of a split. */
export interface PdPool {
  readonly instances: number;
  readonly tp: number;
}

/** A prefill/decode split and what the model predicts for it. */
export interface PdSplit {
  readonly prefill: PdPool;
  readonly decode: PdPool;
  /** GPUs the split uses. */
  readonly gpus: number;
  /** Highest arrival rate the split sustains within the objectives, req/s. */
  readonly arrivalRpsMax: number;
  /** Requests served within the objectives at that rate: arrivalRpsMax x servedShare. */
  readonly goodputRps: number;
  readonly goodputPerGpuRps: number;
  /** Share of the length mix that can meet both objectives on this split at all. */
  readonly servedShare: number;
  /** The pool that runs out first. */
  readonly limitedBy: 'prefill' | 'decode';
  /** Mean time the KV transfer adds to TTFT, ms (weighted over the length mix). */
  readonly transferTtftAddedMs: number;
  readonly meetsRate: boolean;
}

/** The colocated baseline on the same GPU budget. */
export interface ColocatedSplit {
  readonly instances: number;
  readonly tp: number;
  readonly gpus: number;
  readonly arrivalRpsMax: number;
  readonly goodputRps: number;
  readonly goodputPerGpuRps: number;
  readonly servedShare: number;
  readonly meetsRate: boolean;
}

/** A plan: the chosen split and the colocated baseline (undefined when no colocated cluster meets the objectives). */
export interface PdPlan {
  readonly model: ModelId;
  readonly gpu: GpuId;
  readonly gpusMax: number;
  readonly rateRps: number;
  readonly objectives: PdObjectives;
  readonly link: string;
  readonly layerwise: boolean;
  readonly split: PdSplit;
  readonly colocated: ColocatedSplit | undefined;
  /** split.goodputPerGpuRps / colocated.goodputPerGpuRps; undefined without a colocated baseline. */
  readonly perGpuGainVsColocated: number | undefined;
}

/** TP degrees searched by default: one GPU to a whole 8-GPU node. */
export const PD_TP_DEGREES: readonly number[] = [1, 2, 4, 8];
/** The largest GPU budget planned (the search is linear in it). */
export const PD_GPUS_MAX = 4096;
/** Default KV link: pools on different nodes, one 400 Gb/s NIC per GPU. */
export const PD_DEFAULT_LINK = 'ib-400';

/** Per-bucket capacities of one phase configuration, req/s per instance (0: cannot meet the objectives). */
type Caps = readonly number[];

/** Throws SY_ERR_INVALID_ARGUMENT naming the CLI flag each field comes from. */
function validate(input: PdPlanInput): void {
  if (!Number.isInteger(input.gpus) || input.gpus < 2 || input.gpus > PD_GPUS_MAX)
    throw invalidArgument(
      'gpus',
      input.gpus,
      `an integer in 2..${PD_GPUS_MAX} (a prefill and a decode GPU at least)`,
    );
  if (!(input.rateRps > 0)) throw invalidArgument('rate', input.rateRps, 'a positive rate in req/s');
  const o = input.objectives;
  if (!(Number.isFinite(o.ttftMs) && o.ttftMs > 0))
    throw invalidArgument('slo-ttft-ms', o.ttftMs, 'a positive time in ms');
  if (!(Number.isFinite(o.tpotMs) && o.tpotMs > 0))
    throw invalidArgument('slo-tpot-ms', o.tpotMs, 'a positive time in ms');
  if (!(o.attainment > 0 && o.attainment <= 1))
    throw invalidArgument('goodput-target', o.attainment, 'a fraction in (0, 1]');
  for (const tp of input.tpDegrees ?? [])
    if (!Number.isInteger(tp) || tp < 1) throw invalidArgument('tp', tp, 'positive integer TP degrees');
  // A split needs one prefill and one decode instance: a budget below two of the smallest TP group
  // given can place none, which is the budget's fault, not the SLOs' (SY_ERR_CAPACITY would say so).
  if (input.tpDegrees !== undefined && input.tpDegrees.length > 0) {
    const tpMin = Math.min(...input.tpDegrees);
    if (input.gpus < 2 * tpMin)
      throw invalidArgument(
        'gpus',
        input.gpus,
        `at least ${2 * tpMin} GPUs for TP ${tpMin}: one prefill and one decode instance of ${tpMin} GPUs each`,
      );
  }
}

/**
 * Buckets of the length mix on gpu-choice's grid, each profiled at its requests' mean lengths
 * (weighted). bucketize profiles a bucket at its longest lengths, a bound that suits a question of
 * whether a GPU can serve a shape; a split is a question of rates, and a pool's rate is set by the
 * work its requests bring on average. A bucket spans a factor of 4 in each length, so its longest
 * lengths overstate the work by up to 4x, and unevenly between the two phases: on the Azure
 * conversation sample half the requests sit in `in 512-2047 / out 256-1023`, whose longest output
 * (1,000 tokens) is 2.4x their mean (424) while the longest prompt is 1.4x the mean, so the decode
 * pool looked 1.7x too slow against the prefill pool and the plan took a prefill instance too few
 * (3:5 where the twin's best is 4:4, 27% more goodput; docs/disaggregation.md, "Planning the split").
 */
function bucketsOf(lengths: readonly PdLength[]): LengthBucket[] {
  for (const [i, l] of lengths.entries()) {
    if (!Number.isInteger(l.inputTokens) || l.inputTokens < 1)
      throw invalidArgument('input-tokens', l.inputTokens, `a positive integer (length ${i})`);
    if (!Number.isInteger(l.generatedTokens) || l.generatedTokens < 1)
      throw invalidArgument('output-tokens', l.generatedTokens, `a positive integer (length ${i})`);
  }
  const buckets = bucketize(
    lengths.map((l) => ({
      inputTokens: l.inputTokens,
      generatedTokens: l.generatedTokens,
      ...(l.weight !== undefined ? { weight: l.weight } : {}),
    })),
  );
  return atMeanLengths(buckets, lengths);
}

/** `buckets` profiled at the weighted mean lengths of the `lengths` that fall in each. */
function atMeanLengths(buckets: readonly LengthBucket[], lengths: readonly PdLength[]): LengthBucket[] {
  const sums = buckets.map(() => ({ weight: 0, input: 0, generated: 0 }));
  for (const l of lengths) {
    const weight = l.weight ?? 1;
    const i = buckets.findIndex(
      (b) =>
        l.inputTokens >= b.inputTokensMin &&
        l.inputTokens <= b.inputTokensMax &&
        l.generatedTokens >= b.generatedTokensMin &&
        l.generatedTokens <= b.generatedTokensMax,
    );
    const sum = sums[i];
    if (sum === undefined || weight === 0) continue;
    sum.weight += weight;
    sum.input += weight * l.inputTokens;
    sum.generated += weight * l.generatedTokens;
  }
  return buckets.map((b, i) => {
    const sum = sums[i];
    if (sum === undefined || sum.weight <= 0) return b;
    return {
      ...b,
      inputTokens: Math.max(1, Math.round(sum.input / sum.weight)),
      generatedTokens: Math.max(1, Math.round(sum.generated / sum.weight)),
    };
  });
}

/** The TP degrees whose instance fits the GPU and the budget (a split needs one GPU for the other side). */
function fittingTps(input: PdPlanInput, budget: number): number[] {
  const out: number[] = [];
  for (const tp of input.tpDegrees ?? PD_TP_DEGREES) {
    if (tp > budget) continue;
    try {
      engineLimits(input.gpu, input.model, tp, input.engine ?? {});
      out.push(tp);
    } catch (e) {
      // A TP the model does not split into, or weights that leave no KV cache: not a candidate.
      if (
        e instanceof SwitchyardError &&
        (e.code === 'SY_ERR_CAPACITY' || e.code === 'SY_ERR_INVALID_ARGUMENT')
      )
        continue;
      throw e;
    }
  }
  return out;
}

/**
 * The mix's arrival rate one instance sustains: each served request takes 1 / cap of the instance,
 * so the rate is 1 / sum(share / cap) over the buckets served. `served` marks them.
 */
function mixRate(buckets: readonly LengthBucket[], caps: Caps, served: readonly boolean[]): number {
  let secondsPerRequest = 0;
  buckets.forEach((b, i) => {
    if (served[i] === true) secondsPerRequest += b.share / (caps[i] as number);
  });
  return secondsPerRequest > 0 ? 1 / secondsPerRequest : 0;
}

interface PhaseCaps {
  readonly prefill: Caps;
  readonly decode: Caps;
  /** Weighted mean of what the transfer adds to TTFT, ms. */
  readonly transferMs: number;
}

/** Per-bucket capacities of a (prefill tp, decode tp) pair; the prefill's TTFT budget loses the transfer. */
function pairCaps(ctx: Context, tpP: number, tpD: number): PhaseCaps {
  const { input, buckets, disagg, model, link } = ctx;
  const o = input.objectives;
  const prefill: number[] = [];
  const decode: number[] = [];
  let transferMs = 0;
  for (const b of buckets) {
    const pVariant = { model: input.model, gpu: input.gpu, tp: tpP, role: 'prefill' as const };
    const alone = disagg(pVariant, { ttftMs: o.ttftMs }, b.inputTokens, b.generatedTokens);
    const added = kvTransfer(model, b.inputTokens, link, {
      prefillTp: tpP,
      decodeTp: tpD,
      layerwise: input.layerwise === true,
      prefillMs: alone.prefillMs,
    }).ttftAddedMs;
    transferMs += b.share * added;
    const budgetMs = o.ttftMs - added;
    prefill.push(
      budgetMs > 0
        ? Math.max(
            disagg(pVariant, { ttftMs: budgetMs }, b.inputTokens, b.generatedTokens).requestsPerS,
            batchedPrefillRps(
              engineLimits(input.gpu, input.model, tpP, input.engine ?? {}),
              b.inputTokens,
              budgetMs,
            ),
          )
        : 0,
    );
    const dVariant = { model: input.model, gpu: input.gpu, tp: tpD, role: 'decode' as const };
    // The largest batch whose step meets TPOT holds TPOT on average only: planned at that batch, a
    // decode pool's batch swings above it half the time. Planned on at most SATURATION_SHARE_MAX of
    // it, as the colocated baseline's chunked model is (capacity.ts).
    const decodeRps = disagg(dVariant, { tpotMs: o.tpotMs }, b.inputTokens, b.generatedTokens).requestsPerS;
    decode.push(decodeRps * SATURATION_SHARE_MAX);
  }
  return { prefill, decode, transferMs };
}

/**
 * Prompts per second a prefill instance serves when it batches several short prompts into one step
 * (up to the step's token budget and max_num_seqs), as vLLM's scheduler does: the largest batch whose
 * step, waited for about one and a half times (the step in progress, then its own), stays within the
 * TTFT budget, planned on at most SATURATION_SHARE_MAX of its rate. 0 when not even two fit.
 */
function batchedPrefillRps(limits: EngineLimits, inputTokens: number, budgetMs: number): number {
  const kMax = Math.min(limits.maxNumSeqs, Math.floor(limits.maxNumBatchedTokens / inputTokens));
  for (let k = kMax; k >= 2; k--) {
    const stepMs = limits.perf.stepTimeMs({
      prefillSeqs: k,
      prefillTokens: k * inputTokens,
      prefillAttentionPairs: (k * inputTokens * (inputTokens + 1)) / 2,
      decodeSeqs: 0,
      decodeContextTokens: 0,
      commonPrefixTokens: 0,
    });
    if (1.5 * stepMs <= budgetMs) return (SATURATION_SHARE_MAX * k * 1000) / stepMs;
  }
  return 0;
}

interface Context {
  readonly input: PdPlanInput;
  readonly buckets: readonly LengthBucket[];
  readonly model: ModelSpec;
  readonly link: KvLink;
  readonly disagg: CapacityFn;
  readonly colocated: CapacityFn;
}

/** Ranks candidates: meeting the rate first; then fewest GPUs and most goodput per GPU; else most goodput. */
function better(
  a: { meetsRate: boolean; gpus: number; goodputRps: number; goodputPerGpuRps: number },
  b: { meetsRate: boolean; gpus: number; goodputRps: number; goodputPerGpuRps: number } | undefined,
): boolean {
  if (b === undefined) return true;
  if (a.meetsRate !== b.meetsRate) return a.meetsRate;
  if (a.meetsRate) {
    if (a.gpus !== b.gpus) return a.gpus < b.gpus;
    return a.goodputPerGpuRps > b.goodputPerGpuRps;
  }
  if (a.goodputRps !== b.goodputRps) return a.goodputRps > b.goodputRps;
  return a.gpus < b.gpus;
}

/** The best split of one (prefill tp, decode tp) pair, or undefined when it cannot meet the objectives. */
function bestSplitOfPair(ctx: Context, tpP: number, tpD: number): PdSplit | undefined {
  const caps = pairCaps(ctx, tpP, tpD);
  const served = ctx.buckets.map((_, i) => (caps.prefill[i] as number) > 0 && (caps.decode[i] as number) > 0);
  const servedShare = ctx.buckets.reduce((sum, b, i) => sum + (served[i] === true ? b.share : 0), 0);
  if (servedShare < ctx.input.objectives.attainment - 1e-12) return undefined;
  const rateP = mixRate(ctx.buckets, caps.prefill, served);
  const rateD = mixRate(ctx.buckets, caps.decode, served);
  const budget = ctx.input.gpus;
  let best: PdSplit | undefined;
  for (let np = 1; np * tpP + tpD <= budget; np++) {
    const ndMax = Math.floor((budget - np * tpP) / tpD);
    // For np prefill instances only the balanced decode counts, or all the budget allows, can be best.
    const balanced = (np * rateP) / rateD;
    for (const nd of new Set([Math.floor(balanced), Math.ceil(balanced), ndMax])) {
      if (nd < 1 || nd > ndMax) continue;
      const arrivalRpsMax = Math.min(np * rateP, nd * rateD);
      const gpus = np * tpP + nd * tpD;
      const goodputRps = arrivalRpsMax * servedShare;
      const candidate: PdSplit = {
        prefill: { instances: np, tp: tpP },
        decode: { instances: nd, tp: tpD },
        gpus,
        arrivalRpsMax,
        goodputRps,
        goodputPerGpuRps: goodputRps / gpus,
        servedShare,
        limitedBy: np * rateP <= nd * rateD ? 'prefill' : 'decode',
        transferTtftAddedMs: caps.transferMs,
        meetsRate: arrivalRpsMax >= ctx.input.rateRps,
      };
      if (better(candidate, best)) best = candidate;
    }
  }
  return best;
}

/** The colocated baseline: `both` instances of one TP degree, chunked prefill (vLLM's default). */
function bestColocated(ctx: Context, tps: readonly number[]): ColocatedSplit | undefined {
  const { input, buckets } = ctx;
  const o = input.objectives;
  let best: ColocatedSplit | undefined;
  for (const tp of tps) {
    const variant = { model: input.model, gpu: input.gpu, tp, role: 'both' as const };
    const caps = buckets.map(
      (b) =>
        ctx.colocated(variant, { ttftMs: o.ttftMs, tpotMs: o.tpotMs }, b.inputTokens, b.generatedTokens)
          .requestsPerS,
    );
    const served = caps.map((c) => c > 0);
    const servedShare = buckets.reduce((sum, b, i) => sum + (served[i] === true ? b.share : 0), 0);
    if (servedShare < o.attainment - 1e-12) continue;
    const rate = mixRate(buckets, caps, served);
    for (let n = 1; n * tp <= input.gpus; n++) {
      const arrivalRpsMax = n * rate;
      const goodputRps = arrivalRpsMax * servedShare;
      const candidate: ColocatedSplit = {
        instances: n,
        tp,
        gpus: n * tp,
        arrivalRpsMax,
        goodputRps,
        goodputPerGpuRps: goodputRps / (n * tp),
        servedShare,
        meetsRate: arrivalRpsMax >= input.rateRps,
      };
      if (better(candidate, best)) best = candidate;
    }
  }
  return best;
}

/**
 * Plans the prefill and decode pools for `input`: every (prefill TP, decode TP) pair and every count
 * within the GPU budget. With a finite rate, the split with the fewest GPUs that sustains it (ties:
 * more goodput per GPU); when none does, or the rate is Infinity, the split with the most goodput
 * (ties: fewer GPUs). Deterministic: candidates are visited in a fixed order and only a strictly
 * better one replaces the best. Throws SY_ERR_INVALID_ARGUMENT for bad input (naming the CLI flag),
 * SY_ERR_UNKNOWN_NAME for a model or GPU not in the catalogue, SY_ERR_CAPACITY when no split meets
 * the objectives for the attainment target.
 */
export function planPd(input: PdPlanInput): PdPlan {
  validate(input);
  const model = modelSpec(input.model);
  const buckets = bucketsOf(input.lengths);
  const ctx: Context = {
    input,
    buckets,
    model,
    link: input.link ?? kvLink(PD_DEFAULT_LINK),
    // md1: a prefill pool queues whole prompts; its TTFT must hold with the wait, as chunked's does.
    disagg: perfModelCapacity({ ...input.engine, prefillQueueing: 'md1' }),
    colocated: perfModelCapacity({ ...input.engine, aggregated: 'chunked' }),
  };
  const tps = fittingTps(input, input.gpus - 1);
  let best: PdSplit | undefined;
  for (const tpP of tps) {
    for (const tpD of tps) {
      const candidate = bestSplitOfPair(ctx, tpP, tpD);
      if (candidate !== undefined && better(candidate, best)) best = candidate;
    }
  }
  if (best === undefined) {
    throw new SwitchyardError(
      'SY_ERR_CAPACITY',
      `no prefill/decode split of ${input.gpus} x ${input.gpu} serves ${input.model} within TTFT ` +
        `${input.objectives.ttftMs} ms and TPOT ${input.objectives.tpotMs} ms for ` +
        `${input.objectives.attainment * 100}% of requests; loosen the SLOs or use more or larger GPUs`,
      { param: 'gpus', gpus: input.gpus, gpu: input.gpu, model: input.model },
    );
  }
  const colocated = bestColocated(ctx, fittingTps(input, input.gpus));
  return {
    model: input.model,
    gpu: input.gpu,
    gpusMax: input.gpus,
    rateRps: input.rateRps,
    objectives: input.objectives,
    link: ctx.link.name,
    layerwise: input.layerwise === true,
    split: best,
    colocated,
    perGpuGainVsColocated:
      colocated !== undefined && colocated.goodputPerGpuRps > 0
        ? best.goodputPerGpuRps / colocated.goodputPerGpuRps
        : undefined,
  };
}
