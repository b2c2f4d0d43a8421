/**
 * Profiling, Mélange's first step, done analytically on the twin's performance model instead of on
 * real GPUs: for one (GPU, TP) variant and one request-size bucket, the highest request rate one
 * instance sustains while a request's TTFT and TPOT stay within the objectives. README.md gives the
 * derivation; in short, an instance in steady state under continuous batching with chunked prefill
 * runs steps that each carry `B` decodes and the prefill work of the B / O requests that arrive per
 * step, so its rate is B / (O * step time) and its TPOT is the step time; the largest B that keeps
 * TPOT, TTFT (the prompt's chunked prefill plus an M/D/1 wait) and the engine's caps (KV cache,
 * --max-num-seqs, --max-num-batched-tokens) sets the rate.
 */
import { SwitchyardError } from '../../core/errors.ts';
import type { GpuId, ModelId } from '../../core/ids.ts';
import {
  DEFAULT_ENGINE_PROFILE,
  gpuSpec,
  kvBlocksThatFit,
  modelSpec,
  perfModelFor,
  type RooflinePerfModel,
  type StepShape,
  validateTp,
  vllmServeBatchDefaults,
} from '../../model/index.ts';
import type { LengthBucket } from './workload.ts';

/** Tensor-parallel degrees tried: one node of up to 8 GPUs, as the price table's instances hold. */
export const TP_DEGREES: readonly number[] = [1, 2, 4, 8];
/** vLLM's default --gpu-memory-utilization. */
export const GPU_MEMORY_UTILIZATION_DEFAULT = 0.9;
/** KV-cache block size the capacity is counted in (vLLM's default). */
const KV_BLOCK_TOKENS = 16;
/**
 * An instance is planned at no more than this share of the throughput it reaches at its batch cap
 * (its saturation rate). The steady-state model has no queueing of whole requests: near saturation,
 * Poisson arrivals build queues it does not see. In the twin, llama-3.1-8b on one H100 with
 * 1000-token prompts and 200-token outputs saturates near 29 req/s; offered 27.3 req/s (97%), mean
 * TTFT ran to 53 s with 1,210 preemptions, while at 26.5 req/s (91%) mean TTFT was 105 ms.
 */
export const SATURATION_SHARE_MAX = 0.9;
/** Bisection steps on the decode batch: 2^-40 of the range, far below any effect on the rate. */
const BISECTION_STEPS = 40;
const MS_PER_S = 1000;

/** Latency objectives a plan must meet; a missing one does not constrain. */
export interface PlanObjectives {
  readonly ttftMs?: number;
  readonly tpotMs?: number;
}

/** Engine settings the profile assumes (vLLM's serve defaults for the GPU unless given). */
export interface ProfileOptions {
  /** Engine profile id (src/model/engines.ts), default `vllm`. */
  readonly engine?: string;
  readonly gpuMemoryUtilization?: number;
  readonly maxNumSeqs?: number;
  readonly maxNumBatchedTokens?: number;
}

/** What stopped a bucket's rate from growing further. */
export type CapacityLimit =
  | 'tpot'
  | 'ttft'
  | 'kv-cache'
  | 'max-num-seqs'
  | 'token-budget'
  /** The rate reached SATURATION_SHARE_MAX of the instance's saturation rate. */
  | 'saturation'
  /** The request does not fit the KV cache or the model's context at all. */
  | 'context';

/** One variant's capacity for one bucket. */
export interface BucketCapacity {
  readonly bucket: string;
  /** Highest sustainable request rate of one instance within the objectives; 0: cannot meet them. */
  readonly maxRateRps: number;
  /** Mean decode batch at that rate. */
  readonly decodeBatch: number;
  /** Predicted TPOT and TTFT at that rate, or for a lone request when the rate is 0. */
  readonly tpotMs: number;
  readonly ttftMs: number;
  readonly limitedBy: CapacityLimit;
}

/** A (GPU, TP) pair the model fits on, with its capacity per bucket. */
export interface VariantProfile {
  readonly gpu: GpuId;
  readonly tp: number;
  readonly kvCacheTokens: number;
  readonly capacities: readonly BucketCapacity[];
}

/** A (GPU, TP) pair left out, and why. */
export interface SkippedVariant {
  readonly gpu: GpuId;
  readonly tp: number;
  readonly reason: string;
}

interface EngineLimits {
  readonly kvCacheTokens: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly contextTokensMax: number;
}

interface Operating {
  readonly rateRps: number;
  readonly tpotMs: number;
  readonly ttftMs: number;
}

/** Reused step shape: the bisection evaluates thousands of steps and allocates none. */
const shape: StepShape = {
  prefillSeqs: 0,
  prefillTokens: 0,
  prefillAttentionPairs: 0,
  decodeSeqs: 0,
  decodeContextTokens: 0,
};

/**
 * The steady state at mean decode batch `batch`: each step decodes max(1, batch) sequences and
 * computes the prompts of the batch / O requests that arrive per step (their attention pairs
 * spread the same way); the rate is batch / (O * step). TTFT: half a running step, then the
 * prompt's chunks (the budget the decodes leave, one chunk per step), stretched by M/D/1's mean wait
 * at the load the arriving prompt tokens put on that leftover budget.
 */
function operatingPoint(
  perf: RooflinePerfModel,
  limits: EngineLimits,
  bucket: LengthBucket,
  batch: number,
): Operating {
  const input = bucket.inputTokens;
  const output = bucket.generatedTokens;
  const decodeSeqs = Math.max(1, batch);
  const decodeContextTokens = decodeSeqs * (input + bucket.generatedTokens / 2);
  const chunkTokens = Math.max(1, limits.maxNumBatchedTokens - decodeSeqs);
  // Prompt tokens that arrive per decode step, and the lumps they come in: one prompt's chunk, or
  // several prompts' when they arrive faster than one per step. A step costs the larger of its
  // compute and its weight reads, so a lump costs more than the same tokens spread thin.
  const promptTokensPerStep = (batch / output) * input;
  const lumpTokens = Math.min(chunkTokens, Math.max(Math.min(input, chunkTokens), promptTokensPerStep));
  const lumpShare = Math.min(1, promptTokensPerStep / lumpTokens);
  const decodeOnlyMs = decodeStepMs(perf, decodeSeqs, decodeContextTokens);
  const lumpMs = mixedStepMs(perf, decodeSeqs, decodeContextTokens, lumpTokens, input);
  const stepMs = lumpShare * lumpMs + (1 - lumpShare) * decodeOnlyMs;
  const rateRps = (batch / (output * stepMs)) * MS_PER_S;

  // The prompt's own prefill: chunks of the budget the decodes leave, one step each.
  const chunks = Math.ceil(input / chunkTokens);
  const prefillServiceMs =
    chunks * mixedStepMs(perf, decodeSeqs, decodeContextTokens, Math.min(input, chunkTokens), input);
  // Waiting: prompts share the leftover budget, a token queue loaded at the arriving prompt tokens
  // over that budget; M/D/1's mean wait on top of half a step for the running step to end.
  const load = promptTokensPerStep / chunkTokens;
  const ttftMs =
    load >= 1 ? Number.POSITIVE_INFINITY : stepMs / 2 + prefillServiceMs * (1 + load / (2 * (1 - load)));
  return { rateRps, tpotMs: stepMs, ttftMs };
}

function decodeStepMs(perf: RooflinePerfModel, decodeSeqs: number, decodeContextTokens: number): number {
  shape.prefillSeqs = 0;
  shape.prefillTokens = 0;
  shape.prefillAttentionPairs = 0;
  shape.decodeSeqs = decodeSeqs;
  shape.decodeContextTokens = decodeContextTokens;
  return perf.stepTimeMs(shape);
}

/**
 * A step with `prefillTokens` of prompts of `input` tokens beside the decodes; the attention pairs
 * are those prompts' share of their full causal attention, I (I + 1) / 2 per prompt.
 */
function mixedStepMs(
  perf: RooflinePerfModel,
  decodeSeqs: number,
  decodeContextTokens: number,
  prefillTokens: number,
  input: number,
): number {
  shape.prefillSeqs = Math.max(1, prefillTokens / input);
  shape.prefillTokens = Math.round(prefillTokens);
  shape.prefillAttentionPairs = (prefillTokens * (input + 1)) / 2;
  shape.decodeSeqs = decodeSeqs;
  shape.decodeContextTokens = decodeContextTokens;
  return perf.stepTimeMs(shape);
}

/** The caps on the mean decode batch, smallest first wins: sequences, KV cache, token budget. */
function batchCap(limits: EngineLimits, bucket: LengthBucket): { batch: number; limit: CapacityLimit } {
  const caps: [number, CapacityLimit][] = [
    [limits.maxNumSeqs, 'max-num-seqs'],
    [limits.kvCacheTokens / (bucket.inputTokens + bucket.generatedTokens / 2), 'kv-cache'],
    // Each step holds batch decode tokens plus batch * I / O prompt tokens.
    [limits.maxNumBatchedTokens / (1 + bucket.inputTokens / bucket.generatedTokens), 'token-budget'],
  ];
  let best = caps[0] as [number, CapacityLimit];
  for (const cap of caps) if (cap[0] < best[0]) best = cap;
  return { batch: best[0], limit: best[1] };
}

/** Which objective `point` misses first (TPOT, then TTFT, then the saturation share). */
function missed(point: Operating, objectives: PlanObjectives, rateRpsMax: number): CapacityLimit | undefined {
  if (point.tpotMs > (objectives.tpotMs ?? Number.POSITIVE_INFINITY)) return 'tpot';
  if (point.ttftMs > (objectives.ttftMs ?? Number.POSITIVE_INFINITY)) return 'ttft';
  if (point.rateRps > rateRpsMax) return 'saturation';
  return undefined;
}

/**
 * The largest mean decode batch within the objectives, the caps and the saturation share, by
 * bisection (TPOT, TTFT and the rate all grow with the batch).
 */
function bucketCapacity(
  perf: RooflinePerfModel,
  limits: EngineLimits,
  bucket: LengthBucket,
  objectives: PlanObjectives,
): BucketCapacity {
  const need = bucket.inputTokens + bucket.generatedTokens;
  if (need > limits.kvCacheTokens || need > limits.contextTokensMax) {
    return {
      bucket: bucket.label,
      maxRateRps: 0,
      decodeBatch: 0,
      tpotMs: Number.NaN,
      ttftMs: Number.NaN,
      limitedBy: 'context',
    };
  }
  const cap = batchCap(limits, bucket);
  const rateRpsMax = SATURATION_SHARE_MAX * operatingPoint(perf, limits, bucket, cap.batch).rateRps;
  // A lone request's latency: if even that misses, the variant cannot serve the bucket.
  const floor = Math.min(cap.batch, 1e-6);
  const lone = operatingPoint(perf, limits, bucket, floor);
  const loneMiss = missed(lone, objectives, Number.POSITIVE_INFINITY);
  if (loneMiss !== undefined) {
    return {
      bucket: bucket.label,
      maxRateRps: 0,
      decodeBatch: 0,
      tpotMs: lone.tpotMs,
      ttftMs: lone.ttftMs,
      limitedBy: loneMiss,
    };
  }
  let lo = floor;
  let hi = cap.batch;
  for (let i = 0; i < BISECTION_STEPS; i++) {
    const mid = (lo + hi) / 2;
    if (missed(operatingPoint(perf, limits, bucket, mid), objectives, rateRpsMax) === undefined) lo = mid;
    else hi = mid;
  }
  const best = operatingPoint(perf, limits, bucket, lo);
  const limitedBy = missed(operatingPoint(perf, limits, bucket, hi), objectives, rateRpsMax) ?? cap.limit;
  return {
    bucket: bucket.label,
    maxRateRps: best.rateRps,
    decodeBatch: lo,
    tpotMs: best.tpotMs,
    ttftMs: best.ttftMs,
    limitedBy,
  };
}

/** The engine's limits for (GPU, model, TP), or why the model does not fit. */
function engineLimits(
  gpuId: GpuId,
  modelId: ModelId,
  tp: number,
  options: ProfileOptions,
): EngineLimits | string {
  const gpu = gpuSpec(gpuId);
  const model = modelSpec(modelId);
  try {
    validateTp(model, tp);
  } catch (error) {
    return (error as Error).message;
  }
  const defaults = vllmServeBatchDefaults(gpu);
  const maxNumSeqs = options.maxNumSeqs ?? defaults.maxNumSeqs;
  const maxNumBatchedTokens = options.maxNumBatchedTokens ?? defaults.maxNumBatchedTokens;
  try {
    const blocks = kvBlocksThatFit(
      gpu,
      model,
      tp,
      options.gpuMemoryUtilization ?? GPU_MEMORY_UTILIZATION_DEFAULT,
      KV_BLOCK_TOKENS,
      { maxNumSeqs, maxNumBatchedTokens },
    );
    return {
      kvCacheTokens: blocks * KV_BLOCK_TOKENS,
      maxNumSeqs,
      maxNumBatchedTokens,
      contextTokensMax: model.contextTokensMax,
    };
  } catch (error) {
    if (error instanceof SwitchyardError && error.code === 'SY_ERR_CAPACITY') return error.message;
    throw error;
  }
}

/**
 * Profiles one (GPU, TP) variant of `modelId` on every bucket. Returns the skip reason instead when
 * TP does not split the model or the weights leave no room for a KV cache. Throws
 * SY_ERR_UNKNOWN_NAME for an unknown GPU, model or engine.
 */
export function profileVariant(
  gpuId: GpuId,
  modelId: ModelId,
  tp: number,
  buckets: readonly LengthBucket[],
  objectives: PlanObjectives,
  options: ProfileOptions = {},
): VariantProfile | SkippedVariant {
  const limits = engineLimits(gpuId, modelId, tp, options);
  if (typeof limits === 'string') return { gpu: gpuId, tp, reason: limits };
  const perf = perfModelFor(gpuId, modelId, tp, options.engine ?? DEFAULT_ENGINE_PROFILE, {
    maxNumSeqs: limits.maxNumSeqs,
  });
  const capacities = buckets.map((bucket) => bucketCapacity(perf, limits, bucket, objectives));
  return { gpu: gpuId, tp, kvCacheTokens: limits.kvCacheTokens, capacities };
}

/** Whether a profile result is a usable variant. */
export function isProfiled(v: VariantProfile | SkippedVariant): v is VariantProfile {
  return 'capacities' in v;
}
