/**
 * Profiling, Mélange's first step, done analytically on the twin's performance model instead of on
 * real GPUs: for one (GPU, TP) variant and one request-size bucket, the highest request rate one
 * instance sustains while a request's TTFT and TPOT stay within the objectives. The model is the
 * control layer's one capacity model (`chunkedCapacity` in ../capacity.ts, the aggregated replica
 * under chunked prefill); README.md gives the derivation. In short, an instance in steady state
 * under continuous batching with chunked prefill runs steps that each carry `B` decodes and the
 * prefill work of the B / O requests that arrive per step, so its rate is B / (O * step time) and
 * its TPOT is the step time; the largest B that keeps TPOT, TTFT (the prompt's chunked prefill plus
 * an M/D/1 wait) and the engine's caps (KV cache, --max-num-seqs, --max-num-batched-tokens) sets
 * the rate.
 */
import { SwitchyardError } from '../../core/errors.ts';
import type { GpuId, ModelId } from '../../core/ids.ts';
import { modelSpec, validateTp } from '../../model/index.ts';
import {
  type CapacityLimit,
  chunkedCapacity,
  type EngineLimits,
  type EngineOptions,
  engineLimits,
} from '../capacity.ts';
import type { LengthBucket } from './workload.ts';

export { type CapacityLimit, SATURATION_SHARE_MAX } from '../capacity.ts';

/** Tensor-parallel degrees tried: one node of up to 8 GPUs, as the price table's instances hold. */
export const TP_DEGREES: readonly number[] = [1, 2, 4, 8];
/** vLLM's default --gpu-memory-utilization. */
export const GPU_MEMORY_UTILIZATION_DEFAULT = 0.9;

/** Latency objectives a plan must meet; a missing one does not constrain. */
export interface PlanObjectives {
  readonly ttftMs?: number;
  readonly tpotMs?: number;
}

/** Engine settings the profile assumes (vLLM's serve defaults for the GPU unless given). */
export type ProfileOptions = Pick<
  EngineOptions,
  'engine' | 'gpuMemoryUtilization' | 'maxNumSeqs' | 'maxNumBatchedTokens'
>;

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

/** The engine's limits for (GPU, model, TP), or why the model does not fit (a TP that does not split it, no room for a KV cache). */
function limitsOrReason(
  gpuId: GpuId,
  modelId: ModelId,
  tp: number,
  options: ProfileOptions,
): EngineLimits | string {
  const model = modelSpec(modelId);
  try {
    validateTp(model, tp);
  } catch (error) {
    return (error as Error).message;
  }
  try {
    return engineLimits(gpuId, modelId, tp, {
      ...options,
      gpuMemoryUtilization: options.gpuMemoryUtilization ?? GPU_MEMORY_UTILIZATION_DEFAULT,
    });
  } catch (error) {
    if (error instanceof SwitchyardError && error.code === 'SY_ERR_CAPACITY') return error.message;
    throw error;
  }
}

function bucketCapacity(
  limits: EngineLimits,
  bucket: LengthBucket,
  objectives: PlanObjectives,
): BucketCapacity {
  const c = chunkedCapacity(limits, objectives, bucket.inputTokens, bucket.generatedTokens);
  return {
    bucket: bucket.label,
    maxRateRps: c.requestsPerS,
    decodeBatch: c.decodeBatch,
    tpotMs: c.tpotMs,
    ttftMs: c.ttftMs,
    limitedBy: c.limitedBy,
  };
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
  const limits = limitsOrReason(gpuId, modelId, tp, options);
  if (typeof limits === 'string') return { gpu: gpuId, tp, reason: limits };
  const capacities = buckets.map((bucket) => bucketCapacity(limits, bucket, objectives));
  return { gpu: gpuId, tp, kvCacheTokens: limits.kvCacheTokens, capacities };
}

/** Whether a profile result is a usable variant. */
export function isProfiled(v: VariantProfile | SkippedVariant): v is VariantProfile {
  return 'capacities' in v;
}
