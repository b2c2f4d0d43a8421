/**
 * Conditional disaggregation: whether a request that reached its decode instance prefills there
 * (locally) or on the prefill pool (remotely, its KV then moving over the link). Pure: the inputs
 * are what a live decode worker or gateway knows when the request arrives — its prompt length, the
 * decode instance's prefix-cache match as the router estimates it, that instance's running decodes,
 * and the prefill pool's queue as the router sees it. Nothing about the request's future.
 *
 * Two rules:
 * - `dynamo`: NVIDIA Dynamo's disaggregated router — remote when the uncached prompt (prompt less
 *   prefix hit) is longer than `max_local_prefill_length` (Dynamo's DisaggRouterConf default: 1000
 *   tokens) and the prefill queue is not full; local otherwise.
 * - `switchyard`: the option that adds the least latency summed over the requests it touches,
 *   estimated with the performance model (see docs/disaggregation.md, "Conditional disaggregation").
 */
import type { Request } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import type { PerfModel } from '../../model/types.ts';
import { PrefixCacheIndex } from '../routing/prefix-cache-index.ts';

/** The rules `--pd-conditional` takes. */
export const PD_CONDITIONAL_RULES = ['dynamo', 'switchyard'] as const;
/** One of PD_CONDITIONAL_RULES. */
export type PdConditionalRule = (typeof PD_CONDITIONAL_RULES)[number];

/** Dynamo's default `max_local_prefill_length` (DisaggRouterConf in ai-dynamo/dynamo). */
export const DYNAMO_MAX_LOCAL_PREFILL_TOKENS = 1000;
/**
 * Requests queued per prefill instance above which the `dynamo` rule keeps prefills local. Dynamo
 * has a `max_prefill_queue_size` knob; this default is ours: two queued prompts per instance keep
 * it busy for one more prefill without the queue growing unbounded.
 */
export const PREFILL_QUEUE_PER_INSTANCE_MAX = 2;

/**
 * The KV link a host assumes for `transferMs` when its config names none: ib-400, the twin's default
 * `--link` (PD_LINK_DEFAULT in src/twin/pd-host.ts), so both hosts assume the same link.
 */
export const CONDITIONAL_LINK_DEFAULT = 'ib-400';
/**
 * The decode engine's per-step token budget the `switchyard` rule chunks a local prefill by, when a
 * host does not know it: 8192, the engine core's default `maxNumBatchedTokens` (what the twin's
 * engines run with unless told otherwise) and vLLM's default for online serving on large GPUs.
 */
export const CONDITIONAL_CHUNK_TOKENS_DEFAULT = 8192;

/** What the decision sees, as a live decode worker would know it. */
export interface PrefillDecisionInput {
  /** The request's prompt length. */
  readonly promptTokens: number;
  /** Prompt tokens the decode instance holds in its prefix cache (the router's estimate). */
  readonly prefixHitTokens: number;
  /** Requests waiting for prefill across the prefill pool (admitted, not yet started). */
  readonly prefillQueueRequests: number;
  /** Prompt tokens those waiting requests still have to compute, on the least-loaded prefill instance. */
  readonly prefillQueueTokens: number;
  /** Prefill-role instances. */
  readonly prefillInstances: number;
  /** Sequences decoding on this decode instance now. */
  readonly decodeRunning: number;
  /** Their mean context length. */
  readonly decodeContextTokensMean: number;
  /** The KV transfer's added time for the whole prompt (src/model/kv-link.ts ttftAddedMs). */
  readonly transferMs: number;
}

/** The decision and the estimates behind it (the `switchyard` rule fills the estimates). */
export interface PrefillDecision {
  readonly remote: boolean;
  /** Estimated latency added by prefilling locally (this request's TTFT plus the decodes' stall). */
  readonly localCostMs?: number;
  /** Estimated latency added by prefilling remotely (queue + prefill + transfer). */
  readonly remoteCostMs?: number;
}

/** Dynamo's rule: remote when the uncached prompt exceeds the threshold and the queue has room. */
export function dynamoDecision(
  input: PrefillDecisionInput,
  maxLocalPrefillTokens: number = DYNAMO_MAX_LOCAL_PREFILL_TOKENS,
  queuePerInstanceMax: number = PREFILL_QUEUE_PER_INSTANCE_MAX,
): PrefillDecision {
  const uncached = input.promptTokens - Math.min(input.prefixHitTokens, input.promptTokens);
  const queueFull = input.prefillQueueRequests > queuePerInstanceMax * input.prefillInstances;
  return { remote: uncached > maxLocalPrefillTokens && !queueFull };
}

/**
 * Switchyard's rule: compares the latency each option adds, summed over the requests it touches.
 * Local: the uncached prompt runs in chunks of `chunkTokens` mixed into this instance's decode
 * steps; the request waits for all of them, and each running decode loses what those steps take
 * beyond a decode-only step (a millisecond of stall is a millisecond of their end-to-end latency).
 * Remote: the prefill queue ahead, the whole prompt's prefill (the prefill instance's cache is not
 * known here, so nothing is taken as cached), the transfer, and the decode step giving the first
 * token. Ties go remote (the default path).
 */
export function switchyardDecision(
  input: PrefillDecisionInput,
  perf: PerfModel,
  chunkTokens: number,
): PrefillDecision {
  const cached = Math.min(input.prefixHitTokens, Math.max(0, input.promptTokens - 1));
  const uncached = input.promptTokens - cached;
  const decodeOnlyMs =
    input.decodeRunning > 0 ? perf.decodeStepTimeMs(input.decodeRunning, input.decodeContextTokensMean) : 0;
  let localTtftMs = 0;
  let stallMs = 0;
  for (let done = 0; done < uncached; ) {
    const chunk = Math.min(chunkTokens, uncached - done);
    const before = cached + done;
    const stepMs = perf.stepTimeMs({
      prefillSeqs: 1,
      prefillTokens: chunk,
      prefillAttentionPairs: chunk * before + (chunk * (chunk + 1)) / 2,
      decodeSeqs: input.decodeRunning,
      decodeContextTokens: input.decodeRunning * input.decodeContextTokensMean,
      commonPrefixTokens: 0,
    });
    localTtftMs += stepMs;
    stallMs += Math.max(0, stepMs - decodeOnlyMs);
    done += chunk;
  }
  const localCostMs = localTtftMs + input.decodeRunning * stallMs;
  const queueMs = input.prefillQueueTokens > 0 ? perf.prefillTimeMs(input.prefillQueueTokens) : 0;
  // The first token then comes from the decode instance's next step, with this request in it.
  const firstStepMs = perf.decodeStepTimeMs(input.decodeRunning + 1, input.decodeContextTokensMean);
  const remoteCostMs = queueMs + perf.prefillTimeMs(input.promptTokens) + input.transferMs + firstStepMs;
  return { remote: remoteCostMs <= localCostMs, localCostMs, remoteCostMs };
}

/** The decision of `rule`. */
export function decidePrefill(
  rule: PdConditionalRule,
  input: PrefillDecisionInput,
  perf: PerfModel,
  chunkTokens: number,
): PrefillDecision {
  return rule === 'dynamo' ? dynamoDecision(input) : switchyardDecision(input, perf, chunkTokens);
}

/**
 * The decision's input from what a live gateway sees (src/core/view.ts): the decode instance's
 * running batch and its KV in use (for their mean context), the prefill pool's in-flight requests
 * and the least pending prefill tokens among its instances (host accounting, fresh in both hosts).
 * `prefixHitTokens` is the router's own estimate of the decode instance's cached prefix.
 */
export function decisionInputFromViews(
  promptTokens: number,
  prefixHitTokens: number,
  decode: InstanceView,
  prefill: readonly InstanceView[],
  transferMs: number,
): PrefillDecisionInput {
  const kvTokens = decode.kvUsage * decode.kvBlocksTotal * decode.blockSize;
  let queueTokens = Number.POSITIVE_INFINITY;
  let queueRequests = 0;
  for (const p of prefill) {
    queueTokens = Math.min(queueTokens, p.pendingPrefillTokens);
    queueRequests += p.inFlight;
  }
  return {
    promptTokens,
    prefixHitTokens,
    prefillQueueRequests: queueRequests,
    prefillQueueTokens: Number.isFinite(queueTokens) ? queueTokens : 0,
    prefillInstances: prefill.length,
    decodeRunning: decode.running,
    decodeContextTokensMean: decode.running > 0 ? kvTokens / decode.running : 0,
    transferMs,
  };
}

/**
 * The router's estimate of the prompt tokens each decode instance holds in its prefix cache: a
 * learned prefix index over the decode pool (the one behind the prefix-aware policies), taught every
 * prompt sent to a decode instance, local or remote, since either way its KV ends up there. The twin
 * (src/twin/simulator.ts, `decodePrefixHitTokens`) and the live gateway (src/gateway/pd/) estimate
 * the same way: no view is observed, so each instance's capacity is the index's fallback.
 */
export class DecodePrefixEstimate {
  private readonly index = new PrefixCacheIndex();

  /** Prompt tokens of `request` that `decodeId` is estimated to hold (at most the prompt). */
  hitTokens(decodeId: string, request: Request): number {
    const blocks = this.index.longestMatch(this.index.slotOf(decodeId), request.prefix.hashes);
    return Math.min(blocks * request.prefix.blockTokens, request.inputTokens);
  }

  /** `request`'s prompt is now on `decodeId` (computed there or moved there). */
  learn(decodeId: string, request: Request): void {
    this.index.learn(this.index.register(decodeId), request.prefix);
  }
}
