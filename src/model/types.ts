import type { GpuId, ModelId } from '../core/ids.ts';

/** One GPU class. Peak numbers are the vendor's dense figures; efficiencies come from calibration. */
export interface GpuSpec {
  readonly id: GpuId;
  readonly name: string;
  /** Peak dense BF16/FP16 tensor throughput. */
  readonly peakFlopsPerS: number;
  readonly hbmBandwidthBytesPerS: number;
  readonly hbmBytes: number;
  /** Per-GPU bandwidth to peers in the same node (NVLink, or PCIe where there is none). */
  readonly interconnectBytesPerS: number;
  /**
   * Streaming multiprocessors: vLLM's cascade-attention heuristic counts kernel waves over them
   * (`usesCascadeAttention`, src/model/cascade.ts).
   */
  readonly smCount: number;
  /** Calibrated efficiency factors (see docs/engine-model.md). */
  readonly calibration: GpuCalibration;
  /**
   * The AIConfigurator operator table this GPU's kernels were fitted on (src/model/operators/);
   * absent: the classic roofline with `calibration` alone.
   */
  readonly operatorTable?: 'h100' | 'h200' | 'a100';
}

/** The handful of efficiency factors fitted per GPU class. */
export interface GpuCalibration {
  /** Fraction of peak FLOP/s that large GEMMs reach. */
  readonly gemmComputeEfficiency: number;
  /** Fraction of HBM bandwidth that weight and KV reads reach. */
  readonly memoryEfficiency: number;
  /** Fraction of peak FLOP/s that attention kernels reach. */
  readonly attentionComputeEfficiency: number;
  /** Fraction of interconnect bandwidth that all-reduce reaches. */
  readonly allReduceEfficiency: number;
  /** Fixed latency per all-reduce call, microseconds. */
  readonly allReduceLatencyUs: number;
  /** Fixed cost per layer per step (kernel launches, norms), microseconds. */
  readonly layerOverheadUs: number;
  /** Fixed cost per engine step (scheduling, sampling, CPU work), milliseconds. */
  readonly stepOverheadMs: number;
  /**
   * Fixed time per GEMM kernel, microseconds: the floor a tiny kernel never gets under
   * (launch, pipeline fill, tail). Absent means 0.
   */
  readonly kernelLatencyUs?: number;
  /** Fixed time per attention kernel, microseconds. Absent means `kernelLatencyUs`. */
  readonly attentionLatencyUs?: number;
  /**
   * Fixed time per prefill attention call (per layer), microseconds, where it differs from decode
   * attention (older engines set up a separate variable-length kernel). Absent means
   * `attentionLatencyUs`.
   */
  readonly prefillAttentionLatencyUs?: number;
  /**
   * Extra all-reduce latency per ring hop, microseconds; a ring all-reduce takes 2 * (tp - 1) hops.
   * Absent means 0 (one-shot all-reduce whose latency does not grow with tp).
   */
  readonly allReduceHopLatencyUs?: number;
  /**
   * All-reduce messages of at least this many bytes run at `allReduceLargeEfficiency` instead
   * (implementations switch algorithm or fall off a registered buffer above a size). Absent: one regime.
   */
  readonly allReduceLargeMessageBytes?: number;
  /** Fraction of interconnect bandwidth reached by messages of `allReduceLargeMessageBytes` or more. */
  readonly allReduceLargeEfficiency?: number;
  /** CPU cost per sequence in a step (scheduling, sampling, detokenising), microseconds. Absent means 0. */
  readonly seqOverheadUs?: number;
}

/** One model architecture: a data entry, not code. */
export interface ModelSpec {
  readonly id: ModelId;
  /** The name the model goes by upstream (for docs and the live gateway). */
  readonly hfName: string;
  readonly layers: number;
  readonly hiddenSize: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** FFN intermediate size (per expert for MoE). */
  readonly ffnSize: number;
  readonly vocabSize: number;
  /** 1 for dense models. */
  readonly experts: number;
  /** Experts each token is routed to (1 for dense). */
  readonly expertsPerToken: number;
  /** Gated MLP (SwiGLU: gate, up and down projections) or plain (up and down). */
  readonly gatedMlp: boolean;
  /** Bytes per weight and per KV element (2 for bf16/fp16). */
  readonly dtypeBytes: number;
  /** Longest sequence (prompt + output tokens) the model takes: vLLM's default max_model_len. */
  readonly contextTokensMax: number;
  /** The LM head shares the input embedding's weights (OPT, BLOOM). Absent means untied. */
  readonly tiedEmbeddings?: boolean;
  /** Positions enter attention as ALiBi biases (BLOOM); cascade attention cannot run them. Absent means false. */
  readonly alibi?: boolean;
}

/**
 * The work in one engine step, in aggregate so the hot path allocates nothing. A step mixes prefill
 * chunks (some tokens of a prompt, after tokens already in cache) and decodes (one token each).
 */
export interface StepShape {
  /** Prefill chunks in the step. */
  prefillSeqs: number;
  /** New prompt tokens computed this step, over all chunks. */
  prefillTokens: number;
  /**
   * Attention work of the prefill chunks, in query-key pairs: for a chunk of c tokens after k tokens
   * already in context, c * k + c * (c + 1) / 2.
   */
  prefillAttentionPairs: number;
  /** Sequences decoding one token each. */
  decodeSeqs: number;
  /** Sum of the decode sequences' context lengths (tokens of KV each must read). */
  decodeContextTokens: number;
  /**
   * Leading tokens of KV that every sequence in the step shares, as vLLM's model runner hands them to
   * cascade attention before deciding (src/model/cascade.ts): the blocks every request holding KV
   * shares, times the block size, capped by the fewest tokens any of the step's sequences had
   * computed before it, in whole blocks. 0 when nothing is shared (or the host does not know).
   * Every scheduled sequence has at least this many tokens in context, so the prefix is part of
   * each one's `decodeContextTokens` and of each chunk's attention pairs.
   */
  commonPrefixTokens: number;
}

/** A storage tier a checkpoint is loaded from. */
export type StorageTier = 'hbm' | 'dram' | 'nvme' | 'ssd-sata' | 'network';

/** Predicts times for one (GPU, model, tensor-parallel degree). Pure. */
export interface PerfModel {
  readonly gpu: GpuSpec;
  readonly model: ModelSpec;
  readonly tp: number;
  /** Duration of one engine step. */
  stepTimeMs(shape: StepShape): number;
  /** A lone prefill of `tokens` new tokens after `cachedTokens` already in cache. */
  prefillTimeMs(tokens: number, cachedTokens?: number): number;
  /** A decode-only step of `batch` sequences with the given mean context. */
  decodeStepTimeMs(batch: number, meanContextTokens: number): number;
  /** KV bytes per token for the whole instance (all TP shards). */
  kvBytesPerToken(): number;
  /** Weight bytes for the whole instance. */
  weightBytes(): number;
  /**
   * False when no step runs cascade attention whatever its shape (an engine profile without it, an
   * ALiBi model), so `StepShape.commonPrefixTokens` never changes a time and a host may pass 0
   * without working it out. Absent: it may matter.
   */
  readonly cascadeAttention?: boolean;
}
