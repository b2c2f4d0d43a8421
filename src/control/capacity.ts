/**
 * How many requests per second one replica of a variant sustains while meeting the service
 * objectives: the "profiled throughput at the TTFT and ITL targets" that throughput-based planners
 * (Dynamo's SLA planner, Switchyard's SLO planner) divide the predicted demand by. Here it comes from
 * the performance model (src/model), so the twin and the loops agree on what an instance can do.
 * Pure: no clock, no randomness, no I/O.
 */
import { invalidArgument } from '../core/errors.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { DEFAULT_ENGINE_PROFILE, vllmServeBatchDefaults } from '../model/engines.ts';
import { gpuSpec } from '../model/gpus.ts';
import { kvBlocksThatFit } from '../model/kv.ts';
import { modelSpec } from '../model/models.ts';
import { perfModelFor } from '../model/perf.ts';
import type { PerfModel } from '../model/types.ts';
import type { ServiceObjectives, Variant } from './types.ts';
import { variantKey } from './types.ts';

/** What bounds a replica's sustainable rate. */
export type CapacityLimit = 'prefill' | 'decode' | 'kv-cache' | 'max-num-seqs' | 'unreachable';

/** One replica's capacity for one request shape under one set of objectives. */
export interface ReplicaCapacity {
  /** Requests per second one replica sustains while meeting the objectives; 0 when it cannot meet them at all. */
  readonly requestsPerS: number;
  readonly limitedBy: CapacityLimit;
  /** Service time of one prompt's prefill, chunked as the engine would (ms); 0 for a decode-only replica. */
  readonly prefillMs: number;
  /** Decode sequences in flight at that rate (0 for a prefill-only replica). */
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

/** How the prefill side accounts for queueing in front of the TTFT target. */
export type PrefillQueueing = 'none' | 'md1';

/** Options of `perfModelCapacity`; defaults are the twin's engine defaults. */
export interface PerfCapacityOptions {
  /** Engine profile id (default `vllm`). */
  readonly engine?: string;
  /** --max-num-seqs; default what `vllm serve` picks on the GPU (`vllmServeBatchDefaults`). */
  readonly maxNumSeqs?: number;
  /** --max-num-batched-tokens: the prefill chunk; default as `maxNumSeqs`. */
  readonly maxNumBatchedTokens?: number;
  /** Default DEFAULT_ENGINE_CONFIG's 0.9. */
  readonly gpuMemoryUtilization?: number;
  /** Tokens per KV block; default DEFAULT_ENGINE_CONFIG's 16. */
  readonly blockSize?: number;
  /**
   * `none` (default, as Dynamo's planner): a prompt meets TTFT when its own prefill does, and the
   * prefill side may run at 100% utilisation. `md1`: the prefill side runs at the largest
   * utilisation rho whose M/D/1 mean wait rho p / (2 (1 - rho)) plus the prefill p stays under TTFT.
   */
  readonly prefillQueueing?: PrefillQueueing;
}

/** Distinct (variant, shape, objectives) answers kept per capacity function before it starts over. */
export const CAPACITY_CACHE_MAX = 4096;

const MS_PER_S = 1000;

/** What one variant's engine looks like to the capacity search. */
interface EngineShape {
  readonly perf: PerfModel;
  readonly maxNumSeqs: number;
  readonly chunkTokens: number;
  readonly kvTokens: number;
}

/**
 * A `CapacityFn` over the performance model. Prefill side: the prompt is prefilled in chunks of
 * `maxNumBatchedTokens`; one replica finishes 1000 / prefillMs prompts a second, and meets TTFT only
 * when prefillMs does (or, with `md1`, with an M/D/1 queue in front). Decode side: the largest batch
 * B (at most max_num_seqs, and B x (input + output / 2) tokens of KV within the cache) whose step
 * time stays under the ITL target, at a mean context of input + output / 2 (Dynamo's choice);
 * rate = 1000 B / (output x step). A `both` replica time-shares: each request's prefill stalls the
 * batch, so its mean ITL is step(B) + B x prefillMs / output and its rate 1000 B / (output x step +
 * B x prefillMs). Throws SY_ERR_UNKNOWN_NAME for a GPU, model or engine not in the catalogue.
 */
export function perfModelCapacity(options: PerfCapacityOptions = {}): CapacityFn {
  const engines = new Map<string, EngineShape>();
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
      engine = engineShape(variant, options);
      engines.set(variantKey(variant), engine);
    }
    const answer = capacityOf(engine, variant, objectives, input, output, options.prefillQueueing ?? 'none');
    if (cache.size >= CAPACITY_CACHE_MAX) cache.clear();
    cache.set(key, answer);
    return answer;
  };
}

function engineShape(variant: Variant, options: PerfCapacityOptions): EngineShape {
  const gpu = gpuSpec(variant.gpu);
  const batch = vllmServeBatchDefaults(gpu);
  const maxNumSeqs = options.maxNumSeqs ?? batch.maxNumSeqs;
  const chunkTokens = options.maxNumBatchedTokens ?? batch.maxNumBatchedTokens;
  const blockSize = options.blockSize ?? DEFAULT_ENGINE_CONFIG.blockSize;
  const blocks = kvBlocksThatFit(
    gpu,
    modelSpec(variant.model),
    variant.tp,
    options.gpuMemoryUtilization ?? DEFAULT_ENGINE_CONFIG.gpuMemoryUtilization,
    blockSize,
    { maxNumSeqs, maxNumBatchedTokens: chunkTokens },
  );
  const perf = perfModelFor(
    variant.gpu,
    variant.model,
    variant.tp,
    options.engine ?? DEFAULT_ENGINE_PROFILE,
    {
      maxNumSeqs,
    },
  );
  return { perf, maxNumSeqs, chunkTokens, kvTokens: blocks * blockSize };
}

function capacityOf(
  engine: EngineShape,
  variant: Variant,
  objectives: ServiceObjectives,
  input: number,
  output: number,
  queueing: PrefillQueueing,
): ReplicaCapacity {
  const prefillMs = variant.role === 'decode' ? 0 : chunkedPrefillMs(engine, input);
  if (objectives.ttftMs !== undefined && prefillMs > objectives.ttftMs) return unreachable(prefillMs);
  const prefillRps =
    variant.role === 'decode' ? Number.POSITIVE_INFINITY : prefillRateCap(prefillMs, objectives, queueing);
  if (variant.role === 'prefill') {
    return { requestsPerS: prefillRps, limitedBy: 'prefill', prefillMs, decodeBatch: 0, itlMs: Number.NaN };
  }
  const contextTokens = input + output / 2;
  // A `both` replica's prefills stall its batch: each adds prefillMs spread over `output` steps.
  const stallMsPerSeq = variant.role === 'both' ? prefillMs / output : 0;
  const itlOf = (b: number): number => engine.perf.decodeStepTimeMs(b, contextTokens) + b * stallMsPerSeq;
  const kvBatch = Math.floor(engine.kvTokens / contextTokens);
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
function chunkedPrefillMs(engine: EngineShape, input: number): number {
  let ms = 0;
  for (let done = 0; done < input; done += engine.chunkTokens) {
    ms += engine.perf.prefillTimeMs(Math.min(engine.chunkTokens, input - done), done);
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
