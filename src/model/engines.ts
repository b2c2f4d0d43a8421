import { unknownName } from '../core/errors.ts';
import type { GpuId } from '../core/ids.ts';
import { GiB, MiB } from '../core/units.ts';
import type { GpuCalibration, GpuSpec } from './types.ts';

/**
 * An engine profile: how one generation of serving software departs from the GPU's default
 * calibration (which is for a current vLLM). Kernels, communication libraries and CPU overheads
 * change between engine releases far more than the GPUs do; a profile replaces only the factors
 * that changed and keeps the roofline itself.
 */
export interface EngineProfile {
  readonly id: string;
  readonly description: string;
  /** Factors replaced on the GPU classes this engine was measured on. */
  readonly byGpu: Readonly<Record<GpuId, Partial<GpuCalibration>>>;
  /** Factors replaced on every other GPU class. */
  readonly fallback: Partial<GpuCalibration>;
  /**
   * Predict with the classic per-layer roofline even where the GPU has a fitted operator table
   * (the tables describe vLLM 0.14's kernels, not this engine's).
   */
  readonly classicRoofline?: boolean;
  /**
   * The engine reads a KV prefix every sequence of a step shares once per step (vLLM V1's cascade
   * attention, FlashAttention backend, since early 2025), when its rule says so (src/model/cascade.ts).
   * Absent means false: older engines read it once per sequence.
   */
  readonly cascadeAttention?: boolean;
}

/** The default profile: the GPU catalogue's own factors (current vLLM). */
export const DEFAULT_ENGINE_PROFILE = 'vllm';

/*
 * legacy-2023 is fitted to Splitwise's Llama-2-70B and BLOOM-176B runs (docs/engine-model.md). The
 * fit reads as an engine without CUDA graphs (50-90 us of launches per layer, ~2.7 ms per step),
 * ~0.3 ms of CPU per sequence per step, a costly prefill attention set-up (0.1-0.2 ms per layer),
 * and an all-reduce that matches today's NCCL below 64 MiB but falls to a quarter of that speed at
 * 64 MiB and above. DistServe's vLLM-0.2-era formulas are evaluated under it as well.
 */
const PROFILE_LIST: readonly EngineProfile[] = [
  {
    id: 'vllm',
    description: 'current vLLM (V1 engine, CUDA graphs, FlashAttention): the GPU catalogue factors',
    cascadeAttention: true,
    byGpu: {},
    fallback: {},
  },
  {
    id: 'legacy-2023',
    description: '2023-era serving stack as measured by Splitwise (no CUDA graphs, NCCL ring all-reduce)',
    classicRoofline: true,
    byGpu: {
      'a100-80gb': {
        gemmComputeEfficiency: 0.74,
        attentionComputeEfficiency: 0.75,
        allReduceEfficiency: 0.3,
        allReduceLatencyUs: 0,
        allReduceHopLatencyUs: 9.1,
        allReduceLargeMessageBytes: 64 * MiB,
        allReduceLargeEfficiency: 0.062,
        prefillAttentionLatencyUs: 200,
        layerOverheadUs: 97,
        stepOverheadMs: 2.3,
        seqOverheadUs: 300,
      },
      h100: {
        gemmComputeEfficiency: 0.67,
        attentionComputeEfficiency: 0.28,
        allReduceEfficiency: 0.28,
        allReduceLatencyUs: 16,
        allReduceHopLatencyUs: 5.2,
        allReduceLargeMessageBytes: 64 * MiB,
        allReduceLargeEfficiency: 0.095,
        prefillAttentionLatencyUs: 120,
        layerOverheadUs: 56,
        stepOverheadMs: 2.7,
        seqOverheadUs: 255,
      },
    },
    // Unmeasured GPUs keep their own kernels' factors and take the engine's mean overheads.
    fallback: {
      allReduceLatencyUs: 8,
      allReduceHopLatencyUs: 7,
      prefillAttentionLatencyUs: 160,
      layerOverheadUs: 76,
      stepOverheadMs: 2.5,
      seqOverheadUs: 275,
    },
  },
];

/** Engine profiles by id. */
export const ENGINE_PROFILES: ReadonlyMap<string, EngineProfile> = new Map(
  PROFILE_LIST.map((p) => [p.id, p]),
);

/** Valid engine profile ids. */
export function engineProfileIds(): string[] {
  return [...ENGINE_PROFILES.keys()];
}

/** The engine profile with this id; throws SY_ERR_UNKNOWN_NAME listing the valid ids. */
export function engineProfile(id: string): EngineProfile {
  const profile = ENGINE_PROFILES.get(id);
  if (profile === undefined) throw unknownName('engine profile', id, engineProfileIds());
  return profile;
}

/** The GPU's calibration with the profile's replacements applied. */
export function calibrationFor(gpu: GpuSpec, profile: EngineProfile): GpuCalibration {
  const replaced = profile.byGpu[gpu.id] ?? profile.fallback;
  return { ...gpu.calibration, ...replaced };
}

/** Batch limits a `vllm serve` picks when the flags are not given. */
export interface VllmBatchDefaults {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
}

/** GPUs with at least this much memory (and not A100s) get vLLM's larger batch defaults. */
const VLLM_LARGE_DEFAULTS_MIN_BYTES = 70 * GiB;

/**
 * `vllm serve`'s defaults for --max-num-seqs and --max-num-batched-tokens on this GPU
 * (`EngineArgs.get_batch_defaults`, vllm/engine/arg_utils.py): GPUs of at least 70 GiB other than
 * the A100 (H100, H200) get 1024 sequences and 8192 tokens, every other GPU 256 and 2048 (larger
 * budgets cost the A100 throughput, vLLM PR #17885). The offline `LLM` class uses other values.
 */
export function vllmServeBatchDefaults(gpu: GpuSpec): VllmBatchDefaults {
  const large = gpu.hbmBytes >= VLLM_LARGE_DEFAULTS_MIN_BYTES && !gpu.id.startsWith('a100');
  return large
    ? { maxNumSeqs: 1024, maxNumBatchedTokens: 8192 }
    : { maxNumSeqs: 256, maxNumBatchedTokens: 2048 };
}
