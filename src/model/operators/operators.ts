/**
 * Operator time models of vLLM's kernels: one roofline per operator (compute time against memory
 * time on one GPU) with efficiency curves fitted per GPU to NVIDIA's AIConfigurator tables for
 * vLLM 0.14.0 (scripts/fit-operators.py; coefficients in coefficients.ts). The same formulas run
 * in the fit (Python) and here; the calibration report scores these functions on the held-out rows.
 * Times are milliseconds, sizes are elements or bytes as named. docs/engine-model.md has the why.
 */

/** Head size every measured attention row uses (and every catalogue model). */
export const ATTENTION_HEAD_DIM = 128;
/** bf16 / fp16. */
const ACT_BYTES = 2;
/** Decode attention runs a split-KV combine pass from this context length on. */
export const SPLIT_KV_TOKENS = 192;

/** The two limits of the roofline for a GPU, per millisecond. */
export interface Roofline {
  readonly flopsPerMs: number;
  readonly bytesPerMs: number;
}

/** A GEMM (m tokens x n outputs x k inputs): peak efficiency falling off for narrow n and k. */
export interface GemmCoefficients {
  /** Fraction of peak FLOP/s that a large GEMM reaches. */
  readonly computeEfficiency: number;
  /** Fraction of HBM bandwidth that a weight read reaches. */
  readonly memoryEfficiency: number;
  /** Fixed time per kernel (launch, pipeline fill, tail). */
  readonly latencyUs: number;
  /** n (output width) at which compute efficiency is halved: narrow GEMMs leave SMs idle. */
  readonly nHalf: number;
  /** k (reduction depth) at which compute efficiency is halved: short K loops never fill the pipeline. */
  readonly kHalf: number;
  /** p of the p-norm joining compute and memory time (large p: a sharp roofline corner). */
  readonly sharpness: number;
}

/** Prefill (context) attention, FlashAttention varlen. */
export interface ContextAttentionCoefficients {
  readonly computeEfficiency: number;
  /** Work (sequences x heads x tokens), in millions, at which efficiency is halved. */
  readonly workHalfM: number;
  readonly memoryEfficiency: number;
  readonly latencyUs: number;
  readonly sharpness: number;
}

/** Decode (generation) attention: reading each sequence's KV. */
export interface GenerationAttentionCoefficients {
  readonly memoryEfficiency: number;
  /** KV streams (sequences x KV heads) at which bandwidth is halved: one stream cannot fill HBM. */
  readonly streamsHalf: number;
  readonly latencyUs: number;
  /** Extra time of the split-KV combine pass, from SPLIT_KV_TOKENS of context. */
  readonly splitKvUs: number;
  /**
   * Cost per KV stream (block-table walk, per-CTA set-up), nanoseconds; it overlaps with the KV
   * read (a rounded max of the two, not their sum).
   */
  readonly streamNs: number;
  readonly computeEfficiency: number;
  readonly sharpness: number;
  /**
   * Extra fixed time of the packed grouped-query path the kernel takes for two or more sequences
   * with several KV heads each, each shared by several query heads (the A100 table shows ~6 us).
   */
  readonly gqaMultiSeqUs: number;
}

/** vLLM's fused MoE layer (gate-up and down GEMMs over the routed tokens, one kernel each). */
export interface MoeCoefficients {
  readonly computeEfficiency: number;
  /** Tokens per touched expert at which compute efficiency is halved. */
  readonly tokensPerExpertHalf: number;
  readonly memoryEfficiency: number;
  readonly latencyUs: number;
  readonly sharpness: number;
  /** Fixed cost per touched expert (one more GEMM tile set to launch). */
  readonly expertUs: number;
  /** Expert width per GPU at which both efficiencies are halved: narrow shards waste their tiles. */
  readonly interHalf: number;
}

/**
 * All-reduce as alpha-beta regimes by message size: `[fromBytes, latencyUs, bytesPerUs]`, in
 * increasing `fromBytes` (the first is 0). vLLM's custom all-reduce is one-shot for small messages,
 * two-shot for larger ones, and hands the largest to NCCL: each is a regime.
 */
export type AllReduceRegimes = readonly (readonly [number, number, number])[];

/** All-reduce per backend and tensor-parallel degree. */
export interface AllReduceCoefficients {
  /** Inside a CUDA graph (decode and small mixed batches). */
  readonly graph: Readonly<Record<number, AllReduceRegimes>>;
  /** Launched eagerly (batches larger than the largest captured graph). */
  readonly eager: Readonly<Record<number, AllReduceRegimes>>;
}

/** One measured expert shape's own efficiencies (vLLM ships tuned kernel configs for some). */
export interface MoeShapeCoefficients {
  readonly computeEfficiency: number;
  readonly memoryEfficiency: number;
  readonly latencyUs: number;
}

/** Every fitted operator of one GPU table. */
export interface OperatorCoefficients {
  readonly gemm: GemmCoefficients;
  readonly contextAttention: ContextAttentionCoefficients;
  readonly generationAttention: GenerationAttentionCoefficients;
  /** The MoE curve pooled over every measured shape: what an unmeasured shape gets. */
  readonly moe: MoeCoefficients;
  /** Measured shapes, keyed by `moeShapeKey`. */
  readonly moeShapes: Readonly<Record<string, MoeShapeCoefficients>>;
  readonly allReduce: AllReduceCoefficients;
}

/** The key of an expert shape: hidden x intermediate (whole expert) x top-k x experts / tp. */
export function moeShapeKey(
  hidden: number,
  inter: number,
  topK: number,
  experts: number,
  tp: number,
): string {
  return `${hidden}x${inter}x${topK}x${experts}/tp${tp}`;
}

/** The MoE coefficients for one shape: its own where it was measured, else the pooled curve. */
export function moeCoefficientsFor(
  c: OperatorCoefficients,
  hidden: number,
  inter: number,
  topK: number,
  experts: number,
  tp: number,
): MoeCoefficients {
  const own = c.moeShapes[moeShapeKey(hidden, inter, topK, experts, tp)];
  return own === undefined ? c.moe : { ...c.moe, ...own };
}

/** (a^p + b^p)^(1/p): the roofline's max, rounded at the corner where neither limit dominates. */
export function pNorm(a: number, b: number, p: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  // Factored so one of the terms is 1: exact for large p, and no overflow. The powers go through
  // exp and log rather than `**`: V8's pow costs about twice exp + log + log1p, and this function
  // is the twin's largest self-time on long-prompt traces (one call per distinct step shape).
  // The two forms differ by a few ulps (operators.test.ts bounds it at three): the twin's times move
  // in their last digits only, and every rounded output is the same.
  const ratio = a > b ? b / a : a / b;
  const scale = Math.exp(Math.log1p(Math.exp(p * Math.log(ratio))) / p);
  return a > b ? a * scale : b * scale;
}

/** One GEMM of m x n x k (bf16) on one GPU. */
export function gemmMs(c: GemmCoefficients, r: Roofline, m: number, n: number, k: number): number {
  const flops = 2 * m * n * k;
  const bytes = ACT_BYTES * (m * k + n * k + m * n);
  const efficiency = c.computeEfficiency * (n / (n + c.nHalf)) * (k / (k + c.kHalf));
  return (
    pNorm(flops / (r.flopsPerMs * efficiency), bytes / (r.bytesPerMs * c.memoryEfficiency), c.sharpness) +
    c.latencyUs / 1000
  );
}

/**
 * Prefill attention over `tokens` new tokens on `heads` query heads (one GPU's share) whose causal
 * query-key pairs are `pairs`: 4 * headDim flops a pair and head.
 */
export function contextAttentionMs(
  c: ContextAttentionCoefficients,
  r: Roofline,
  tokens: number,
  pairs: number,
  heads: number,
  kvHeads: number,
): number {
  const flops = 4 * heads * ATTENTION_HEAD_DIM * pairs;
  const bytes = tokens * (2 * heads + 2 * kvHeads) * ATTENTION_HEAD_DIM * ACT_BYTES;
  const work = heads * tokens;
  const efficiency = (c.computeEfficiency * work) / (work + c.workHalfM * 1e6);
  return (
    pNorm(flops / (r.flopsPerMs * efficiency), bytes / (r.bytesPerMs * c.memoryEfficiency), c.sharpness) +
    c.latencyUs / 1000
  );
}

/**
 * Cascade attention's prefix kernel on one GPU (src/model/cascade.ts): FlashAttention varlen with
 * all `queryTokens` of the step as one sequence against the `prefixTokens` shared keys, no causal
 * mask. No table measures it, so it is the context-attention roofline with that kernel's own work:
 * every query-prefix pair's flops, and the bytes of the queries, their partial outputs and the
 * prefix's K and V read once; the efficiency curve's work is heads x query tokens, as for a prefill
 * (the kernel launches one CTA per head and 128 query tokens, whatever the prefix length).
 */
export function prefixAttentionMs(
  c: ContextAttentionCoefficients,
  r: Roofline,
  queryTokens: number,
  prefixTokens: number,
  heads: number,
  kvHeads: number,
): number {
  const flops = 4 * heads * ATTENTION_HEAD_DIM * queryTokens * prefixTokens;
  const bytes = (2 * heads * queryTokens + 2 * kvHeads * prefixTokens) * ATTENTION_HEAD_DIM * ACT_BYTES;
  const work = heads * queryTokens;
  const efficiency = (c.computeEfficiency * work) / (work + c.workHalfM * 1e6);
  return (
    pNorm(flops / (r.flopsPerMs * efficiency), bytes / (r.bytesPerMs * c.memoryEfficiency), c.sharpness) +
    c.latencyUs / 1000
  );
}

/**
 * Bytes cascade attention's merge kernel moves per query token and query head: it reads the prefix
 * and suffix outputs (bf16) and their log-sum-exps (fp32), and writes the merged output.
 */
export const CASCADE_MERGE_BYTES_PER_TOKEN_HEAD = 3 * ATTENTION_HEAD_DIM * ACT_BYTES + 2 * 4;

/**
 * The part of decode attention proportional to KV read, per KV token, for `seqs` sequences: both
 * the flops and the bytes scale with the tokens, so their p-norm does too.
 */
export function generationAttentionMsPerToken(
  c: GenerationAttentionCoefficients,
  r: Roofline,
  seqs: number,
  heads: number,
  kvHeads: number,
): number {
  const bytes = 2 * kvHeads * ATTENTION_HEAD_DIM * ACT_BYTES;
  const flops = 4 * heads * ATTENTION_HEAD_DIM;
  const streams = seqs * kvHeads;
  const efficiency = (c.memoryEfficiency * streams) / (streams + c.streamsHalf);
  return pNorm(
    flops / (r.flopsPerMs * c.computeEfficiency),
    bytes / (r.bytesPerMs * efficiency),
    c.sharpness,
  );
}

/**
 * The per-stream cost of decode attention (block-table walk, per-CTA set-up) for `seqs` sequences.
 * It overlaps with the other streams' KV reads (`generationAttentionKvAndStreamsMs`), so it shows
 * only when the context is short.
 */
export function generationAttentionStreamsMs(
  c: GenerationAttentionCoefficients,
  seqs: number,
  kvHeads: number,
): number {
  return (seqs * kvHeads * c.streamNs) / 1e6;
}

/**
 * The KV read (`kvMs`, from the per-token cost) and the per-stream set-up (`streamsMs`) joined as a
 * rounded max: with many streams in flight a CTA's set-up runs while other CTAs read, so adding
 * the two (the first fit) charged the largest batches ~10% too much (docs/engine-model.md).
 */
export function generationAttentionKvAndStreamsMs(
  c: GenerationAttentionCoefficients,
  kvMs: number,
  streamsMs: number,
): number {
  return pNorm(kvMs, streamsMs, c.sharpness);
}

/** The fixed part of decode attention for `seqs` sequences with mean context `meanContextTokens`. */
export function generationAttentionFixedMs(
  c: GenerationAttentionCoefficients,
  seqs: number,
  heads: number,
  kvHeads: number,
  meanContextTokens: number,
): number {
  const split = meanContextTokens >= SPLIT_KV_TOKENS ? c.splitKvUs : 0;
  const gqa = seqs >= 2 && kvHeads >= 2 && heads > kvHeads ? c.gqaMultiSeqUs : 0;
  return (c.latencyUs + split + gqa) / 1000;
}

/** Decode attention of `seqs` sequences reading `contextTokens` KV tokens in all. */
export function generationAttentionMs(
  c: GenerationAttentionCoefficients,
  r: Roofline,
  seqs: number,
  contextTokens: number,
  heads: number,
  kvHeads: number,
): number {
  return (
    generationAttentionKvAndStreamsMs(
      c,
      contextTokens * generationAttentionMsPerToken(c, r, seqs, heads, kvHeads),
      generationAttentionStreamsMs(c, seqs, kvHeads),
    ) + generationAttentionFixedMs(c, seqs, heads, kvHeads, contextTokens / seqs)
  );
}

/**
 * One fused MoE layer on one GPU: `tokens` tokens, each routed to `topK` of the experts, of which
 * `touched` are distinct; each expert's gated MLP is `hidden x interPerGpu` (already split by tp).
 */
export function moeMs(
  c: MoeCoefficients,
  r: Roofline,
  tokens: number,
  hidden: number,
  interPerGpu: number,
  topK: number,
  touched: number,
): number {
  const routed = tokens * topK;
  const flops = routed * 2 * 3 * hidden * interPerGpu;
  const bytes =
    touched * 3 * hidden * interPerGpu * ACT_BYTES + routed * (2 * hidden + 3 * interPerGpu) * ACT_BYTES;
  const perExpert = routed / touched;
  const narrow = interPerGpu / (interPerGpu + c.interHalf);
  const efficiency = (c.computeEfficiency * narrow * perExpert) / (perExpert + c.tokensPerExpertHalf);
  const memory = c.memoryEfficiency * narrow;
  return (
    pNorm(flops / (r.flopsPerMs * efficiency), bytes / (r.bytesPerMs * memory), c.sharpness) +
    (c.latencyUs + touched * c.expertUs) / 1000
  );
}

/** The regimes for `tp` GPUs: the measured degree, else the next measured one above (else the largest). */
export function allReduceRegimesFor(
  table: Readonly<Record<number, AllReduceRegimes>>,
  tp: number,
): AllReduceRegimes | undefined {
  const degrees = Object.keys(table)
    .map(Number)
    .sort((a, b) => a - b);
  if (degrees.length === 0) return undefined;
  const degree = degrees.find((d) => d >= tp) ?? degrees[degrees.length - 1]!;
  return table[degree];
}

/** One all-reduce of `bytes` under the given regimes. */
export function allReduceMs(regimes: AllReduceRegimes, bytes: number): number {
  let regime = regimes[0]!;
  for (let i = 1; i < regimes.length; i++) {
    if (regimes[i]![0] <= bytes) regime = regimes[i]!;
    else break;
  }
  return (regime[1] + bytes / regime[2]) / 1000;
}
