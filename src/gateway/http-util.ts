/** Small HTTP helpers shared by the gateway's handlers: JSON answers, error answers, body reading. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import type { Reading } from './body-reader.ts';
import type { LimitsConfig } from './config.ts';

/** Answers with a JSON body. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra?: Record<string, string>,
): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

/** Answers with an OpenAI-style error body; `retryAfterMs` becomes Retry-After (seconds, rounded up). */
export function sendError(res: ServerResponse, error: SwitchyardError, retryAfterMs?: number): void {
  const extra: Record<string, string> = {};
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs))
    extra['retry-after'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  sendJson(res, error.status, error.toJSON(), extra);
}

/**
 * Most bytes of a refused request body read and dropped before the refusal is answered: most HTTP
 * clients read no answer until they have sent their whole body, so answering and closing while they
 * still send gives them a broken pipe instead of the error. Past this the answer goes out at once.
 */
export const DISCARD_BYTES_MAX = 64 * 1024 * 1024;

/** Outcome of reading a request body. */
export type BodyResult =
  | { readonly ok: true; readonly body: Buffer }
  | { readonly ok: false; readonly error: SwitchyardError };

/**
 * The side reads (`readBody`) whose bodies are still arriving, by the response they answer: the
 * server's clientError (a client gone mid-body makes the parser fail) finds its read here as it
 * finds a main-path read, and fails it once. Bound: one entry per open side read.
 */
const sideReads = new WeakMap<ServerResponse, Reading>();

/** The side body read that `res` answers, while its body is still arriving (client-errors.ts). */
export function sideReadFor(res: ServerResponse): Reading | undefined {
  return sideReads.get(res);
}

/**
 * Registers a body read that does not go through `readBody` (a streamed upload) as a side read, so
 * the server's clientError finds it when the client leaves mid-body and calls its `fail` once, as
 * for any other read. Without it that clientError took the body's end for a bad request pipelined
 * behind it and waited for an answer that only the read's own timer would give. Returns the
 * function that removes the entry; call it once the read has ended.
 */
export function trackSideRead(
  req: IncomingMessage,
  res: ServerResponse,
  handlers: Pick<Reading, 'fail' | 'expire'>,
): () => void {
  const reading: Reading = { req, res, deadlineMs: Number.POSITIVE_INFINITY, ...handlers };
  sideReads.set(res, reading);
  return () => {
    if (sideReads.get(res) === reading) sideReads.delete(res);
  };
}

/** Longest wait for a timed-out read's answer to drain before its connection is cut (as body-reader.ts). */
const CLOSE_LINGER_MS = 2000;

/** The bounds of one `readBody` read. */
export interface ReadBodyBounds {
  /** Largest body accepted; a larger one (declared or actual) gets 413. */
  readonly bytesMax: number;
  /** What the 413 names as the bound (a config field, or the route's fixed bound). */
  readonly bytesMaxName: string;
  /** Time from the read's start for the whole body to arrive; past it, 408 and the connection closes. */
  readonly timeoutMs: number;
  /** What the 408 names as the bound: the config field it came from. */
  readonly timeoutName: string;
}

/**
 * The main path's time bound on a body (body-reader.ts): min(limits.bodyReadTimeoutMs,
 * limits.requestTimeoutMs), and the field it comes from (named in the 408).
 */
export function bodyTimeBound(limits: Pick<LimitsConfig, 'bodyReadTimeoutMs' | 'requestTimeoutMs'>): {
  readonly timeoutMs: number;
  readonly timeoutName: string;
} {
  return limits.bodyReadTimeoutMs <= limits.requestTimeoutMs
    ? { timeoutMs: limits.bodyReadTimeoutMs, timeoutName: 'limits.bodyReadTimeoutMs' }
    : { timeoutMs: limits.requestTimeoutMs, timeoutName: 'limits.requestTimeoutMs' };
}

/**
 * The bounds of a small side body (admin, batch create) of at most `bytesMax` bytes, in time the
 * main path's (`bodyTimeBound`): a client that sends a head and then trickles or stops its body
 * holds no connection longer there than on /v1/chat/completions.
 */
export function sideBodyBounds(
  limits: Pick<LimitsConfig, 'bodyReadTimeoutMs' | 'requestTimeoutMs'>,
  bytesMax: number,
  bytesMaxName: string,
): ReadBodyBounds {
  return { bytesMax, bytesMaxName, ...bodyTimeBound(limits) };
}

/**
 * Reads a request body within `bounds`. A body over `bytesMax` (declared or actual) is read and
 * dropped up to DISCARD_BYTES_MAX before `done` hears the 413, so the client sees the answer; one
 * declared past that bound fails at once. A body not whole within `timeoutMs` gets the main path's
 * 408 SY_ERR_REQUEST_TIMEOUT: `res` is marked to close its connection once `done` answered, and the
 * socket is cut CLOSE_LINGER_MS later whatever the client does. A client that leaves mid-body is
 * failed as on the main path (its clientError, found through `sideReadFor`; else its close: 400
 * SY_ERR_INVALID_ARGUMENT), and `done` hears it, so the caller counts it. Returns a function that cancels the read (`done` is then never called).
 */
export function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  bounds: ReadBodyBounds,
  done: (result: BodyResult) => void,
): () => void {
  const { bytesMax } = bounds;
  const tooLarge = (): SwitchyardError =>
    new SwitchyardError(
      'SY_ERR_REQUEST_TOO_LARGE',
      `request body exceeds ${bytesMax} bytes (${bounds.bytesMaxName})`,
      {
        param: 'body',
      },
    );
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > DISCARD_BYTES_MAX) {
    done({ ok: false, error: tooLarge() });
    return () => {};
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  /** Set once the body is over the limit: the rest is dropped, the 413 waits for its end. */
  let refused = declared > bytesMax;
  const finish = (result: BodyResult | undefined): void => {
    finished = true;
    clearTimeout(timer);
    sideReads.delete(res);
    chunks.length = 0;
    if (result !== undefined) done(result);
  };
  /** Gives the read up with `error`: answered, then the connection closes (as body-reader.ts). */
  const failClosing = (error: SwitchyardError): void => {
    if (finished) return;
    res.shouldKeepAlive = false;
    const socket = req.socket;
    setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
    finish({ ok: false, error });
  };
  const expire = (): void =>
    failClosing(
      new SwitchyardError(
        'SY_ERR_REQUEST_TIMEOUT',
        `request body not received within ${bounds.timeoutMs} ms of its head (${bounds.timeoutName})`,
        { param: 'body' },
      ),
    );
  const timer = setTimeout(expire, bounds.timeoutMs);
  timer.unref();
  // Its own timer bounds it: the gateway's deadline sweep does not walk side reads.
  sideReads.set(res, { req, res, deadlineMs: Number.POSITIVE_INFINITY, fail: failClosing, expire });
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (refused) {
      if (size > DISCARD_BYTES_MAX) finish({ ok: false, error: tooLarge() });
      return;
    }
    if (size > bytesMax) {
      refused = true;
      chunks.length = 0;
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (finished) return;
    if (refused) finish({ ok: false, error: tooLarge() });
    else
      finish({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
  });
  // As the main path (body-reader.ts): a body that breaks off is a 400 SY_ERR_INVALID_ARGUMENT, so a
  // client leaving mid-body counts in `rejected` there and here alike.
  const unreadable = (why: string): void => {
    if (finished) return;
    finish({
      ok: false,
      error: new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `request body could not be read: ${why}`, {
        param: 'body',
      }),
    });
  };
  req.on('error', (error) => unreadable(error.message));
  // A client gone before its body ended (no clientError got there first): no answer can reach it,
  // but `done` hears it, so the caller counts it; what the read held goes.
  req.on('close', () => {
    if (!req.complete) unreadable('aborted');
    else if (!finished) finish(undefined);
  });
  // Cancels the read: `done` will not be called.
  return () => finish(undefined);
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (header.length > 7 && header.slice(0, 7).toLowerCase() === 'bearer ') return header.slice(7).trim();
  return undefined;
}
