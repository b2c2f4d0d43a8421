/**
 * The `llama` engine as one side of a prefill/decode pair (`switchyard engine llama --pd-role
 * prefill|decode`), speaking vLLM's P/D flow (the one the gateway drives, docs/disaggregation.md) with
 * a real KV state moving between the engines:
 *
 * - prefill: a request whose `kv_transfer_params` carry `do_remote_decode: true` runs as usual (the
 *   gateway sends max_tokens 1); when it ends, its sequence's state (the prompt's KV, llama.cpp's
 *   sequence-state file) is saved to a file and offered on the engine's KV server
 *   (src/adapters/kv-transfer/), and the answer gains `kv_transfer_params` naming that server
 *   (`remote_host`, `remote_port`) and the state (`remote_request_id`).
 * - decode: a request with `do_remote_prefill: true` fetches the state over TCP before it starts,
 *   loads it into its sequence, and evaluates only the prompt's last token before generating: the
 *   same tokens as one engine would give. A transfer that fails after its retry, or a state llama.cpp
 *   will not load, is prefilled locally instead (the answer is the same, only slower).
 *
 * Like the `sim` P/D engine, a small front server (../pd-front.ts) on the public port reads and writes
 * `kv_transfer_params` and proxies to the ordinary OpenAI server on a loopback port, tagging P/D
 * requests (x-request-id) so the backend's hooks (`KvStateHooks`) know which generation is which.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  fetchKvState,
  IN_FLIGHT_BYTES_MAX_DEFAULT,
  type KvConnectionCounters,
  KvFetchAbortedError,
  KvStateServer,
  kvConnectionCounters,
  RELEASE_TIMEOUT_MS_DEFAULT,
} from '../../adapters/kv-transfer/kv-transfer.ts';
import { SwitchyardError } from '../../core/errors.ts';
import {
  FRONT_BODY_BYTES_MAX,
  type PassTarget,
  PdFrontBase,
  PREFILL_ANSWER_BYTES_MAX,
  readBody,
  type ServePdFrontOptions,
  sendJson,
  servePdFront,
} from '../pd-front.ts';
import type { KvStateHooks, LlamaBackend } from './llama-backend.ts';
import type { SglangPdStats } from './pd-sglang.ts';

/** One side of a llama P/D pair. */
export interface LlamaPdOptions {
  readonly role: 'prefill' | 'decode';
  /** Interface and port of the prefill side's KV server (0: a free port). */
  readonly kvHost: string;
  readonly kvPort: number;
  /** A prefill deletes a state no decode collected after this long. */
  readonly kvReleaseTimeoutMs?: number;
  /** A decode lets this many fetched bytes wait for the disk before it pauses the socket. */
  readonly kvInFlightBytesMax?: number;
  /** Where states are written; default a fresh folder in /dev/shm (memory) or the temp dir. */
  readonly stateDir?: string;
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
  private readonly exports = new Map<
    string,
    { bytes: number; tokens: number; path: string } | Error | null
  >();
  /** Decode: tags to load, and from where. */
  private readonly imports = new Map<string, RemoteState>();
  /** Decode: fetched-state files free for the next fetch. */
  private readonly freeFiles: string[] = [];
  /** Decode: tags whose state was fetched before the generation (SGLang's flow, pd-sglang.ts). */
  private readonly fetched = new Map<string, string>();
  /** Prefill: when each tag's save began. */
  private readonly saveStartMs = new Map<string, number>();

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
    };
    this.ownsDir = options.stateDir === undefined;
    this.dir =
      options.stateDir ?? mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'switchyard-kv-'));
    if (options.role === 'prefill') {
      this.server = new KvStateServer({
        releaseTimeoutMs: options.kvReleaseTimeoutMs ?? RELEASE_TIMEOUT_MS_DEFAULT,
      });
      this.stats.server = this.server.stats;
    }
  }

  /** Starts the KV server (prefill side). */
  async start(): Promise<void> {
    if (this.server !== undefined)
      this.kvPort = await this.server.listen(this.options.kvHost, this.options.kvPort);
  }

  async close(): Promise<void> {
    await this.server?.close();
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
    const transferId = (this.server as KvStateServer).offer(got.path, got.bytes, got.tokens);
    return { bytes: got.bytes, tokens: got.tokens, transferId };
  }

  /** Decode: a file to fetch a state into (one kept for reuse, or a new one); hand it back with doneWith. */
  statePath(): string {
    return this.freeFiles.pop() ?? this.newPath();
  }

  /** Decode: the generation tagged `tag` is to start from the state already fetched into `path`. */
  expectLoad(tag: string, path: string): void {
    this.fetched.set(tag, path);
  }

  /** Decode: the generation tagged `tag` is to start from the state at `remote`. */
  expectImport(tag: string, remote: RemoteState): void {
    this.imports.set(tag, remote);
  }

  /** Forgets a tag whose request ended before its generation ran. */
  forget(tag: string): void {
    const got = this.exports.get(tag);
    if (got !== null && got !== undefined && !(got instanceof Error)) rmSync(got.path, { force: true });
    this.exports.delete(tag);
    this.imports.delete(tag);
    const path = this.fetched.get(tag);
    this.fetched.delete(tag);
    if (path !== undefined) this.doneWith(path);
  }

  /** `GET /pd/stats`: the counters, and on a decode its KV client connections as of now. */
  statsJson(): LlamaPdStats {
    return this.options.role === 'decode'
      ? { ...this.stats, connections: kvConnectionCounters() }
      : this.stats;
  }

  noteRequest(maxTokens: unknown): void {
    this.stats.requests++;
    const key = String(maxTokens ?? 'unset');
    this.stats.maxTokensSeen[key] = (this.stats.maxTokensSeen[key] ?? 0) + 1;
  }

  // ---- KvStateHooks ----

  fetchState(id: string): Promise<string | undefined> | undefined {
    const tag = tagOf(id);
    const ready = this.fetched.get(tag);
    if (ready !== undefined) {
      this.fetched.delete(tag);
      return Promise.resolve(ready);
    }
    const remote = this.imports.get(tag);
    if (remote === undefined) return undefined;
    this.imports.delete(tag);
    const path = this.freeFiles.pop() ?? this.newPath();
    const startMs = performance.now();
    return fetchKvState({
      ...remote,
      path,
      inFlightBytesMax: this.options.kvInFlightBytesMax ?? IN_FLIGHT_BYTES_MAX_DEFAULT,
      onRetry: () => this.stats.transferRetries++,
    }).then(
      (got) => {
        this.stats.imported++;
        this.stats.importedBytes += got.bytes;
        this.stats.fetchMsTotal += performance.now() - startMs;
        return path;
      },
      (error) => {
        this.doneWith(path);
        // A fetch the client's leaving stopped is no failed transfer: nothing is prefilled for it.
        if (!(error instanceof KvFetchAbortedError)) this.stats.localPrefills++;
        return undefined;
      },
    );
  }

  exportPath(id: string): string | undefined {
    const tag = tagOf(id);
    if (!this.exports.has(tag)) return undefined;
    this.saveStartMs.set(tag, performance.now());
    return this.newPath();
  }

  exported(id: string, path: string, result: { bytes: number; tokens: number } | Error): void {
    const tag = tagOf(id);
    this.stats.saveMsTotal += performance.now() - (this.saveStartMs.get(tag) ?? performance.now());
    this.saveStartMs.delete(tag);
    if (!this.exports.has(tag)) {
      rmSync(path, { force: true });
      return;
    }
    if (result instanceof Error) {
      this.stats.exportFailures++;
      this.exports.set(tag, result);
      return;
    }
    this.stats.exported++;
    this.exports.set(tag, { ...result, path });
  }

  doneWith(path: string): void {
    if (this.freeFiles.length < STATE_FILES_KEPT_MAX) this.freeFiles.push(path);
    else rmSync(path, { force: true });
  }

  loadFailed(): void {
    this.stats.imported--;
    this.stats.localPrefills++;
  }
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
      sendJson(res, 200, out);
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
