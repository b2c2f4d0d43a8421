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
import { fitsContext } from '../../model/context.ts';
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
  /**
   * Lengths left out of the plan because prompt plus output passes the model's context: the run's
   * engine refuses them before any work (model/context.ts), so they take no capacity.
   */
  readonly pastContextRequests: number;
}

const MS_PER_S = 1000;

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
    const sum = sums[bucketOf(buckets, l)];
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

/** The index of the bucket `l` falls in (-1 for none). */
function bucketOf(buckets: readonly LengthBucket[], l: PdLength): number {
  return buckets.findIndex(
    (b) =>
      l.inputTokens >= b.inputTokensMin &&
      l.inputTokens <= b.inputTokensMax &&
      l.generatedTokens >= b.generatedTokensMin &&
      l.generatedTokens <= b.generatedTokensMax,
  );
}

/** The lengths of the mix with their buckets, sorted; lengths of no weight are left out. */
function mixRequests(buckets: readonly LengthBucket[], lengths: readonly PdLength[]): MixRequest[] {
  const out: MixRequest[] = [];
  for (const l of lengths) {
    const weight = l.weight ?? 1;
    const bucket = bucketOf(buckets, l);
    if (weight > 0 && bucket >= 0)
      out.push({ inputTokens: l.inputTokens, generatedTokens: l.generatedTokens, weight, bucket });
  }
  // In a fixed order, so that sums over them do not depend on the order the lengths came in.
  return out.sort(
    (a, b) => a.inputTokens - b.inputTokens || a.generatedTokens - b.generatedTokens || a.weight - b.weight,
  );
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

/** What one instance of each pool of a (prefill tp, decode tp) pair sustains over the mix. */
interface PairRates {
  /** Arrival rate one prefill instance sustains with the served share's TTFT met, req/s. */
  readonly prefill: number;
  /** Arrival rate one decode instance sustains with TPOT met, req/s. */
  readonly decode: number;
  /** Share of requests that can meet both objectives at all. */
  readonly servedShare: number;
  /** Weighted mean of what the transfer adds to TTFT, ms. */
  readonly transferMs: number;
}

/**
 * The two pools of a (prefill tp, decode tp) pair. Every request of the mix is prefilled and
 * decoded, whether or not it can meet the objectives (an engine serves it all the same; only the
 * goodput leaves it out), so each pool's rate is set by all of the work.
 *
 * Decode: 1 / sum(share / capacity) over the buckets (each request takes 1 / capacity of an
 * instance's batch); a bucket that cannot meet TPOT at any batch takes its share at the largest
 * batch the KV cache holds.
 *
 * Prefill: one queue per instance in front of the whole mix (Pollaczek-Khinchine, M/G/1): at
 * arrival rate r, mean wait W = r E[e^2] / (2 (1 - r E[e])), e each prompt's occupancy of the
 * instance (its chunked prefill alone, or its part of a batched step for prompts short enough to
 * batch). A request meets TTFT when W + its prefill + its KV transfer fits; the wait allowed is the
 * largest that still leaves the attainment target's share of requests (those whose decode bucket
 * meets TPOT) within TTFT, and the rate is the one that makes that the wait. Each request of the
 * mix is checked at its own length, not its bucket's mean: the bucket of the longest prompts spans
 * everything above 32k tokens, and its mean (60k on the Mooncake sample) misses TTFT where most of
 * its requests meet it.
 */
function pairRates(ctx: Context, tpP: number, tpD: number): PairRates | undefined {
  const { input, buckets, requests, disagg } = ctx;
  const o = input.objectives;
  const limits = engineLimits(input.gpu, input.model, tpP, input.engine ?? {});
  const pVariant = { model: input.model, gpu: input.gpu, tp: tpP, role: 'prefill' as const };
  const dVariant = { model: input.model, gpu: input.gpu, tp: tpD, role: 'decode' as const };
  // Decode: every bucket's requests take their share of the batch.
  let decodeSecondsPerRequest = 0;
  const decodeOk: boolean[] = [];
  for (const b of buckets) {
    // The largest batch whose step meets TPOT holds TPOT on average only: planned at that batch, a
    // decode pool's batch swings above it half the time. Planned on at most SATURATION_SHARE_MAX of
    // it, as the colocated baseline's chunked model is (capacity.ts).
    const withinTpot = disagg(dVariant, { tpotMs: o.tpotMs }, b.inputTokens, b.generatedTokens).requestsPerS;
    decodeOk.push(withinTpot > 0);
    const rps =
      withinTpot > 0 ? withinTpot : disagg(dVariant, {}, b.inputTokens, b.generatedTokens).requestsPerS;
    if (rps > 0) decodeSecondsPerRequest += b.share / (rps * SATURATION_SHARE_MAX);
  }
  // Prefill: each request's occupancy, prefill and transfer.
  let weight = 0;
  let e1 = 0;
  let e2 = 0;
  let transferMs = 0;
  const fits: { readonly slackMs: number; readonly weight: number }[] = [];
  for (const r of requests) {
    const alone = disagg(pVariant, {}, r.inputTokens, r.generatedTokens).prefillMs;
    const added = transferAddedMs(ctx, r.inputTokens, tpP, tpD, alone);
    const occupancyMs = Math.min(alone, batchedPrefillMsPerPrompt(limits, r.inputTokens, o.ttftMs - added));
    weight += r.weight;
    e1 += r.weight * occupancyMs;
    e2 += r.weight * occupancyMs * occupancyMs;
    transferMs += r.weight * added;
    if (decodeOk[r.bucket] === true) fits.push({ slackMs: o.ttftMs - added - alone, weight: r.weight });
  }
  if (weight <= 0) return undefined;
  e1 /= weight;
  e2 /= weight;
  // The wait allowed: the largest that leaves the target's share of requests within TTFT.
  fits.sort((a, b) => b.slackMs - a.slackMs);
  let share = 0;
  let waitMs = Number.NaN;
  for (const f of fits) {
    share += f.weight / weight;
    if (share >= o.attainment - 1e-12) {
      waitMs = f.slackMs;
      break;
    }
  }
  if (!(waitMs > 0)) return undefined;
  // The share that can meet both objectives at all, as the colocated baseline counts it (at the
  // rate, the wait leaves about the target's share within TTFT).
  const servedShare = fits.reduce((sum, f) => sum + (f.slackMs >= 0 ? f.weight / weight : 0), 0);
  // W = r e2 / (2 (1 - r e1))  <=>  r = W / (e2 / 2 + W e1), per ms.
  const prefill = (MS_PER_S * waitMs) / (e2 / 2 + waitMs * e1);
  return {
    prefill,
    decode: decodeSecondsPerRequest > 0 ? 1 / decodeSecondsPerRequest : 0,
    servedShare,
    transferMs: transferMs / weight,
  };
}

/** What the KV transfer of `tokens` adds to TTFT on the pair's link, ms. */
function transferAddedMs(ctx: Context, tokens: number, tpP: number, tpD: number, prefillMs: number): number {
  return kvTransfer(ctx.model, tokens, ctx.link, {
    prefillTp: tpP,
    decodeTp: tpD,
    layerwise: ctx.input.layerwise === true,
    prefillMs,
  }).ttftAddedMs;
}

/**
 * A short prompt's share of a batched prefill step, ms: an engine's scheduler runs several short
 * prompts in one step (up to the step's token budget and max_num_seqs), and each then occupies the
 * instance for step / k. The largest batch whose step, waited for about one and a half times (the
 * step in progress, then its own), stays within the TTFT budget. Infinity when not even two fit.
 * One 200-token prompt per step leaves an H100 mostly idle; priced that way, the chat plans took a
 * prefill instance too many.
 */
function batchedPrefillMsPerPrompt(limits: EngineLimits, inputTokens: number, budgetMs: number): number {
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
    if (1.5 * stepMs <= budgetMs) return stepMs / k;
  }
  return Number.POSITIVE_INFINITY;
}

/** One length of the mix, with the bucket it falls in. */
interface MixRequest {
  readonly inputTokens: number;
  readonly generatedTokens: number;
  readonly weight: number;
  readonly bucket: number;
}

interface Context {
  readonly input: PdPlanInput;
  readonly buckets: readonly LengthBucket[];
  readonly requests: readonly MixRequest[];
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
  const rates = pairRates(ctx, tpP, tpD);
  if (rates === undefined || !(rates.prefill > 0 && rates.decode > 0)) return undefined;
  const { servedShare } = rates;
  if (servedShare < ctx.input.objectives.attainment - 1e-12) return undefined;
  const rateP = rates.prefill;
  const rateD = rates.decode;
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
        transferTtftAddedMs: rates.transferMs,
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
    // A shape that cannot meet the SLOs is served all the same: it takes its share of the
    // instance at the rate the instance runs it with no objectives, as on the P/D pools.
    const work = buckets.map((b, i) =>
      served[i] === true
        ? (caps[i] as number)
        : ctx.colocated(variant, {}, b.inputTokens, b.generatedTokens).requestsPerS,
    );
    const rate = mixRate(
      buckets,
      work,
      work.map((w) => w > 0),
    );
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
  const lengths = withinContext(input.lengths, model.contextTokensMax);
  const pastContextRequests = input.lengths.length - lengths.length;
  if (lengths.length === 0)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `every request planned for passes ${input.model}'s ${model.contextTokensMax}-token context ` +
        '(prompt plus output); the run would refuse them all',
      { param: 'lengths', model: input.model, contextTokensMax: model.contextTokensMax },
    );
  const buckets = bucketsOf(lengths);
  const ctx: Context = {
    input,
    buckets,
    requests: mixRequests(buckets, lengths),
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
    pastContextRequests,
  };
}

/**
 * The lengths an engine serves: a request whose prompt plus output (the run sends the output as
 * max_tokens) passes the context is refused before any work, so planning capacity for it would
 * size pools for work no one does. Malformed lengths stay in, for bucketsOf to name.
 */
function withinContext(lengths: readonly PdLength[], contextTokensMax: number): readonly PdLength[] {
  return lengths.filter(
    (l) =>
      !Number.isInteger(l.inputTokens) ||
      !Number.isInteger(l.generatedTokens) ||
      fitsContext(contextTokensMax, l.inputTokens, l.generatedTokens),
  );
}
