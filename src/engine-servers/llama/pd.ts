/**
 * The `llama` engine as one side of a prefill/decode pair (`switchyard engine llama --pd-role
 * prefill|decode`), speaking vLLM's P/D flow (the one the gateway drives, docs/disaggregation.md) with
 * a real KV state moving between the engines:
 *
 * - prefill: a request whose `kv_transfer_params` carry `do_remote_decode: true` runs as usual (the
 *   gateway sends max_tokens 1); when it ends, its sequence's state (the prompt's KV, laid out as
 *   llama.cpp's sequence-state file) is saved and offered on the engine's KV server
 *   (src/adapters/kv-transfer/), and the answer gains `kv_transfer_params` naming that server
 *   (`remote_host`, `remote_port`) and the state (`remote_request_id`).
 * - decode: a request with `do_remote_prefill: true` fetches the state over TCP before it starts,
 *   loads it into its sequence, and evaluates only the prompt's last token before generating: the
 *   same tokens as one engine would give. A transfer that fails after its retry, or a state llama.cpp
 *   will not load, is prefilled locally instead (the answer is the same, only slower).
 *
 * States move through memory when the optional KV-state addon is built (kv-native.ts: llama.cpp's
 * `llama_state_seq_get_data` into a buffer the KV server sends from, and `_set_data` from the buffer
 * the decode received into), else through files (node-llama-cpp's saveStateToFile on a tmpfs file
 * the server reads, and loadStateFromFile on the file the decode wrote). The bytes on the wire are
 * the same either way, so a buffer engine and a file engine pair up. `/pd/stats` says which
 * (`kvStateApi`, and why in `kvStateApiReason`), and so does a log line at start.
 *
 * Like the `sim` P/D engine, a small front server (../pd-front.ts) on the public port reads and writes
 * `kv_transfer_params` and proxies to the ordinary OpenAI server on a loopback port, tagging P/D
 * requests (x-request-id) so the backend's hooks (`KvStateHooks`) know which generation is which.
 */
import { constants as bufferConstants, isUtf8 } from 'node:buffer';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LlamaContextSequence } from 'node-llama-cpp';
import {
  fetchKvState,
  IN_FLIGHT_BYTES_MAX_DEFAULT,
  type KvConnectionCounters,
  KvFetchAbortedError,
  KvStateServer,
  kvConnectionCounters,
} from '../../adapters/kv-transfer/kv-transfer.ts';
import { SwitchyardError } from '../../core/errors.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../../model/kv-release.ts';
import {
  FRONT_BODY_BYTES_MAX,
  type PassTarget,
  PdFrontBase,
  PREFILL_ANSWER_BYTES_MAX,
  readBody,
  type ServePdFrontOptions,
  sendError,
  sendJson,
  servePdFront,
} from '../pd-front.ts';
import { STATE_BUFFERS_KEPT_BYTES_MAX, STATE_RESERVE_AUTO_BYTES_MAX } from './defaults.ts';
import { type KvNative, loadKvNative } from './kv-native.ts';
import type { KvStateHooks, KvStateRef, LlamaBackend } from './llama-backend.ts';
import type { SglangPdStats } from './pd-sglang.ts';

/** One side of a llama P/D pair. */
export interface LlamaPdOptions {
  readonly role: 'prefill' | 'decode';
  /** Interface and port of the prefill side's KV server (0: a free port). */
  readonly kvHost: string;
  readonly kvPort: number;
  /**
   * A prefill deletes a state no decode collected after this long; default the sim engine's and the
   * twin's, PD_KV_RELEASE_TIMEOUT_MS_DEFAULT (src/model/kv-release.ts).
   */
  readonly kvReleaseTimeoutMs?: number;
  /** A decode lets this many fetched bytes wait for the disk before it pauses the socket. */
  readonly kvInFlightBytesMax?: number;
  /** Where states are written; default a fresh folder in /dev/shm (memory) or the temp dir. */
  readonly stateDir?: string;
  /**
   * 'auto' (default): buffers when the KV-state addon loads (kv-native.ts), else files. 'file':
   * files always.
   */
  readonly stateApi?: 'auto' | 'file';
  /** Where the start's one line on the state API goes (default stderr). */
  readonly log?: (line: string) => void;
  /**
   * The state buffer reserved and pre-faulted when the model is known (`reserveStateBuffer`), so that
   * the first transfer does not pay for fresh memory: 'auto' (default) one sequence's largest state
   * (the model's KV bytes per token x the context size, `kvStateBytesMax`), at most
   * STATE_RESERVE_AUTO_BYTES_MAX; a number of bytes (at most STATE_BUFFERS_KEPT_BYTES_MAX); 0 none.
   * Only with the buffer state API (files are not reserved).
   */
  readonly stateReserve?: 'auto' | number;
}

/**
 * What a llama.cpp sequence state holds per token and layer: the model's KV shape (GGUF metadata),
 * with the F16 KV cache node-llama-cpp creates by default (the backend sets no other type).
 */
export interface KvStateShape {
  readonly layers: number;
  /** K and V bytes of one token over all layers. */
  readonly kvBytesPerToken: number;
}

/** The GGUF architecture metadata fields the KV shape comes from (node-llama-cpp's `architectureMetadata`). */
export interface KvArchitecture {
  readonly block_count?: number;
  readonly embedding_length?: number;
  readonly attention?: {
    readonly head_count?: number | readonly number[];
    readonly head_count_kv?: number | readonly number[];
    readonly key_length?: number;
    readonly value_length?: number;
  };
}

/** Bytes of one K or V element in node-llama-cpp's default KV cache (F16). */
const F16_BYTES = 2;

/** The KV shape of a model from its GGUF metadata, or undefined when the metadata lacks a field. */
export function kvStateShape(arch: KvArchitecture): KvStateShape | undefined {
  const layers = arch.block_count;
  const heads = arch.attention?.head_count;
  const kvHeads = arch.attention?.head_count_kv ?? heads;
  if (layers === undefined || !(layers > 0) || kvHeads === undefined) return undefined;
  const at = (x: number | readonly number[] | undefined, layer: number): number | undefined =>
    typeof x === 'number' ? x : x?.[layer];
  let kvBytesPerToken = 0;
  for (let layer = 0; layer < layers; layer++) {
    const h = at(heads, layer);
    const perHead =
      arch.embedding_length !== undefined && h !== undefined && h > 0 ? arch.embedding_length / h : undefined;
    const k = arch.attention?.key_length ?? perHead;
    const v = arch.attention?.value_length ?? perHead;
    const n = at(kvHeads, layer);
    if (k === undefined || v === undefined || n === undefined) return undefined;
    kvBytesPerToken += n * (k + v) * F16_BYTES;
  }
  return { layers, kvBytesPerToken };
}

/**
 * A sequence state's bytes beside its KV, as llama.cpp writes it in the file layout that moves on the
 * wire (measured on node-llama-cpp 3.21.1's llama.cpp: 28 bytes, 24 per layer, 16 per token besides
 * the KV: the token, its position and sequence ids), rounded up.
 */
const STATE_FIXED_BYTES_MAX = 64;
const STATE_LAYER_BYTES_MAX = 32;
const STATE_TOKEN_BYTES_EXTRA = 16;

/**
 * The bytes `reserve` (a LlamaPdOptions.stateReserve) comes to for a model: 'auto' one sequence's
 * largest state, at most STATE_RESERVE_AUTO_BYTES_MAX (0 when the metadata lacks the KV shape).
 */
export function stateReserveBytes(
  reserve: 'auto' | number,
  model: { readonly contextSize: number; readonly architecture: KvArchitecture },
): number {
  if (reserve !== 'auto') return reserve;
  const shape = kvStateShape(model.architecture);
  return shape === undefined
    ? 0
    : Math.min(kvStateBytesMax(shape, model.contextSize), STATE_RESERVE_AUTO_BYTES_MAX);
}

/** The largest state a sequence of `tokens` tokens gives on a model of `shape`. */
export function kvStateBytesMax(shape: KvStateShape, tokens: number): number {
  return (
    STATE_FIXED_BYTES_MAX +
    STATE_LAYER_BYTES_MAX * shape.layers +
    tokens * (shape.kvBytesPerToken + STATE_TOKEN_BYTES_EXTRA)
  );
}

/** Counters of the P/D side (`GET /pd/stats`). */
export interface LlamaPdStats {
  role: 'prefill' | 'decode';
  /** P/D requests seen, by the max_tokens they carried (the gateway sends 1 to a prefill). */
  requests: number;
  maxTokensSeen: Record<string, number>;
  /** Prefill: states saved and offered, and save failures. */
  exported: number;
  exportFailures: number;
  /** Decode: states fetched and loaded, bytes, retried transfers, local prefills after a failure. */
  imported: number;
  importedBytes: number;
  transferRetries: number;
  localPrefills: number;
  /** Wall milliseconds spent saving states (prefill) and fetching them over TCP (decode), summed. */
  saveMsTotal: number;
  fetchMsTotal: number;
  /** Decode: wall milliseconds spent setting fetched states on sequences, summed. */
  loadMsTotal: number;
  /**
   * How states are saved and loaded: 'buffer' (llama.cpp's buffer state API, the KV-state addon) or
   * 'file' (node-llama-cpp's file API); filled in by `statsJson`.
   */
  kvStateApi?: 'buffer' | 'file';
  /** With 'file': why not buffers (not built, turned off, built for another version, ...). */
  kvStateApiReason?: string;
  /** Saves and loads the addon failed at, each then done through a file instead. */
  bufferApiFailures: number;
  /**
   * The state buffer reserved and pre-faulted at start (`stateReserve`), in bytes (0: none), and the
   * wall milliseconds that took (part of the engine's start).
   */
  stateBufferReservedBytes: number;
  stateBufferReserveMs: number;
  /** State buffers allocated fresh for a save or a fetch (not a kept or reserved one). */
  stateBuffersAllocated: number;
  /** Prefill: the KV server's counters (offered, served, released). */
  server?: KvStateServer['stats'];
  /** With --pd-protocol sglang: the rooms (pd-sglang.ts). */
  sglang?: SglangPdStats;
  /**
   * Decode: the process's KV client connections (kept-alive reuse, fresh opens, replaced ones, idle
   * now), filled in by `statsJson`.
   */
  connections?: KvConnectionCounters;
}

/**
 * Fetched-state files a decode keeps for reuse (overwritten in place: their tmpfs pages are not
 * freed and allocated again for every transfer); more are deleted.
 */
export const STATE_FILES_KEPT_MAX = 4;
/**
 * State buffers each side keeps for reuse (a prefill's once their offer ended, a decode's once
 * loaded): a fresh buffer is mapped memory whose first touch page-faults; at most
 * STATE_BUFFERS_KEPT_BYTES_MAX bytes (defaults.ts, for the CLI's help) and this many buffers.
 */
export { STATE_BUFFERS_KEPT_BYTES_MAX, STATE_RESERVE_AUTO_BYTES_MAX };
export const STATE_BUFFERS_KEPT_MAX = 4;
/**
 * The largest state a decode receives into memory: Node's largest Buffer (4 GiB on Node 20). A larger
 * state (a long prompt on a large model) is fetched into a file, as without the addon; a prefill's
 * buffer for it cannot be had either, so it saves it to a file (`bufferApiFailures`).
 */
export const STATE_BUFFER_BYTES_MAX = bufferConstants.MAX_LENGTH;

/** A saved state the prefill has not yet offered: a file, or a buffer (`bytes` of it). */
type SavedState = { bytes: number; tokens: number } & ({ path: string } | { buffer: Buffer });

/** Where a decode fetches its state (the prefill's `kv_transfer_params`). */
interface RemoteState {
  readonly host: string;
  readonly port: number;
  readonly transferId: string;
  /** The client's: a client that leaves stops the fetch (its connection closed, not retried). */
  readonly signal?: AbortSignal;
}

/** The P/D state of one llama engine: the backend's KvStateHooks and the prefill's KV server. */
export class LlamaPd implements KvStateHooks {
  readonly stats: LlamaPdStats;
  readonly server: KvStateServer | undefined;
  kvPort = 0;
  private readonly dir: string;
  private readonly ownsDir: boolean;
  private nextFile = 0;
  /** Prefill: tags to save, and what the save gave. */
  private readonly exports = new Map<string, SavedState | Error | null>();
  /** State buffers free for the next save (prefill) or fetch (decode), and their bytes. */
  private readonly freeBuffers: Buffer[] = [];
  private freeBufferBytes = 0;
  /** The buffer state API, once asked (after node-llama-cpp loaded: the first save, load or stats). */
  private nativeApi: { api: KvNative | undefined; reason?: string } | undefined;
  /** Decode: tags to load, and from where. */
  private readonly imports = new Map<string, RemoteState>();
  /** Decode: fetched-state files free for the next fetch. */
  private readonly freeFiles: string[] = [];
  /** Decode: tags whose state was fetched before the generation (SGLang's flow, pd-sglang.ts). */
  private readonly fetched = new Map<string, KvStateRef>();

  constructor(readonly options: LlamaPdOptions) {
    this.stats = {
      role: options.role,
      requests: 0,
      maxTokensSeen: {},
      exported: 0,
      exportFailures: 0,
      imported: 0,
      importedBytes: 0,
      transferRetries: 0,
      localPrefills: 0,
      saveMsTotal: 0,
      fetchMsTotal: 0,
      loadMsTotal: 0,
      bufferApiFailures: 0,
      stateBufferReservedBytes: 0,
      stateBufferReserveMs: 0,
      stateBuffersAllocated: 0,
    };
    const reserve = options.stateReserve;
    if (
      reserve !== undefined &&
      reserve !== 'auto' &&
      !(Number.isInteger(reserve) && reserve >= 0 && reserve <= STATE_BUFFERS_KEPT_BYTES_MAX)
    )
      throw new RangeError(
        `stateReserve ${reserve}: expected 'auto' or whole bytes in 0..${STATE_BUFFERS_KEPT_BYTES_MAX}`,
      );
    this.ownsDir = options.stateDir === undefined;
    this.dir =
      options.stateDir ?? mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'switchyard-kv-'));
    if (options.role === 'prefill') {
      this.server = new KvStateServer({
        releaseTimeoutMs: options.kvReleaseTimeoutMs ?? PD_KV_RELEASE_TIMEOUT_MS_DEFAULT,
      });
      this.stats.server = this.server.stats;
    }
  }

  /** The buffer state API, or undefined (files) with the reason; decided once. */
  private native(): KvNative | undefined {
    if (this.nativeApi === undefined) {
      if (this.options.stateApi === 'file') this.nativeApi = { api: undefined, reason: 'stateApi: file' };
      else {
        const got = loadKvNative();
        this.nativeApi = got.ok ? { api: got.api } : { api: undefined, reason: got.reason };
      }
    }
    return this.nativeApi.api;
  }

  /** Starts the KV server (prefill side) and says which state API this engine uses. */
  async start(): Promise<void> {
    const native = this.native();
    const line =
      native === undefined
        ? `llama P/D (${this.options.role}): KV states move through files (the buffer state API is unavailable: ${this.nativeApi?.reason})`
        : `llama P/D (${this.options.role}): KV states move through memory (llama.cpp's buffer state API, the KV-state addon)`;
    (this.options.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(line);
    if (this.server !== undefined)
      this.kvPort = await this.server.listen(this.options.kvHost, this.options.kvPort);
  }

  /**
   * Reserves the state buffer the first save (prefill) or fetch (decode) uses, and touches every page
   * of it now, at start: a fresh buffer is mapped memory whose pages each fault on first touch, which
   * the first transfer otherwise pays for (between two engines with 32.7 MiB states it took 132 ms
   * where the later ones took 10 to 19, docs/benchmarks.md issue 15, stop 30). Sized by
   * `stateReserve` from the model's KV shape and the context size (tokens per sequence); a size the
   * kept-buffer bounds would not keep is not reserved. Returns the bytes reserved (0: none).
   */
  reserveStateBuffer(model: { readonly contextSize: number; readonly architecture: KvArchitecture }): number {
    const bytes = stateReserveBytes(this.options.stateReserve ?? 'auto', model);
    if (bytes === 0 || this.native() === undefined || this.stats.stateBufferReservedBytes > 0) return 0;
    if (
      this.freeBufferBytes + bytes > STATE_BUFFERS_KEPT_BYTES_MAX ||
      this.freeBuffers.length >= STATE_BUFFERS_KEPT_MAX
    )
      return 0;
    const startMs = performance.now();
    const buffer = prefaultedBuffer(bytes);
    this.keepBuffer(buffer);
    this.stats.stateBufferReservedBytes = bytes;
    this.stats.stateBufferReserveMs = performance.now() - startMs;
    return bytes;
  }

  async close(): Promise<void> {
    await this.server?.close();
    this.freeBuffers.length = 0;
    this.freeBufferBytes = 0;
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private newPath(): string {
    return join(this.dir, `${(this.nextFile++).toString(36)}.kv`);
  }

  /** Prefill: the generation tagged `tag` is to save its state. */
  expectExport(tag: string): void {
    this.exports.set(tag, null);
  }

  /** Prefill: what the save of `tag` gave (undefined: none happened), forgetting it. */
  takeExport(tag: string): { bytes: number; tokens: number; transferId: string } | Error | undefined {
    const got = this.exports.get(tag);
    this.exports.delete(tag);
    if (got === null || got === undefined) return undefined;
    if (got instanceof Error) return got;
    const server = this.server as KvStateServer;
    const transferId =
      'path' in got
        ? server.offer(got.path, got.bytes, got.tokens)
        : server.offerBuffer(got.buffer, got.bytes, got.tokens, (buffer) => this.keepBuffer(buffer));
    return { bytes: got.bytes, tokens: got.tokens, transferId };
  }

  /** A state buffer of at least `bytes`: a kept one when one is large enough, else a new one. */
  private takeBuffer(bytes: number): Buffer {
    const at = this.freeBuffers.findIndex((b) => b.byteLength >= bytes);
    if (at < 0) {
      this.stats.stateBuffersAllocated++;
      return Buffer.allocUnsafeSlow(bytes);
    }
    const [buffer] = this.freeBuffers.splice(at, 1) as [Buffer];
    this.freeBufferBytes -= buffer.byteLength;
    return buffer;
  }

  /** Keeps a state buffer for reuse, within STATE_BUFFERS_KEPT_MAX and _BYTES_MAX (else the GC's). */
  private keepBuffer(buffer: Buffer): void {
    if (this.freeBuffers.includes(buffer)) return;
    if (
      this.freeBuffers.length >= STATE_BUFFERS_KEPT_MAX ||
      this.freeBufferBytes + buffer.byteLength > STATE_BUFFERS_KEPT_BYTES_MAX
    )
      return;
    this.freeBuffers.push(buffer);
    this.freeBufferBytes += buffer.byteLength;
  }

  /**
   * Decode: fetches the state at `remote` into a buffer (the buffer state API) or a file, counting it
   * in the stats; throws what fetchKvState throws (the caller decides: local prefill, or a 502).
   */
  async fetchRemote(remote: RemoteState): Promise<KvStateRef> {
    const startMs = performance.now();
    const common = {
      ...remote,
      inFlightBytesMax: this.options.kvInFlightBytesMax ?? IN_FLIGHT_BYTES_MAX_DEFAULT,
      onRetry: () => this.stats.transferRetries++,
    };
    let state: KvStateRef | undefined;
    let bytes = 0;
    if (this.native() !== undefined) {
      let taken: Buffer | undefined;
      /** A state too large for a buffer (seen at META): that fetch is stopped, and it comes into a file. */
      let tooLarge = false;
      const stop = new AbortController();
      try {
        const got = await fetchKvState({
          ...common,
          signal: remote.signal === undefined ? stop.signal : AbortSignal.any([remote.signal, stop.signal]),
          buffer: (bytes) => {
            if (bytes > STATE_BUFFER_BYTES_MAX) {
              tooLarge = true;
              stop.abort();
              throw new Error(`a ${bytes}-byte state is larger than a buffer may be`);
            }
            // A retry asks again: the previous attempt's buffer is reused.
            if (taken === undefined || taken.byteLength < bytes) taken = this.takeBuffer(bytes);
            return taken;
          },
        });
        state = { buffer: got.buffer as Buffer, bytes: got.bytes };
        bytes = got.bytes;
      } catch (error) {
        if (taken !== undefined) this.keepBuffer(taken);
        if (!tooLarge || remote.signal?.aborted === true) throw error;
      }
    }
    if (state === undefined) {
      const path = this.freeFiles.pop() ?? this.newPath();
      try {
        bytes = (await fetchKvState({ ...common, path })).bytes;
      } catch (error) {
        this.doneWith({ path });
        throw error;
      }
      state = { path };
    }
    this.stats.imported++;
    this.stats.importedBytes += bytes;
    this.stats.fetchMsTotal += performance.now() - startMs;
    return state;
  }

  /** Decode: the generation tagged `tag` is to start from `state`, already fetched (SGLang's flow). */
  expectLoad(tag: string, state: KvStateRef): void {
    this.fetched.set(tag, state);
  }

  /** Decode: the generation tagged `tag` is to start from the state at `remote`. */
  expectImport(tag: string, remote: RemoteState): void {
    this.imports.set(tag, remote);
  }

  /** Forgets a tag whose request ended before its generation ran. */
  forget(tag: string): void {
    const got = this.exports.get(tag);
    if (got !== null && got !== undefined && !(got instanceof Error)) this.discard(got);
    this.exports.delete(tag);
    this.imports.delete(tag);
    const state = this.fetched.get(tag);
    this.fetched.delete(tag);
    if (state !== undefined) this.doneWith(state);
  }

  /** `GET /pd/stats`: the counters, and on a decode its KV client connections as of now. */
  statsJson(): LlamaPdStats {
    const api: 'file' | 'buffer' = this.native() === undefined ? 'file' : 'buffer';
    const reason = this.nativeApi?.reason;
    const stats = {
      ...this.stats,
      kvStateApi: api,
      ...(reason === undefined ? {} : { kvStateApiReason: reason }),
    };
    return this.options.role === 'decode' ? { ...stats, connections: kvConnectionCounters() } : stats;
  }

  /** A saved state that will not be offered: its file deleted, or its buffer kept for reuse. */
  private discard(saved: SavedState): void {
    if ('path' in saved) rmSync(saved.path, { force: true });
    else this.keepBuffer(saved.buffer);
  }

  noteRequest(maxTokens: unknown): void {
    this.stats.requests++;
    const key = String(maxTokens ?? 'unset');
    this.stats.maxTokensSeen[key] = (this.stats.maxTokensSeen[key] ?? 0) + 1;
  }

  // ---- KvStateHooks ----

  fetchState(id: string): Promise<KvStateRef | undefined> | undefined {
    const tag = tagOf(id);
    const ready = this.fetched.get(tag);
    if (ready !== undefined) {
      this.fetched.delete(tag);
      return Promise.resolve(ready);
    }
    const remote = this.imports.get(tag);
    if (remote === undefined) return undefined;
    this.imports.delete(tag);
    return this.fetchRemote(remote).catch((error) => {
      // A fetch the client's leaving stopped is no failed transfer: nothing is prefilled for it.
      if (!(error instanceof KvFetchAbortedError)) this.stats.localPrefills++;
      return undefined;
    });
  }

  async loadState(state: KvStateRef, sequence: LlamaContextSequence): Promise<void> {
    const startMs = performance.now();
    if ('path' in state) await sequence.loadStateFromFile(state.path, { acceptRisk: true });
    else {
      const native = this.native() as KvNative;
      try {
        await native.loadSequenceState(sequence, state.buffer, state.bytes);
      } catch (error) {
        // A refusal of the state itself would refuse it from a file too; anything else (the addon's
        // context check) is retried through a file, so the transferred KV is still used.
        if (
          /refused the state|not a llama\.cpp sequence state|tokens, more than/.test((error as Error).message)
        )
          throw error;
        this.stats.bufferApiFailures++;
        const path = this.newPath();
        try {
          writeFileSync(path, state.buffer.subarray(0, state.bytes));
          await sequence.loadStateFromFile(path, { acceptRisk: true });
        } finally {
          rmSync(path, { force: true });
        }
      }
    }
    this.stats.loadMsTotal += performance.now() - startMs;
  }

  saveState(id: string, sequence: LlamaContextSequence): Promise<void> | undefined {
    const tag = tagOf(id);
    if (!this.exports.has(tag)) return undefined;
    const startMs = performance.now();
    return this.save(sequence).then(
      (saved) => {
        this.stats.saveMsTotal += performance.now() - startMs;
        if (!this.exports.has(tag)) return this.discard(saved);
        this.stats.exported++;
        this.exports.set(tag, saved);
      },
      (error: Error) => {
        this.stats.saveMsTotal += performance.now() - startMs;
        this.stats.exportFailures++;
        if (this.exports.has(tag)) this.exports.set(tag, error);
      },
    );
  }

  /** Saves a sequence's state into a buffer (the buffer state API; a file if that fails) or a file. */
  private async save(sequence: LlamaContextSequence): Promise<SavedState> {
    const native = this.native();
    if (native !== undefined) {
      const reuse = this.freeBuffers.pop();
      if (reuse !== undefined) this.freeBufferBytes -= reuse.byteLength;
      try {
        const got = await native.saveSequenceState(sequence, reuse);
        if (got.buffer !== reuse) this.stats.stateBuffersAllocated++;
        if (reuse !== undefined && got.buffer !== reuse) this.keepBuffer(reuse);
        return { buffer: got.buffer, bytes: got.bytes, tokens: got.tokens };
      } catch {
        if (reuse !== undefined) this.keepBuffer(reuse);
        this.stats.bufferApiFailures++;
      }
    }
    const path = this.newPath();
    try {
      const { fileSize } = await sequence.saveStateToFile(path);
      return { path, bytes: fileSize, tokens: sequence.contextTokens.length };
    } catch (error) {
      rmSync(path, { force: true });
      throw error;
    }
  }

  doneWith(state: KvStateRef): void {
    if (!('path' in state)) this.keepBuffer(state.buffer);
    else if (this.freeFiles.length < STATE_FILES_KEPT_MAX) this.freeFiles.push(state.path);
    else rmSync(state.path, { force: true });
  }

  loadFailed(): void {
    this.stats.imported--;
    this.stats.localPrefills++;
  }
}

/**
 * A buffer of `bytes` whose every page has been touched both ways a transfer touches it: written by
 * the kernel (a read from /dev/zero, as a socket's reads land in a decode's buffer and as a prefill's
 * socket reads what it sends) and by this process (a fill, as llama.cpp's `_get_data` writes and
 * `_set_data` reads it). On bare metal the first touch maps a page for both; on the shared VM the
 * benchmarks ran on (2 vCPUs) each way paid its own first touch: a first 32.7 MiB fetch into a buffer
 * filled by JavaScript alone still took about 50 ms of system CPU more than the later ones, and one
 * pre-faulted by /dev/zero alone made the first pass over it from JavaScript take 50 ms (stop 30).
 * Without /dev/zero (not Linux) the fill does it alone.
 */
export function prefaultedBuffer(bytes: number): Buffer {
  const buffer = Buffer.allocUnsafeSlow(bytes);
  try {
    const fd = openSync('/dev/zero', 'r');
    try {
      for (let at = 0; at < bytes; ) {
        const n = readSync(fd, buffer, at, bytes - at, null);
        if (n <= 0) break;
        at += n;
      }
    } finally {
      closeSync(fd);
    }
  } catch {
    // No /dev/zero: the fill below touches every page.
  }
  buffer.fill(0);
  return buffer;
}

/** The tag the front server put in x-request-id (the generation id is `cmpl-TAG` / `chatcmpl-TAG`). */
function tagOf(id: string): string {
  return id.slice(id.indexOf('-') + 1);
}

// ---- the front server ----

/** The vLLM P/D front of a llama engine: reads and writes `kv_transfer_params`, proxies the rest. */
export class LlamaPdFront extends PdFrontBase {
  constructor(
    private readonly pd: LlamaPd,
    innerPort: number,
  ) {
    super(innerPort, 'llama P/D front');
  }

  /** Where the decode side reaches this engine's KV server. */
  private get kvHost(): string {
    return this.pd.options.kvHost;
  }

  /** A decode whose request ended before its generation ran leaves no import behind. */
  protected override untag(tag: string): void {
    this.pd.forget(tag);
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && path === '/pd/stats') return sendJson(res, 200, this.pd.statsJson());
    if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/v1/completions')) {
      this.proxy(res, clientTarget(req, req));
      return;
    }
    const raw = await readBody(req, FRONT_BODY_BYTES_MAX);
    const body = parseJsonObject(raw);
    if (body !== undefined) this.nameFromBody(res, body);
    const many = body === undefined ? undefined : this.choicesRefusal(path, body);
    if (many !== undefined) return sendError(res, many);
    const params = body?.['kv_transfer_params'] as Record<string, unknown> | undefined;
    if (body === undefined || params === undefined || params === null) {
      this.proxy(res, clientTarget(req, raw));
      return;
    }
    delete body['kv_transfer_params'];
    const tag = this.newTag();
    if (this.pd.options.role === 'prefill' && params['do_remote_decode'] === true) {
      await this.prefill(req, res, body, tag);
    } else if (this.pd.options.role === 'decode' && params['do_remote_prefill'] === true) {
      this.decode(req, res, body, params, tag);
    } else {
      this.proxy(res, clientTarget(req, Buffer.from(JSON.stringify(body))));
    }
  }

  /** Runs the request (as a whole answer), then adds where its KV state can be fetched. */
  private async prefill(
    req: IncomingMessage,
    res: ServerResponse,
    body: Record<string, unknown>,
    tag: string,
  ): Promise<void> {
    this.pd.noteRequest(body['max_tokens'] ?? body['max_completion_tokens']);
    body['stream'] = false;
    delete body['stream_options'];
    this.pd.expectExport(tag);
    try {
      const answer = await this.inner(req.url ?? '/v1/completions', body, PREFILL_ANSWER_BYTES_MAX, tag);
      const got = this.pd.takeExport(tag);
      if (answer.status < 200 || answer.status >= 300) return this.relay(res, answer);
      if (got === undefined || got instanceof Error) {
        throw new SwitchyardError(
          'SY_ERR_KV_TRANSFER_FAILED',
          `the prefill's KV state could not be saved: ${got?.message ?? 'the generation ended without it'}`,
        );
      }
      const out = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
      out['kv_transfer_params'] = {
        do_remote_prefill: true,
        do_remote_decode: false,
        remote_engine_id: `llama-${this.kvHost}:${this.pd.kvPort}`,
        remote_block_ids: [],
        remote_host: this.kvHost,
        remote_port: this.pd.kvPort,
        remote_request_id: got.transferId,
        tp_size: 1,
      };
      this.answer(res, out);
    } finally {
      this.pd.forget(tag);
    }
  }

  /** Tags the request with where its state is, and streams the decode's answer through. */
  private decode(
    req: IncomingMessage,
    res: ServerResponse,
    body: Record<string, unknown>,
    params: Record<string, unknown>,
    tag: string,
  ): void {
    this.pd.noteRequest(body['max_tokens'] ?? body['max_completion_tokens']);
    const host = params['remote_host'];
    const port = params['remote_port'];
    const transferId = params['remote_request_id'];
    if (typeof host === 'string' && Number.isInteger(port) && typeof transferId === 'string') {
      const left = new AbortController();
      res.on('close', () => left.abort(new Error('the client left')));
      this.pd.expectImport(tag, { host, port: port as number, transferId, signal: left.signal });
    } else {
      // Nothing to fetch from: the request is prefilled here.
      this.pd.stats.localPrefills++;
    }
    this.proxy(res, clientTarget(req, Buffer.from(JSON.stringify(body))), tag);
  }
}

/**
 * Where a llama P/D front proxies a client's request: its own path, method and headers (type,
 * accept, request id), `body` in place of its own when a buffer.
 */
export function clientTarget(req: IncomingMessage, body: Buffer | IncomingMessage): PassTarget {
  const headers: Record<string, string | number> = {};
  for (const name of ['content-type', 'accept', 'x-request-id'])
    if (typeof req.headers[name] === 'string') headers[name] = req.headers[name] as string;
  if (body instanceof Buffer) headers['content-length'] = body.length;
  else if (typeof req.headers['content-length'] === 'string')
    headers['content-length'] = req.headers['content-length'];
  return { path: req.url ?? '/', method: req.method ?? 'GET', headers, body };
}

/** A client's body as a JSON object, or undefined (not JSON, or not an object): passed through as it came. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> | undefined {
  // Bytes that are not UTF-8 go through as they came, for the inner server's 400.
  if (!isUtf8(raw)) return undefined;
  try {
    const value: unknown = JSON.parse(raw.toString('utf8'));
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // Not JSON: passed through for the inner server to refuse.
  }
  return undefined;
}

/** How to serve a llama P/D engine. */
export interface ServeLlamaPdOptions {
  readonly host: string;
  readonly port: number;
  readonly maxWaiting?: number | undefined;
  readonly shutdownTimeoutS: number;
}

/**
 * Serves a llama backend as one side of a P/D pair until SIGTERM or SIGINT (or its supervisor's
 * death): the OpenAI server on a loopback port, the KV server (prefill), the front server on
 * `host:port`, and the ready line naming the front server.
 */
export function serveLlamaPdEngine(
  backend: LlamaBackend,
  pd: LlamaPd,
  options: ServeLlamaPdOptions,
): Promise<void> {
  return serveLlamaFront(backend, pd.options.role, options, {
    front: (innerPort) => new LlamaPdFront(pd, innerPort),
    start: () => pd.start(),
    addressWhat: ' or --kv-port',
    listening: () => ({
      kvTransfer: pd.server === undefined ? null : `tcp://${pd.options.kvHost}:${pd.kvPort}`,
    }),
    close: () => pd.close(),
  });
}

/** What a P/D protocol adds to a llama front: its front server, start, ready-line fields and close. */
export type LlamaFrontParts = Pick<ServePdFrontOptions, 'front' | 'start' | 'addressWhat' | 'listening'> & {
  /** Frees the protocol's parts (KV server, listeners) on a failed start or after the drain. */
  readonly close: () => Promise<void>;
};

/**
 * Serves a llama backend in `role` behind the front server of `parts` (either protocol's): the
 * backend reports ready after the ready line, and is closed after the protocol's parts when the
 * start failed.
 */
export function serveLlamaFront(
  backend: LlamaBackend,
  role: 'prefill' | 'decode',
  options: ServeLlamaPdOptions,
  parts: LlamaFrontParts,
): Promise<void> {
  const { close, ...own } = parts;
  return servePdFront({
    engine: 'llama',
    role,
    backend,
    host: options.host,
    port: options.port,
    maxWaiting: options.maxWaiting,
    shutdownTimeoutS: options.shutdownTimeoutS,
    ...own,
    afterReady: () => backend.markReady(),
    release: async (failed) => {
      await close();
      if (failed) await backend.close();
    },
  });
}
