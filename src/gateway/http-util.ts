/** Small HTTP helpers shared by the gateway's handlers: JSON answers, error answers, body reading. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';

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
 * Reads a request body up to `bytesMax`. A body over the limit (declared or actual) is read and
 * dropped up to DISCARD_BYTES_MAX before `done` hears the 413, so the client sees the answer; one
 * declared past that bound fails at once. Returns a function that cancels the read (`done` is then
 * never called).
 */
export function readBody(
  req: IncomingMessage,
  bytesMax: number,
  done: (result: BodyResult) => void,
): () => void {
  const tooLarge = (): SwitchyardError =>
    new SwitchyardError(
      'SY_ERR_REQUEST_TOO_LARGE',
      `request body exceeds ${bytesMax} bytes (limits.bodyBytesMax)`,
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
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (refused) {
      if (size <= DISCARD_BYTES_MAX) return;
      finished = true;
      done({ ok: false, error: tooLarge() });
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
    finished = true;
    if (refused) done({ ok: false, error: tooLarge() });
    else done({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
  });
  req.on('error', (error) => {
    if (finished) return;
    finished = true;
    done({
      ok: false,
      error: new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `request body could not be read: ${error.message}`,
        {
          param: 'body',
        },
      ),
    });
  });
  // Cancels the read: `done` will not be called.
  return () => {
    finished = true;
  };
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (header.length > 7 && header.slice(0, 7).toLowerCase() === 'bearer ') return header.slice(7).trim();
  return undefined;
}
