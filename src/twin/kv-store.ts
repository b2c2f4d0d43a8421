/**
 * Fetching a cached prefix held on another instance, as an engine with a KV connector to a shared
 * store does: Mooncake's distributed KV store (prefill instances read a longer prefix another node
 * holds over RDMA, Mooncake FAST'25) and LMCache's P2P and remote backends.
 *
 * vLLM (v1) does this inside the engine: when the scheduler looks at a waiting request it asks the
 * connector how many prompt tokens past its local prefix-cache hit it can load from outside
 * (`KVConnectorBase_V1.get_num_new_matched_tokens`); it allocates the request's blocks for them
 * (`update_state_after_alloc`), the request waits (WAITING_FOR_REMOTE_KVS) while the workers load the
 * KV asynchronously, and then it prefills only the rest; the loaded blocks are ordinary cached blocks
 * from then on. The twin models the same: the request is held for the transfer with its blocks
 * reserved (`EngineCore.reserveImport`), then joins the engine with `importedTokens` = the remote
 * prefix. The holder's cache is only read.
 *
 * Pure apart from its own counters: no clock, no I/O.
 */
import { z } from 'zod';
import type { EngineRequest, FinishedRequest } from '../engine-core/types.ts';
import { type CustomKvLink, KV_LINK_NAMES, type KvLink, kvLink, kvTransfer } from '../model/kv-link.ts';
import type { ModelSpec } from '../model/types.ts';

/**
 * `engine.kvStore` in a twin config: the engine's connector to a KV store.
 * - `kind: 'peer'`: the store holds what any other instance of the same model serving now (an
 *   autoscaled pool's ready and draining ones; not a stopped one) has in its prefix cache (Mooncake's
 *   store metadata, LMCache's P2P lookup); nothing is written to it apart from what engines cache
 *   anyway.
 * - `link`: what a fetch travels over: a name from src/model/kv-link.ts (`nvlink`, `ib-400`,
 *   `roce-200`, `tcp-100`) or `{ gbps, latencyUs, efficiency? }`.
 * - `minTokens`: fetch only when the remote prefix is longer than the local hit by at least this many
 *   tokens (default: one engine block); below it the engine computes the difference itself.
 * Absent: no store, the engine recomputes what it does not hold (the twin as before).
 */
export const kvStoreSchema = z.strictObject({
  kind: z.literal('peer'),
  link: z.union([
    z.enum(KV_LINK_NAMES),
    z.strictObject({
      gbps: z.number().positive().finite(),
      latencyUs: z.number().nonnegative().finite(),
      efficiency: z.number().gt(0).max(1).optional(),
    }),
  ]),
  minTokens: z.number().int().min(1).max(10_000_000).optional(),
});
export type KvStoreOptions = z.infer<typeof kvStoreSchema>;

/** Engine options the twin resolves: the engine core's plus the connector, which only the host acts on. */
export interface TwinEngineOptions {
  /** The engine's KV store connector (`engine.kvStore`); undefined: none. */
  readonly kvStore?: KvStoreOptions | undefined;
}

/** One instance's connector, resolved. */
export interface PeerStore {
  readonly link: KvLink;
  /** Fetch only past the local hit by at least this many tokens. */
  readonly minTokens: number;
  /** The model whose KV moves (bytes per token). */
  readonly model: ModelSpec;
  /** This instance's tensor-parallel degree (the receiving side). */
  readonly tp: number;
}

/** Resolves `options` for an instance of `model` at `tp` with `blockSize`-token blocks. */
export function peerStore(
  options: KvStoreOptions,
  model: ModelSpec,
  tp: number,
  blockSize: number,
): PeerStore {
  const link = kvLink(options.link as string | CustomKvLink);
  return { link, minTokens: options.minTokens ?? blockSize, model, tp };
}

/**
 * How many prompt tokens a fetch brings, or 0 for none: the holder's prefix past the local hit, when
 * that is at least `minTokens`. Both are capped at `inputTokens - 1` (the engine always computes one
 * token, to sample from), as vLLM caps its hits.
 */
export function tokensToFetch(
  store: PeerStore,
  inputTokens: number,
  localTokens: number,
  remoteTokens: number,
): number {
  const cap = inputTokens - 1;
  const gain = Math.min(remoteTokens, cap) - Math.min(localTokens, cap);
  return gain >= store.minTokens ? gain : 0;
}

/** The time to move `tokens` tokens' KV from a holder at `holderTp` to this instance, ms. */
export function fetchMs(store: PeerStore, tokens: number, holderTp: number): number {
  return kvTransfer(store.model, tokens, store.link, { prefillTp: holderTp, decodeTp: store.tp }).transferMs;
}

/** A fetch in flight: the request joins its engine at `endMs`. */
export interface PendingFetch<R> {
  readonly endMs: number;
  readonly request: R;
  /** The instance (index) it joins. */
  readonly instance: number;
}

/** Per-instance fetch counts in the run's JSON (`kvStore.perInstance`). */
export interface KvStoreInstanceOutcome {
  readonly id: string;
  readonly fetches: number;
  /** Of its fetches, those that failed because the instance read from crashed or stopped mid-transfer. */
  readonly failedFetches: number;
  readonly fetchedTokens: number;
  /** Transfer time of its fetches, summed, ms. */
  readonly fetchMs: number;
}

/** What a run with a store adds to its summary (`kvStore`). */
export interface KvStoreOutcome {
  readonly kind: 'peer';
  readonly link: string;
  readonly fetches: number;
  /**
   * Of those, the ones that failed because their holder crashed or stopped (scaled down, its GPUs
   * released) mid-transfer (the request then computed its prompt on its own engine): still counted
   * in `fetches` and its tokens and time.
   */
  readonly failedFetches: number;
  /** Prompt tokens loaded instead of computed (past each request's local hit). */
  readonly fetchedTokens: number;
  readonly fetchMsMean: number;
  readonly fetchMsMax: number;
  /** Fetches not made because the engine had too few free blocks to reserve for them. */
  readonly noRoom: number;
  /**
   * Prompt tokens of the requests that completed; on a P/D cluster, of the prefill legs that ended
   * (where a prompt is computed; the decode leg receives it by hand-off), plus decode-local prefills.
   */
  readonly promptTokens: number;
  /**
   * Of those, the tokens their engines computed on their last admission: neither a prefix-cache hit
   * nor fetched (a fetch counts only on a first admission: after a preemption it is recomputed).
   */
  readonly promptTokensComputed: number;
  readonly perInstance: readonly KvStoreInstanceOutcome[];
}

/**
 * The run's fetches in flight, in end-time order (ties: first started first), and their counts.
 * Bound: at most one per request in flight.
 */
export class PeerFetches<R> {
  private readonly pending: PendingFetch<R>[] = [];
  private readonly fetches: Float64Array;
  private readonly failedFetches: Float64Array;
  private readonly tokens: Float64Array;
  private readonly ms: Float64Array;
  private fetchMsMax = 0;
  private promptTokens = 0;
  private promptTokensComputed = 0;
  noRoom = 0;

  constructor(
    private readonly ids: readonly string[],
    private readonly linkName: string,
  ) {
    this.fetches = new Float64Array(ids.length);
    this.failedFetches = new Float64Array(ids.length);
    this.tokens = new Float64Array(ids.length);
    this.ms = new Float64Array(ids.length);
  }

  /** When the next fetch ends; Infinity when none is in flight. */
  get nextEndMs(): number {
    return this.pending[0]?.endMs ?? Number.POSITIVE_INFINITY;
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Starts a fetch of `tokens` tokens taking `durationMs`, ending at `endMs`. */
  start(fetch: PendingFetch<R>, tokens: number, durationMs: number): void {
    const i = fetch.instance;
    this.fetches[i] = (this.fetches[i] as number) + 1;
    this.tokens[i] = (this.tokens[i] as number) + tokens;
    this.ms[i] = (this.ms[i] as number) + durationMs;
    if (durationMs > this.fetchMsMax) this.fetchMsMax = durationMs;
    // Insert after every fetch ending no later (stable for equal ends).
    const list = this.pending;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as PendingFetch<R>).endMs <= fetch.endMs) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, fetch);
  }

  /** A fetch by instance `instance` (index) failed: the instance it read from crashed or stopped. */
  failed(instance: number): void {
    this.failedFetches[instance] = (this.failedFetches[instance] as number) + 1;
  }

  /** Removes and returns the fetches that have ended by `nowMs`, in order. */
  takeEnded(nowMs: number): PendingFetch<R>[] {
    let n = 0;
    while (n < this.pending.length && (this.pending[n] as PendingFetch<R>).endMs <= nowMs) n++;
    return this.pending.splice(0, n);
  }

  /** A request completed: counts what its prompt cost on its last admission. */
  finished(request: EngineRequest, result: FinishedRequest): void {
    const input = request.inputTokens;
    const imported = result.preemptions === 0 ? Math.min(request.importedTokens ?? 0, input - 1) : 0;
    this.promptTokens += input;
    this.promptTokensComputed += input - Math.max(result.cachedPromptTokens, imported);
  }

  outcome(): KvStoreOutcome {
    let fetches = 0;
    let failedFetches = 0;
    let tokens = 0;
    let ms = 0;
    const perInstance = this.ids.map((id, i) => {
      fetches += this.fetches[i] as number;
      failedFetches += this.failedFetches[i] as number;
      tokens += this.tokens[i] as number;
      ms += this.ms[i] as number;
      return {
        id,
        fetches: this.fetches[i] as number,
        failedFetches: this.failedFetches[i] as number,
        fetchedTokens: this.tokens[i] as number,
        fetchMs: this.ms[i] as number,
      };
    });
    return {
      kind: 'peer',
      link: this.linkName,
      fetches,
      failedFetches,
      fetchedTokens: tokens,
      fetchMsMean: fetches > 0 ? ms / fetches : 0,
      fetchMsMax: this.fetchMsMax,
      noRoom: this.noRoom,
      promptTokens: this.promptTokens,
      promptTokensComputed: this.promptTokensComputed,
      perInstance,
    };
  }
}
