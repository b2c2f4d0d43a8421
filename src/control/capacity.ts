/**
 * How many requests per second one replica of a variant sustains while meeting the service
 * objectives: the "profiled throughput at the TTFT and ITL targets" that throughput-based planners
 * (Dynamo's SLA planner, Switchyard's SLO planner) divide the predicted demand by, and the per-bucket
 * profile the Mélange GPU chooser (gpu-choice/) prices. One implementation for all of them, from
 * the performance model (src/model), so the twin, the loops and the chooser agree on what an
 * instance can do. Pure: no clock, no randomness, no I/O.
 *
 * A disaggregated replica (`prefill` or `decode` role) is one side alone. An aggregated (`both`)
 * replica has two models, chosen by `aggregated`:
 * - `stall` (the planners' default, as Dynamo's planner reasons): each prompt's whole prefill stalls
 *   the decode batch; integer batch, TTFT is the prompt's own prefill (optionally with an M/D/1 wait).
 * - `chunked` (the GPU chooser's; gpu-choice/README.md derives it): a steady state under
 *   continuous batching with chunked prefill, where steps carry B decodes and the prompt tokens that
 *   arrive per step; TTFT adds an M/D/1 wait on the token budget the decodes leave, and the rate is
 *   capped at `saturationShareMax` of the rate at the batch cap.
 */
import { invalidArgument } from '../core/errors.ts';
import type { GpuId, ModelId } from '../core/ids.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { DEFAULT_ENGINE_PROFILE, vllmServeBatchDefaults } from '../model/engines.ts';
import { gpuSpec } from '../model/gpus.ts';
import { kvBlocksThatFit } from '../model/kv.ts';
import { modelSpec } from '../model/models.ts';
import { perfModelFor, validateTp } from '../model/perf.ts';
import type { PerfModel, StepShape } from '../model/types.ts';
import type { ServiceObjectives, Variant } from './types.ts';
import { variantKey } from './types.ts';

/** What bounds a replica's sustainable rate. */
export type CapacityLimit =
  /** The prefill side's throughput (stall model, disaggregated prefill). */
  | 'prefill'
  /** The decode batch whose step meets the ITL target (stall model, disaggregated decode). */
  | 'decode'
  /** The TPOT objective (chunked model). */
  | 'tpot'
  /** The TTFT objective with its queueing wait (chunked model). */
  | 'ttft'
  | 'kv-cache'
  | 'max-num-seqs'
  /** Decode tokens plus arriving prompt tokens fill --max-num-batched-tokens (chunked model). */
  | 'token-budget'
  /** The rate reached `saturationShareMax` of the replica's saturation rate (chunked model). */
  | 'saturation'
  /** The request does not fit the KV cache or the model's context at all. */
  | 'context'
  /** Even a lone request misses an objective (stall model). */
  | 'unreachable';

/** One replica's capacity for one request shape under one set of objectives. */
export interface ReplicaCapacity {
  /** Requests per second one replica sustains while meeting the objectives; 0 when it cannot meet them at all. */
  readonly requestsPerS: number;
  readonly limitedBy: CapacityLimit;
  /** Service time of one prompt's prefill, chunked as the engine would (ms); 0 for a decode-only replica. */
  readonly prefillMs: number;
  /** Decode sequences in flight at that rate (0 for a prefill-only replica; a mean, not whole, when chunked). */
  readonly decodeBatch: number;
  /** Mean time per output token at that batch (ms); NaN for a prefill-only replica. */
  readonly itlMs: number;
}

/**
 * The capacity of one replica of `variant` for requests of `inputTokens` prompt and `outputTokens`
 * output tokens (means) under `objectives`. A loop takes one in its parameters so the twin can back
 * it with the performance model and tests with a table.
 */
export type CapacityFn = (
  variant: Variant,
  objectives: ServiceObjectives,
  inputTokens: number,
  outputTokens: number,
) => ReplicaCapacity;

/** How the prefill side accounts for queueing in front of the TTFT target (stall model). */
export type PrefillQueueing = 'none' | 'md1';

/** Which model of an aggregated (`both`) replica; see the module comment. */
export type AggregatedModel = 'stall' | 'chunked';

/**
 * The chunked model plans a replica at no more than this share of the throughput it reaches at its
 * batch cap (its saturation rate). The steady state has no queueing of whole requests: near
 * saturation, Poisson arrivals build queues it does not see. In the twin, llama-3.1-8b on one H100
 * with 1000-token prompts and 200-token outputs saturates near 29 req/s; offered 27.3 req/s (97%),
 * mean TTFT ran to 53 s with 1,210 preemptions, while at 26.5 req/s (91%) mean TTFT was 105 ms.
 */
export const SATURATION_SHARE_MAX = 0.9;

/** Engine settings a capacity assumes; defaults are vLLM's serve defaults and the twin's engine's. */
export interface EngineOptions {
  /** Engine profile id (src/model/engines.ts), default `vllm`. */
  readonly engine?: string;
  /** --max-num-seqs; default what `vllm serve` picks on the GPU (`vllmServeBatchDefaults`). */
  readonly maxNumSeqs?: number;
  /** --max-num-batched-tokens: the prefill chunk; default as `maxNumSeqs`. */
  readonly maxNumBatchedTokens?: number;
  /** Default DEFAULT_ENGINE_CONFIG's 0.9 (vLLM's default). */
  readonly gpuMemoryUtilization?: number;
  /** Tokens per KV block; default DEFAULT_ENGINE_CONFIG's 16 (vLLM's default). */
  readonly blockSize?: number;
}

/** Options of `perfModelCapacity`. */
export interface PerfCapacityOptions extends EngineOptions {
  /**
   * `none` (default, as Dynamo's planner): a prompt meets TTFT when its own prefill does, and the
   * prefill side may run at 100% utilisation. `md1`: the prefill side runs at the largest
   * utilisation rho whose M/D/1 mean wait rho p / (2 (1 - rho)) plus the prefill p stays under TTFT.
   * The stall model only; the chunked model always has its M/D/1 token queue.
   */
  readonly prefillQueueing?: PrefillQueueing;
  /** Model of a `both` replica; default `stall`. */
  readonly aggregated?: AggregatedModel;
  /** Chunked model: the share of the saturation rate planned on at most; default SATURATION_SHARE_MAX. */
  readonly saturationShareMax?: number;
}

/** Distinct (variant, shape, objectives) answers kept per capacity function before it starts over. */
export const CAPACITY_CACHE_MAX = 4096;

const MS_PER_S = 1000;
/** Bisection steps on the chunked model's mean decode batch: 2^-40 of the range, far below any effect on the rate. */
const BISECTION_STEPS = 40;

/** What one (GPU, model, TP) engine looks like to the capacity search. */
export interface EngineLimits {
  readonly perf: PerfModel;
  readonly kvCacheTokens: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly contextTokensMax: number;
}

/**
 * The engine's limits and performance model for `tp` x `gpuId` serving `modelId`. Throws
 * SY_ERR_UNKNOWN_NAME for a GPU, model or engine not in the catalogue, SY_ERR_INVALID_ARGUMENT for
 * a TP that does not split the model, SY_ERR_CAPACITY when the weights leave no room for a KV cache.
 */
export function engineLimits(
  gpuId: GpuId,
  modelId: ModelId,
  tp: number,
  options: EngineOptions = {},
): EngineLimits {
  const gpu = gpuSpec(gpuId);
  const model = modelSpec(modelId);
  validateTp(model, tp);
  const defaults = vllmServeBatchDefaults(gpu);
  const maxNumSeqs = options.maxNumSeqs ?? defaults.maxNumSeqs;
  const maxNumBatchedTokens = options.maxNumBatchedTokens ?? defaults.maxNumBatchedTokens;
  const blockSize = options.blockSize ?? DEFAULT_ENGINE_CONFIG.blockSize;
  const blocks = kvBlocksThatFit(
    gpu,
    model,
    tp,
    options.gpuMemoryUtilization ?? DEFAULT_ENGINE_CONFIG.gpuMemoryUtilization,
    blockSize,
    { maxNumSeqs, maxNumBatchedTokens },
  );
  const perf = perfModelFor(gpuId, modelId, tp, options.engine ?? DEFAULT_ENGINE_PROFILE, { maxNumSeqs });
  return {
    perf,
    kvCacheTokens: blocks * blockSize,
    maxNumSeqs,
    maxNumBatchedTokens,
    contextTokensMax: model.contextTokensMax,
  };
}

/**
 * A `CapacityFn` over the performance model. Stall model (default): the prompt is prefilled in
 * chunks of `maxNumBatchedTokens`; one replica finishes 1000 / prefillMs prompts a second, and meets
 * TTFT only when prefillMs does (or, with `md1`, with an M/D/1 queue in front). Decode side: the
 * largest batch B (at most max_num_seqs, and B x (input + output / 2) tokens of KV within the
 * cache) whose step time stays under the ITL target, at a mean context of input + output / 2
 * (Dynamo's choice); rate = 1000 B / (output x step). A `both` replica time-shares: each request's
 * prefill stalls the batch, so its mean ITL is step(B) + B x prefillMs / output and its rate
 * 1000 B / (output x step + B x prefillMs). With `aggregated: 'chunked'` a `both` replica follows
 * `chunkedCapacity` instead. Throws SY_ERR_UNKNOWN_NAME for a GPU, model or engine not in the
 * catalogue.
 */
export function perfModelCapacity(options: PerfCapacityOptions = {}): CapacityFn {
  const engines = new Map<string, EngineLimits>();
  const cache = new Map<string, ReplicaCapacity>();
  return (variant, objectives, inputTokens, outputTokens) => {
    if (!Number.isFinite(inputTokens) || !Number.isFinite(outputTokens)) {
      throw invalidArgument(
        'tokens',
        `${inputTokens}/${outputTokens}`,
        'finite mean input and output tokens',
      );
    }
    const input = Math.max(1, Math.ceil(inputTokens));
    const output = Math.max(1, Math.ceil(outputTokens));
    const key = `${variantKey(variant)}|${input}|${output}|${objectives.ttftMs}|${objectives.tpotMs}`;
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    let engine = engines.get(variantKey(variant));
    if (engine === undefined) {
      engine = engineLimits(variant.gpu, variant.model, variant.tp, options);
      engines.set(variantKey(variant), engine);
    }
    const answer = capacityOf(engine, variant, objectives, input, output, options);
    if (cache.size >= CAPACITY_CACHE_MAX) cache.clear();
    cache.set(key, answer);
    return answer;
  };
}

function capacityOf(
  engine: EngineLimits,
  variant: Variant,
  objectives: ServiceObjectives,
  input: number,
  output: number,
  options: PerfCapacityOptions,
): ReplicaCapacity {
  const prefillMs = variant.role === 'decode' ? 0 : chunkedPrefillMs(engine, input);
  if (variant.role === 'both' && options.aggregated === 'chunked') {
    const c = chunkedCapacity(engine, objectives, input, output, options.saturationShareMax);
    return {
      requestsPerS: c.requestsPerS,
      limitedBy: c.limitedBy,
      prefillMs,
      decodeBatch: c.decodeBatch,
      itlMs: c.tpotMs,
    };
  }
  if (objectives.ttftMs !== undefined && prefillMs > objectives.ttftMs) return unreachable(prefillMs);
  const prefillRps =
    variant.role === 'decode'
      ? Number.POSITIVE_INFINITY
      : prefillRateCap(prefillMs, objectives, options.prefillQueueing ?? 'none');
  if (variant.role === 'prefill') {
    return { requestsPerS: prefillRps, limitedBy: 'prefill', prefillMs, decodeBatch: 0, itlMs: Number.NaN };
  }
  const contextTokens = input + output / 2;
  // A `both` replica's prefills stall its batch: each adds prefillMs spread over `output` steps.
  const stallMsPerSeq = variant.role === 'both' ? prefillMs / output : 0;
  const itlOf = (b: number): number => engine.perf.decodeStepTimeMs(b, contextTokens) + b * stallMsPerSeq;
  const kvBatch = Math.floor(engine.kvCacheTokens / contextTokens);
  const batchMax = Math.min(engine.maxNumSeqs, kvBatch);
  if (batchMax < 1) return unreachable(prefillMs, 'kv-cache');
  const itlTarget = objectives.tpotMs ?? Number.POSITIVE_INFINITY;
  const batch = largestBatch(itlOf, batchMax, itlTarget);
  if (batch < 1) return unreachable(prefillMs);
  const stepMs = engine.perf.decodeStepTimeMs(batch, contextTokens);
  const decodeRps =
    (MS_PER_S * batch) / (output * stepMs + batch * (variant.role === 'both' ? prefillMs : 0));
  const limitedBy: CapacityLimit =
    prefillRps < decodeRps
      ? 'prefill'
      : batch < batchMax
        ? 'decode'
        : batchMax === kvBatch && kvBatch < engine.maxNumSeqs
          ? 'kv-cache'
          : 'max-num-seqs';
  return {
    requestsPerS: Math.min(prefillRps, decodeRps),
    limitedBy,
    prefillMs,
    decodeBatch: batch,
    itlMs: itlOf(batch),
  };
}

/** A prompt prefilled alone, in chunks of the engine's token budget, each after the ones before. */
function chunkedPrefillMs(engine: EngineLimits, input: number): number {
  let ms = 0;
  for (let done = 0; done < input; done += engine.maxNumBatchedTokens) {
    ms += engine.perf.prefillTimeMs(Math.min(engine.maxNumBatchedTokens, input - done), done);
  }
  return ms;
}

/**
 * Prompts per second the prefill side may take: all it can compute (`none`), or the M/D/1 bound:
 * p + rho p / (2 (1 - rho)) <= T  <=>  rho <= 2k / (1 + 2k) with k = (T - p) / p.
 */
function prefillRateCap(prefillMs: number, objectives: ServiceObjectives, queueing: PrefillQueueing): number {
  const full = MS_PER_S / prefillMs;
  if (queueing === 'none' || objectives.ttftMs === undefined) return full;
  const k = (objectives.ttftMs - prefillMs) / prefillMs;
  return full * ((2 * k) / (1 + 2 * k));
}

/** The largest batch in [1, batchMax] whose ITL stays within the target (ITL grows with the batch); 0 if none. */
function largestBatch(itlOf: (b: number) => number, batchMax: number, itlTargetMs: number): number {
  if (itlOf(1) > itlTargetMs) return 0;
  let lo = 1;
  let hi = batchMax;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (itlOf(mid) <= itlTargetMs) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function unreachable(prefillMs: number, limitedBy: CapacityLimit = 'unreachable'): ReplicaCapacity {
  return { requestsPerS: 0, limitedBy, prefillMs, decodeBatch: 0, itlMs: Number.NaN };
}

// ---- The chunked steady-state model of an aggregated replica (gpu-choice/README.md derives it).

/** The chunked model's answer for one request shape. */
export interface ChunkedCapacity {
  /** Highest sustainable request rate of one replica within the objectives; 0: cannot meet them. */
  readonly requestsPerS: number;
  /** Mean decode batch at that rate. */
  readonly decodeBatch: number;
  /** Predicted TPOT and TTFT at that rate, or for a lone request when the rate is 0 (NaN when it does not fit). */
  readonly tpotMs: number;
  readonly ttftMs: number;
  readonly limitedBy: CapacityLimit;
}

interface Operating {
  readonly rateRps: number;
  readonly tpotMs: number;
  readonly ttftMs: number;
}

/** Reused step shape: the bisection evaluates thousands of steps and allocates none. */
const shape: StepShape = {
  prefillSeqs: 0,
  prefillTokens: 0,
  prefillAttentionPairs: 0,
  decodeSeqs: 0,
  decodeContextTokens: 0,
  commonPrefixTokens: 0,
};

/**
 * The steady state at mean decode batch `batch`: each step decodes max(1, batch) sequences and
 * computes the prompts of the batch / O requests that arrive per step (their attention pairs
 * spread the same way); the rate is batch / (O * step). TTFT: half a running step, then the
 * prompt's chunks (the budget the decodes leave, one chunk per step), stretched by M/D/1's mean wait
 * at the load the arriving prompt tokens put on that leftover budget.
 */
function operatingPoint(limits: EngineLimits, input: number, output: number, batch: number): Operating {
  const perf = limits.perf;
  const decodeSeqs = Math.max(1, batch);
  const decodeContextTokens = decodeSeqs * (input + output / 2);
  const chunkTokens = Math.max(1, limits.maxNumBatchedTokens - decodeSeqs);
  // Prompt tokens that arrive per decode step, and the lumps they come in: one prompt's chunk, or
  // several prompts' when they arrive faster than one per step. A step costs the larger of its
  // compute and its weight reads, so a lump costs more than the same tokens spread thin.
  const promptTokensPerStep = (batch / output) * input;
  const lumpTokens = Math.min(chunkTokens, Math.max(Math.min(input, chunkTokens), promptTokensPerStep));
  const lumpShare = Math.min(1, promptTokensPerStep / lumpTokens);
  const decodeOnlyMs = mixedStepMs(perf, decodeSeqs, decodeContextTokens, 0, input);
  const lumpMs = mixedStepMs(perf, decodeSeqs, decodeContextTokens, lumpTokens, input);
  const stepMs = lumpShare * lumpMs + (1 - lumpShare) * decodeOnlyMs;
  const rateRps = (batch / (output * stepMs)) * MS_PER_S;

  // The prompt's own prefill: chunks of the budget the decodes leave, one step each.
  const chunks = Math.ceil(input / chunkTokens);
  const prefillServiceMs =
    chunks * mixedStepMs(perf, decodeSeqs, decodeContextTokens, Math.min(input, chunkTokens), input);
  // Waiting: prompts share the leftover budget, a token queue loaded at the arriving prompt tokens
  // over that budget; M/D/1's mean wait on top of half a step for the running step to end.
  const load = promptTokensPerStep / chunkTokens;
  const ttftMs =
    load >= 1 ? Number.POSITIVE_INFINITY : stepMs / 2 + prefillServiceMs * (1 + load / (2 * (1 - load)));
  return { rateRps, tpotMs: stepMs, ttftMs };
}

/**
 * A step with `prefillTokens` of prompts of `input` tokens beside the decodes (none: a decode-only
 * step); the attention pairs are those prompts' share of their full causal attention, I (I + 1) / 2
 * per prompt.
 */
function mixedStepMs(
  perf: PerfModel,
  decodeSeqs: number,
  decodeContextTokens: number,
  prefillTokens: number,
  input: number,
): number {
  shape.prefillSeqs = prefillTokens > 0 ? Math.max(1, prefillTokens / input) : 0;
  shape.prefillTokens = Math.round(prefillTokens);
  shape.prefillAttentionPairs = (prefillTokens * (input + 1)) / 2;
  shape.decodeSeqs = decodeSeqs;
  shape.decodeContextTokens = decodeContextTokens;
  return perf.stepTimeMs(shape);
}

/** The caps on the mean decode batch, smallest first wins: sequences, KV cache, token budget. */
function batchCap(
  limits: EngineLimits,
  input: number,
  output: number,
): { batch: number; limit: CapacityLimit } {
  const caps: [number, CapacityLimit][] = [
    [limits.maxNumSeqs, 'max-num-seqs'],
    [limits.kvCacheTokens / (input + output / 2), 'kv-cache'],
    // Each step holds batch decode tokens plus batch * I / O prompt tokens.
    [limits.maxNumBatchedTokens / (1 + input / output), 'token-budget'],
  ];
  let best = caps[0] as [number, CapacityLimit];
  for (const cap of caps) if (cap[0] < best[0]) best = cap;
  return { batch: best[0], limit: best[1] };
}

/** Which objective `point` misses first (TPOT, then TTFT, then the saturation share). */
function missed(
  point: Operating,
  objectives: ServiceObjectives,
  rateRpsMax: number,
): CapacityLimit | undefined {
  if (point.tpotMs > (objectives.tpotMs ?? Number.POSITIVE_INFINITY)) return 'tpot';
  if (point.ttftMs > (objectives.ttftMs ?? Number.POSITIVE_INFINITY)) return 'ttft';
  if (point.rateRps > rateRpsMax) return 'saturation';
  return undefined;
}

/**
 * The chunked model's capacity of one aggregated replica for requests of `input` prompt and
 * `output` generated tokens: the largest mean decode batch within the objectives, the caps and the
 * saturation share, by bisection (TPOT, TTFT and the rate all grow with the batch). Rate 0 when
 * the request does not fit the KV cache or the model's context (`context`), or a lone request
 * already misses an objective.
 */
export function chunkedCapacity(
  limits: EngineLimits,
  objectives: ServiceObjectives,
  input: number,
  output: number,
  saturationShareMax: number = SATURATION_SHARE_MAX,
): ChunkedCapacity {
  const need = input + output;
  if (need > limits.kvCacheTokens || need > limits.contextTokensMax) {
    return { requestsPerS: 0, decodeBatch: 0, tpotMs: Number.NaN, ttftMs: Number.NaN, limitedBy: 'context' };
  }
  const cap = batchCap(limits, input, output);
  const rateRpsMax = saturationShareMax * operatingPoint(limits, input, output, cap.batch).rateRps;
  // A lone request's latency: if even that misses, the variant cannot serve the shape.
  const floor = Math.min(cap.batch, 1e-6);
  const lone = operatingPoint(limits, input, output, floor);
  const loneMiss = missed(lone, objectives, Number.POSITIVE_INFINITY);
  if (loneMiss !== undefined) {
    return { requestsPerS: 0, decodeBatch: 0, tpotMs: lone.tpotMs, ttftMs: lone.ttftMs, limitedBy: loneMiss };
  }
  let lo = floor;
  let hi = cap.batch;
  for (let i = 0; i < BISECTION_STEPS; i++) {
    const mid = (lo + hi) / 2;
    if (missed(operatingPoint(limits, input, output, mid), objectives, rateRpsMax) === undefined) lo = mid;
    else hi = mid;
  }
  const best = operatingPoint(limits, input, output, lo);
  const limitedBy = missed(operatingPoint(limits, input, output, hi), objectives, rateRpsMax) ?? cap.limit;
  return {
    requestsPerS: best.rateRps,
    decodeBatch: lo,
    tpotMs: best.tpotMs,
    ttftMs: best.ttftMs,
    limitedBy,
  };
}
