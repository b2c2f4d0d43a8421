import { invalidArgument } from '../core/errors.ts';
import type { GpuId, ModelId } from '../core/ids.ts';
import { type CascadeAttentionShape, usesCascadeAttention } from './cascade.ts';
import { calibrationFor, DEFAULT_ENGINE_PROFILE, type EngineProfile, engineProfile } from './engines.ts';
import { gpuSpec } from './gpus.ts';
import { kvBytesPerToken, kvHeadsPerGpu } from './kv.ts';
import { modelSpec, modelWeightBytes } from './models.ts';
import { OperatorStepModel, operatorCoefficientsFor } from './operators/step.ts';
import type { GpuCalibration, GpuSpec, ModelSpec, PerfModel, StepShape } from './types.ts';

const US_PER_MS = 1000;
const MS_PER_S = 1000;

/** Options for a performance model. */
export interface PerfModelOptions {
  /** Engine profile (default `vllm`, the GPU catalogue's own factors). */
  readonly engine?: EngineProfile;
  /**
   * The engine's --max-num-seqs: vLLM captures CUDA graphs for batches up to
   * min(2 * maxNumSeqs, 512) tokens, and pads a batch to the next captured size (default 256).
   */
  readonly maxNumSeqs?: number;
}

/**
 * Rejects a tensor-parallel degree the engines cannot run: it must be a positive integer dividing
 * the attention heads, and either divide the KV heads or be a multiple of them (vLLM replicates KV
 * heads when tp exceeds them).
 */
export function validateTp(model: ModelSpec, tp: number): void {
  if (!Number.isInteger(tp) || tp < 1) throw invalidArgument('tp', tp, 'a positive integer');
  if (model.heads % tp !== 0) {
    throw invalidArgument('tp', tp, `a divisor of ${model.id}'s ${model.heads} attention heads`);
  }
  const kvSplits = tp <= model.kvHeads ? model.kvHeads % tp === 0 : tp % model.kvHeads === 0;
  if (!kvSplits) {
    throw invalidArgument('tp', tp, `a divisor or multiple of ${model.id}'s ${model.kvHeads} KV heads`);
  }
}

/**
 * Expected number of distinct experts a batch of `tokens` tokens touches when each picks
 * `expertsPerToken` of `experts` (uniform routing, independent tokens): E (1 - (1 - k/E)^T).
 */
export function expectedExpertsTouched(experts: number, expertsPerToken: number, tokens: number): number {
  if (experts <= 1) return 1;
  return experts * (1 - (1 - expertsPerToken / experts) ** tokens);
}

/**
 * The roofline performance model for one (GPU, model, tensor-parallel degree). Each operator costs
 * the larger of its compute time and its memory time on one TP shard; operators are summed per
 * layer, times layers, plus the LM head and fixed overheads. Everything that does not depend on
 * the step's shape is computed once here, so `stepTimeMs` is a few dozen flops and no allocation.
 *
 * On a GPU with a fitted operator table (H100, H200, A100) under today's vLLM, the step instead
 * comes from `operators` (src/model/operators/step.ts): per-kernel rooflines fitted to vLLM 0.14's
 * kernels, CUDA-graph padding, vLLM's custom all-reduce and async scheduling. The classic roofline
 * below serves the other GPUs and older engine profiles. Equations and calibration:
 * docs/engine-model.md.
 */
export class RooflinePerfModel implements PerfModel {
  readonly gpu: GpuSpec;
  readonly model: ModelSpec;
  readonly tp: number;
  /** The calibration in force (the GPU's, with the engine profile's replacements). */
  readonly calibration: GpuCalibration;

  // Effective rates, per millisecond so the hot path needs no unit conversion.
  private readonly gemmFlopsPerMs: number;
  private readonly attentionFlopsPerMs: number;
  private readonly memBytesPerMs: number;
  private readonly allReduceBytesPerMs: number;
  private readonly allReduceLargeBytesPerMs: number;
  private readonly allReduceLargeMessageBytes: number;

  // Per-GPU-shard sizes of one layer. "Act" is activation bytes read plus written per token.
  private readonly qkvWeightBytes: number;
  private readonly qkvActBytesPerToken: number;
  private readonly oWeightBytes: number;
  private readonly oActBytesPerToken: number;
  /** One expert's gate+up (or up) projection. */
  private readonly upWeightBytes: number;
  private readonly upActBytesPerToken: number;
  private readonly downWeightBytes: number;
  private readonly downActBytesPerToken: number;
  private readonly routerWeightBytes: number;
  /** Norms, rotary embedding, activation function, residual adds and the KV-cache write. */
  private readonly elementwiseBytesPerToken: number;
  private readonly attentionFlopsPerPair: number;
  private readonly kvBytesPerTokenPerLayer: number;
  private readonly lmHeadWeightBytes: number;
  private readonly lmHeadActBytesPerToken: number;

  /** GEMM flops per weight byte per token: 2 flops per multiply-add over dtypeBytes. */
  private readonly flopsPerWeightByte: number;
  private readonly experts: number;
  private readonly expertsPerToken: number;
  /** log(1 - k/E), for the expected number of distinct experts a batch touches. */
  private readonly logMissProbability: number;
  private readonly layers: number;
  private readonly hiddenBytesPerToken: number;
  /** Ring factor 2 (tp - 1) / tp; 0 without tensor parallelism. */
  private readonly ringFactor: number;
  private readonly allReduceFixedMs: number;
  private readonly kernelLatencyMs: number;
  private readonly attentionLatencyMs: number;
  private readonly prefillAttentionLatencyMs: number;
  private readonly layerOverheadMs: number;
  private readonly stepOverheadMs: number;
  private readonly seqOverheadMs: number;
  private readonly weightBytesTotal: number;
  private readonly kvBytesPerTokenTotal: number;

  /**
   * The operator model fitted to today's vLLM kernels, where the GPU has an operator table and the
   * engine profile runs today's vLLM; undefined: the classic roofline below (other GPUs, legacy).
   */
  readonly operators: OperatorStepModel | undefined;

  /** Scratch shape for the convenience methods, so they allocate nothing either. */
  private readonly scratch: StepShape = {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: 0,
    decodeContextTokens: 0,
    commonPrefixTokens: 0,
  };
  /** PerfModel.cascadeAttention: the engine profile has cascade attention and the model can run it. */
  readonly cascadeAttention: boolean;
  /** What the cascade rule needs (classic roofline); undefined when the engine has no cascade attention. */
  private readonly cascade: CascadeAttentionShape | undefined;

  constructor(gpu: GpuSpec, model: ModelSpec, tp: number, options: PerfModelOptions = {}) {
    validateTp(model, tp);
    this.gpu = gpu;
    this.model = model;
    this.tp = tp;
    const cal = calibrationFor(gpu, options.engine ?? engineProfile(DEFAULT_ENGINE_PROFILE));
    this.calibration = cal;

    this.gemmFlopsPerMs = (gpu.peakFlopsPerS * cal.gemmComputeEfficiency) / MS_PER_S;
    this.attentionFlopsPerMs = (gpu.peakFlopsPerS * cal.attentionComputeEfficiency) / MS_PER_S;
    this.memBytesPerMs = (gpu.hbmBandwidthBytesPerS * cal.memoryEfficiency) / MS_PER_S;
    this.allReduceBytesPerMs = (gpu.interconnectBytesPerS * cal.allReduceEfficiency) / MS_PER_S;
    this.allReduceLargeBytesPerMs =
      (gpu.interconnectBytesPerS * (cal.allReduceLargeEfficiency ?? cal.allReduceEfficiency)) / MS_PER_S;
    this.allReduceLargeMessageBytes = cal.allReduceLargeMessageBytes ?? Number.POSITIVE_INFINITY;

    const b = model.dtypeBytes;
    const hidden = model.hiddenSize;
    const qDim = (model.heads * model.headDim) / tp;
    const kvDim = kvHeadsPerGpu(model, tp) * model.headDim;
    const ffn = model.ffnSize / tp;
    const upWidth = (model.gatedMlp ? 2 : 1) * ffn;

    this.qkvWeightBytes = hidden * (qDim + 2 * kvDim) * b;
    this.qkvActBytesPerToken = (hidden + qDim + 2 * kvDim) * b;
    this.oWeightBytes = qDim * hidden * b;
    this.oActBytesPerToken = (qDim + hidden) * b;
    this.upWeightBytes = hidden * upWidth * b;
    this.upActBytesPerToken = (hidden + upWidth) * b;
    this.downWeightBytes = ffn * hidden * b;
    this.downActBytesPerToken = (ffn + hidden) * b;
    this.routerWeightBytes = model.experts > 1 ? hidden * model.experts * b : 0;
    // Two RMSNorms (read, write), two residual adds (two reads, one write), rotary embedding on Q
    // and K (read, write), the activation (reads upWidth, writes ffn) and the KV-cache write.
    // Norms and residuals are replicated on every shard; the rest is split.
    this.elementwiseBytesPerToken =
      (2 * 2 * hidden + 2 * 3 * hidden + 2 * (qDim + kvDim) + upWidth + ffn + 2 * kvDim) * b;
    // QK^T and PV: 2 flops per multiply-add, headDim each, per query-key pair and head.
    this.attentionFlopsPerPair = 4 * qDim;
    this.kvBytesPerTokenPerLayer = 2 * kvDim * b;
    this.lmHeadWeightBytes = (model.vocabSize / tp) * hidden * b;
    this.lmHeadActBytesPerToken = (hidden + model.vocabSize / tp) * b;

    this.flopsPerWeightByte = 2 / b;
    this.experts = model.experts;
    this.expertsPerToken = model.expertsPerToken;
    this.logMissProbability = model.experts > 1 ? Math.log(1 - model.expertsPerToken / model.experts) : 0;
    this.layers = model.layers;
    this.hiddenBytesPerToken = hidden * b;
    this.ringFactor = tp > 1 ? (2 * (tp - 1)) / tp : 0;
    this.allReduceFixedMs =
      tp > 1 ? (cal.allReduceLatencyUs + 2 * (tp - 1) * (cal.allReduceHopLatencyUs ?? 0)) / US_PER_MS : 0;
    this.kernelLatencyMs = (cal.kernelLatencyUs ?? 0) / US_PER_MS;
    this.attentionLatencyMs = (cal.attentionLatencyUs ?? cal.kernelLatencyUs ?? 0) / US_PER_MS;
    this.prefillAttentionLatencyMs =
      cal.prefillAttentionLatencyUs === undefined
        ? this.attentionLatencyMs
        : cal.prefillAttentionLatencyUs / US_PER_MS;
    this.layerOverheadMs = cal.layerOverheadUs / US_PER_MS;
    this.stepOverheadMs = cal.stepOverheadMs;
    this.seqOverheadMs = (cal.seqOverheadUs ?? 0) / US_PER_MS;
    this.weightBytesTotal = modelWeightBytes(model);
    this.kvBytesPerTokenTotal = kvBytesPerToken(model);
    const profile = options.engine ?? engineProfile(DEFAULT_ENGINE_PROFILE);
    const coefficients = profile.classicRoofline === true ? undefined : operatorCoefficientsFor(gpu);
    const cascade = profile.cascadeAttention === true;
    // usesCascadeAttention refuses ALiBi whatever the step: such a model never runs it.
    this.cascadeAttention = cascade && model.alibi !== true;
    this.cascade = cascade
      ? {
          headsPerGpu: model.heads / tp,
          kvHeadsPerGpu: kvHeadsPerGpu(model, tp),
          smCount: gpu.smCount,
          alibi: model.alibi === true,
        }
      : undefined;
    this.operators =
      coefficients === undefined
        ? undefined
        : new OperatorStepModel(gpu, model, tp, coefficients, cal, options.maxNumSeqs ?? 256, cascade);
  }

  /** One GEMM on one shard: the slower of its flops and its bytes, plus the kernel floor. */
  private gemmMs(flops: number, bytes: number): number {
    const computeMs = flops / this.gemmFlopsPerMs;
    const memoryMs = bytes / this.memBytesPerMs;
    return Math.max(computeMs, memoryMs) + this.kernelLatencyMs;
  }

  /**
   * The four projection GEMMs of one layer (QKV, O, MLP up and down) over `tokens` tokens, on one
   * shard. For MoE, the MLP reads the weights of the distinct experts the batch touches but computes
   * only each token's own experts.
   */
  layerGemmTimeMs(tokens: number): number {
    if (this.operators !== undefined) return this.operators.layerGemmMs(tokens);
    const f = this.flopsPerWeightByte * tokens;
    let ms =
      this.gemmMs(f * this.qkvWeightBytes, this.qkvWeightBytes + tokens * this.qkvActBytesPerToken) +
      this.gemmMs(f * this.oWeightBytes, this.oWeightBytes + tokens * this.oActBytesPerToken);
    if (this.experts === 1) {
      ms +=
        this.gemmMs(f * this.upWeightBytes, this.upWeightBytes + tokens * this.upActBytesPerToken) +
        this.gemmMs(f * this.downWeightBytes, this.downWeightBytes + tokens * this.downActBytesPerToken);
      return ms;
    }
    const routed = tokens * this.expertsPerToken;
    const fr = this.flopsPerWeightByte * routed;
    // Expected distinct experts when each of T tokens picks k of E: E (1 - (1 - k/E)^T).
    const touched = this.experts * (1 - Math.exp(tokens * this.logMissProbability));
    ms +=
      this.gemmMs(f * this.routerWeightBytes, this.routerWeightBytes + tokens * this.hiddenBytesPerToken) +
      this.gemmMs(fr * this.upWeightBytes, touched * this.upWeightBytes + routed * this.upActBytesPerToken) +
      this.gemmMs(
        fr * this.downWeightBytes,
        touched * this.downWeightBytes + routed * this.downActBytesPerToken,
      );
    return ms;
  }

  /** Prefill attention of one layer on one shard: compute-bound over the query-key pairs. */
  prefillAttentionTimeMs(pairs: number): number {
    if (this.operators !== undefined) return this.operators.prefillAttentionOfPairsMs(pairs);
    return (pairs * this.attentionFlopsPerPair) / this.attentionFlopsPerMs + this.prefillAttentionLatencyMs;
  }

  /** Decode attention of one layer on one shard: reading `contextTokens` tokens of KV. */
  decodeAttentionTimeMs(contextTokens: number): number {
    if (this.operators !== undefined) return this.operators.decodeAttentionMs(1, contextTokens);
    return this.classicDecodeAttentionMs(contextTokens, contextTokens);
  }

  /** Classic decode attention of one layer: `pairTokens` query-key pairs, `kvReadTokens` tokens of KV read. */
  private classicDecodeAttentionMs(pairTokens: number, kvReadTokens: number): number {
    const memoryMs = (kvReadTokens * this.kvBytesPerTokenPerLayer) / this.memBytesPerMs;
    const computeMs = (pairTokens * this.attentionFlopsPerPair) / this.attentionFlopsPerMs;
    return Math.max(memoryMs, computeMs) + this.attentionLatencyMs;
  }

  /**
   * The classic roofline's decode attention of one layer for the step, with vLLM's cascade attention
   * where its rule applies: the same query-key pairs, but the common prefix's KV read once instead
   * of once per decode sequence, and a second attention kernel's fixed time (the prefix kernel; the
   * merge is not charged).
   */
  private classicStepDecodeAttentionMs(shape: StepShape, seqs: number): number {
    const context = shape.decodeContextTokens;
    const prefix = shape.commonPrefixTokens;
    const cascade = this.cascade;
    if (
      prefix > 0 &&
      cascade !== undefined &&
      usesCascadeAttention(prefix, seqs, shape.prefillTokens === shape.prefillSeqs, cascade)
    ) {
      const kvRead = context - (shape.decodeSeqs - 1) * prefix;
      return this.classicDecodeAttentionMs(context, kvRead) + this.attentionLatencyMs;
    }
    return this.decodeAttentionTimeMs(context);
  }

  /**
   * One all-reduce of `bytes` across the TP group as the engine runs it; 0 at tp 1. Under the
   * operator model: vLLM's custom all-reduce, inside a CUDA graph when the batch is one vLLM
   * captures, else eager. Otherwise the NCCL ring of `ncclAllReduceTimeMs`.
   */
  allReduceTimeMs(bytes: number): number {
    if (this.operators !== undefined) return this.operators.allReduceOfBytesMs(bytes);
    return this.ncclAllReduceTimeMs(bytes);
  }

  /**
   * One NCCL all-reduce of `bytes`; 0 at tp 1. Alpha-beta ring model: a fixed latency, 2 (tp - 1)
   * hops, and 2 (tp - 1) / tp of the message through each GPU's link.
   */
  ncclAllReduceTimeMs(bytes: number): number {
    if (this.ringFactor === 0) return 0;
    const rate =
      bytes >= this.allReduceLargeMessageBytes ? this.allReduceLargeBytesPerMs : this.allReduceBytesPerMs;
    return this.allReduceFixedMs + (this.ringFactor * bytes) / rate;
  }

  stepTimeMs(shape: StepShape): number {
    if (this.operators !== undefined) return this.operators.stepTimeMs(shape);
    const tokens = shape.prefillTokens + shape.decodeSeqs;
    if (tokens <= 0) return 0;
    const seqs = shape.prefillSeqs + shape.decodeSeqs;
    const layerMs =
      this.layerGemmTimeMs(tokens) +
      (tokens * this.elementwiseBytesPerToken) / this.memBytesPerMs +
      (shape.prefillAttentionPairs > 0 ? this.prefillAttentionTimeMs(shape.prefillAttentionPairs) : 0) +
      (shape.decodeContextTokens > 0 ? this.classicStepDecodeAttentionMs(shape, seqs) : 0) +
      2 * this.allReduceTimeMs(tokens * this.hiddenBytesPerToken) +
      this.layerOverheadMs;
    // The LM head runs on the one sampled position per sequence.
    const lmHeadMs = this.gemmMs(
      this.flopsPerWeightByte * this.lmHeadWeightBytes * seqs,
      this.lmHeadWeightBytes + seqs * this.lmHeadActBytesPerToken,
    );
    return this.layers * layerMs + lmHeadMs + this.stepOverheadMs + seqs * this.seqOverheadMs;
  }

  prefillTimeMs(tokens: number, cachedTokens = 0): number {
    const s = this.scratch;
    s.prefillSeqs = 1;
    s.prefillTokens = tokens;
    s.prefillAttentionPairs = tokens * cachedTokens + (tokens * (tokens + 1)) / 2;
    s.decodeSeqs = 0;
    s.decodeContextTokens = 0;
    s.commonPrefixTokens = 0;
    return this.stepTimeMs(s);
  }

  decodeStepTimeMs(batch: number, meanContextTokens: number): number {
    const s = this.scratch;
    s.prefillSeqs = 0;
    s.prefillTokens = 0;
    s.prefillAttentionPairs = 0;
    s.decodeSeqs = batch;
    s.decodeContextTokens = batch * meanContextTokens;
    s.commonPrefixTokens = 0;
    return this.stepTimeMs(s);
  }

  kvBytesPerToken(): number {
    return this.kvBytesPerTokenTotal;
  }

  weightBytes(): number {
    return this.weightBytesTotal;
  }
}

/** The performance model of `model` on `tp` GPUs of class `gpu`. Throws SY_ERR_INVALID_ARGUMENT for a bad tp. */
export function createPerfModel(
  gpu: GpuSpec,
  model: ModelSpec,
  tp: number,
  options: PerfModelOptions = {},
): RooflinePerfModel {
  return new RooflinePerfModel(gpu, model, tp, options);
}

/**
 * The performance model by catalogue ids. Throws SY_ERR_UNKNOWN_NAME for an unknown GPU, model or
 * engine profile id, SY_ERR_INVALID_ARGUMENT for a tp the model cannot be split into.
 */
export function perfModelFor(
  gpuId: GpuId,
  modelId: ModelId,
  tp: number,
  engineId: string = DEFAULT_ENGINE_PROFILE,
  options: Omit<PerfModelOptions, 'engine'> = {},
): RooflinePerfModel {
  return createPerfModel(gpuSpec(gpuId), modelSpec(modelId), tp, {
    ...options,
    engine: engineProfile(engineId),
  });
}
