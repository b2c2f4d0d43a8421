/**
 * The hot path: one `Exchange` per accepted request, one `Attempt` per upstream try. Bytes flow
 * through untouched: the client's body goes upstream as received, the engine's response body goes
 * back chunk by chunk. What is read on the way (src/gateway/sse-events.ts, constant memory): SSE
 * events as they pass (a stream is complete only when an event whose data is exactly `[DONE]`
 * arrived; generated tokens come from the last usage event, else the event count), and whether a
 * JSON answer arrived whole (its last chunk is held until then, so a truncated one is never relayed
 * as a clean 200).
 *
 * Until the first byte is written to the client, a failed attempt (connection error, 5xx, 429,
 * first-byte timeout, a stalled backend, a truncated answer) is retried on another instance after a
 * jittered backoff, up to `limits.retries`. After it, a failure ends an SSE stream with an error
 * event and `[DONE]` (a Responses stream: OpenAI's `error` event, no `[DONE]`); a non-streaming
 * response is cut (the socket is destroyed), which no client mistakes for success. A committed response that gets no upstream byte for
 * `limits.streamIdleTimeoutMs` ends the same way (SY_ERR_TIMEOUT). Every timer is the gateway's one
 * periodic sweep (`Exchange.checkTimers`), which also re-routes attempts on stalled backends
 * (src/gateway/stall.ts); the per-chunk cost of that bookkeeping is two field writes on a coarse
 * clock the sweep advances (`ExchangeHost.coarseNowMs`).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { type Dispatcher, Pool } from 'undici';
import { LogLimiter, withSuppressed } from '../adapters/log-limiter.ts';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';
import { SSE_DONE, sseEvent } from '../core/openai-api.ts';
import type { Request } from '../core/request.ts';
import { responsesErrorEvent } from '../core/responses-api.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import type { BackendConfig, LimitsConfig } from './config.ts';
import { bodyWithEnginePriority, type EnginePriorityOrder, enginePriorityOf } from './engine-priority.ts';
import type { HealthTarget } from './health.ts';
import { sendError } from './http-util.ts';
import type { LiveInstance } from './live-view.ts';
import type { ResponseCapture } from './response-store.ts';
import { type AttemptFailure, isConnectError, statusFailure } from './retry.ts';
import { JsonFraming, SseScanner } from './sse-events.ts';
import { BackendProgress } from './stall.ts';

/** What the gateway forwards to, and the upstream path of each ('responses': OpenAI's Responses API). */
export type ExchangeKind = 'chat' | 'completion' | 'embeddings' | 'responses';
const UPSTREAM_PATH: Record<ExchangeKind, string> = {
  chat: '/v1/chat/completions',
  completion: '/v1/completions',
  embeddings: '/v1/embeddings',
  responses: '/v1/responses',
};

/** Bytes of a non-2xx upstream body kept to relay (4xx) or log (5xx, 429). */
const ERROR_BODY_BYTES_MAX = 64 * 1024;
/** Characters of a failed upstream's body written to the gateway log (never to the client). */
const ERROR_LOG_CHARS_MAX = 300;
/** A failing engine logs one body per status this often (an engine failing everything floods nothing). */
const UPSTREAM_ERROR_LOG_EVERY_MS = 10_000;
/** Bound on an upstream's Retry-After that the gateway passes on (5 minutes). */
export const UPSTREAM_RETRY_AFTER_MS_MAX = 300_000;
/** Retry-After of a 429 when no upstream gave one. */
const RETRY_AFTER_MS_DEFAULT = 1000;

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

/** One engine behind the gateway: its config, its live view entry, its connection pool. */
export class Backend {
  readonly pool: Pool;
  /** Path prefix of the configured URL ('' for a bare origin). */
  readonly basePath: string;
  /** Headers sent upstream with every proxied request (shared, never mutated). */
  readonly headers: Record<string, string>;
  readonly paths: Record<ExchangeKind, string>;
  /** How its engine reads a body's `priority`: the gateway's priority goes in that order (upstreamBody). */
  readonly priorityOrder: EnginePriorityOrder;
  /** When it last delivered a byte and became busy: what stall detection reads. */
  readonly progress = new BackendProgress();
  /** One log line per failure status per UPSTREAM_ERROR_LOG_EVERY_MS, with a count of the rest. */
  readonly errorLog = new LogLimiter({ now: () => performance.now(), everyMs: UPSTREAM_ERROR_LOG_EVERY_MS });

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
    this.priorityOrder = enginePriorityOf(config);
    this.paths = {
      chat: this.basePath + UPSTREAM_PATH.chat,
      completion: this.basePath + UPSTREAM_PATH.completion,
      embeddings: this.basePath + UPSTREAM_PATH.embeddings,
      responses: this.basePath + UPSTREAM_PATH.responses,
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
  /**
   * `nowMs()` as of the last sweep tick (or attempt start): per-chunk progress stamps read this
   * field instead of the clock. Stale by at most one sweep interval, which the idle and stall
   * bounds (seconds) do not notice.
   */
  readonly coarseNowMs: number;
  /** A line for the gateway's log (an upstream's error body goes here, never to the client). */
  logLine(line: string): void;
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
  /** The largest Retry-After an upstream 429 or 503 gave (bounded), passed on when it all fails. */
  private upstreamRetryAfterMs: number | undefined = undefined;
  /** The client's `X-Request-Id` (undefined: none, or empty). */
  readonly clientRequestId: string | undefined;
  /**
   * The `X-Request-Id` the engine gets, which vLLM takes as its request id (`chatcmpl-<id>`): the
   * client's as it came; a vLLM P/D pair's own (pd-exchange.ts). Undefined: none, the engine names
   * it (the answer's own X-Request-Id is then the gateway's, request-id.ts).
   */
  upstreamRequestId: string | undefined;
  /** A Responses request whose answer the gateway's response store keeps (response-store.ts). */
  capture: ResponseCapture | undefined = undefined;

  constructor(
    readonly host: ExchangeHost,
    readonly kind: ExchangeKind,
    readonly request: Request,
    readonly body: Buffer,
    readonly stream: boolean,
    readonly res: ServerResponse,
  ) {
    this.deadlineMs = request.arrivalMs + host.limits.requestTimeoutMs;
    const id = (res as { req?: IncomingMessage }).req?.headers['x-request-id'];
    this.clientRequestId = typeof id === 'string' && id.length > 0 ? id : undefined;
    this.upstreamRequestId = this.clientRequestId;
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
   * Enforces the request deadline, the current attempt's first-byte deadline and idle bound, and
   * re-routes an attempt not yet answered whose backend stalled. The gateway calls it for every
   * live exchange from one periodic sweep (no timer per request).
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
    if (attempt === undefined) return;
    if (!this.committed && attempt.backend.progress.stalled) attempt.stalled();
    else if (!attempt.sawFirstByte) {
      if (now >= attempt.firstByteDeadlineMs) attempt.timedOut();
    } else if (!attempt.paused && now - attempt.lastByteMs >= this.host.limits.streamIdleTimeoutMs)
      attempt.idle();
  }

  /** An upstream 429/503 asked for `ms` before a retry: the answer passes on the largest. */
  noteRetryAfter(ms: number): void {
    if (this.upstreamRetryAfterMs === undefined || ms > this.upstreamRetryAfterMs)
      this.upstreamRetryAfterMs = ms;
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
    const now = this.host.nowMs();
    picked.progress.started(now, picked.instance.inFlight);
    const attempt = new Attempt(this, picked, now + this.host.limits.firstByteTimeoutMs);
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
    // Each instance once, in the order first tried: retries of one instance are not more instances.
    const tried = [...new Set(this.tried)].join(', ');
    const retryAfterMs = this.upstreamRetryAfterMs;
    if (last.failure === 'status-429') {
      this.fail(
        new SwitchyardError(
          'SY_ERR_OVERLOADED',
          `every instance tried (${tried}) is overloaded: ${last.detail}`,
        ),
        retryAfterMs ?? RETRY_AFTER_MS_DEFAULT,
      );
    } else if (last.failure === 'first-byte-timeout') {
      this.fail(new SwitchyardError('SY_ERR_TIMEOUT', `no response from ${tried}: ${last.detail}`));
    } else if (last.failure === 'pd-prefill') {
      this.fail(new SwitchyardError('SY_ERR_PD_PREFILL_FAILED', last.detail));
    } else {
      this.fail(
        new SwitchyardError('SY_ERR_UPSTREAM', `upstream failed (tried ${tried}): ${last.detail}`),
        retryAfterMs,
      );
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
      res.end(this.attempt?.streamErrorTail(error) ?? streamErrorTail(this.kind, undefined, error));
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
  /** Non-2xx: the body is collected (bounded) to relay or log. */
  Collect = 2,
}

/** One upstream try: an undici dispatch handler that feeds its exchange. */
export class Attempt implements Dispatcher.DispatchHandler {
  sawFirstByte = false;
  /** Host time (coarse) of the last response byte, or of the resume after a slow client's pause. */
  lastByteMs = 0;
  /** The upstream is paused until the client drains what it was sent (not an idle upstream). */
  paused = false;
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private cancelled = false;
  private mode = Mode.Head;
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private collected: Buffer[] = [];
  private collectedBytes = 0;
  private sse = false;
  /** SSE: the event parser. */
  private scanner: SseScanner | undefined = undefined;
  /** JSON: whether the body arrived whole. */
  private framing: JsonFraming | undefined = undefined;
  /** Non-SSE: the chunk not yet written (the last one is checked before it goes). */
  private last: Buffer | undefined = undefined;
  /** Non-SSE: the chunk before `last` (usage may straddle the two). */
  private prev: Buffer | undefined = undefined;
  /** Non-SSE: body bytes received. */
  private bodyBytes = 0;
  /**
   * A Responses stream's first token is its first text delta, not its first byte (the engine sends
   * `response.created` before any token): the host hears `firstByte` then. Set at a 2xx SSE head.
   */
  private awaitsDelta = false;
  /** Non-SSE with a capture: every chunk, held until the end (at most capture.bytesMax). */
  private whole: Buffer[] | undefined = undefined;
  private wholeBytes = 0;

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
          headers: upstreamHeaders(this.backend, ex.upstreamRequestId),
          body: upstreamBody(ex.kind, ex.body, this.backend, ex.request.priority),
          blocking: true,
        },
        this,
      );
    } catch (error) {
      this.onResponseError(undefined, error as Error);
    }
  }

  /** Marks the attempt over; false when it already was. */
  private stop(): boolean {
    if (this.cancelled) return false;
    this.cancelled = true;
    if (this.paused) {
      this.paused = false;
      this.backend.progress.pausedAttempts--;
    }
    return true;
  }

  /** Stops this attempt (client gone, request timeout); no further events reach the exchange. */
  cancel(reason: Error): void {
    if (!this.stop()) return;
    this.ex.host.attemptEnded(this.ex, this.backend, false);
    try {
      this.controller?.abort(reason);
    } catch {
      // Already finished: nothing to abort.
    }
  }

  /**
   * Aborts the upstream request and lets the exchange retry it, as `failure` (nothing reached the
   * client): a first-byte timeout or a stall here, a failed prefill leg for a P/D exchange.
   */
  abandon(reason: string, detail: string, failure: AttemptFailure = 'first-byte-timeout'): void {
    if (!this.stop()) return;
    try {
      this.controller?.abort(new Error(reason));
    } catch {
      // Already finished.
    }
    this.ex.attemptFailed(this, failure, detail, 0);
  }

  /** The first-byte deadline passed: abort and let the exchange retry. */
  timedOut(): void {
    this.abandon(
      'first byte timeout',
      `${this.backend.id} sent no response byte within ${this.ex.host.limits.firstByteTimeoutMs} ms (limits.firstByteTimeoutMs)`,
    );
  }

  /** Its backend stalled (src/gateway/stall.ts) and nothing reached the client yet: re-route now. */
  stalled(): void {
    this.abandon(
      'backend stalled',
      `${this.backend.id} stalled (no response byte for ${this.ex.host.limits.stallAfterMs} ms, limits.stallAfterMs)`,
    );
  }

  /**
   * No upstream byte for streamIdleTimeoutMs after the first: a committed response ends with
   * SY_ERR_TIMEOUT (an SSE error event and `[DONE]`, or a cut body); one not yet committed (a
   * JSON answer's first chunk held) is retried like a first-byte timeout.
   */
  idle(): void {
    const ex = this.ex;
    const detail = `${this.backend.id} sent nothing for ${ex.host.limits.streamIdleTimeoutMs} ms (limits.streamIdleTimeoutMs)`;
    if (!ex.committed) {
      this.abandon('idle upstream', detail);
      return;
    }
    ex.fail(new SwitchyardError('SY_ERR_TIMEOUT', `${detail}; the response is incomplete`));
  }

  /** What ends this attempt's stream with `error` (see streamErrorTail). */
  streamErrorTail(error: SwitchyardError): string {
    return streamErrorTail(this.ex.kind, this.scanner, error);
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
    this.backend.progress.byte(this.ex.host.coarseNowMs);
    this.status = statusCode;
    this.headers = headers;
    if (statusCode >= 200 && statusCode < 300) {
      this.mode = Mode.Pass;
      const type = headers['content-type'];
      this.sse = this.ex.stream || (typeof type === 'string' && type.startsWith('text/event-stream'));
      const responses = this.ex.kind === 'responses';
      this.awaitsDelta = this.sse && responses;
      if (this.sse) this.scanner = new SseScanner(responses);
      else if (typeof type === 'string' && isJsonType(type)) this.framing = new JsonFraming();
      if (this.ex.capture !== undefined) this.beginCapture(this.ex.capture, headers['content-length']);
    } else {
      this.mode = Mode.Collect;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.cancelled) return;
    const ex = this.ex;
    const nowMs = ex.host.coarseNowMs;
    this.backend.progress.byte(nowMs);
    if (this.mode === Mode.Collect) {
      if (this.collectedBytes < ERROR_BODY_BYTES_MAX) {
        this.collected.push(chunk);
        this.collectedBytes += chunk.length;
      }
      return;
    }
    this.lastByteMs = nowMs;
    if (!this.sawFirstByte) {
      this.sawFirstByte = true;
      if (!this.awaitsDelta) ex.host.firstByte(ex, this.backend);
      if (this.sse) ex.commit(this.status, this.headers, true);
    }
    const res = ex.res;
    if (this.sse) {
      const scanner = this.scanner as SseScanner;
      scanner.push(chunk);
      ex.capture?.sseChunk(chunk);
      if (this.awaitsDelta && scanner.deltas > 0) this.firstDelta();
    } else {
      this.bodyBytes += chunk.length;
      this.framing?.push(chunk);
      if (this.whole !== undefined && this.holdWhole(chunk)) return;
      // Hold each chunk until the next one (or the end): the last is checked before it goes, and a
      // JSON answer in one chunk leaves in a single write with the head, committed only then.
      const held = this.last;
      this.prev = held;
      this.last = chunk;
      if (held === undefined || res.destroyed) return;
      if (!ex.committed) ex.commit(this.status, this.headers, false);
      chunk = held;
    }
    if (!res.write(chunk) && !this.paused) {
      controller.pause();
      this.paused = true;
      this.backend.progress.pausedAttempts++;
      res.once('drain', () => this.drained(controller));
    }
  }

  /**
   * A stored Responses answer: a stream is read as it passes; a JSON answer (declared no larger than
   * the capture holds) is held whole, to go out at its end saying `store: true`.
   */
  private beginCapture(capture: ResponseCapture, length: string | string[] | undefined): void {
    capture.begin(this.sse);
    if (this.sse || this.framing === undefined) return;
    if (typeof length === 'string' && Number(length) > capture.bytesMax) capture.tooLarge();
    else this.whole = [];
  }

  /**
   * Holds a captured JSON answer's `chunk`; true when held. Past the capture's bound the capture is
   * given up: what was held goes out now, and the answer passes on as any other (`chunk` is next).
   */
  private holdWhole(chunk: Buffer): boolean {
    const held = this.whole as Buffer[];
    if (this.wholeBytes + chunk.length <= (this.ex.capture as ResponseCapture).bytesMax) {
      held.push(chunk);
      this.wholeBytes += chunk.length;
      return true;
    }
    this.ex.capture?.tooLarge();
    this.whole = undefined;
    const ex = this.ex;
    if (!ex.committed) ex.commit(this.status, this.headers, false);
    // The last held chunk stays held, as the pass-through path keeps one: `chunk` follows it.
    this.last = held.pop();
    if (!ex.res.destroyed) for (const c of held) ex.res.write(c);
    return false;
  }

  /** A Responses stream's first text delta arrived (or it ended without one): its first token. */
  private firstDelta(): void {
    this.awaitsDelta = false;
    this.ex.host.firstByte(this.ex, this.backend);
  }

  /** The client took what it was sent: the upstream goes on, and the idle clock restarts. */
  private drained(controller: Dispatcher.DispatchController): void {
    if (this.paused) {
      this.paused = false;
      this.backend.progress.pausedAttempts--;
      this.lastByteMs = this.ex.host.coarseNowMs;
    }
    controller.resume();
  }

  onResponseEnd(): void {
    if (this.cancelled) return;
    if (this.mode === Mode.Collect) {
      this.stop();
      this.endCollected();
      return;
    }
    if (this.sse) this.endStream();
    else this.endBody();
  }

  /** An SSE stream ended: complete only with a `[DONE]` event; else an error event and `[DONE]`. */
  private endStream(): void {
    this.stop();
    const ex = this.ex;
    const scanner = this.scanner as SseScanner;
    if (!this.sawFirstByte) {
      // A 2xx with an empty body: the head, then the ending below.
      ex.host.firstByte(ex, this.backend);
      ex.commit(this.status, this.headers, true);
    } else if (this.awaitsDelta) this.firstDelta();
    const outputTokens = scanner.usageTokens ?? scanner.tokenEvents;
    ex.host.attemptEnded(ex, this.backend, scanner.done, outputTokens);
    if (scanner.done) {
      ex.capture?.sseEnded();
      ex.finishOk(outputTokens, undefined);
      return;
    }
    if (scanner.endedWithError) {
      // A Responses server ended the stream with its own error event: the client has the reason
      // (a drain's SY_ERR_DRAINING, say); a second error would bury it.
      ex.finish({ ok: false, code: 'SY_ERR_UPSTREAM' }, () => {
        if (!ex.res.destroyed) ex.res.end();
      });
      return;
    }
    const error = new SwitchyardError(
      'SY_ERR_UPSTREAM',
      `${this.backend.id} ended the stream without ${ex.kind === 'responses' ? 'a response.completed or response.incomplete' : 'a [DONE]'} event`,
    );
    ex.finish({ ok: false, code: error.code }, () => {
      if (ex.res.destroyed) return;
      ex.res.end(streamErrorTail(ex.kind, scanner, error));
    });
  }

  /**
   * A non-SSE 2xx body ended: its held last chunk goes out only when the body is whole (declared
   * length met, a JSON body complete). A truncated one not yet committed is retried like a broken
   * connection; one already committed is cut.
   */
  private endBody(): void {
    const ex = this.ex;
    const problem = this.bodyProblem();
    if (problem !== undefined) {
      const detail = `${this.backend.id} sent ${problem}`;
      if (!ex.committed) {
        this.stop();
        ex.attemptFailed(this, 'connect', detail, this.status);
        return;
      }
      this.stop();
      ex.host.attemptEnded(ex, this.backend, false);
      ex.fail(new SwitchyardError('SY_ERR_UPSTREAM', detail));
      return;
    }
    this.stop();
    if (this.whole !== undefined) this.endWhole(ex.capture as ResponseCapture, this.whole);
    if (!this.sawFirstByte) ex.host.firstByte(ex, this.backend);
    if (!ex.committed) ex.commit(this.status, this.headers, false);
    // Without usage in a JSON answer, the count is unknown (not the declared max_tokens).
    const outputTokens = this.usageTokens();
    ex.host.attemptEnded(ex, this.backend, true, outputTokens);
    const declared =
      ex.request.maxTokens === undefined ? 0 : ex.request.maxTokens * (ex.request.generations ?? 1);
    ex.finishOk(outputTokens ?? declared, this.last);
  }

  /** A held JSON answer is whole: stored, it goes out as the capture rewrote it (its length with it). */
  private endWhole(capture: ResponseCapture, held: Buffer[]): void {
    this.whole = undefined;
    const body = Buffer.concat(held, this.wholeBytes);
    const stored = capture.json(body);
    this.prev = undefined;
    this.last = stored ?? body;
    if (stored !== undefined) this.headers = { ...this.headers, 'content-length': String(stored.length) };
  }

  /** Why a finished non-SSE body is not whole, or undefined when it is. */
  private bodyProblem(): string | undefined {
    const declared = this.headers['content-length'];
    if (typeof declared === 'string' && Number(declared) !== this.bodyBytes)
      return `${this.bodyBytes} of the ${declared} bytes its content-length declared`;
    if (this.framing !== undefined && !this.framing.complete)
      return `a truncated JSON answer (${this.bodyBytes} bytes, not one complete JSON value)`;
    return undefined;
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (!this.stop()) return;
    const ex = this.ex;
    if (!ex.committed) {
      if (isConnectError(error) || this.mode === Mode.Head) ex.host.connectFailed(this.backend, error);
      ex.attemptFailed(this, 'connect', `${this.backend.id}: ${error.message}`, 0);
      return;
    }
    ex.host.attemptEnded(ex, this.backend, false);
    ex.fail(
      new SwitchyardError('SY_ERR_UPSTREAM', `${this.backend.id} failed mid-response: ${error.message}`),
    );
  }

  /**
   * A non-2xx response ended: retry a 5xx/429, relay anything else as the engine sent it. A failed
   * engine's body goes to the gateway log only: it may echo what the request carried (a key, a
   * prompt), and the client of another attempt or tenant must not read it.
   */
  private endCollected(): void {
    const ex = this.ex;
    const body = Buffer.concat(this.collected, Math.min(this.collectedBytes, ERROR_BODY_BYTES_MAX));
    const status = this.status;
    const retryAfter = this.headers['retry-after'];
    if (status === 429 || status === 503) {
      const ms = parseRetryAfterMs(retryAfter, Date.now());
      if (ms !== undefined) ex.noteRetryAfter(ms);
    }
    const failure = statusFailure(status);
    if (failure !== undefined) {
      const backend = this.backend;
      backend.errorLog.report(String(status), (suppressed) =>
        ex.host.logLine(
          withSuppressed(
            `switchyard: ${backend.id} answered ${status} to ${ex.request.id}: ${logSnippet(body)}`,
            suppressed,
          ),
        ),
      );
      ex.attemptFailed(this, failure, `${this.backend.id} answered ${status}`, status);
      return;
    }
    // A 4xx (or 3xx): the engine's own verdict on the request; no other instance would differ.
    ex.host.attemptEnded(ex, this.backend, true);
    relayEngineRefusal(ex, { status, headers: this.headers, body });
  }

  /**
   * completion_tokens (a Responses answer: output_tokens) from a usage object in the last two chunks
   * of a JSON answer, if any.
   */
  private usageTokens(): number | undefined {
    const last = this.last;
    if (last === undefined) return undefined;
    const needle = this.ex.kind === 'responses' ? OUTPUT_TOKENS : COMPLETION_TOKENS;
    let buf = last;
    let at = buf.lastIndexOf(needle);
    if (at < 0 && this.prev !== undefined) {
      buf = Buffer.concat([this.prev, last]);
      at = buf.lastIndexOf(needle);
    }
    if (at < 0) return undefined;
    let i = at + needle.length;
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

/**
 * What ends a committed stream of `kind` that `error` cut: what completes an event the upstream
 * left half-sent (SseScanner.resync), then the error as an event of the stream's own API. A
 * Responses stream gets OpenAI's `error` event numbered after the events relayed
 * (responsesErrorEvent) and no `[DONE]`; a chat or completion stream the error object as data,
 * then `[DONE]`.
 */
export function streamErrorTail(
  kind: ExchangeKind,
  scanner: SseScanner | undefined,
  error: SwitchyardError,
): string {
  const resync = scanner?.resync() ?? '';
  if (kind === 'responses') return resync + responsesErrorEvent(error, scanner?.events ?? 0);
  return resync + sseEvent(error.toJSON()) + SSE_DONE;
}

/**
 * The body `backend` gets for a request of `kind` with the gateway's `priority` (after the tenant
 * rule and the batch band): `body` with its `priority` in the engine's own order (engine-priority.ts),
 * `body` itself when nothing changes. Embeddings go as sent (no engine schedules them by priority).
 */
export function upstreamBody(kind: ExchangeKind, body: Buffer, backend: Backend, priority: number): Buffer {
  if (kind === 'embeddings') return body;
  return bodyWithEnginePriority(body, backend.priorityOrder, priority);
}

/** An engine's answer that refused a request (a 4xx or 3xx): its status, head and body (bounded). */
export interface EngineRefusal {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/**
 * Ends `ex` with an engine's refusal as the engine sent it (status, content-type, Retry-After, body:
 * its message, type, param and code): the engine's own verdict on the request, which no other
 * instance would change. A proxied attempt's 4xx and a P/D prefill leg's both end here.
 */
export function relayEngineRefusal(ex: Exchange, refusal: EngineRefusal): void {
  const { status, body } = refusal;
  const type = refusal.headers['content-type'];
  const retryAfter = refusal.headers['retry-after'];
  ex.finish({ ok: false, code: 'UPSTREAM_4XX' }, () => {
    const res = ex.res;
    if (res.destroyed || res.headersSent) return;
    ex.committed = true;
    const out: Record<string, string | number> = {
      'content-type': typeof type === 'string' ? type : 'application/json',
      'content-length': body.length,
    };
    if (typeof retryAfter === 'string') out['retry-after'] = retryAfter;
    res.writeHead(status, out);
    res.end(body);
  });
}

/**
 * The headers of a request to `backend`: its shared ones (content type, its key), plus
 * `X-Request-Id` when `requestId` is set (a new object then; the shared one is never mutated).
 */
export function upstreamHeaders(backend: Backend, requestId: string | undefined): Record<string, string> {
  return requestId === undefined ? backend.headers : { ...backend.headers, 'x-request-id': requestId };
}

/**
 * The usage key of a JSON answer. Inside a JSON string a quote is escaped, so this exact sequence
 * (closing quote, then colon) only matches a real key.
 */
const COMPLETION_TOKENS = Buffer.from('"completion_tokens":');
/** The usage key of a Responses answer (`usage.output_tokens`). */
const OUTPUT_TOKENS = Buffer.from('"output_tokens":');

/** application/json and the +json types. */
function isJsonType(type: string): boolean {
  if (type.startsWith('application/json')) return true;
  const semi = type.indexOf(';');
  const base = (semi < 0 ? type : type.slice(0, semi)).trim().toLowerCase();
  return base === 'application/json' || base.endsWith('+json');
}

/** An upstream body for the log: bounded, whitespace and control characters collapsed. */
function logSnippet(body: Buffer): string {
  return body
    .toString('utf8', 0, Math.min(body.length, ERROR_LOG_CHARS_MAX * 4))
    .slice(0, ERROR_LOG_CHARS_MAX)
    .replace(/[\s\p{Cc}]+/gu, ' ');
}

/**
 * An upstream's Retry-After (delta-seconds or an HTTP date, RFC 9110 10.2.3) in milliseconds from
 * `nowEpochMs`, bounded to [0, UPSTREAM_RETRY_AFTER_MS_MAX]; undefined when absent or unreadable.
 */
export function parseRetryAfterMs(
  header: string | string[] | undefined,
  nowEpochMs: number,
): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (value === undefined || value === '') return undefined;
  let ms: number;
  if (/^\d+$/.test(value)) ms = Number(value) * 1000;
  else {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowEpochMs;
  }
  return Math.min(UPSTREAM_RETRY_AFTER_MS_MAX, Math.max(0, ms));
}
