/**
 * The hot path: one `Exchange` per accepted request, one `Attempt` per upstream try. Bytes flow
 * through untouched: the client's body goes upstream as received, the engine's response body goes
 * back chunk by chunk. The only look inside is at the edges: the first chunk (TTFT, and the moment
 * the response is committed), and the last two chunks at the end (`[DONE]`, usage).
 *
 * Until the first byte is written to the client, a failed attempt (connection error, 5xx, 429,
 * first-byte timeout) is retried on another instance after a jittered backoff, up to
 * `limits.retries`. After it, a failure ends an SSE stream with an error event and `[DONE]`; a
 * non-streaming response is cut (the socket is destroyed), which no client mistakes for success.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { type Dispatcher, Pool } from 'undici';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';
import { SSE_DONE, sseEvent } from '../core/openai-api.ts';
import type { Request } from '../core/request.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import type { BackendConfig, LimitsConfig } from './config.ts';
import type { HealthTarget } from './health.ts';
import { sendError } from './http-util.ts';
import type { LiveInstance } from './live-view.ts';
import { type AttemptFailure, isConnectError, statusFailure } from './retry.ts';

/** What the gateway forwards to, and the upstream path of each. */
export type ExchangeKind = 'chat' | 'completion' | 'embeddings';
const UPSTREAM_PATH: Record<ExchangeKind, string> = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embeddings: '/v1/embeddings',
};

/** Bytes of a non-2xx upstream body kept to relay or quote. */
const ERROR_BODY_BYTES_MAX = 64 * 1024;

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

const DONE_BYTES = Buffer.from('[DONE]');
const COMPLETION_TOKENS = Buffer.from('"completion_tokens":');
const DATA_PREFIX = Buffer.from('data:');

/** One engine behind the gateway: its config, its live view entry, its connection pool. */
export class Backend {
  readonly pool: Pool;
  /** Path prefix of the configured URL ('' for a bare origin). */
  readonly basePath: string;
  /** Headers sent upstream with every proxied request (shared, never mutated). */
  readonly headers: Record<string, string>;
  readonly paths: Record<ExchangeKind, string>;

  constructor(
    readonly config: BackendConfig,
    readonly instance: LiveInstance,
    readonly health: HealthTarget,
  ) {
    const url = new URL(config.url);
    this.pool = new Pool(url.origin, {
      connections: config.connectionsMax,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.basePath = url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, '');
    this.headers =
      config.apiKey === undefined
        ? { 'content-type': 'application/json' }
        : { 'content-type': 'application/json', authorization: `Bearer ${config.apiKey}` };
    this.paths = {
      chat: this.basePath + UPSTREAM_PATH.chat,
      completion: this.basePath + UPSTREAM_PATH.completion,
      embeddings: this.basePath + UPSTREAM_PATH.embeddings,
    };
  }

  get id(): string {
    return this.config.id;
  }
}

/** How an exchange ended, for the host's counters and hooks. */
export type ExchangeOutcome =
  | { readonly ok: true; readonly outputTokens: number }
  | { readonly ok: false; readonly code: ErrorCode | 'CLIENT_ABORT' | 'UPSTREAM_4XX' };

/** What an exchange needs from the gateway. */
export interface ExchangeHost {
  readonly limits: LimitsConfig;
  nowMs(): number;
  /** Picks the instance for the next attempt (avoiding `tried` when another one is eligible). */
  pick(ex: Exchange): Backend | SwitchyardError;
  /** Delay before retry `attempt` (0-based). */
  backoffMs(attempt: number): number;
  /** A retry is about to be made (counters). */
  retrying(ex: Exchange, failure: AttemptFailure): void;
  /** A connection to a backend failed: a health strike. */
  connectFailed(backend: Backend, error: Error): void;
  /** An attempt went out to `backend` (in-flight accounting, policy onRouted). */
  attemptStarted(ex: Exchange, backend: Backend): void;
  /** The first body byte of the response arrived (TTFT, policy onFirstToken). */
  firstByte(ex: Exchange, backend: Backend): void;
  /**
   * An attempt ended, well or not (in-flight accounting, policy onCompleted / onFailed), with the
   * tokens it generated where a completed answer tells.
   */
  attemptEnded(ex: Exchange, backend: Backend, ok: boolean, generatedTokens?: number): void;
  /** The exchange is over; called exactly once. */
  finished(ex: Exchange, outcome: ExchangeOutcome): void;
}

const EXCHANGE = Symbol('switchyard.exchange');
type ResWithExchange = ServerResponse & { [EXCHANGE]?: Exchange };

/** One shared 'close' listener for every response: it finds its exchange on the response. */
function onResClose(this: ResWithExchange): void {
  this[EXCHANGE]?.clientClosed();
}

/** One accepted request, from admission to the last byte. */
export class Exchange {
  /** The attempt in progress, if any. */
  attempt: Attempt | undefined = undefined;
  /** Ids of instances tried so far. */
  readonly tried: string[] = [];
  attempts = 0;
  /** The client has been sent the response head (no retry after this). */
  committed = false;
  done = false;
  /** Queued in admission (not yet dispatched). */
  queued = false;
  /** The arrival time on the host clock, and the deadline for the whole request. */
  readonly deadlineMs: number;
  /** The policy that routed it (hooks go back to it even if the active policy changes). */
  policy: RoutingPolicy | undefined = undefined;
  /** Admission released it (its hooks must hear the outcome). */
  released = false;
  /** The current attempt's input tokens still count as pending prefill on its instance. */
  prefillPending = false;
  private lastFailure: { failure: AttemptFailure; detail: string; status: number } | undefined;

  constructor(
    readonly host: ExchangeHost,
    readonly kind: ExchangeKind,
    readonly request: Request,
    readonly body: Buffer,
    readonly stream: boolean,
    readonly res: ServerResponse,
  ) {
    this.deadlineMs = request.arrivalMs + host.limits.requestTimeoutMs;
    (res as ResWithExchange)[EXCHANGE] = this;
    res.on('close', onResClose);
  }

  /** Starts the first attempt (admission released the request). */
  start(): void {
    if (this.done) return;
    this.queued = false;
    this.next();
  }

  /** Ends the exchange with an error answer (before anything was sent) or an SSE error (after). */
  fail(error: SwitchyardError, retryAfterMs?: number): void {
    if (this.done) return;
    this.attempt?.cancel(error);
    this.finish({ ok: false, code: error.code }, () => this.writeError(error, retryAfterMs));
  }

  /** The client's connection closed (res 'close'): before the answer finished, that is an abort. */
  clientClosed(): void {
    if (this.done) return;
    if (this.res.writableFinished) return;
    this.attempt?.cancel(new Error('client closed the connection'));
    this.finish({ ok: false, code: 'CLIENT_ABORT' }, undefined);
  }

  /**
   * Enforces the request deadline and the current attempt's first-byte deadline. The gateway calls
   * it for every live exchange from one periodic sweep (no timer per request).
   */
  checkTimers(now: number): void {
    if (this.done || this.queued) return;
    if (now >= this.deadlineMs) {
      this.fail(
        new SwitchyardError(
          'SY_ERR_TIMEOUT',
          `request did not finish within ${this.host.limits.requestTimeoutMs} ms (limits.requestTimeoutMs)`,
        ),
      );
      return;
    }
    const attempt = this.attempt;
    if (attempt !== undefined && !attempt.sawFirstByte && now >= attempt.firstByteDeadlineMs)
      attempt.timedOut();
  }

  /** Routes and sends the next attempt. */
  next(): void {
    if (this.done) return;
    const picked = this.host.pick(this);
    if (picked instanceof SwitchyardError) {
      const last = this.lastFailure;
      const retryAfterMs = picked.details?.['retryAfterMs'];
      if (last === undefined) this.fail(picked, typeof retryAfterMs === 'number' ? retryAfterMs : undefined);
      else this.failAfterAttempts(last);
      return;
    }
    this.attempts++;
    this.tried.push(picked.id);
    const attempt = new Attempt(this, picked, this.host.nowMs() + this.host.limits.firstByteTimeoutMs);
    this.attempt = attempt;
    this.host.attemptStarted(this, picked);
    attempt.send();
  }

  /** An attempt failed before anything reached the client: retry or give up. */
  attemptFailed(attempt: Attempt, failure: AttemptFailure, detail: string, status: number): void {
    if (this.attempt !== attempt || this.done) return;
    this.attempt = undefined;
    this.host.attemptEnded(this, attempt.backend, false);
    this.lastFailure = { failure, detail, status };
    const retriesLeft = this.host.limits.retries - (this.attempts - 1);
    if (retriesLeft <= 0) {
      this.failAfterAttempts(this.lastFailure);
      return;
    }
    this.host.retrying(this, failure);
    const delayMs = this.host.backoffMs(this.attempts - 1);
    const retry = setTimeout(() => this.next(), delayMs);
    retry.unref();
  }

  private failAfterAttempts(last: { failure: AttemptFailure; detail: string; status: number }): void {
    const tried = this.tried.join(', ');
    if (last.failure === 'status-429') {
      this.fail(
        new SwitchyardError(
          'SY_ERR_OVERLOADED',
          `every instance tried (${tried}) is overloaded: ${last.detail}`,
        ),
        1000,
      );
    } else if (last.failure === 'first-byte-timeout') {
      this.fail(new SwitchyardError('SY_ERR_TIMEOUT', `no response from ${tried}: ${last.detail}`));
    } else {
      this.fail(new SwitchyardError('SY_ERR_UPSTREAM', `upstream failed (tried ${tried}): ${last.detail}`));
    }
  }

  /** Commits the response head to the client (the first body byte is about to follow). */
  commit(status: number, headers: IncomingHttpHeaders, sse: boolean): void {
    this.committed = true;
    const res = this.res;
    if (res.destroyed) return;
    if (sse) {
      res.writeHead(status, SSE_HEADERS);
    } else {
      const type = headers['content-type'];
      const length = headers['content-length'];
      const out: Record<string, string> = {
        'content-type': typeof type === 'string' ? type : 'application/json',
      };
      // With the length known the answer needs no chunked framing (and no extra write for its end).
      if (typeof length === 'string') out['content-length'] = length;
      res.writeHead(status, out);
    }
  }

  /** The exchange is over: stop the timer, tell the host once, then answer (or not). */
  finish(outcome: ExchangeOutcome, answer: (() => void) | undefined): void {
    if (this.done) return;
    this.done = true;
    this.res.off('close', onResClose);
    this.host.finished(this, outcome);
    answer?.();
  }

  /** `finish` for a completed answer, then its last bytes (`tail`) and the end; no closure. */
  finishOk(outputTokens: number, tail: Buffer | undefined): void {
    if (this.done) return;
    this.done = true;
    const res = this.res;
    res.off('close', onResClose);
    this.host.finished(this, { ok: true, outputTokens });
    if (res.destroyed) return;
    if (tail === undefined) res.end();
    else res.end(tail);
  }

  /** Writes an error: a JSON answer before commit, an SSE error event after (or cuts a JSON body). */
  private writeError(error: SwitchyardError, retryAfterMs?: number): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (!this.committed) {
      sendError(res, error, retryAfterMs);
      return;
    }
    if (this.stream) {
      res.write(sseEvent(error.toJSON()));
      res.end(SSE_DONE);
    } else {
      res.destroy();
    }
  }
}

/** Modes an attempt's response can be in. */
enum Mode {
  /** Waiting for the response head. */
  Head = 0,
  /** 2xx: bytes pass through to the client. */
  Pass = 1,
  /** Non-2xx: the body is collected (bounded) to relay or quote. */
  Collect = 2,
}

/** One upstream try: an undici dispatch handler that feeds its exchange. */
export class Attempt implements Dispatcher.DispatchHandler {
  sawFirstByte = false;
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private cancelled = false;
  private mode = Mode.Head;
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private collected: Buffer[] = [];
  private collectedBytes = 0;
  private sse = false;
  private last: Buffer | undefined = undefined;
  private prev: Buffer | undefined = undefined;
  private events = 0;

  constructor(
    readonly ex: Exchange,
    readonly backend: Backend,
    readonly firstByteDeadlineMs: number,
  ) {}

  send(): void {
    const ex = this.ex;
    try {
      this.backend.pool.dispatch(
        {
          path: this.backend.paths[ex.kind],
          method: 'POST',
          headers: this.backend.headers,
          body: ex.body,
          blocking: true,
        },
        this,
      );
    } catch (error) {
      this.onResponseError(undefined, error as Error);
    }
  }

  /** Stops this attempt (client gone, request timeout); no further events reach the exchange. */
  cancel(reason: Error): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.ex.host.attemptEnded(this.ex, this.backend, false);
    try {
      this.controller?.abort(reason);
    } catch {
      // Already finished: nothing to abort.
    }
  }

  /** The first-byte deadline passed: abort and let the exchange retry. */
  timedOut(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    try {
      this.controller?.abort(new Error('first byte timeout'));
    } catch {
      // Already finished.
    }
    this.ex.attemptFailed(
      this,
      'first-byte-timeout',
      `${this.backend.id} sent no response byte within ${this.ex.host.limits.firstByteTimeoutMs} ms (limits.firstByteTimeoutMs)`,
      0,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelled) controller.abort(new Error('cancelled'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    if (this.cancelled) return;
    this.status = statusCode;
    this.headers = headers;
    if (statusCode >= 200 && statusCode < 300) {
      this.mode = Mode.Pass;
      const type = headers['content-type'];
      this.sse = this.ex.stream || (typeof type === 'string' && type.startsWith('text/event-stream'));
    } else {
      this.mode = Mode.Collect;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.cancelled) return;
    if (this.mode === Mode.Collect) {
      if (this.collectedBytes < ERROR_BODY_BYTES_MAX) {
        this.collected.push(chunk);
        this.collectedBytes += chunk.length;
      }
      return;
    }
    const ex = this.ex;
    if (!this.sawFirstByte) {
      this.sawFirstByte = true;
      ex.host.firstByte(ex, this.backend);
      ex.commit(this.status, this.headers, this.sse);
    }
    const held = this.last;
    this.prev = held;
    this.last = chunk;
    const res = ex.res;
    if (this.sse) this.events += countOccurrences(chunk, DATA_PREFIX);
    else {
      // A JSON answer usually arrives in one chunk: hold each chunk until the next one (or the end),
      // so the common case leaves in a single write with the head.
      if (held === undefined || res.destroyed) return;
      chunk = held;
    }
    if (!res.write(chunk)) {
      controller.pause();
      res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const ex = this.ex;
    if (this.mode === Mode.Collect) {
      this.endCollected();
      return;
    }
    if (!this.sawFirstByte) {
      // A 2xx with an empty body: nothing to stream, so it is the answer as is.
      ex.host.firstByte(ex, this.backend);
      ex.commit(this.status, this.headers, this.sse);
    }
    const sseDone = !this.sse || this.endsWithDone();
    // Without usage in a JSON answer, the count is unknown (not the declared max_tokens).
    const outputTokens = this.usageTokens() ?? (this.sse ? Math.max(0, this.events - 1) : undefined);
    ex.host.attemptEnded(ex, this.backend, sseDone, outputTokens);
    if (!sseDone) {
      const error = new SwitchyardError(
        'SY_ERR_UPSTREAM',
        `${this.backend.id} ended the stream without [DONE]`,
      );
      ex.finish({ ok: false, code: error.code }, () => {
        if (ex.res.destroyed) return;
        ex.res.write(sseEvent(error.toJSON()));
        ex.res.end(SSE_DONE);
      });
      return;
    }
    ex.finishOk(outputTokens ?? ex.request.maxTokens ?? 0, this.sse ? undefined : this.last);
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const ex = this.ex;
    if (!this.sawFirstByte) {
      if (isConnectError(error) || this.mode === Mode.Head) this.ex.host.connectFailed(this.backend, error);
      ex.attemptFailed(this, 'connect', `${this.backend.id}: ${error.message}`, 0);
      return;
    }
    ex.host.attemptEnded(ex, this.backend, false);
    ex.fail(
      new SwitchyardError('SY_ERR_UPSTREAM', `${this.backend.id} failed mid-response: ${error.message}`),
    );
  }

  /** A non-2xx response ended: retry a 5xx/429, relay anything else as the engine sent it. */
  private endCollected(): void {
    const ex = this.ex;
    const body = Buffer.concat(this.collected, Math.min(this.collectedBytes, ERROR_BODY_BYTES_MAX));
    const failure = statusFailure(this.status);
    if (failure !== undefined) {
      const snippet = body.toString('utf8', 0, Math.min(body.length, 300)).replace(/\s+/g, ' ');
      ex.attemptFailed(this, failure, `${this.backend.id} answered ${this.status}: ${snippet}`, this.status);
      return;
    }
    // A 4xx (or 3xx): the engine's own verdict on the request; no other instance would differ.
    ex.host.attemptEnded(ex, this.backend, true);
    const status = this.status;
    const type = this.headers['content-type'];
    ex.finish({ ok: false, code: 'UPSTREAM_4XX' }, () => {
      const res = ex.res;
      if (res.destroyed || res.headersSent) return;
      ex.committed = true;
      res.writeHead(status, {
        'content-type': typeof type === 'string' ? type : 'application/json',
        'content-length': body.length,
      });
      res.end(body);
    });
  }

  private endsWithDone(): boolean {
    return tailIncludes(this.prev, this.last, DONE_BYTES);
  }

  /** completion_tokens from a usage object in the last two chunks, if any. */
  private usageTokens(): number | undefined {
    const last = this.last;
    if (last === undefined) return undefined;
    let buf = last;
    let at = buf.lastIndexOf(COMPLETION_TOKENS);
    if (at < 0 && this.prev !== undefined) {
      buf = Buffer.concat([this.prev, last]);
      at = buf.lastIndexOf(COMPLETION_TOKENS);
    }
    if (at < 0) return undefined;
    let i = at + COMPLETION_TOKENS.length;
    while (i < buf.length && buf[i] === 0x20) i++;
    let n = 0;
    let digits = 0;
    for (; i < buf.length && digits < 12; i++, digits++) {
      const c = buf[i] as number;
      if (c < 0x30 || c > 0x39) break;
      n = n * 10 + (c - 0x30);
    }
    return digits > 0 ? n : undefined;
  }
}

/** Occurrences of `needle` in `buf`. */
function countOccurrences(buf: Buffer, needle: Buffer): number {
  let n = 0;
  let at = buf.indexOf(needle);
  while (at >= 0) {
    n++;
    at = buf.indexOf(needle, at + needle.length);
  }
  return n;
}

/** Whether `needle` occurs in the last 64 bytes of prev+last (it may straddle the two chunks). */
function tailIncludes(prev: Buffer | undefined, last: Buffer | undefined, needle: Buffer): boolean {
  if (last === undefined) return false;
  const tail = 64;
  if (last.length >= tail || prev === undefined) {
    return last.subarray(Math.max(0, last.length - tail)).includes(needle);
  }
  const joined = Buffer.concat([prev.subarray(Math.max(0, prev.length - tail)), last]);
  return joined.subarray(Math.max(0, joined.length - tail)).includes(needle);
}
