/**
 * vLLM's cascade attention: when every sequence of a step shares a long KV prefix (a system prompt,
 * say), the FlashAttention backend reads that prefix once per layer with one non-causal kernel over
 * all the step's query tokens, runs each sequence's own suffix attention as usual, and merges the
 * two partial results (`cascade_attention` in vllm/v1/attention/backends/flash_attn.py). Whether a
 * step uses it is the rule below, `use_cascade_attention` in the same file; the prefix it is given is
 * the engine core's `StepShape.commonPrefixTokens` (docs/engine-model.md, "Cascade attention").
 * Facts from vLLM's source; the code is ours.
 */

/** Shorter common prefixes never use cascade attention (vLLM's threshold, "arbitrary", untuned). */
export const CASCADE_PREFIX_TOKENS_MIN = 256;
/** Steps with fewer requests never use cascade attention (vLLM's threshold). */
export const CASCADE_REQUESTS_MIN = 8;
/** Query and KV tile sizes of vLLM's wave-count comparison (FlashAttention's default tiles). */
const TILE_TOKENS = 128;

/** The attention shape on one GPU of the tensor-parallel group, and the GPU's SM count. */
export interface CascadeAttentionShape {
  /** Query heads per GPU (heads / tp). */
  readonly headsPerGpu: number;
  /** KV heads per GPU (replicated when tp exceeds the model's KV heads). */
  readonly kvHeadsPerGpu: number;
  readonly smCount: number;
  /** ALiBi position biases: cascade attention refuses them. */
  readonly alibi: boolean;
}

/**
 * Whether vLLM would run a step as cascade attention: a common prefix of at least 256 tokens, at
 * least 8 requests, no ALiBi (catalogue models have no sliding window), and then
 * - always, when the plain kernel would not be FlashDecoding: the model is MHA (one query head per
 *   KV head) or some request has more than one query token (a prefill chunk);
 * - for a decode-only GQA batch, only when a rough count of kernel waves says so: the prefix kernel
 *   launches `heads * ceil(requests / 128)` CTAs, each walking ceil(P / 128) KV tiles, against
 *   FlashDecoding's `requests * kvHeads * ceil(heads / kvHeads / 128)` CTAs per KV tile; cascade
 *   when its waves times tiles is strictly below FlashDecoding's waves.
 *
 * @param prefixTokens the step's common prefix (StepShape.commonPrefixTokens).
 * @param requests sequences in the step.
 * @param queryLensAllOne every sequence computes one token this step (decodes, one-token chunks).
 */
export function usesCascadeAttention(
  prefixTokens: number,
  requests: number,
  queryLensAllOne: boolean,
  shape: CascadeAttentionShape,
): boolean {
  if (prefixTokens < CASCADE_PREFIX_TOKENS_MIN || requests < CASCADE_REQUESTS_MIN || shape.alibi) {
    return false;
  }
  const queriesPerKv = Math.floor(shape.headsPerGpu / shape.kvHeadsPerGpu);
  if (queriesPerKv <= 1 || !queryLensAllOne) return true;
  const prefixTiles = Math.ceil(prefixTokens / TILE_TOKENS);
  const cascadeCtas = shape.headsPerGpu * Math.ceil(requests / TILE_TOKENS);
  const cascadeTime = Math.ceil(cascadeCtas / shape.smCount) * prefixTiles;
  const flashDecodingCtas =
    requests * shape.kvHeadsPerGpu * Math.ceil(queriesPerKv / TILE_TOKENS) * prefixTiles;
  const flashDecodingTime = Math.ceil(flashDecodingCtas / shape.smCount);
  return cascadeTime < flashDecodingTime;
}
