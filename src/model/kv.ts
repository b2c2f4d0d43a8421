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

/**
 * Memory an engine keeps outside weights and KV cache, per GPU. vLLM sizes the KV cache after a
 * profiling forward pass of `max_num_batched_tokens` tokens and counts everything else its process
 * holds against `gpu_memory_utilization`. We reserve:
 * - 1 GiB fixed: CUDA context, cuBLAS workspaces, NCCL buffers and CUDA-graph pools (each a few
 *   hundred MiB on current drivers);
 * - the peak activations of an 8192-token pass (vLLM V1's default token budget on large GPUs):
 *   the MLP's up-projection output and activation, plus four hidden-size buffers (residual, norm
 *   output, attention output, QKV);
 * - fp32 logits for 256 sequences (the default `max_num_seqs`), twice (logits and probabilities).
 */
export function activationReserveBytes(model: ModelSpec, tp: number): number {
  const profileTokens = 8192;
  const maxSeqs = 256;
  const fp32Bytes = 4;
  const upWidth = ((model.gatedMlp ? 2 : 1) * model.ffnSize) / tp;
  const activations =
    profileTokens * (upWidth + model.ffnSize / tp + 4 * model.hiddenSize) * model.dtypeBytes;
  const logits = 2 * maxSeqs * (model.vocabSize / tp) * fp32Bytes;
  return 1 * GiB + activations + logits;
}

/**
 * KV-cache blocks of `blockSize` tokens that fit on each GPU of a `tp`-way instance when the engine
 * may use `gpuMemoryUtilization` of the GPU: what is left after weights and the activation reserve,
 * divided by a block's bytes on one shard. Throws SY_ERR_CAPACITY when not even one block fits.
 */
export function kvBlocksThatFit(
  gpu: GpuSpec,
  model: ModelSpec,
  tp: number,
  gpuMemoryUtilization: number,
  blockSize: number,
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
  const reserve = activationReserveBytes(model, tp);
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
