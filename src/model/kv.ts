import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import { GiB } from '../core/units.ts';
import type { GpuSpec, ModelSpec } from './types.ts';

/** KV heads each tensor-parallel shard holds; vLLM replicates KV heads when tp exceeds them. */
export function kvHeadsPerGpu(model: ModelSpec, tp: number): number {
  return Math.max(1, model.kvHeads / tp);
}

/** KV-cache bytes per token for the whole instance: K and V, every layer, every KV head. */
export function kvBytesPerToken(model: ModelSpec): number {
  return 2 * model.layers * model.kvHeads * model.headDim * model.dtypeBytes;
}

/** KV-cache bytes per token on one GPU of a `tp`-way instance (replicated heads counted). */
export function kvBytesPerTokenPerGpu(model: ModelSpec, tp: number): number {
  return 2 * model.layers * kvHeadsPerGpu(model, tp) * model.headDim * model.dtypeBytes;
}

/**
 * Weight bytes one GPU of a `tp`-way instance holds: attention and MLP split by tp (K and V
 * replicated when tp exceeds the KV heads), embeddings and LM head split by vocabulary.
 */
export function weightBytesPerGpu(model: ModelSpec, tp: number): number {
  const hidden = model.hiddenSize;
  const qDim = (model.heads * model.headDim) / tp;
  const kvDim = kvHeadsPerGpu(model, tp) * model.headDim;
  const ffn = model.ffnSize / tp;
  const attention = hidden * (qDim + 2 * kvDim) + qDim * hidden;
  const mlp = model.experts * (model.gatedMlp ? 3 : 2) * hidden * ffn;
  const router = model.experts > 1 ? hidden * model.experts : 0;
  const embeddings = ((model.tiedEmbeddings === true ? 1 : 2) * model.vocabSize * hidden) / tp;
  return (model.layers * (attention + mlp + router) + embeddings) * model.dtypeBytes;
}

/** The engine options that size vLLM's memory profiling run (vLLM's flags; defaults as the twin's). */
export interface KvSizingOptions {
  /** --max-num-seqs: the sampler's warm-up runs this many sequences (default 256). */
  readonly maxNumSeqs?: number;
  /** --max-num-batched-tokens: the profiling forward pass runs this many tokens (default 8192). */
  readonly maxNumBatchedTokens?: number;
}

const KV_SIZING_DEFAULTS = { maxNumSeqs: 256, maxNumBatchedTokens: 8192 } as const;

/**
 * Copies of the fp32 logits (max_num_seqs x vocab) alive at the peak of vLLM's sampler warm-up:
 * logits, probabilities, sorted values and indices for top-k/top-p, and temporaries. Fitted on
 * vLLM's own start-up logs on an H100 at the default max_num_seqs 1024 (llm-d-benchmark,
 * config_explorer/empirical-vllm-memory-results.md): peak activation 5.56 GiB for Qwen3-0.6B
 * (vocabulary 151,936), 4.76 GiB for Llama-3.1-8B (128,256), 7.38 GiB for gpt-oss-20b (201,088),
 * 9.4-9.7 copies each, whatever the model's size.
 */
const SAMPLER_LOGIT_COPIES = 9.6;
/** Memory outside PyTorch's allocator: CUDA context extras, NCCL and custom all-reduce buffers. */
const NON_TORCH_BYTES_TP1 = 0.13 * GiB;
const NON_TORCH_BYTES_TP = 0.55 * GiB;
/** The CUDA-graph pool vLLM counts against the budget: measured -0.45 to +1.03 GiB; we keep 0.25. */
const CUDA_GRAPH_BYTES = 0.25 * GiB;

/**
 * Peak activation memory of vLLM's profiling run, per GPU: the larger of the sampler warm-up
 * (fp32 logits for max_num_seqs sequences over the whole vocabulary, SAMPLER_LOGIT_COPIES times)
 * and the forward pass of max_num_batched_tokens tokens (the MLP's up-projection output and
 * activation plus four hidden-size buffers).
 */
export function peakActivationBytes(model: ModelSpec, tp: number, options: KvSizingOptions = {}): number {
  const maxSeqs = options.maxNumSeqs ?? KV_SIZING_DEFAULTS.maxNumSeqs;
  const tokens = options.maxNumBatchedTokens ?? KV_SIZING_DEFAULTS.maxNumBatchedTokens;
  const fp32Bytes = 4;
  const sampler = SAMPLER_LOGIT_COPIES * maxSeqs * model.vocabSize * fp32Bytes;
  const upWidth = ((model.gatedMlp ? 2 : 1) * model.ffnSize) / tp;
  const forward = tokens * (upWidth + model.ffnSize / tp + 4 * model.hiddenSize) * model.dtypeBytes;
  return Math.max(sampler, forward);
}

/**
 * Memory an engine keeps outside weights and KV cache, per GPU, the way vLLM counts it when it
 * sizes the KV cache: the peak activation of its profiling run, the memory PyTorch does not
 * allocate (NCCL and custom all-reduce buffers, larger with tensor parallelism) and the CUDA-graph
 * pool.
 */
export function activationReserveBytes(model: ModelSpec, tp: number, options: KvSizingOptions = {}): number {
  const nonTorch = tp > 1 ? NON_TORCH_BYTES_TP : NON_TORCH_BYTES_TP1;
  return peakActivationBytes(model, tp, options) + nonTorch + CUDA_GRAPH_BYTES;
}

/**
 * KV-cache bytes on each GPU, as vLLM computes them: gpu_memory_utilization x the GPU's memory,
 * minus the shard's weights, minus the reserve of `activationReserveBytes`. May be negative.
 */
export function kvCacheBytesPerGpu(
  gpu: GpuSpec,
  model: ModelSpec,
  tp: number,
  gpuMemoryUtilization: number,
  options: KvSizingOptions = {},
): number {
  return (
    gpu.hbmBytes * gpuMemoryUtilization -
    weightBytesPerGpu(model, tp) -
    activationReserveBytes(model, tp, options)
  );
}

/**
 * KV-cache blocks of `blockSize` tokens that fit on each GPU of a `tp`-way instance when the engine
 * may use `gpuMemoryUtilization` of the GPU: `kvCacheBytesPerGpu` divided by a block's bytes on
 * one shard. Pass the engine's max_num_seqs and max_num_batched_tokens in `options` (they size the
 * profiling run); the defaults are the twin's engine defaults. Throws SY_ERR_CAPACITY when not even one block fits.
 */
export function kvBlocksThatFit(
  gpu: GpuSpec,
  model: ModelSpec,
  tp: number,
  gpuMemoryUtilization: number,
  blockSize: number,
  options: KvSizingOptions = {},
): number {
  if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) {
    throw invalidArgument('gpuMemoryUtilization', gpuMemoryUtilization, 'a fraction in (0, 1]');
  }
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw invalidArgument('blockSize', blockSize, 'a positive integer');
  }
  if (!Number.isInteger(tp) || tp < 1) throw invalidArgument('tp', tp, 'a positive integer');
  const budgetBytes = gpu.hbmBytes * gpuMemoryUtilization;
  const weights = weightBytesPerGpu(model, tp);
  const reserve = activationReserveBytes(model, tp, options);
  const blockBytes = blockSize * kvBytesPerTokenPerGpu(model, tp);
  const blocks = Math.floor((budgetBytes - weights - reserve) / blockBytes);
  if (blocks < 1) {
    const gib = (x: number): string => (x / GiB).toFixed(1);
    throw new SwitchyardError(
      'SY_ERR_CAPACITY',
      `${model.id} does not fit on ${tp} x ${gpu.id} at gpu_memory_utilization ${gpuMemoryUtilization}: ` +
        `each GPU needs ${gib(weights)} GiB of weights and ${gib(reserve)} GiB of activations and ` +
        `buffers, and may use ${gib(budgetBytes)} GiB; use more GPUs (higher tp) or a larger GPU`,
      { param: 'tp', gpu: gpu.id, model: model.id, tp, weightBytesPerGpu: weights, budgetBytes },
    );
  }
  return blocks;
}
