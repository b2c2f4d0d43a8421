/**
 * Conditional disaggregation: whether a request that reached its decode instance prefills there
 * (locally) or on the prefill pool (remotely, its KV then moving over the link). Pure: the inputs
 * are what a live decode worker or gateway knows when the request arrives — its prompt length, the
 * decode instance's prefix-cache match as the router estimates it, that instance's running decodes,
 * and the prefill pool's queue as the router sees it. Nothing about the request's future.
 *
 * Three rules:
 * - `dynamo`: NVIDIA Dynamo's disaggregated router — remote when the uncached prompt (prompt less
 *   prefix hit) is longer than `max_local_prefill_length` (Dynamo's DisaggRouterConf default: 1000
 *   tokens) and the prefill queue is not full; local otherwise.
 * - `switchyard`: the option that adds the least latency summed over the requests it touches,
 *   estimated with the performance model (see docs/disaggregation.md, "Conditional disaggregation").
 * - `slo`: remote while the prefill pool meets the TTFT SLO with room; past that, local within a
 *   TPOT budget of the decode instance that counts the local prefills already sent to it.
 */
import type { Request, Slo } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import type { PerfModel } from '../../model/types.ts';
import { PrefixCacheIndex } from '../routing/prefix-cache-index.ts';

/** The rules `--pd-conditional` takes. */
export const PD_CONDITIONAL_RULES = ['dynamo', 'switchyard', 'slo'] as const;
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

/**
 * The `slo` rule sends a request to the prefill pool while its estimated remote TTFT is at most
 * this share of the TTFT SLO: a queue that deep already keeps the pool busy, and the rest of the SLO
 * is margin for the estimate (the queue is the least-loaded instance's, the prefill pick may differ).
 */
export const SLO_REMOTE_TTFT_SHARE = 0.5;
/**
 * The `slo` rule's TPOT target as a share of the TPOT SLO: the decode instance's mean step time, local
 * prefills included, is kept under it, so that most requests (the goodput target is 90%) meet the SLO.
 */
export const SLO_TPOT_SHARE = 0.9;

/** Whether `rule` predicts time, and so needs a performance model per decode instance. */
export function ruleNeedsPerfModel(rule: PdConditionalRule): boolean {
  return rule !== 'dynamo';
}

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
  /**
   * Prompt tokens this host sent to the decode instance to prefill itself and has not yet seen the
   * first token of (its host accounting, InstanceView.pendingPrefillTokens): the local prefills
   * queued ahead of this one. Undefined counts as 0.
   */
  readonly decodePendingPrefillTokens?: number | undefined;
  /** The request's SLO (config in the gateway, the workload's in the twin); the `slo` rule reads it. */
  readonly slo?: Slo | undefined;
  /**
   * Stall (decode step time beyond decode-only steps) of the local prefills this host sent to the
   * decode instance under the `slo` rule, decayed with the TTFT SLO as time constant
   * (LocalStallLedger). Undefined counts as 0.
   */
  readonly recentLocalStallMs?: number | undefined;
}

/** The decision and the estimates behind it (the `switchyard` rule fills the estimates). */
export interface PrefillDecision {
  readonly remote: boolean;
  /** Estimated latency added by prefilling locally (this request's TTFT plus the decodes' stall). */
  readonly localCostMs?: number;
  /** Estimated latency added by prefilling remotely (queue + prefill + transfer). */
  readonly remoteCostMs?: number;
  /**
   * The `slo` rule: the decode step time this request's local prefill adds beyond decode-only steps
   * (what a host records in its LocalStallLedger when the request stays local).
   */
  readonly stallMs?: number;
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
  const e = estimates(input, perf, chunkTokens);
  const localCostMs = e.ownMs + input.decodeRunning * e.stallMs;
  return { remote: e.remoteTtftMs <= localCostMs, localCostMs, remoteCostMs: e.remoteTtftMs };
}

/**
 * The SLO-aware rule. Remote while the estimated remote TTFT (as in `switchyard`) is at most
 * SLO_REMOTE_TTFT_SHARE of the TTFT SLO: the prefill pool is the capacity a decode batch does not
 * pay for. Past that, local if the decode instance has TPOT budget left and local is the sooner
 * first token; remote otherwise.
 *
 * The budget is a rate, not a per-request check, since every arrival at a loaded cluster makes the
 * same choice: with `d` the decode-only step time of the running batch and `T` the TPOT SLO, the
 * decode instance may spend a share `1 - d / (SLO_TPOT_SHARE * T)` of its time on prefill stall
 * (step time beyond decode-only) and keep its mean step under SLO_TPOT_SHARE * T. The stall of the
 * local prefills it was sent, decayed with the TTFT SLO `H` as time constant (so `recent / H` is its
 * recent stall rate), plus this request's own must stay within that share of `H`. The local TTFT
 * counts the local prompts already queued there (`decodePendingPrefillTokens`) ahead of this one.
 * Without an SLO it decides as `switchyard`.
 */
export function sloDecision(
  input: PrefillDecisionInput,
  perf: PerfModel,
  chunkTokens: number,
): PrefillDecision {
  const slo = input.slo;
  if (slo === undefined) return switchyardDecision(input, perf, chunkTokens);
  const e = estimates(input, perf, chunkTokens);
  const base = { localCostMs: e.localTtftMs, remoteCostMs: e.remoteTtftMs, stallMs: e.stallMs };
  if (e.remoteTtftMs <= SLO_REMOTE_TTFT_SHARE * slo.ttftMs) return { remote: true, ...base };
  const share = Math.max(0, 1 - e.decodeOnlyMs / (SLO_TPOT_SHARE * slo.tpotMs));
  const withinBudget = (input.recentLocalStallMs ?? 0) + e.stallMs <= share * slo.ttftMs;
  return { remote: !(withinBudget && e.localTtftMs < e.remoteTtftMs), ...base };
}

interface Estimates {
  /** One decode-only step of the running batch (0 when none runs). */
  readonly decodeOnlyMs: number;
  /** Local: the request's own prefill steps. */
  readonly ownMs: number;
  /** Local: the request's first token, behind the local prompts queued there (`switchyard` ignores them). */
  readonly localTtftMs: number;
  /** Local: the step time its own chunks add beyond decode-only steps. */
  readonly stallMs: number;
  /** Remote: queue + prefill + transfer + the first decode step. */
  readonly remoteTtftMs: number;
}

/**
 * Both options' times. Local: the uncached prompt runs in chunks of `chunkTokens` mixed into the
 * decode instance's steps, after the local prompts queued there. Remote: the prefill queue ahead,
 * the whole prompt's prefill (the prefill instance's cache is not known here, so nothing is taken as
 * cached), the transfer, and the decode step giving the first token.
 */
function estimates(input: PrefillDecisionInput, perf: PerfModel, chunkTokens: number): Estimates {
  const cached = Math.min(input.prefixHitTokens, Math.max(0, input.promptTokens - 1));
  const uncached = input.promptTokens - cached;
  const decodeOnlyMs =
    input.decodeRunning > 0 ? perf.decodeStepTimeMs(input.decodeRunning, input.decodeContextTokensMean) : 0;
  const mixedStepMs = (chunk: number, before: number): number =>
    perf.stepTimeMs({
      prefillSeqs: 1,
      prefillTokens: chunk,
      prefillAttentionPairs: chunk * before + (chunk * (chunk + 1)) / 2,
      decodeSeqs: input.decodeRunning,
      decodeContextTokens: input.decodeRunning * input.decodeContextTokensMean,
      commonPrefixTokens: 0,
    });
  // Local prompts queued ahead (their cached prefixes unknown here: each chunk taken on its own).
  let aheadMs = 0;
  const ahead = input.decodePendingPrefillTokens ?? 0;
  for (let done = 0; done < ahead; ) {
    const chunk = Math.min(chunkTokens, ahead - done);
    aheadMs += mixedStepMs(chunk, 0);
    done += chunk;
  }
  let ownMs = 0;
  let stallMs = 0;
  for (let done = 0; done < uncached; ) {
    const chunk = Math.min(chunkTokens, uncached - done);
    const stepMs = mixedStepMs(chunk, cached + done);
    ownMs += stepMs;
    stallMs += Math.max(0, stepMs - decodeOnlyMs);
    done += chunk;
  }
  const queueMs = input.prefillQueueTokens > 0 ? perf.prefillTimeMs(input.prefillQueueTokens) : 0;
  // The first token then comes from the decode instance's next step, with this request in it.
  const firstStepMs = perf.decodeStepTimeMs(input.decodeRunning + 1, input.decodeContextTokensMean);
  const remoteTtftMs = queueMs + perf.prefillTimeMs(input.promptTokens) + input.transferMs + firstStepMs;
  return { decodeOnlyMs, ownMs, localTtftMs: aheadMs + ownMs, stallMs, remoteTtftMs };
}

/** The decision of `rule`. */
export function decidePrefill(
  rule: PdConditionalRule,
  input: PrefillDecisionInput,
  perf: PerfModel,
  chunkTokens: number,
): PrefillDecision {
  if (rule === 'dynamo') return dynamoDecision(input);
  if (rule === 'slo') return sloDecision(input, perf, chunkTokens);
  return switchyardDecision(input, perf, chunkTokens);
}

/**
 * The decision's input from what a live gateway sees (src/core/view.ts): the decode instance's
 * running batch and its KV in use (for their mean context), the prefill pool's in-flight requests
 * and the least pending prefill tokens among its instances (host accounting, fresh in both hosts),
 * and the decode instance's own pending prefill tokens (host accounting: local prompts queued there).
 * `prefixHitTokens` is the router's own estimate of the decode instance's cached prefix; `slo`, for
 * the `slo` rule, the request's SLO and the decode instance's LocalStallLedger figure.
 */
export function decisionInputFromViews(
  promptTokens: number,
  prefixHitTokens: number,
  decode: InstanceView,
  prefill: readonly InstanceView[],
  transferMs: number,
  slo?: { readonly slo: Slo | undefined; readonly recentLocalStallMs: number },
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
    decodePendingPrefillTokens: decode.pendingPrefillTokens,
    ...(slo?.slo === undefined ? {} : { slo: slo.slo, recentLocalStallMs: slo.recentLocalStallMs }),
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

/**
 * Decode instances a LocalStallLedger keeps at most (a bound on its map whatever ids come and go;
 * the live gateway also forgets a removed backend's entry, PdConditional.forgetBackend).
 */
export const LOCAL_STALL_LEDGER_ENTRIES_MAX = 1024;
/** A decayed stall under this (ms) counts as none: such an entry may be dropped to bound the map. */
const LOCAL_STALL_NEGLIGIBLE_MS = 1e-6;

/** One stall a LocalStallLedger recorded (`add`), to take back with `withdraw`. */
export interface LocalStallRecord {
  readonly decodeId: string;
  /**
   * Which entry of `decodeId` took it: each entry the ledger creates gets a new number, so a record
   * made before the entry was dropped (`forget`, pruning) never touches one created after.
   */
  readonly entry: number;
  /** The entry's time once the stall was added (the later of the record's and the entry's). */
  readonly atMs: number;
  readonly stallMs: number;
}

/**
 * The `slo` rule's memory, per decode instance: the stall of the local prefills this host sent
 * there, decayed exponentially with the TTFT SLO as time constant, on the host's clock (the
 * requests' arrival times). Both hosts keep one and record each local decision's `stallMs`.
 * Bounded: past `maxEntries` decode instances, entries decayed to nothing go first, then the one
 * recorded longest ago.
 */
export class LocalStallLedger {
  /** Per decode instance: the decayed stall as of `atMs`, and the entry's number (`LocalStallRecord.entry`). */
  private readonly byDecode = new Map<string, { ms: number; atMs: number; entry: number }>();
  /** The number the next entry created gets. */
  private nextEntry = 0;

  constructor(private readonly maxEntries = LOCAL_STALL_LEDGER_ENTRIES_MAX) {}

  /** Decode instances with an entry. */
  get size(): number {
    return this.byDecode.size;
  }

  /** The decayed stall of `decodeId` at `atMs` (an earlier time than the last record counts as it). */
  recentMs(decodeId: string, atMs: number, horizonMs: number): number {
    const entry = this.byDecode.get(decodeId);
    if (entry === undefined) return 0;
    return entry.ms * Math.exp(-Math.max(0, atMs - entry.atMs) / horizonMs);
  }

  /** Adds `stallMs` at `atMs` to `decodeId`; what was recorded, for `withdraw`. */
  add(decodeId: string, atMs: number, horizonMs: number, stallMs: number): LocalStallRecord {
    const ms = this.recentMs(decodeId, atMs, horizonMs) + stallMs;
    const existing = this.byDecode.get(decodeId);
    const at = Math.max(atMs, existing?.atMs ?? atMs);
    const entry = existing?.entry ?? this.nextEntry++;
    this.byDecode.set(decodeId, { ms, atMs: at, entry });
    if (this.byDecode.size > this.maxEntries) this.prune(at, horizonMs, decodeId);
    return { decodeId, entry, atMs: at, stallMs };
  }

  /**
   * Takes back a stall `add` recorded, as decayed since (with `horizonMs`, the horizon it was
   * recorded with: exact while the instance's records share it). Nothing if the entry that took it
   * is gone, even when the instance has a newer one (a removed backend re-added under its id starts
   * fresh: a late withdraw from its earlier incarnation would undercount the new one's stall).
   */
  withdraw(record: LocalStallRecord, horizonMs: number): void {
    const entry = this.byDecode.get(record.decodeId);
    if (entry === undefined || entry.entry !== record.entry) return;
    const ms = entry.ms - record.stallMs * Math.exp(-Math.max(0, entry.atMs - record.atMs) / horizonMs);
    if (ms < LOCAL_STALL_NEGLIGIBLE_MS) this.byDecode.delete(record.decodeId);
    else this.byDecode.set(record.decodeId, { ms, atMs: entry.atMs, entry: entry.entry });
  }

  /** Drops `decodeId`'s entry (the instance is gone). */
  forget(decodeId: string): void {
    this.byDecode.delete(decodeId);
  }

  /** Back to `maxEntries`: entries decayed to nothing at `atMs`, then the oldest; `keep` stays. */
  private prune(atMs: number, horizonMs: number, keep: string): void {
    for (const id of [...this.byDecode.keys()])
      if (id !== keep && this.recentMs(id, atMs, horizonMs) < LOCAL_STALL_NEGLIGIBLE_MS)
        this.byDecode.delete(id);
    while (this.byDecode.size > this.maxEntries) {
      let oldest: string | undefined;
      let oldestAt = Number.POSITIVE_INFINITY;
      for (const [id, entry] of this.byDecode)
        if (id !== keep && entry.atMs < oldestAt) [oldest, oldestAt] = [id, entry.atMs];
      if (oldest === undefined) return;
      this.byDecode.delete(oldest);
    }
  }
}
