/**
 * Disaggregated prefill/decode (P/D) clusters in the twin: what happens to a request between its
 * prefill on a prefill-role instance and its decode on a decode-role instance.
 *
 * The flow modelled is vLLM's NIXL connector behind its proxy: the prefill instance runs the request
 * with one output token and keeps its KV blocks (EngineRequest.holdKvAfterFinish) until the transfer
 * has ended; the decode instance is picked when the prefill ends, reserves KV blocks for the whole
 * prompt (a request that finds too few waits there, in arrival order), then reads the KV over the
 * link (src/model/kv-link.ts, not layer-wise, so the whole transfer lands on TTFT; with
 * PdSettings.layerwise only the link's backlog does, when the blocks were reserved), and runs the
 * request with every prompt token but the last already computed (EngineRequest.importedTokens). Its
 * first token comes from the decode's first step, as the proxy streams the decode's answer, so
 * TTFT = prefill + reservation wait + transfer + that step.
 *
 * With a conditional rule (PdSettings.conditional) the decode instance is picked at arrival instead,
 * and `prefillsRemotely` decides: local runs the request whole there, remote as above. A pair policy
 * that decides at arrival (PdSettings.decodeAtArrival, Mooncake's) picks it there too, always remote:
 * a decode refusal then rejects the request before any prefill.
 *
 * The twin (src/twin/simulator.ts) owns the engines and the event queue; this module keeps the
 * hand-offs: who waits for blocks where, which transfers are in flight, and their figures.
 */
import type { Request } from '../core/request.ts';
import type { InstanceView } from '../core/view.ts';
import { type KvLink, type KvTransfer, kvLink, kvTransfer } from '../model/kv-link.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';
import type { ModelSpec, PerfModel } from '../model/types.ts';
import {
  decidePrefill,
  decisionInputFromViews,
  LocalStallLedger,
  type PdConditionalRule,
} from '../policies/disagg/conditional.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { latencyStats } from '../stats/percentiles.ts';
import type { JsonValue } from './report/json.ts';
import { roundFloat, toJsonValue } from './report/json.ts';

/** What makes a run disaggregated (SimOptions.pd). */
export interface PdSettings {
  /** Prefill-role instances: the cluster's first ones. */
  readonly prefillInstances: number;
  /** Decode-role instances: the rest of the cluster. */
  readonly decodeInstances: number;
  /** The KV link's name (src/model/kv-link.ts KV_LINK_NAMES). */
  readonly link: string;
  /** Picks the decode instance, over decode-role instances only (`--pd-policy`). */
  readonly decodePolicy: RoutingPolicy;
  /**
   * Picks the decode instance at arrival, before the prefill pick (a pair policy's `decodeAt`
   * 'arrival', as Mooncake's Conductor): a decode refusal then costs no prefill. Undefined or false:
   * at the prefill's end (vLLM's proxy order), unless a conditional rule picks it at arrival anyway.
   */
  readonly decodeAtArrival?: boolean | undefined;
  /**
   * Conditional disaggregation (`--pd-conditional`, src/policies/disagg/conditional.ts): the decode
   * instance prefills short or cached prompts itself. Undefined: every request disaggregates.
   */
  readonly conditional?: PdConditionalRule | undefined;
  /**
   * The `--pd-policy` name and the pair's `--pd-params`, recorded in the run's JSON so a result file
   * says how it was produced. Undefined: `decodePolicy`'s name, and no parameters.
   */
  readonly pdPolicy?: string | undefined;
  readonly pdParams?: Readonly<Record<string, unknown>> | undefined;
  /**
   * How long a prefill instance holds the KV of a request whose decode leg never reads it (the decode
   * engine refused it, or the decode pick rejected it) before freeing it: the prefill engine's
   * `--kv-release-timeout-ms` (vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT). Undefined: that flag's default.
   */
  readonly kvReleaseTimeoutMs?: number | undefined;
  /**
   * `--pd-layerwise`: the prefill engine sends each layer's KV as it computes it (Mooncake's
   * layer-wise prefill), so only the link's backlog past the prefill lands on TTFT
   * (src/model/kv-link.ts `kvTransfer`). It needs the decode side's blocks reserved when sending
   * starts: a hand-off that waited for blocks moves its whole KV after the wait. Undefined or false:
   * vLLM's NIXL flow, the whole KV after the prefill.
   */
  readonly layerwise?: boolean | undefined;
}

/** The default decode-side policy: least outstanding requests, as a live gateway would run it. */
export const PD_POLICY_DEFAULT = 'least-request';
/** The default link: one 400 Gb/s InfiniBand NIC per GPU. */
export const PD_LINK_DEFAULT = 'ib-400';
/** The sim P/D prefill engine's default `--kv-release-timeout-ms`, re-exported for the twin's modules. */
export { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../model/kv-release.ts';

/** A P/D run's figures for its JSON (`pd`). */
export interface PdOutcome {
  readonly prefillInstances: number;
  readonly decodeInstances: number;
  readonly link: string;
  /** `--pd-layerwise` was set (PdSettings.layerwise). */
  readonly layerwise: boolean;
  /** The `--pd-policy` name (a pair policy, or the routing policy picking the decode side). */
  readonly policy: string;
  /** The pair policy's `--pd-params` as given ({} when none: its defaults). */
  readonly params: Readonly<Record<string, unknown>>;
  /**
   * The prefill instances' KV release timeout the run used, ms (`--kv-release-timeout-ms`, or
   * PD_KV_RELEASE_TIMEOUT_MS_DEFAULT): how long a KV no decode reads stays held.
   */
  readonly kvReleaseTimeoutMs: number;
  /** Transfers that started (one per request that reached a decode instance's blocks). */
  readonly transfers: number;
  /** Each started transfer's whole time on the link, ms, layer-wise or not. */
  readonly transferMsMean: number;
  readonly transferMsP99: number;
  /** Distinct KV bytes moved, all transfers together. */
  readonly kvBytesMoved: number;
  /** Mean time a prefilled request waited for the decode side's blocks before its transfer. */
  readonly reserveWaitMsMean: number;
  /**
   * The largest prefill chunk of one sequence any decode-role instance's step ran (1 unless a
   * preemption made one recompute): per step, its prefill tokens less one per other prefilling
   * sequence, an upper bound exact when at most one chunk exceeds a token.
   */
  readonly decodePrefillTokensMax: number;
  /** Requests the conditional rule kept on their decode instance (0 without one). */
  readonly localPrefills: number;
  /** Requests prefilled on a prefill instance (every hand-off). */
  readonly remotePrefills: number;
  /** The conditional rule (`--pd-conditional`); undefined: every request disaggregates. */
  readonly conditional?: PdConditionalRule | undefined;
  /**
   * With a rule: remotely prefilled requests the decode side preempted and so recomputed (0: every
   * remote request ran a one-token prefill chunk there, as the imported admission guarantees).
   * `decodePrefillTokensMax` then also counts the local prefills' chunks.
   */
  readonly importRecomputes?: number | undefined;
}

/** A prefilled request on its way to its decode instance. */
export interface Handoff<T> {
  readonly request: Request;
  /** The host's own payload (the instance, attempt, and so on). */
  readonly payload: T;
  /** Index of the decode instance. */
  readonly decode: number;
  /** KV blocks the decode side reserves: the whole prompt. */
  readonly blocks: number;
  readonly transfer: KvTransfer;
  readonly prefilledMs: number;
  /** When the transfer ends; set when it starts. */
  endMs: number;
}

/** The hand-offs of one run. */
export class PdHandoffs<T> {
  readonly link: KvLink;
  /** Hand-offs waiting for blocks, per decode instance, in arrival order. */
  private readonly waiting = new Map<number, Handoff<T>[]>();
  /** Transfers in flight, sorted by end time, then start order (few at a time: a sorted array). */
  private readonly inFlight: Handoff<T>[] = [];
  private readonly transferMs: number[] = [];
  private readonly reserveWaitMs: number[] = [];
  private kvBytes = 0;
  private localPrefills = 0;
  private remotePrefills = 0;
  decodePrefillTokensMax = 0;
  /** Remote requests recomputed on the decode side after a preemption (the twin counts them). */
  importRecomputes = 0;
  /** The `slo` rule's record of the local prefills sent to each decode instance. */
  private readonly stalls = new LocalStallLedger();

  constructor(
    readonly settings: PdSettings,
    private readonly model: ModelSpec,
    private readonly tp: number,
    private readonly blockSize: number,
  ) {
    this.link = kvLink(settings.link);
  }

  /**
   * A hand-off for `request`, prefilled at `nowMs`, to decode instance `decode`. `prefillStartMs`:
   * when the prefill engine first scheduled the request (its prefill began computing, not queueing);
   * with `layerwise`, the link sends alongside the prefill from then, so only what it has not sent by
   * `nowMs` adds to TTFT.
   */
  handoff(request: Request, payload: T, decode: number, nowMs: number, prefillStartMs: number): Handoff<T> {
    const layerwise = this.settings.layerwise === true;
    const transfer = kvTransfer(this.model, request.inputTokens, this.link, {
      prefillTp: this.tp,
      decodeTp: this.tp,
      ...(layerwise ? { layerwise, prefillMs: Math.max(0, nowMs - prefillStartMs) } : {}),
    });
    const blocks = Math.ceil(request.inputTokens / this.blockSize);
    this.remotePrefills++;
    return { request, payload, decode, blocks, transfer, prefilledMs: nowMs, endMs: Number.NaN };
  }

  /**
   * With a conditional rule: whether `request`, arrived at decode instance `decode`, prefills on
   * the prefill pool (true) or locally (false, counted here). The inputs are the gateway's views
   * and the router's estimate of the decode instance's cached prefix; `chunkTokens` is the decode
   * engine's per-step token budget. Without a rule: always true. The `slo` rule reads the request's
   * SLO and records a local request's stall at its arrival time, as the gateway does.
   */
  prefillsRemotely(
    request: Request,
    prefixHitTokens: number,
    decode: InstanceView,
    prefill: readonly InstanceView[],
    perf: PerfModel,
    chunkTokens: number,
  ): boolean {
    const rule = this.settings.conditional;
    if (rule === undefined) return true;
    const transferMs = kvTransfer(this.model, request.inputTokens, this.link, {
      prefillTp: this.tp,
      decodeTp: this.tp,
    }).ttftAddedMs;
    const slo = request.slo;
    const horizonMs = slo?.ttftMs ?? 0;
    const recentLocalStallMs =
      slo === undefined ? 0 : this.stalls.recentMs(decode.id, request.arrivalMs, horizonMs);
    const input = decisionInputFromViews(request.inputTokens, prefixHitTokens, decode, prefill, transferMs, {
      slo,
      recentLocalStallMs,
    });
    const decision = decidePrefill(rule, input, perf, chunkTokens);
    if (!decision.remote) {
      this.localPrefills++;
      if (rule === 'slo' && slo !== undefined)
        this.stalls.add(decode.id, request.arrivalMs, horizonMs, decision.stallMs ?? 0);
    }
    return decision.remote;
  }

  /** Queues a hand-off at its decode instance, behind those already waiting there. */
  enqueue(handoff: Handoff<T>): void {
    let queue = this.waiting.get(handoff.decode);
    if (queue === undefined) {
      queue = [];
      this.waiting.set(handoff.decode, queue);
    }
    queue.push(handoff);
  }

  /** Hand-offs waiting for blocks at decode instance `decode`. */
  waitingAt(decode: number): number {
    return this.waiting.get(decode)?.length ?? 0;
  }

  /**
   * Starts the transfers of decode instance `decode`'s waiting hand-offs, in order, while `reserve`
   * finds their blocks; returns the end times of those started.
   */
  startTransfers(decode: number, nowMs: number, reserve: (h: Handoff<T>) => boolean): number[] {
    const queue = this.waiting.get(decode);
    const ends: number[] = [];
    while (queue !== undefined && queue.length > 0) {
      const head = queue[0] as Handoff<T>;
      if (!reserve(head)) break;
      queue.shift();
      // Layer-wise sending overlaps the prefill only when the decode side's blocks were there to
      // receive it, i.e. reserved at the prefill's end without waiting: a hand-off that waited had
      // its layers computed before there was room, so its whole KV moves now (ttftAddedMs equals
      // transferMs without layer-wise).
      const overlapped = nowMs === head.prefilledMs;
      head.endMs = nowMs + (overlapped ? head.transfer.ttftAddedMs : head.transfer.transferMs);
      this.transferMs.push(head.transfer.transferMs);
      this.reserveWaitMs.push(nowMs - head.prefilledMs);
      this.kvBytes += head.transfer.bytes;
      this.insert(head);
      ends.push(head.endMs);
    }
    return ends;
  }

  /** The transfers that have ended by `nowMs`, in end order, taken out. */
  takeArrived(nowMs: number): Handoff<T>[] {
    let n = 0;
    while (n < this.inFlight.length && (this.inFlight[n] as Handoff<T>).endMs <= nowMs) n++;
    return this.inFlight.splice(0, n);
  }

  /** When the next transfer ends; Infinity when none is in flight. */
  get nextEndMs(): number {
    return this.inFlight.length > 0 ? (this.inFlight[0] as Handoff<T>).endMs : Number.POSITIVE_INFINITY;
  }

  /** Whether any hand-off is waiting or in flight. */
  get busy(): boolean {
    if (this.inFlight.length > 0) return true;
    for (const queue of this.waiting.values()) if (queue.length > 0) return true;
    return false;
  }

  /** The run's P/D figures. */
  outcome(): PdOutcome {
    const transfers = latencyStats(this.transferMs);
    const waits = latencyStats(this.reserveWaitMs);
    return {
      prefillInstances: this.settings.prefillInstances,
      decodeInstances: this.settings.decodeInstances,
      link: this.link.name,
      layerwise: this.settings.layerwise === true,
      policy: this.settings.pdPolicy ?? this.settings.decodePolicy.name,
      params: this.settings.pdParams ?? {},
      kvReleaseTimeoutMs: this.settings.kvReleaseTimeoutMs ?? PD_KV_RELEASE_TIMEOUT_MS_DEFAULT,
      transfers: this.transferMs.length,
      transferMsMean: transfers.mean,
      transferMsP99: transfers.p99,
      kvBytesMoved: this.kvBytes,
      reserveWaitMsMean: waits.mean,
      decodePrefillTokensMax: this.decodePrefillTokensMax,
      localPrefills: this.localPrefills,
      remotePrefills: this.remotePrefills,
      ...(this.settings.conditional !== undefined
        ? { conditional: this.settings.conditional, importRecomputes: this.importRecomputes }
        : {}),
    };
  }

  /** Keeps `inFlight` sorted by end time; equal ends keep their start order. */
  private insert(handoff: Handoff<T>): void {
    let i = this.inFlight.length;
    while (i > 0 && (this.inFlight[i - 1] as Handoff<T>).endMs > handoff.endMs) i--;
    this.inFlight.splice(i, 0, handoff);
  }
}

/** The `pd` block of a run's JSON. */
export function pdJson(outcome: PdOutcome | undefined): Record<string, JsonValue> {
  if (outcome === undefined) return {};
  return {
    pd: {
      prefillInstances: outcome.prefillInstances,
      decodeInstances: outcome.decodeInstances,
      link: outcome.link,
      // Only when set, so a run without it keeps its JSON as it was.
      ...(outcome.layerwise ? { layerwise: true } : {}),
      policy: outcome.policy,
      params: toJsonValue(outcome.params),
      kvReleaseTimeoutMs: outcome.kvReleaseTimeoutMs,
      transfers: outcome.transfers,
      transferMsMean: roundFloat(outcome.transferMsMean),
      transferMsP99: roundFloat(outcome.transferMsP99),
      kvBytesMoved: outcome.kvBytesMoved,
      reserveWaitMsMean: roundFloat(outcome.reserveWaitMsMean),
      decodePrefillTokensMax: outcome.decodePrefillTokensMax,
      localPrefills: outcome.localPrefills,
      remotePrefills: outcome.remotePrefills,
      // Only with a rule, so a run without one keeps its JSON as it was.
      ...(outcome.conditional !== undefined
        ? { conditional: outcome.conditional, importRecomputes: outcome.importRecomputes ?? 0 }
        : {}),
    },
  };
}
