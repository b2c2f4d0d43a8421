/**
 * Whether a model can serve at a tensor-parallel degree on a GPU: its weights and the engine's
 * reserve must fit the engine's share of the GPU with KV cache left for real work. One rule for
 * every place that picks or checks a TP (the serverless host's `fittingTp`, multi-model placement),
 * so a TP one of them accepts is never one the other refuses. Pure: catalogue figures only.
 *
 * Fitting the weights is not enough: Llama-3.1-70B at TP 2 on H100s fits them with KV for a few
 * hundred tokens once the engine's reserve is sized for the 1,024 sequences `vllm serve` runs there,
 * so nearly every request of a normal prompt is refused. A TP must leave KV for one step's token budget
 * (max_num_batched_tokens), or for one request of the model's whole context when that is shorter.
 */
import type { GpuId, ModelId } from '../core/ids.ts';
import { vllmServeBatchDefaults } from './engines.ts';
import { gpuSpec } from './gpus.ts';
import {
  activationReserveBytes,
  type KvSizingOptions,
  kvBytesPerTokenPerGpu,
  weightBytesPerGpu,
} from './kv.ts';
import { modelSpec } from './models.ts';

/** The share of a GPU's memory an engine uses when none is given (vLLM's default). */
export const GPU_MEMORY_UTILIZATION_DEFAULT = 0.9;

/** What sizes the check: the engines' batch limits where set, and their share of GPU memory. */
export interface TpFitOptions {
  /** Unset fields take `vllm serve`'s defaults on the GPU (`vllmServeBatchDefaults`). */
  readonly engine?: KvSizingOptions | undefined;
  /** Default GPU_MEMORY_UTILIZATION_DEFAULT. */
  readonly gpuMemoryUtilization?: number | undefined;
}

/** The figures behind one (model, GPU, TP) check, per GPU of the TP group. */
export interface TpFit {
  /** Whether the KV left holds `kvTokensNeeded` tokens. */
  readonly fits: boolean;
  /** One shard's weights plus the engine's activation and buffer reserve. */
  readonly needBytes: number;
  /** The engine's share of one GPU. */
  readonly budgetBytes: number;
  /** Tokens the KV cache left holds (0 when nothing is left). */
  readonly kvTokens: number;
  /** One step's tokens, or the model's context when shorter. */
  readonly kvTokensNeeded: number;
}

/** The (model, GPU, TP) check with its figures; see the module's comment for the rule. */
export function tpFit(base: ModelId, gpu: GpuId, tp: number, options: TpFitOptions = {}): TpFit {
  const spec = modelSpec(base);
  const g = gpuSpec(gpu);
  const defaults = vllmServeBatchDefaults(g);
  const limits = {
    maxNumSeqs: options.engine?.maxNumSeqs ?? defaults.maxNumSeqs,
    maxNumBatchedTokens: options.engine?.maxNumBatchedTokens ?? defaults.maxNumBatchedTokens,
  };
  // One step's tokens, or one request of the model's whole context when that is shorter (OPT: 2,048).
  const kvTokensNeeded = Math.min(limits.maxNumBatchedTokens, spec.contextTokensMax);
  const budgetBytes = g.hbmBytes * (options.gpuMemoryUtilization ?? GPU_MEMORY_UTILIZATION_DEFAULT);
  const needBytes = weightBytesPerGpu(spec, tp) + activationReserveBytes(spec, tp, limits);
  const kvTokens = Math.max(0, Math.floor((budgetBytes - needBytes) / kvBytesPerTokenPerGpu(spec, tp)));
  return { fits: kvTokens >= kvTokensNeeded, needBytes, budgetBytes, kvTokens, kvTokensNeeded };
}

/** The smallest power-of-two TP up to `maxTp` that `tpFit` accepts; undefined when none does. */
export function smallestFittingTp(
  base: ModelId,
  gpu: GpuId,
  maxTp: number,
  options: TpFitOptions = {},
): number | undefined {
  for (let tp = 1; tp <= maxTp; tp *= 2) if (tpFit(base, gpu, tp, options).fits) return tp;
  return undefined;
}
