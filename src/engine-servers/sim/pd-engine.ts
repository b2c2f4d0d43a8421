/**
 * The `sim` engine as one side of a prefill/decode pair (`switchyard engine sim --pd-role prefill|decode
 * --pd-protocol vllm|sglang`), speaking the engines' own protocols so the gateway's P/D flows
 * (src/gateway/pd/) are tested against a real process. docs/disaggregation.md gives the flows.
 *
 * The engine is the ordinary sim OpenAI server (openai-server.ts over a SimBackend) on a loopback
 * port, behind a small front server on the public port that speaks the protocol:
 *
 * - vLLM prefill: a request whose `kv_transfer_params` ask for a remote decode runs as usual (the
 *   gateway sent max_tokens 1); the answer gains `kv_transfer_params` for the decode side
 *   (`do_remote_prefill`, `remote_engine_id`, `remote_block_ids`, `remote_host`, `remote_port`,
 *   `tp_size`, and `remote_request_id`, the id the decode side's notify names). The engine then holds
 *   the prompt's KV until the decode side notifies it read them (`POST /pd/notify`, the analogue of
 *   NIXL's notification) or `kvReleaseTimeoutMs` passes (the analogue of vLLM's
 *   VLLM_NIXL_ABORT_REQUEST_TIMEOUT, which frees blocks a decode never read).
 * - Request ids, as vLLM names them: `chatcmpl-<X-Request-Id>` or `cmpl-<X-Request-Id>-0` (a fresh
 *   uuid without the header), and inside the engine that id plus 8 random characters (vLLM's
 *   InputProcessor.assign_request_id), which is the `remote_request_id` the notify names (the NIXL
 *   connector's version 2). A decode engine before that version named its own request id instead,
 *   so its id had to be the prefill's (vLLM's proxy sends one X-Request-Id on both legs): the notify
 *   carries the decode's id too, and one that differs from the prefill's is counted
 *   (`notifyIdMismatches`: a KV such an engine pair would have held until the abort timeout).
 * - vLLM decode: a request with `do_remote_prefill` waits the modelled transfer time (the prompt's KV
 *   bytes from the model catalogue over a `kvLinkGbps` link, in model time), notifies the prefill
 *   side, and decodes without prefilling the prompt. KV the prefill side no longer holds (it timed
 *   out, or it is unreachable), or parameters without `remote_engine_id`, `remote_request_id`,
 *   `remote_host` or `remote_port` (vLLM uses no KV transfer then), is recomputed locally, as vLLM's
 *   `recompute` load-failure policy does.
 * - SGLang prefill: a request with `bootstrap_room` runs its prefill only (one token); its room then
 *   holds the KV on the bootstrap endpoint (`GET /pd/bootstrap/{room}`, on the engine's own port)
 *   until the decode side collects it (`POST /pd/release/{room}`) or the release timeout passes.
 * - SGLang decode: a request with `bootstrap_host/port/room` asks the prefill's bootstrap endpoint
 *   for the room (waiting up to `kvWaitTimeoutMs` for the prefill to finish), waits the transfer
 *   time, collects, and decodes without prefilling; a room that failed, never came, or a prefill
 *   engine out of reach ends the request with 502 SY_ERR_KV_TRANSFER_FAILED. A client that leaves
 *   (a gateway cancelling the attempt) ends the wait at once, as SGLang's decode aborts it.
 *
 * Skipping the prefill: a decode runs the whole request with all its prompt tokens but the last
 * imported (EngineRequest.importedTokens, as the twin's decode does; the last token is recomputed, as
 * vLLM's decode side does), and reports the full prompt in usage, with the transferred tokens as
 * cached. Its KV, prompt and output, takes blocks of the decode engine's pool, and the engine's
 * checks see the whole request, as vLLM's decode engine checks it: a prompt plus max_tokens past the
 * model's context is refused 400 before any KV is read (the prefill side then frees its KV at the
 * release timeout, as vLLM's prefill does when no decode reads it), a request whose KV could never
 * fit the pool is refused 400, and without max_tokens the output gets what the context leaves after
 * the whole prompt.
 *
 * Held KV stays in the prefill engine's pool, as vLLM's prefill keeps the blocks a NIXL transfer
 * reads allocated (and counted in vllm:kv_cache_usage_perc) until the decode's notify or the abort
 * timeout, and as the twin's prefill does (EngineRequest.holdKvAfterFinish): a prefill leg runs in
 * the core with its blocks kept after it finishes, and the release (collected or timed out) frees
 * them. So they count in the engine's KV usage and the waiting requests they keep out wait for
 * them; the `switchyard_pd_kv_held_*` series count the same transfers and their bytes. Held
 * transfers are bounded by the pool (each keeps at least one block) and by PD_TRANSFERS_MAX.
 * Every wait and every table has a bound.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../../core/errors.ts';
import { parseCompletionBody } from '../../core/openai-api.ts';
import { kvBytesPerToken } from '../../model/kv.ts';
import { modelSpec } from '../../model/models.ts';
import type { EngineBackend, GenerationInput, GenerationSink } from '../backend.ts';
import {
  FRONT_BODY_BYTES_MAX,
  type InnerAnswer,
  PdFrontBase,
  PREFILL_ANSWER_BYTES_MAX,
  readBody,
  sendError,
  sendJson,
  servePdFront,
} from '../pd-front.ts';
import type { ServeEngineOptions } from '../run-engine.ts';
import type { SimBackend } from './sim-backend.ts';

/** The P/D side an engine plays and how. */
export interface PdEngineOptions {
  readonly role: 'prefill' | 'decode';
  readonly protocol: 'vllm' | 'sglang';
  /** The catalogue model whose KV bytes per token size the transfer. */
  readonly model: string;
  readonly tp: number;
  readonly blockSize: number;
  /** The modelled link between the engines, in Gb/s. */
  readonly kvLinkGbps: number;
  /** Wall time per modelled time (the engine's --time-scale): the transfer wait is scaled too. */
  readonly timeScale: number;
  /** A prefill releases KV no decode collected after this long (wall ms). */
  readonly kvReleaseTimeoutMs: number;
  /** An SGLang decode waits this long (wall ms) for its room's prefill to finish. */
  readonly kvWaitTimeoutMs: number;
}

/** KV transfers (vLLM) or rooms (SGLang) one prefill engine holds at once; one more is refused 503. */
export const PD_TRANSFERS_MAX = 65_536;
/** A decode's calls to the prefill side (notify, bootstrap, release) past their own wait. */
const PEER_CALL_TIMEOUT_MS = 10_000;

/** Counters and gauges of the P/D side (`GET /pd/stats`, and `switchyard_pd_*` on /metrics). */
export interface PdEngineStats {
  role: 'prefill' | 'decode';
  protocol: 'vllm' | 'sglang';
  /** P/D requests served (prefill legs on a prefill engine, decodes on a decode engine). */
  requests: number;
  /** How many P/D requests arrived with each max_tokens (what the gateway sent). */
  maxTokensSeen: Record<string, number>;
  /** KV transfers or rooms held now, and their bytes. */
  heldTransfers: number;
  heldBytes: number;
  releasedCollected: number;
  releasedTimeout: number;
  /** Decode side: KV bytes moved over the modelled link, prompt tokens not prefilled, failed loads. */
  transferredBytes: number;
  skippedPrefillTokens: number;
  kvLoadFailures: number;
  /**
   * Decode side (SGLang): decodes waiting for their room's KV now, and decodes whose client left
   * before the KV arrived (the wait stops then, as SGLang's decode aborts a request whose client
   * left; not a load failure).
   */
  kvWaiting: number;
  kvWaitsAborted: number;
  /**
   * Prefill side (vLLM): notifies whose decode request id was not this prefill's (the legs carried
   * different X-Request-Ids, or none): a decode engine before the NIXL connector's version 2 names
   * the notification after its own id, and the prefill engine would not have matched it.
   */
  notifyIdMismatches: number;
}

/** One held KV transfer (vLLM) or room (SGLang) on the prefill side. */
interface Held {
  state: 'pending' | 'ready' | 'failed';
  tokens: number;
  bytes: number;
  timer: NodeJS.Timeout | undefined;
  /** SGLang decodes waiting for the room to be ready. */
  waiters: (() => void)[];
  /** vLLM: the prefill's request id as vLLM names it (`chatcmpl-<X-Request-Id>`), before its suffix. */
  requestId?: string;
  /** The prefill's request in the engine core, whose blocks the release frees. */
  coreId?: string;
}

/** The P/D state of one engine; the front server and the backend wrapper share it. */
export class PdEngine {
  readonly stats: PdEngineStats;
  readonly engineId = randomUUID();
  /** Where the decode side reaches this engine (its front server), set once it listens. */
  host = '127.0.0.1';
  port = 0;
  private readonly held = new Map<string, Held>();
  /** Inner request tags whose prompt was transferred: the backend skips their prefill. */
  readonly transferred = new Map<string, number>();
  /**
   * Inner request tags of prefill legs in flight: the backend keeps their KV after they finish and
   * names the core request here (undefined until the core takes it). Only requests in flight.
   */
  readonly exporting = new Map<string, string | undefined>();
  /** Frees the blocks the core request `coreId` kept (set by the backend wrapper). */
  releaseKv: (coreId: string) => void = () => {};
  private readonly kvBytesPerToken: number;
  private nextBlock = 0;

  constructor(readonly options: PdEngineOptions) {
    this.stats = {
      role: options.role,
      protocol: options.protocol,
      requests: 0,
      maxTokensSeen: {},
      heldTransfers: 0,
      heldBytes: 0,
      releasedCollected: 0,
      releasedTimeout: 0,
      transferredBytes: 0,
      skippedPrefillTokens: 0,
      kvLoadFailures: 0,
      kvWaiting: 0,
      kvWaitsAborted: 0,
      notifyIdMismatches: 0,
    };
    this.kvBytesPerToken = kvBytesPerToken(modelSpec(options.model));
  }

  /** KV bytes of `tokens` prompt tokens (the whole model's, every TP shard). */
  kvBytes(tokens: number): number {
    return tokens * this.kvBytesPerToken;
  }

  /** Wall milliseconds the modelled link takes to move `bytes`. */
  transferWallMs(bytes: number): number {
    return ((bytes * 8) / (this.options.kvLinkGbps * 1e9)) * 1000 * this.options.timeScale;
  }

  /** Whether `key` has an entry (held, pending or failed). */
  has(key: string): boolean {
    return this.held.has(key);
  }

  /** Whether another transfer may be held. */
  get full(): boolean {
    return this.held.size >= PD_TRANSFERS_MAX;
  }

  /** The entry for `key`, created pending (SGLang: the decode may ask before the prefill arrives). */
  entry(key: string): Held {
    let h = this.held.get(key);
    if (h === undefined) {
      h = { state: 'pending', tokens: 0, bytes: 0, timer: undefined, waiters: [] };
      this.held.set(key, h);
      // A room no prefill ever fills is dropped after the decode's wait bound.
      this.arm(key, h, this.options.kvWaitTimeoutMs);
    }
    return h;
  }

  /**
   * The prefill of `key` finished: it holds `tokens` of KV until collected or timed out (vLLM: for
   * the request `requestId`).
   */
  hold(key: string, tokens: number, requestId?: string, coreId?: string): void {
    const h = this.entry(key);
    if (h.coreId !== undefined) this.releaseKv(h.coreId);
    h.state = 'ready';
    h.tokens = tokens;
    if (requestId !== undefined) h.requestId = requestId;
    if (coreId === undefined) delete h.coreId;
    else h.coreId = coreId;
    h.bytes = this.kvBytes(tokens);
    this.stats.heldTransfers++;
    this.stats.heldBytes += h.bytes;
    this.arm(key, h, this.options.kvReleaseTimeoutMs);
    this.wake(h);
  }

  /** The prefill of `key` failed: waiting decodes hear it. */
  failed(key: string): void {
    const h = this.entry(key);
    h.state = 'failed';
    this.arm(key, h, this.options.kvWaitTimeoutMs);
    this.wake(h);
  }

  /** Block ids for `tokens` (ids only name the blocks; the core frees its own). */
  blockIds(tokens: number): number[] {
    const n = Math.ceil(tokens / this.options.blockSize);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) ids.push(this.nextBlock++);
    return ids;
  }

  /** Waits until `key` is ready or failed, or `waitMs` passes; its state then. */
  async waitFor(key: string, waitMs: number): Promise<Held['state']> {
    const h = this.entry(key);
    if (h.state !== 'pending') return h.state;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      h.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return this.held.get(key)?.state ?? 'failed';
  }

  /** The decode side collected `key`: its KV is released. False when it is no longer held. */
  collect(key: string): Held | undefined {
    const h = this.held.get(key);
    if (h === undefined || h.state !== 'ready') return undefined;
    this.release(key, h, 'collected');
    return h;
  }

  /** Releases what is held (shutdown). */
  clear(): void {
    for (const [key, h] of this.held) this.release(key, h, 'timeout');
  }

  private arm(key: string, h: Held, ms: number): void {
    if (h.timer !== undefined) clearTimeout(h.timer);
    h.timer = setTimeout(() => this.release(key, h, 'timeout'), ms);
    h.timer.unref();
  }

  private wake(h: Held): void {
    const waiters = h.waiters;
    h.waiters = [];
    for (const w of waiters) w();
  }

  private release(key: string, h: Held, why: 'collected' | 'timeout'): void {
    if (this.held.get(key) !== h) return;
    this.held.delete(key);
    if (h.timer !== undefined) clearTimeout(h.timer);
    if (h.coreId !== undefined) this.releaseKv(h.coreId);
    if (h.state === 'ready') {
      this.stats.heldTransfers--;
      this.stats.heldBytes -= h.bytes;
      if (why === 'collected') this.stats.releasedCollected++;
      else this.stats.releasedTimeout++;
    }
    h.state = 'failed';
    this.wake(h);
  }

  /** The P/D series appended to /metrics. */
  metricsText(): string {
    const s = this.stats;
    const labels = `role="${s.role}",protocol="${s.protocol}"`;
    return (
      `# HELP switchyard_pd_kv_held_transfers KV transfers (vLLM) or rooms (SGLang) this prefill engine holds for a decode engine.\n` +
      `# TYPE switchyard_pd_kv_held_transfers gauge\nswitchyard_pd_kv_held_transfers{${labels}} ${s.heldTransfers}\n` +
      `# HELP switchyard_pd_kv_held_bytes KV bytes held for a decode engine.\n` +
      `# TYPE switchyard_pd_kv_held_bytes gauge\nswitchyard_pd_kv_held_bytes{${labels}} ${s.heldBytes}\n` +
      `# HELP switchyard_pd_kv_released_total Held KV released, by why: collected by the decode side or timed out.\n` +
      `# TYPE switchyard_pd_kv_released_total counter\n` +
      `switchyard_pd_kv_released_total{${labels},reason="collected"} ${s.releasedCollected}\n` +
      `switchyard_pd_kv_released_total{${labels},reason="timeout"} ${s.releasedTimeout}\n` +
      `# HELP switchyard_pd_requests_total Disaggregated requests served on this side.\n` +
      `# TYPE switchyard_pd_requests_total counter\nswitchyard_pd_requests_total{${labels}} ${s.requests}\n` +
      `# HELP switchyard_pd_kv_load_failures_total Decodes whose KV could not be loaded.\n` +
      `# TYPE switchyard_pd_kv_load_failures_total counter\nswitchyard_pd_kv_load_failures_total{${labels}} ${s.kvLoadFailures}\n`
    );
  }
}

/**
 * The sim backend with the P/D side: a request whose prompt was transferred runs with all its prompt
 * tokens but the last imported (see the module comment) and reports its full prompt, the transferred
 * part as cached.
 */
export class PdSimBackend implements EngineBackend {
  constructor(
    private readonly inner: SimBackend,
    private readonly pd: PdEngine,
  ) {
    pd.releaseKv = (coreId) => inner.releaseExport(coreId);
  }

  get modelId(): string {
    return this.inner.modelId;
  }

  /** A P/D side: the transfer is keyed by the request id, one generation per request. */
  readonly oneGenerationPerRequest = true;

  /** The inner sim's: `generate` hands it `minTokens` with the rest of the input. */
  get honoursMinTokens(): boolean {
    return this.inner.honoursMinTokens === true;
  }

  generate(input: GenerationInput, sink: GenerationSink): void {
    const tag = input.id.slice(input.id.indexOf('-') + 1);
    if (this.pd.exporting.has(tag)) {
      // A prefill leg: its KV stays in the pool after it finishes, until the front holds it for a
      // decode; one that finishes after the front stopped waiting for it is freed at once.
      let coreId: string | undefined;
      const held: GenerationSink = {
        onText: (text, n) => sink.onText(text, n),
        onError: (error) => sink.onError(error),
        onFinish: (reason, usage, stopReason) => {
          if (coreId !== undefined && !this.pd.exporting.has(tag)) this.inner.releaseExport(coreId);
          sink.onFinish(reason, usage, stopReason);
        },
      };
      this.inner.generate(input, held, undefined, (id) => {
        coreId = id;
        if (this.pd.exporting.has(tag)) this.pd.exporting.set(tag, id);
      });
      return;
    }
    const tokens = this.pd.transferred.get(tag);
    if (tokens === undefined) {
      this.inner.generate(input, sink);
      return;
    }
    this.pd.transferred.delete(tag);
    const prompt = input.request.promptTokens;
    const imported = Math.max(0, Math.min(tokens, prompt) - 1);
    this.pd.stats.skippedPrefillTokens += imported;
    const wrapped: GenerationSink = {
      onText: (text, n) => sink.onText(text, n),
      onError: (error) => sink.onError(error),
      onFinish: (reason, usage, stopReason) =>
        sink.onFinish(
          reason,
          {
            promptTokens: prompt,
            completionTokens: usage.completionTokens,
            cachedTokens: Math.max(usage.cachedTokens, imported),
          },
          stopReason,
        ),
    };
    this.inner.generate(input, wrapped, imported);
  }

  signals(): ReturnType<EngineBackend['signals']> {
    return this.inner.signals();
  }

  extraMetricsText(): string {
    return (this.inner.extraMetricsText?.() ?? '') + this.pd.metricsText();
  }

  close(): Promise<void> {
    this.pd.clear();
    return this.inner.close();
  }
}

// ---- the front server ----

/** A JSON call to a peer engine's P/D endpoint: its status and parsed body (undefined when not JSON). */
async function peerCall(
  url: string,
  method: 'GET' | 'POST',
  body: unknown,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ status: number; json: unknown }> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const response = await fetch(url, {
    method,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The front server: the protocol on the public port, everything else passed to the inner server. */
export class PdFrontServer extends PdFrontBase {
  constructor(
    private readonly pd: PdEngine,
    innerPort: number,
    private readonly backend: SimBackend,
  ) {
    super(innerPort, 'P/D front');
  }

  /** A request that never reached the backend leaves no transfer entry behind. */
  protected override untag(tag: string): void {
    this.pd.transferred.delete(tag);
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (method === 'POST' && (path === '/v1/chat/completions' || path === '/v1/completions')) {
      await this.completion(path === '/v1/completions' ? 'completion' : 'chat', path, req, res);
      return;
    }
    if (method === 'GET' && path === '/pd/stats') return sendJson(res, 200, this.pd.stats);
    if (method === 'POST' && path === '/pd/notify') return this.notify(req, res);
    const room = /^\/pd\/(bootstrap|release)\/(\d{1,20})$/.exec(path);
    if (room !== null) return this.bootstrap(room[1] as string, room[2] as string, method, res);
    // The client's body goes on whatever its Content-Type: kept back when it had none, the inner
    // server waited for the Content-Length it was told (a POST without a type hung, not refused).
    this.pass(req, res, path, req);
  }

  /** vLLM: the decode side read the KV of a transfer; the prefill side releases it. */
  private async notify(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let notice: { remote_request_id?: unknown; request_id?: unknown } | undefined;
    try {
      notice = JSON.parse((await readBody(req, FRONT_BODY_BYTES_MAX)).toString('utf8')) as typeof notice;
    } catch {
      notice = undefined;
    }
    const id = notice?.remote_request_id;
    const h = typeof id === 'string' ? this.pd.collect(`v:${id}`) : undefined;
    if (h === undefined) return sendJson(res, 404, { released: false });
    if (notice?.request_id !== h.requestId) this.pd.stats.notifyIdMismatches++;
    sendJson(res, 200, { released: true, tokens: h.tokens, bytes: h.bytes });
  }

  /** SGLang's bootstrap endpoint: a decode asks for a room (waiting for it) and then collects it. */
  private async bootstrap(what: string, room: string, method: string, res: ServerResponse): Promise<void> {
    const key = `s:${room}`;
    if (what === 'release' && method === 'POST') {
      const h = this.pd.collect(key);
      return sendJson(res, h === undefined ? 404 : 200, { released: h !== undefined });
    }
    if (what !== 'bootstrap' || method !== 'GET' || this.pd.options.role !== 'prefill')
      return sendJson(res, 404, { error: 'not found' });
    // An unknown room is an entry too (its prefill may not have arrived yet): the table's bound holds.
    if (!this.pd.has(key) && this.pd.full) return sendError(res, overloaded());
    const state = await this.pd.waitFor(key, this.pd.options.kvWaitTimeoutMs);
    if (state !== 'ready') return sendJson(res, state === 'pending' ? 504 : 410, { state });
    const h = this.pd.entry(key);
    sendJson(res, 200, { state, tokens: h.tokens, bytes: h.bytes });
  }

  private async completion(
    kind: 'chat' | 'completion',
    path: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const raw = await readBody(req, FRONT_BODY_BYTES_MAX);
    let body: Record<string, unknown>;
    try {
      // Bytes that are not UTF-8 go through as they came, for the inner server's 400.
      if (!isUtf8(raw)) throw new Error('not UTF-8');
      const value: unknown = JSON.parse(raw.toString('utf8'));
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new Error('not an object');
      body = value as Record<string, unknown>;
    } catch {
      this.pass(req, res, path, raw);
      return;
    }
    this.nameFromBody(res, body);
    const many = this.choicesRefusal(path, body);
    if (many !== undefined) return sendError(res, many);
    const { role, protocol } = this.pd.options;
    const requestId = vllmRequestId(kind, req.headers['x-request-id']);
    if (role === 'prefill' && protocol === 'vllm') return this.vllmPrefill(kind, path, body, res, requestId);
    if (role === 'prefill') return this.sglangPrefill(kind, path, body, res);
    if (protocol === 'vllm') return this.vllmDecode(kind, path, body, res, requestId);
    return this.sglangDecode(kind, path, body, res);
  }

  private promptTokens(kind: 'chat' | 'completion', body: Record<string, unknown>): number {
    return parseCompletionBody(kind, body).promptTokens;
  }

  /**
   * A decode past the model's context (prompt plus max_tokens, the whole request) is refused before
   * its KV is read, as vLLM's decode API server refuses it: the error, else undefined. The engine
   * checks again when the request runs (a completion's default max_tokens is added there).
   */
  private pastContext(
    kind: 'chat' | 'completion',
    body: Record<string, unknown>,
  ): SwitchyardError | undefined {
    try {
      this.backend.outputTokensAllowed(parseCompletionBody(kind, body));
      return undefined;
    } catch (error) {
      if (error instanceof SwitchyardError) return error;
      throw error;
    }
  }

  private noteMaxTokens(body: Record<string, unknown>): void {
    this.pd.stats.requests++;
    const key = String(body['max_tokens'] ?? body['max_completion_tokens'] ?? 'unset');
    this.pd.stats.maxTokensSeen[key] = (this.pd.stats.maxTokensSeen[key] ?? 0) + 1;
  }

  private async vllmPrefill(
    kind: 'chat' | 'completion',
    path: string,
    body: Record<string, unknown>,
    res: ServerResponse,
    requestId: string,
  ): Promise<void> {
    const params = body['kv_transfer_params'] as { do_remote_decode?: unknown } | undefined;
    delete body['kv_transfer_params'];
    if (params?.do_remote_decode !== true)
      return this.pass(undefined, res, path, Buffer.from(JSON.stringify(body)));
    if (this.pd.full) return sendError(res, overloaded());
    this.noteMaxTokens(body);
    const tokens = this.promptTokens(kind, body);
    const { answer, coreId } = await this.prefillLeg(path, body);
    if (answer.status < 200 || answer.status >= 300) {
      if (coreId !== undefined) this.pd.releaseKv(coreId);
      return this.relay(res, answer);
    }
    // vLLM's internal id: the request id plus 8 random characters, named in the notify.
    const id = `${requestId}-${randomBytes(4).toString('hex')}`;
    this.pd.hold(`v:${id}`, tokens, requestId, coreId);
    const out = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
    out['kv_transfer_params'] = {
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_engine_id: this.pd.engineId,
      remote_block_ids: this.pd.blockIds(tokens),
      remote_host: this.pd.host,
      remote_port: this.pd.port,
      tp_size: this.pd.options.tp,
      remote_request_id: id,
    };
    this.answer(res, out);
  }

  private async sglangPrefill(
    kind: 'chat' | 'completion',
    path: string,
    body: Record<string, unknown>,
    res: ServerResponse,
  ): Promise<void> {
    const room = body['bootstrap_room'];
    stripBootstrap(body);
    if (typeof room !== 'number') return this.pass(undefined, res, path, Buffer.from(JSON.stringify(body)));
    if (this.pd.full) return sendError(res, overloaded());
    this.noteMaxTokens(body);
    const key = `s:${room}`;
    this.pd.entry(key);
    // SGLang's prefill server runs the prefill only: one token, whatever the request asked.
    body['max_tokens'] = 1;
    if (Object.hasOwn(body, 'max_completion_tokens')) body['max_completion_tokens'] = 1;
    // vLLM's min_tokens (the decode side honours it) may not pass that one token: past it is a 400.
    if (typeof body['min_tokens'] === 'number' && body['min_tokens'] > 1) body['min_tokens'] = 1;
    body['stream'] = false;
    delete body['stream_options'];
    let tokens: number;
    let leg: Awaited<ReturnType<PdFrontServer['prefillLeg']>>;
    try {
      tokens = this.promptTokens(kind, body);
      leg = await this.prefillLeg(path, body);
    } catch (error) {
      this.pd.failed(key);
      throw error;
    }
    const { answer, coreId } = leg;
    if (answer.status >= 200 && answer.status < 300) this.pd.hold(key, tokens, undefined, coreId);
    else {
      if (coreId !== undefined) this.pd.releaseKv(coreId);
      this.pd.failed(key);
    }
    this.relay(res, answer);
  }

  /**
   * Runs a prefill leg on the inner server, its KV kept in the pool after it finishes (the backend
   * wrapper sees its tag in `exporting`): the answer and the core request whose blocks it keeps
   * (undefined when the core never took it). A leg whose answer never came frees them.
   */
  private async prefillLeg(
    path: string,
    body: Record<string, unknown>,
  ): Promise<{ answer: InnerAnswer; coreId: string | undefined }> {
    const tag = this.newTag();
    this.pd.exporting.set(tag, undefined);
    let answer: InnerAnswer;
    try {
      answer = await this.inner(path, body, PREFILL_ANSWER_BYTES_MAX, tag);
    } catch (error) {
      const coreId = this.pd.exporting.get(tag);
      this.pd.exporting.delete(tag);
      if (coreId !== undefined) this.pd.releaseKv(coreId);
      throw error;
    }
    const coreId = this.pd.exporting.get(tag);
    this.pd.exporting.delete(tag);
    return { answer, coreId };
  }

  private async vllmDecode(
    kind: 'chat' | 'completion',
    path: string,
    body: Record<string, unknown>,
    res: ServerResponse,
    requestId: string,
  ): Promise<void> {
    const params = body['kv_transfer_params'] as Record<string, unknown> | undefined;
    delete body['kv_transfer_params'];
    if (params?.['do_remote_prefill'] !== true)
      return this.pass(undefined, res, path, Buffer.from(JSON.stringify(body)));
    this.noteMaxTokens(body);
    const refused = this.pastContext(kind, body);
    if (refused !== undefined) return sendError(res, refused);
    const tokens = this.promptTokens(kind, body);
    const bytes = this.pd.kvBytes(tokens);
    await sleep(this.pd.transferWallMs(bytes));
    if (res.destroyed) return;
    let loaded = false;
    // vLLM reads remote KV only with all four fields (NixlConnectorScheduler.update_state_after_alloc).
    if (REMOTE_FIELDS.every((f) => params[f] !== undefined && params[f] !== null))
      try {
        const host = String(params['remote_host']);
        const port = Number(params['remote_port']);
        const r = await peerCall(
          `http://${host.includes(':') ? `[${host}]` : host}:${port}/pd/notify`,
          'POST',
          {
            remote_request_id: params['remote_request_id'],
            remote_engine_id: params['remote_engine_id'],
            request_id: requestId,
          },
          PEER_CALL_TIMEOUT_MS,
        );
        loaded = r.status === 200;
      } catch {
        loaded = false;
      }
    // vLLM's `recompute` policy: KV that could not be loaded is prefilled here.
    if (!loaded) this.pd.stats.kvLoadFailures++;
    else this.pd.stats.transferredBytes += bytes;
    this.generate(path, body, res, loaded ? tokens : undefined);
  }

  private async sglangDecode(
    kind: 'chat' | 'completion',
    path: string,
    body: Record<string, unknown>,
    res: ServerResponse,
  ): Promise<void> {
    const host = body['bootstrap_host'];
    const port = body['bootstrap_port'];
    const room = body['bootstrap_room'];
    stripBootstrap(body);
    if (typeof host !== 'string' || typeof port !== 'number' || typeof room !== 'number')
      return this.pass(undefined, res, path, Buffer.from(JSON.stringify(body)));
    this.noteMaxTokens(body);
    const refused = this.pastContext(kind, body);
    if (refused !== undefined) return sendError(res, refused);
    const tokens = this.promptTokens(kind, body);
    const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}/pd`;
    const waitMs = this.pd.options.kvWaitTimeoutMs;
    let problem: string | undefined;
    // A client that leaves (a gateway cancelling the attempt) stops the wait for the room at once.
    const left = new AbortController();
    const onClose = (): void => left.abort(new Error('the client left'));
    res.once('close', onClose);
    this.pd.stats.kvWaiting++;
    try {
      const r = await peerCall(
        `${base}/bootstrap/${room}`,
        'GET',
        undefined,
        waitMs + PEER_CALL_TIMEOUT_MS,
        left.signal,
      );
      if (r.status !== 200)
        problem = `room ${room} is ${(r.json as { state?: string } | undefined)?.state ?? r.status} on ${host}:${port}`;
      else {
        const bytes = (r.json as { bytes: number }).bytes;
        await sleep(this.pd.transferWallMs(bytes));
        const collected = await peerCall(`${base}/release/${room}`, 'POST', {}, PEER_CALL_TIMEOUT_MS);
        if (collected.status !== 200) problem = `room ${room} was released before the transfer ended`;
        else this.pd.stats.transferredBytes += bytes;
      }
    } catch (error) {
      problem = `bootstrap ${host}:${port} unreachable (${(error as Error).message})`;
    } finally {
      this.pd.stats.kvWaiting--;
      res.off('close', onClose);
    }
    if (res.destroyed) {
      this.pd.stats.kvWaitsAborted++;
      return;
    }
    if (problem !== undefined) {
      this.pd.stats.kvLoadFailures++;
      return sendError(
        res,
        new SwitchyardError('SY_ERR_KV_TRANSFER_FAILED', `KV transfer failed: ${problem}`),
      );
    }
    this.generate(path, body, res, tokens);
  }

  /** Sends a decode to the inner server; `transferredTokens` set: its prefill is skipped. */
  private generate(
    path: string,
    body: Record<string, unknown>,
    res: ServerResponse,
    transferredTokens?: number,
  ): void {
    const tag = this.newTag();
    if (transferredTokens !== undefined) this.pd.transferred.set(tag, transferredTokens);
    this.pass(undefined, res, path, Buffer.from(JSON.stringify(body)), tag);
  }

  /** Proxies a request to the inner server (the client's own, or `body` as a JSON POST to `path`). */
  private pass(
    req: IncomingMessage | undefined,
    res: ServerResponse,
    path: string,
    body: Buffer | IncomingMessage | undefined,
    tag?: string,
  ): void {
    const headers: Record<string, string | number> = {};
    if (body instanceof Buffer) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
    } else if (req !== undefined) {
      for (const name of ['content-type', 'content-length', 'accept'])
        if (typeof req.headers[name] === 'string') headers[name] = req.headers[name] as string;
    }
    // The client left or the engine failed: a refused request never reached the backend, so its
    // transfer entry goes in untag, and the table only holds requests in flight.
    this.proxy(res, { path: req?.url ?? path, method: req?.method ?? 'POST', headers, body }, tag);
  }
}

/** The `kv_transfer_params` fields a vLLM decode needs to read remote KV. */
const REMOTE_FIELDS = ['remote_engine_id', 'remote_request_id', 'remote_host', 'remote_port'] as const;

/**
 * A request's id as vLLM names it from its X-Request-Id (OpenAIServing._base_request_id; a fresh
 * uuid without one): `chatcmpl-<id>` for chat, `cmpl-<id>-0` for a completion's one prompt.
 */
function vllmRequestId(kind: 'chat' | 'completion', header: string | string[] | undefined): string {
  const id = typeof header === 'string' ? header : randomUUID();
  return kind === 'chat' ? `chatcmpl-${id}` : `cmpl-${id}-0`;
}

function stripBootstrap(body: Record<string, unknown>): void {
  delete body['bootstrap_host'];
  delete body['bootstrap_port'];
  delete body['bootstrap_room'];
}

function overloaded(): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_OVERLOADED',
    `this prefill engine holds ${PD_TRANSFERS_MAX} KV transfers (PD_TRANSFERS_MAX); retry later`,
  );
}

/** How to serve a P/D sim engine (serveEngine's options, for the front server's life). */
export type ServePdOptions = Omit<ServeEngineOptions, 'engine'>;

/**
 * Serves `backend` as one side of a P/D pair until SIGTERM or SIGINT (or its supervisor's death):
 * the OpenAI server on a loopback port, the front server on `host:port`, the ready line naming the
 * front server.
 */
export function servePdEngine(backend: SimBackend, pd: PdEngine, options: ServePdOptions): Promise<void> {
  return servePdFront({
    engine: 'sim',
    role: pd.options.role,
    backend: new PdSimBackend(backend, pd),
    host: options.host,
    port: options.port,
    maxWaiting: options.maxWaiting,
    shutdownTimeoutS: options.shutdownTimeoutS,
    front: (innerPort) => new PdFrontServer(pd, innerPort, backend),
    addressWhat: '',
    listening: (port) => {
      pd.host = options.host;
      pd.port = port;
      return { kvEvents: options.kvEvents };
    },
    release: async () => {
      await options.release?.();
    },
  });
}
