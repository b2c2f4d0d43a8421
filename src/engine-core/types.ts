/**
 * The engine core's contract. The core is a pure state machine advanced by its host: the twin drives
 * it in virtual time, the built-in `sim` engine server in wall time. Two-phase steps let a host wait
 * out the step's duration before the step's tokens exist.
 */

/** Engine options, named after vLLM's flags. */
export interface EngineConfig {
  /** --block-size: tokens per KV block. */
  readonly blockSize: number;
  /** --max-num-seqs: cap on running sequences. */
  readonly maxNumSeqs: number;
  /** --max-num-batched-tokens: per-step token budget (prefill chunks + decodes). */
  readonly maxNumBatchedTokens: number;
  /** --gpu-memory-utilization: fraction of HBM the engine may use for weights + KV. */
  readonly gpuMemoryUtilization: number;
  /** Inverse of --no-prefix-caching. */
  readonly enablePrefixCaching: boolean;
  /** Overrides the KV block count computed from memory (tests, --num-gpu-blocks-override). */
  readonly numGpuBlocksOverride: number | undefined;
  /**
   * --scheduling-policy: 'fcfs' serves in arrival order; 'priority' serves higher-priority requests
   * first and preempts lower-priority running ones to make room for them (vLLM's priority policy,
   * with Switchyard's sign: a higher `priority` is more important).
   */
  readonly schedulingPolicy: 'fcfs' | 'priority';
  /**
   * --async-scheduling (on by default in vLLM since PR #27614; PR #19970 introduced it): the
   * scheduler decides step n+1's batch when step n is launched, one step ahead of the GPU, so a
   * request that arrives while the engine is busy joins the step after next (one step later than
   * a synchronous scheduler would take it). An idle engine takes it at once.
   */
  readonly asyncScheduling: boolean;
  /**
   * --disable-cascade-attn: never read a prefix every running request shares once per step
   * (vLLM's cascade attention, on by default); the core then reports no common prefix to the perf
   * model. Absent means false.
   */
  readonly disableCascadeAttn?: boolean;
}

/**
 * vLLM's GPU-independent defaults, and a fixed 256 / 8192 batch pair for callers with no GPU in hand
 * (tests, benchmarks). Hosts that know the GPU (the twin's config, the `sim` engine) replace the
 * unset batch limits with `vllm serve`'s for that GPU (`vllmServeBatchDefaults`, src/model/engines.ts).
 */
export const DEFAULT_ENGINE_CONFIG: EngineConfig = {
  blockSize: 16,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8192,
  gpuMemoryUtilization: 0.9,
  enablePrefixCaching: true,
  numGpuBlocksOverride: undefined,
  schedulingPolicy: 'fcfs',
  asyncScheduling: true,
  disableCascadeAttn: false,
};

/** A request as the engine core sees it. */
export interface EngineRequest {
  readonly id: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly arrivalMs: number;
  /** Higher is more important; only the 'priority' scheduling policy reads it. Default 0. */
  readonly priority?: number;
  /**
   * Chained hashes of the prompt's full blocks at the engine's block size (block i covers tokens
   * [i * blockSize, (i + 1) * blockSize)). May be shorter than the prompt's full blocks: blocks
   * without a hash are treated as unique to this request.
   */
  readonly blockHashes: ArrayLike<number>;
  /**
   * The same blocks as a path of the core's PrefixForest, for a core in run-length mode
   * (EngineCoreOptions.prefixForest); ignored otherwise. The core takes over the path's uses.
   */
  readonly prefixPath?: PrefixPath | undefined;
  /**
   * Prompt tokens whose KV arrives from another instance (the decode side of prefill/decode
   * disaggregation): on its first admission they count as computed, like prefix-cache hits, but in
   * blocks of its own (those `EngineCore.reserveImport` held for it, when it did). At most
   * `inputTokens - 1` take effect: one token is always computed here, to sample from. After a
   * preemption the import is gone and the whole prompt is recomputed, as vLLM's decode side does.
   */
  readonly importedTokens?: number | undefined;
  /**
   * The prefill side of P/D: when the request finishes, its KV blocks stay held (counted as used,
   * still in the prefix cache) until `EngineCore.releaseExport`, as vLLM's prefill instance keeps
   * them until the decode side has read them (NIXL) and only then frees them.
   */
  readonly holdKvAfterFinish?: boolean | undefined;
}

/** What the engine reports when a request ends. */
export interface FinishedRequest {
  readonly request: EngineRequest;
  readonly arrivalMs: number;
  /** When the engine first scheduled it. */
  readonly firstScheduledMs: number;
  readonly firstTokenMs: number;
  readonly finishMs: number;
  /** Prompt tokens served from the prefix cache on its (last) admission. */
  readonly cachedPromptTokens: number;
  readonly preemptions: number;
}

/** KV events in vLLM's vocabulary; the type lives in core so policies and adapters share it. */
export type { KvEvent } from '../core/kv-events.ts';

import type { KvEvent } from '../core/kv-events.ts';
import type { PrefixPath } from './prefix-forest.ts';

/**
 * Why the core refused a request at `add`. `kv-capacity`: the request's KV (prompt plus all but the
 * last output token) needs more blocks than the whole pool holds, so it could never run to the end;
 * admitting it would preempt and recompute forever.
 */
export type EngineRejectReason = 'kv-capacity';

/**
 * The host's hooks. All optional except finish; the core calls them synchronously in finishStep,
 * except `onReject`, which `add` calls. A hook may call `add` or `abort` on the core.
 */
export interface EngineListener {
  onFirstToken?(request: EngineRequest, nowMs: number): void;
  onFinish(result: FinishedRequest): void;
  /** Inter-token gaps, batched: `count` tokens each arrived `gapMs` after the previous one. */
  onInterTokenLatency?(gapMs: number, count: number): void;
  /**
   * The same gaps for a run of fused decode sub-steps, when the host can take them at once: for j
   * from `from` to `to - 1` in turn, `count` tokens each arrived `endsMs[j] - endsMs[j - 1]` after
   * the previous one, exactly as that many `onInterTokenLatency` calls would report them. When
   * given, the core calls it instead of those calls: one call per fused step instead of one per
   * sub-step (millions on a long replay), and the host's loop keeps its sums in registers.
   * `endsMs` is the core's own array, only valid during the call.
   */
  onInterTokenGaps?(endsMs: Float64Array, from: number, to: number, count: number): void;
  onKvEvent?(event: KvEvent): void;
  /** The request was refused at `add` and will never finish; `add` also returns false. */
  onReject?(request: EngineRequest, reason: EngineRejectReason, nowMs: number): void;
}
