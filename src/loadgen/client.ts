/**
 * The HTTP side of the load generator: one undici Pool sized for the concurrency bound, request
 * bodies in OpenAI's two shapes, and one function that sends a request and times its stream.
 *
 * Failure reasons are stable strings the report counts: `http_<status>` (with `:<code>` when the
 * error body names one, e.g. `http_429:SY_ERR_OVERLOADED`), `timeout`, `connection_refused`,
 * `connection_reset`, `dns_error`, `connection_error`, `stream_error[:<code>]`, `bad_response`,
 * `no_output`, `cancelled`, and the runner's `dropped` (over --max-concurrency with --overflow drop).
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { SwitchyardError } from '../core/errors.ts';
import { estimateTokens } from '../core/text-prefix.ts';
import { errorOf, readOpenAiChunk, SseParser } from './sse.ts';

/** The two OpenAI endpoints the generator can drive. */
export const ENDPOINTS = ['chat', 'completions'] as const;
export type Endpoint = (typeof ENDPOINTS)[number];

/** Bytes of an error body kept for the message. */
const ERROR_BODY_CHARS_MAX = 4096;

/** Where outputTokens came from: the server's usage, counted content chunks, or ~4 characters per token. */
export type TokenSource = 'usage' | 'chunks' | 'estimate';

/** One request's outcome as the client saw it; times in ms from the send. */
export interface Attempt {
  readonly ok: boolean;
  readonly reason: string | undefined;
  readonly status: number | undefined;
  readonly error: string | undefined;
  readonly ttftMs: number | undefined;
  readonly e2eMs: number;
  readonly itlMs: number[];
  readonly promptTokens: number | undefined;
  readonly outputTokens: number;
  readonly outputTokensFrom: TokenSource;
}

/** What to send. */
export interface CompletionCall {
  readonly endpoint: Endpoint;
  readonly model: string;
  readonly prompt: string;
  readonly maxTokens: number;
  readonly stream: boolean;
  /** Ask the server to ignore end-of-sequence tokens, so it generates exactly maxTokens (vLLM, SGLang). */
  readonly ignoreEos: boolean;
  /**
   * The conversation the request belongs to, sent as the `x-session-id` header (what the
   * gateway's session-affinity policies key on); a header, so servers that ignore it are unaffected.
   */
  readonly sessionId?: string | undefined;
  /** Sent as the body's `priority` (the gateway's admission bands read it; vLLM's priority scheduling too). */
  readonly priority?: number | undefined;
  /** This call's API key, in place of the client's (a tenant's key: the gateway's tenant is the key's). */
  readonly apiKey?: string | undefined;
}

/**
 * The JSON body of a call, as vLLM's benchmark sends it: temperature 0, max_completion_tokens for
 * chat and max_tokens for completions, usage in the stream's last chunk.
 */
export function completionBody(call: CompletionCall): Record<string, unknown> {
  return {
    model: call.model,
    ...(call.endpoint === 'chat'
      ? { messages: [{ role: 'user', content: call.prompt }], max_completion_tokens: call.maxTokens }
      : { prompt: call.prompt, max_tokens: call.maxTokens }),
    temperature: 0,
    stream: call.stream,
    ...(call.stream ? { stream_options: { include_usage: true } } : {}),
    ...(call.ignoreEos ? { ignore_eos: true } : {}),
    ...(call.priority !== undefined ? { priority: call.priority } : {}),
  };
}

/** The client's headers with a call's own: its session id, and its API key in place of the client's. */
function callHeaders(base: Record<string, string>, call: CompletionCall): Record<string, string> {
  if (call.sessionId === undefined && call.apiKey === undefined) return base;
  return {
    ...base,
    ...(call.sessionId !== undefined ? { 'x-session-id': call.sessionId } : {}),
    ...(call.apiKey !== undefined ? { authorization: `Bearer ${call.apiKey}` } : {}),
  };
}

/**
 * A server's base URL: scheme, host, port and an optional path prefix. A trailing `/v1` is dropped,
 * so `http://h:8000` and `http://h:8000/v1` name the same server.
 */
export function parseBaseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid --url '${text}': expected an http:// or https:// URL such as http://127.0.0.1:8000`,
      { param: 'url', value: text },
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid --url '${text}': scheme '${url.protocol.replace(/:$/, '')}' is not http or https`,
      { param: 'url', value: text },
    );
  }
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  url.search = '';
  url.hash = '';
  return url;
}

/** The stable reason for a thrown network error. */
export function networkReason(error: unknown): string {
  const e = error as { code?: unknown; errors?: unknown[]; name?: unknown };
  const first = Array.isArray(e?.errors) ? (e.errors[0] as { code?: unknown } | undefined) : undefined;
  const code = typeof e?.code === 'string' ? e.code : typeof first?.code === 'string' ? first.code : '';
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection_refused';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return 'connection_reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'dns_error';
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'connection_error';
  }
}

function message(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return message(error.errors[0]);
  return error instanceof Error ? error.message : String(error);
}

/** `http_<status>` with the error body's code when it names one. */
function httpReason(status: number, body: string): { reason: string; error: string } {
  let code: string | undefined;
  let text = body.slice(0, 200);
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    const e = errorOf(parsed['error'] ?? parsed['detail'] ?? parsed['message'] ?? parsed);
    code = e.code;
    text = e.message.slice(0, 200);
  } catch {
    // Not JSON: keep the start of the body.
  }
  return { reason: code !== undefined ? `http_${status}:${code}` : `http_${status}`, error: text };
}

/** What GET /v1/models answered. */
export interface ModelList {
  readonly status: number;
  readonly ids: readonly string[];
  /** Each listed model's `owned_by`, when it has one (which server this is: see priority-order.ts). */
  readonly owners: ReadonlyMap<string, string>;
  /** The error message of a non-2xx or unreadable answer. */
  readonly error: string | undefined;
}

/** Options of an OpenAiClient. */
export interface ClientOptions {
  /** Base URL (see parseBaseUrl). */
  readonly baseUrl: URL;
  readonly apiKey: string | undefined;
  /** Connections in the pool: the concurrency bound. */
  readonly connections: number;
  /** Whole-request timeout. */
  readonly timeoutMs: number;
  /** Monotonic clock in ms (performance.now by default). */
  readonly now?: () => number;
}

/** Reads a body into text, keeping at most `max` characters. */
async function readLimited(body: AsyncIterable<Buffer>, max: number): Promise<string> {
  const decoder = new TextDecoder();
  let out = '';
  for await (const chunk of body) {
    if (out.length < max) out += decoder.decode(chunk, { stream: true });
  }
  return out.slice(0, max);
}

/** A client for one OpenAI-compatible server. */
export class OpenAiClient {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly headers: Record<string, string>;
  private readonly now: () => number;

  constructor(private readonly options: ClientOptions) {
    this.pool = new Pool(options.baseUrl.origin, {
      connections: options.connections,
      pipelining: 1,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 10_000),
    });
    this.basePath = options.baseUrl.pathname.replace(/\/+$/, '');
    this.headers = {
      'content-type': 'application/json',
      accept: 'text/event-stream, application/json',
      ...(options.apiKey !== undefined ? { authorization: `Bearer ${options.apiKey}` } : {}),
    };
    this.now = options.now ?? (() => performance.now());
  }

  /** The base URL as given to reports. */
  get url(): string {
    return `${this.options.baseUrl.origin}${this.basePath}`;
  }

  /**
   * GET /v1/models: the ids the server serves, with the answer's status and error message. A server
   * that cannot be reached fails with SY_ERR_UPSTREAM naming the URL; one that answers but lists
   * nothing gives no ids.
   */
  async listModels(timeoutMs = 10_000): Promise<ModelList> {
    const path = `${this.basePath}/v1/models`;
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      res = await this.pool.request({
        path,
        method: 'GET',
        headers: this.headers,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const reason = networkReason(error);
      // A refused connection is most often a server still loading (started with `&` a moment
      // ago) or a wrong port: say what to check rather than leave the operator with an errno.
      const hint =
        reason === 'connection_refused'
          ? '; nothing listens there: check the URL and port, and start bench once the server has printed its ready line (or answers GET /health)'
          : '';
      throw new SwitchyardError(
        'SY_ERR_UPSTREAM',
        `cannot reach ${this.url}: ${message(error)} (${reason})${hint}`,
        { param: 'url', value: this.url },
      );
    }
    const text = await readLimited(res.body, 1 << 20);
    const status = res.statusCode;
    const owners = new Map<string, string>();
    if (status < 200 || status >= 300)
      return { status, ids: [], owners, error: httpReason(status, text).error };
    try {
      const body = JSON.parse(text) as { data?: unknown };
      const data = Array.isArray(body.data) ? body.data : [];
      const ids: string[] = [];
      for (const m of data) {
        if (typeof m !== 'object' || m === null) continue;
        const { id, owned_by: owner } = m as { id?: unknown; owned_by?: unknown };
        if (typeof id !== 'string' || id.length === 0) continue;
        ids.push(id);
        if (typeof owner === 'string') owners.set(id, owner);
      }
      return { status, ids, owners, error: undefined };
    } catch {
      return { status, ids: [], owners, error: `not JSON: ${text.slice(0, 80)}` };
    }
  }

  /**
   * Sends one completion and times it: TTFT at the first chunk with output text, one ITL sample per
   * later chunk with text, E2E at the end of the body. Never throws; a failure comes back as an
   * Attempt with ok false and a reason. `cancel` aborts it (reason `cancelled`).
   */
  async send(call: CompletionCall, cancel?: AbortSignal): Promise<Attempt> {
    const path = `${this.basePath}/v1/${call.endpoint === 'chat' ? 'chat/completions' : 'completions'}`;
    const body = JSON.stringify(completionBody(call));
    // One controller per request, aborted by the timeout or by `cancel` (no AbortSignal.any: it
    // keeps a reference per request on the long-lived `cancel` signal).
    const abort = new AbortController();
    let timedOut = false;
    const timeout = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.options.timeoutMs);
    const onCancel = (): void => abort.abort();
    cancel?.addEventListener('abort', onCancel, { once: true });
    if (cancel?.aborted === true) abort.abort();
    const signal = abort.signal;
    const t0 = this.now();
    const fail = (reason: string, error: string, status?: number): Attempt => ({
      ok: false,
      reason: timedOut ? 'timeout' : cancel?.aborted === true ? 'cancelled' : reason,
      status,
      error,
      ttftMs: undefined,
      e2eMs: this.now() - t0,
      itlMs: [],
      promptTokens: undefined,
      outputTokens: 0,
      outputTokensFrom: 'chunks',
    });
    try {
      let res: Awaited<ReturnType<Pool['request']>>;
      try {
        const headers = callHeaders(this.headers, call);
        res = await this.pool.request({ path, method: 'POST', headers, body, signal });
      } catch (error) {
        return fail(networkReason(error), message(error));
      }
      const status = res.statusCode;
      if (status < 200 || status >= 300) {
        const text = await readLimited(res.body, ERROR_BODY_CHARS_MAX).catch(() => '');
        const { reason, error } = httpReason(status, text);
        return fail(reason, error, status);
      }
      const contentType = String(res.headers['content-type'] ?? '');
      try {
        return call.stream && !contentType.includes('application/json')
          ? await this.readStream(res.body, t0, status, fail)
          : await this.readJson(res.body, t0, status, fail);
      } catch (error) {
        res.body.destroy();
        return fail(networkReason(error), message(error), status);
      }
    } finally {
      clearTimeout(timeout);
      cancel?.removeEventListener('abort', onCancel);
    }
  }

  private async readStream(
    body: AsyncIterable<Buffer> & { destroy(): void },
    t0: number,
    status: number,
    fail: (reason: string, error: string, status?: number) => Attempt,
  ): Promise<Attempt> {
    const decoder = new TextDecoder();
    const parser = new SseParser();
    const itlMs: number[] = [];
    let ttftMs: number | undefined;
    let lastMs = 0;
    let chunks = 0;
    let promptTokens: number | undefined;
    let usageTokens: number | undefined;
    let failure: { reason: string; error: string } | undefined;
    const handle = (data: string, t: number): boolean => {
      const chunk = readOpenAiChunk(data);
      if (chunk.kind === 'done') return true;
      if (chunk.kind === 'error') {
        failure = {
          reason:
            chunk.code === 'bad_json'
              ? 'bad_response'
              : `stream_error${chunk.code !== undefined ? `:${chunk.code}` : ''}`,
          error: chunk.message,
        };
        return true;
      }
      if (chunk.text.length > 0) {
        if (ttftMs === undefined) ttftMs = t - t0;
        else itlMs.push(t - lastMs);
        lastMs = t;
        chunks++;
      }
      if (chunk.completionTokens !== undefined) usageTokens = chunk.completionTokens;
      if (chunk.promptTokens !== undefined) promptTokens = chunk.promptTokens;
      return false;
    };
    let finished = false;
    for await (const piece of body) {
      const t = this.now();
      for (const event of parser.feed(decoder.decode(piece, { stream: true }))) {
        if (handle(event.data, t)) {
          finished = true;
          break;
        }
      }
      if (finished) break;
    }
    const endMs = this.now();
    if (!finished) {
      const rest = decoder.decode();
      for (const event of [...parser.feed(rest), ...parser.end()]) if (handle(event.data, endMs)) break;
    } else body.destroy();
    if (failure !== undefined) return fail(failure.reason, failure.error, status);
    if (ttftMs === undefined) return fail('no_output', 'the stream carried no output text', status);
    return {
      ok: true,
      reason: undefined,
      status,
      error: undefined,
      ttftMs,
      e2eMs: endMs - t0,
      itlMs,
      promptTokens,
      outputTokens: usageTokens ?? chunks,
      outputTokensFrom: usageTokens !== undefined ? 'usage' : 'chunks',
    };
  }

  /** A whole JSON response (--no-stream): TTFT is the E2E, as nothing arrives before the end. */
  private async readJson(
    body: AsyncIterable<Buffer>,
    t0: number,
    status: number,
    fail: (reason: string, error: string, status?: number) => Attempt,
  ): Promise<Attempt> {
    const text = await readLimited(body, 1 << 30);
    const e2eMs = this.now() - t0;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return fail('bad_response', `not JSON: ${text.slice(0, 80)}`, status);
    }
    if (parsed['error'] !== undefined && parsed['error'] !== null) {
      const e = errorOf(parsed['error']);
      return fail(`stream_error${e.code !== undefined ? `:${e.code}` : ''}`, e.message, status);
    }
    let output = '';
    const choices = parsed['choices'];
    if (Array.isArray(choices)) {
      for (const c of choices as Record<string, unknown>[]) {
        const m = c?.['message'] as Record<string, unknown> | undefined;
        const content = m?.['content'] ?? m?.['reasoning_content'] ?? c?.['text'];
        if (typeof content === 'string') output += content;
      }
    }
    const usage = (parsed['usage'] ?? {}) as Record<string, unknown>;
    const completion =
      typeof usage['completion_tokens'] === 'number' ? usage['completion_tokens'] : undefined;
    if (output.length === 0 && (completion ?? 0) === 0) {
      return fail('no_output', 'the response carried no output text', status);
    }
    return {
      ok: true,
      reason: undefined,
      status,
      error: undefined,
      ttftMs: e2eMs,
      e2eMs,
      itlMs: [],
      promptTokens: typeof usage['prompt_tokens'] === 'number' ? usage['prompt_tokens'] : undefined,
      outputTokens: completion ?? estimateTokens(output),
      outputTokensFrom: completion !== undefined ? 'usage' : 'estimate',
    };
  }

  /** Closes the pool (in-flight requests are aborted). */
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
