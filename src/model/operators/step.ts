import { type CascadeAttentionShape, usesCascadeAttention } from '../cascade.ts';
import { kvHeadsPerGpu } from '../kv.ts';
import type { GpuCalibration, GpuSpec, ModelSpec, StepShape } from '../types.ts';
import { OPERATOR_COEFFICIENTS } from './coefficients.ts';
import {
  type AllReduceRegimes,
  allReduceMs,
  allReduceRegimesFor,
  CASCADE_MERGE_BYTES_PER_TOKEN_HEAD,
  contextAttentionMs,
  gemmMs,
  generationAttentionFixedMs,
  generationAttentionKvAndStreamsMs,
  generationAttentionMsPerToken,
  generationAttentionStreamsMs,
  type MoeCoefficients,
  moeCoefficientsFor,
  moeMs,
  type OperatorCoefficients,
  prefixAttentionMs,
  type Roofline,
} from './operators.ts';

const MS_PER_S = 1000;
/** vLLM never captures a CUDA graph above this many tokens (max_cudagraph_capture_size's cap). */
export const CUDA_GRAPH_TOKENS_CAP = 512;
/** Per-token and per-sequence costs are memoised up to this many tokens or sequences. */
const MEMO_MAX = 16_384;

/** The fitted operator coefficients for this GPU, or undefined when it has no table. */
export function operatorCoefficientsFor(gpu: GpuSpec): OperatorCoefficients | undefined {
  return gpu.operatorTable === undefined ? undefined : OPERATOR_COEFFICIENTS[gpu.operatorTable];
}

/**
 * vLLM's default CUDA-graph capture sizes for a --max-num-seqs: 1, 2, 4, then multiples of 8 up
 * to 256, then multiples of 16, up to min(2 * maxNumSeqs, 512) (vllm/config/vllm.py).
 */
export function cudaGraphCaptureSizes(maxNumSeqs: number): number[] {
  const largest = Math.min(2 * maxNumSeqs, CUDA_GRAPH_TOKENS_CAP);
  const sizes = [1, 2, 4];
  for (let s = 8; s < 256; s += 8) sizes.push(s);
  for (let s = 256; s <= largest; s += 16) sizes.push(s);
  return sizes.filter((s) => s <= largest);
}

/** One step's time by term, all layers (ms): see `OperatorStepModel.stepBreakdownMs`. */
export interface StepBreakdown {
  /** Tokens the GPU computes: padded to a CUDA-graph capture size, or the step's own when eager. */
  readonly paddedTokens: number;
  /** Whether the step replays a CUDA graph. */
  readonly graph: boolean;
  /** Projection GEMMs (or MoE) of every layer plus the LM head. */
  readonly gemmMs: number;
  readonly elementwiseMs: number;
  readonly allReduceMs: number;
  /** Prefill chunks' attention (their own part only, when the step runs cascade attention). */
  readonly prefillAttentionMs: number;
  /** Decode attention (each sequence's suffix only, when the step runs cascade attention). */
  readonly decodeAttentionMs: number;
  /** Cascade attention's prefix kernel and merge, all layers; 0 when the step does not use it. */
  readonly cascadeAttentionMs: number;
  /** The sum of the GPU terms above. */
  readonly gpuMs: number;
  /** CPU work of the step's sequences (hidden behind the GPU under async scheduling). */
  readonly cpuMs: number;
  /** What the step adds beyond the GPU: the serial gap, plus CPU time the GPU did not hide. */
  readonly overheadMs: number;
  readonly stepMs: number;
}

/**
 * One engine step of today's vLLM from fitted operators, for one (GPU, model, tp):
 *
 *   step = max(gpu, cpu) + stepOverhead
 *   gpu  = L * (GEMMs(T') + elementwise(T') + 2 all-reduce(T' x hidden) + attention) + LM head(S)
 *   cpu  = S * seqOverhead
 *
 * T is the step's tokens and S its sequences; T' is T padded up to the next CUDA-graph capture size
 * when T is at most the largest (decode batches and small mixed batches replay a graph), else T,
 * run eagerly. Inside a graph the all-reduce is vLLM's custom all-reduce as captured; outside, its
 * eager launch. With async scheduling (vLLM's default) the CPU prepares step n+1 while the GPU runs
 * step n, so CPU work per sequence only shows when it outlasts the GPU.
 *
 * Everything that depends only on T' or S is memoised in typed arrays on first use, so a step
 * in the twin costs a few lookups and one multiply-add for decode attention.
 *
 * Attention is split when vLLM would run the step as cascade attention (src/model/cascade.ts): the
 * prefix every sequence shares (StepShape.commonPrefixTokens, P) is read once per layer by one
 * kernel over all T query tokens, then each decode reads only its context beyond P, each prefill
 * chunk attends to its tokens beyond P, and a merge kernel joins the two partial results.
 */
export class OperatorStepModel {
  private readonly c: OperatorCoefficients;
  /** This model's expert shape, measured or pooled. */
  private readonly moe: MoeCoefficients;
  private readonly roofline: Roofline;
  private readonly memBytesPerMs: number;
  private readonly layers: number;
  private readonly hidden: number;
  private readonly qkvWidth: number;
  private readonly qWidth: number;
  private readonly ffnPerGpu: number;
  private readonly upWidth: number;
  private readonly headsPerGpu: number;
  private readonly kvHeadsPerGpu: number;
  private readonly vocabPerGpu: number;
  private readonly experts: number;
  private readonly expertsPerToken: number;
  private readonly logMissProbability: number;
  private readonly elementwiseBytesPerToken: number;
  private readonly hiddenBytesPerToken: number;
  private readonly graphRegimes: AllReduceRegimes | undefined;
  private readonly eagerRegimes: AllReduceRegimes | undefined;
  /** Padded size for each token count up to the largest capture size (index: tokens). */
  private readonly paddedTokens: Int32Array;
  readonly cudaGraphMaxTokens: number;
  private readonly stepOverheadMs: number;
  private readonly seqOverheadMs: number;
  /** What the cascade rule needs; undefined when the engine has no cascade attention. */
  private readonly cascade: CascadeAttentionShape | undefined;
  /** The merge kernel's bytes per query token (all heads on this GPU). */
  private readonly mergeBytesPerToken: number;
  // Memos (NaN: not yet computed).
  private readonly denseGraphMs: Float64Array;
  private readonly denseEagerMs: Float64Array;
  private readonly lmHeadMsBySeqs: Float64Array;
  private readonly decodeMsPerTokenBySeqs: Float64Array;

  constructor(
    gpu: GpuSpec,
    model: ModelSpec,
    tp: number,
    coefficients: OperatorCoefficients,
    calibration: GpuCalibration,
    maxNumSeqs: number,
    cascadeAttention = true,
  ) {
    this.c = coefficients;
    this.moe = moeCoefficientsFor(
      coefficients,
      model.hiddenSize,
      model.ffnSize,
      model.expertsPerToken,
      model.experts,
      tp,
    );
    this.roofline = {
      flopsPerMs: gpu.peakFlopsPerS / MS_PER_S,
      bytesPerMs: gpu.hbmBandwidthBytesPerS / MS_PER_S,
    };
    this.memBytesPerMs = (gpu.hbmBandwidthBytesPerS * coefficients.gemm.memoryEfficiency) / MS_PER_S;
    const b = model.dtypeBytes;
    this.layers = model.layers;
    this.hidden = model.hiddenSize;
    this.headsPerGpu = model.heads / tp;
    this.kvHeadsPerGpu = kvHeadsPerGpu(model, tp);
    this.qWidth = this.headsPerGpu * model.headDim;
    this.qkvWidth = this.qWidth + 2 * this.kvHeadsPerGpu * model.headDim;
    this.ffnPerGpu = model.ffnSize / tp;
    this.upWidth = (model.gatedMlp ? 2 : 1) * this.ffnPerGpu;
    this.vocabPerGpu = model.vocabSize / tp;
    this.experts = model.experts;
    this.expertsPerToken = model.expertsPerToken;
    this.logMissProbability = model.experts > 1 ? Math.log(1 - model.expertsPerToken / model.experts) : 0;
    const kvDim = this.kvHeadsPerGpu * model.headDim;
    // Two RMSNorms (read, write), two residual adds (two reads, one write), rotary embedding on Q
    // and K, the activation (reads upWidth, writes ffn) and the KV-cache write.
    this.elementwiseBytesPerToken =
      (2 * 2 * this.hidden +
        2 * 3 * this.hidden +
        2 * (this.qWidth + kvDim) +
        this.upWidth +
        this.ffnPerGpu +
        2 * kvDim) *
      b;
    this.hiddenBytesPerToken = this.hidden * b;
    this.graphRegimes = tp > 1 ? allReduceRegimesFor(coefficients.allReduce.graph, tp) : undefined;
    this.eagerRegimes = tp > 1 ? allReduceRegimesFor(coefficients.allReduce.eager, tp) : undefined;
    const sizes = cudaGraphCaptureSizes(maxNumSeqs);
    this.cudaGraphMaxTokens = sizes[sizes.length - 1]!;
    this.paddedTokens = new Int32Array(this.cudaGraphMaxTokens + 1);
    let next = 0;
    for (let t = 1; t <= this.cudaGraphMaxTokens; t++) {
      while (sizes[next]! < t) next++;
      this.paddedTokens[t] = sizes[next]!;
    }
    this.stepOverheadMs = calibration.stepOverheadMs;
    this.seqOverheadMs = (calibration.seqOverheadUs ?? 0) / 1000;
    this.cascade = cascadeAttention
      ? {
          headsPerGpu: this.headsPerGpu,
          kvHeadsPerGpu: this.kvHeadsPerGpu,
          smCount: gpu.smCount,
          alibi: model.alibi === true,
        }
      : undefined;
    this.mergeBytesPerToken = this.headsPerGpu * CASCADE_MERGE_BYTES_PER_TOKEN_HEAD;
    this.denseGraphMs = new Float64Array(this.cudaGraphMaxTokens + 1).fill(Number.NaN);
    this.denseEagerMs = new Float64Array(MEMO_MAX + 1).fill(Number.NaN);
    this.lmHeadMsBySeqs = new Float64Array(MEMO_MAX + 1).fill(Number.NaN);
    this.decodeMsPerTokenBySeqs = new Float64Array(MEMO_MAX + 1).fill(Number.NaN);
  }

  /** The four projection GEMMs of one layer (or attention's two plus the MoE layer) over `tokens`. */
  layerGemmMs(tokens: number): number {
    const g = this.c.gemm;
    const r = this.roofline;
    const h = this.hidden;
    let ms = gemmMs(g, r, tokens, this.qkvWidth, h) + gemmMs(g, r, tokens, h, this.qWidth);
    if (this.experts === 1) {
      return ms + gemmMs(g, r, tokens, this.upWidth, h) + gemmMs(g, r, tokens, h, this.ffnPerGpu);
    }
    // Uniform routing: T tokens each picking k of E experts touch E (1 - (1 - k/E)^T) of them.
    const touched = Math.max(
      this.expertsPerToken,
      this.experts * (1 - Math.exp(tokens * this.logMissProbability)),
    );
    ms += gemmMs(g, r, tokens, this.experts, h);
    return ms + moeMs(this.moe, r, tokens, h, this.ffnPerGpu, this.expertsPerToken, touched);
  }

  /** One all-reduce of a `tokens`-token activation: in a graph or eager, as the batch runs. */
  private allReduceOfTokensMs(tokens: number, graph: boolean): number {
    const regimes = graph ? this.graphRegimes : this.eagerRegimes;
    return regimes === undefined ? 0 : allReduceMs(regimes, tokens * this.hiddenBytesPerToken);
  }

  /** One all-reduce of `bytes` (graph regime when that many tokens would run in a graph). */
  allReduceOfBytesMs(bytes: number): number {
    const tokens = bytes / this.hiddenBytesPerToken;
    return this.allReduceOfTokensMs(tokens, tokens <= this.cudaGraphMaxTokens);
  }

  /** Everything per layer that depends only on the (padded) token count, times the layers. */
  private denseMs(tokens: number, graph: boolean): number {
    const memo = graph ? this.denseGraphMs : this.denseEagerMs;
    // Memo slots are whole counts; policies also price fractional (mean) ones, computed directly.
    const memoised = tokens < memo.length && Number.isInteger(tokens);
    if (memoised) {
      const cached = memo[tokens]!;
      if (!Number.isNaN(cached)) return cached;
    }
    const layer =
      this.layerGemmMs(tokens) +
      (tokens * this.elementwiseBytesPerToken) / this.memBytesPerMs +
      2 * this.allReduceOfTokensMs(tokens, graph);
    const ms = this.layers * layer;
    if (memoised) memo[tokens] = ms;
    return ms;
  }

  /** The LM head over the sampled positions (one per sequence). */
  private lmHeadMs(seqs: number): number {
    const memo = this.lmHeadMsBySeqs;
    const memoised = seqs < memo.length && Number.isInteger(seqs);
    if (memoised) {
      const cached = memo[seqs]!;
      if (!Number.isNaN(cached)) return cached;
    }
    const ms = gemmMs(this.c.gemm, this.roofline, seqs, this.vocabPerGpu, this.hidden);
    if (memoised) memo[seqs] = ms;
    return ms;
  }

  /** Prefill attention of one layer for chunks of `tokens` tokens with `pairs` query-key pairs. */
  prefillAttentionMs(tokens: number, pairs: number): number {
    return contextAttentionMs(
      this.c.contextAttention,
      this.roofline,
      tokens,
      pairs,
      this.headsPerGpu,
      this.kvHeadsPerGpu,
    );
  }

  /** Prefill attention of one layer for one fresh prompt with `pairs` causal pairs. */
  prefillAttentionOfPairsMs(pairs: number): number {
    // A fresh prompt of s tokens has s (s + 1) / 2 pairs.
    const tokens = Math.max(1, Math.round((Math.sqrt(8 * pairs + 1) - 1) / 2));
    return this.prefillAttentionMs(tokens, pairs);
  }

  /** Decode attention of one layer: `seqs` sequences reading `contextTokens` KV tokens in all. */
  decodeAttentionMs(seqs: number, contextTokens: number): number {
    const memo = this.decodeMsPerTokenBySeqs;
    const memoised = seqs < memo.length && Number.isInteger(seqs);
    let perToken = memoised ? memo[seqs]! : Number.NaN;
    if (Number.isNaN(perToken)) {
      perToken = generationAttentionMsPerToken(
        this.c.generationAttention,
        this.roofline,
        seqs,
        this.headsPerGpu,
        this.kvHeadsPerGpu,
      );
      if (memoised) memo[seqs] = perToken;
    }
    const c = this.c.generationAttention;
    return (
      generationAttentionKvAndStreamsMs(
        c,
        contextTokens * perToken,
        generationAttentionStreamsMs(c, seqs, this.kvHeadsPerGpu),
      ) + generationAttentionFixedMs(c, seqs, this.headsPerGpu, this.kvHeadsPerGpu, contextTokens / seqs)
    );
  }

  /** Tokens the GPU computes for a `tokens`-token batch: padded to a capture size, or as is. */
  paddedTokensOf(tokens: number): number {
    // Policies price mean requests (fractional tokens): a fraction pads up like the next whole token.
    return tokens <= this.cudaGraphMaxTokens ? this.paddedTokens[Math.ceil(tokens)]! : tokens;
  }

  /** GPU time of one step. */
  gpuStepMs(shape: StepShape): number {
    const tokens = shape.prefillTokens + shape.decodeSeqs;
    const seqs = shape.prefillSeqs + shape.decodeSeqs;
    const graph = tokens <= this.cudaGraphMaxTokens;
    const computed = graph ? this.paddedTokens[Math.ceil(tokens)]! : tokens;
    let attention = 0;
    let prefillPairs = shape.prefillAttentionPairs;
    let decodeContext = shape.decodeContextTokens;
    const prefix = shape.commonPrefixTokens;
    // The common case (no shared prefix) is one comparison.
    if (prefix > 0 && this.usesCascade(shape, seqs)) {
      prefillPairs -= shape.prefillTokens * prefix;
      decodeContext -= shape.decodeSeqs * prefix;
      attention += this.cascadePrefixMs(tokens, prefix);
    }
    if (shape.prefillTokens > 0) attention += this.prefillAttentionMs(shape.prefillTokens, prefillPairs);
    if (shape.decodeSeqs > 0) attention += this.decodeAttentionMs(shape.decodeSeqs, decodeContext);
    return this.denseMs(computed, graph) + this.layers * attention + this.lmHeadMs(seqs);
  }

  /** Whether vLLM runs this step (of `seqs` sequences) as cascade attention over its common prefix. */
  usesCascade(shape: StepShape, seqs: number): boolean {
    const cascade = this.cascade;
    // A chunk of one token has query length 1 too: every query length is 1 iff tokens == sequences.
    const queryLensAllOne = shape.prefillTokens === shape.prefillSeqs;
    return (
      cascade !== undefined && usesCascadeAttention(shape.commonPrefixTokens, seqs, queryLensAllOne, cascade)
    );
  }

  /** Cascade attention's prefix kernel plus its merge, one layer: `tokens` queries, `prefix` shared keys. */
  cascadePrefixMs(tokens: number, prefix: number): number {
    const kernelMs = prefixAttentionMs(
      this.c.contextAttention,
      this.roofline,
      tokens,
      prefix,
      this.headsPerGpu,
      this.kvHeadsPerGpu,
    );
    // The merge is elementwise over the queries: its bytes at the elementwise rate, plus a small
    // kernel's fixed time (the GEMM fit's floor).
    const mergeMs = (tokens * this.mergeBytesPerToken) / this.memBytesPerMs + this.c.gemm.latencyUs / 1000;
    return kernelMs + mergeMs;
  }

  /**
   * One step's time split by term (ms, whole step, all layers): what `stepTimeMs` adds up, for
   * analysis (docs/engine-model.md, Saturation). Not memoised; `stepTimeMs` stays the fast path.
   */
  stepBreakdownMs(shape: StepShape): StepBreakdown {
    const tokens = shape.prefillTokens + shape.decodeSeqs;
    const seqs = shape.prefillSeqs + shape.decodeSeqs;
    const graph = tokens <= this.cudaGraphMaxTokens;
    const computed = graph ? this.paddedTokens[Math.ceil(tokens)]! : tokens;
    const L = this.layers;
    const gemmMsTotal = L * this.layerGemmMs(computed) + this.lmHeadMs(seqs);
    const elementwiseMs = (L * computed * this.elementwiseBytesPerToken) / this.memBytesPerMs;
    const allReduceMsTotal = L * 2 * this.allReduceOfTokensMs(computed, graph);
    const prefix = shape.commonPrefixTokens;
    const cascade = prefix > 0 && this.usesCascade(shape, seqs);
    const prefillPairs = shape.prefillAttentionPairs - (cascade ? shape.prefillTokens * prefix : 0);
    const decodeContext = shape.decodeContextTokens - (cascade ? shape.decodeSeqs * prefix : 0);
    const cascadeAttentionMs = cascade ? L * this.cascadePrefixMs(tokens, prefix) : 0;
    const prefillAttentionMsTotal =
      shape.prefillTokens > 0 ? L * this.prefillAttentionMs(shape.prefillTokens, prefillPairs) : 0;
    const decodeAttentionMsTotal =
      shape.decodeSeqs > 0 ? L * this.decodeAttentionMs(shape.decodeSeqs, decodeContext) : 0;
    const gpuMs =
      gemmMsTotal +
      elementwiseMs +
      allReduceMsTotal +
      prefillAttentionMsTotal +
      decodeAttentionMsTotal +
      cascadeAttentionMs;
    const cpuMs = seqs * this.seqOverheadMs;
    return {
      paddedTokens: computed,
      graph,
      gemmMs: gemmMsTotal,
      elementwiseMs,
      allReduceMs: allReduceMsTotal,
      prefillAttentionMs: prefillAttentionMsTotal,
      decodeAttentionMs: decodeAttentionMsTotal,
      cascadeAttentionMs,
      gpuMs,
      cpuMs,
      overheadMs: this.stepOverheadMs + Math.max(0, cpuMs - gpuMs),
      stepMs: tokens > 0 ? Math.max(gpuMs, cpuMs) + this.stepOverheadMs : 0,
    };
  }

  /** Duration of one engine step (0 for an empty one). */
  stepTimeMs(shape: StepShape): number {
    const tokens = shape.prefillTokens + shape.decodeSeqs;
    if (tokens <= 0) return 0;
    const gpu = this.gpuStepMs(shape);
    const cpu = (shape.prefillSeqs + shape.decodeSeqs) * this.seqOverheadMs;
    return (gpu > cpu ? gpu : cpu) + this.stepOverheadMs;
  }
}
