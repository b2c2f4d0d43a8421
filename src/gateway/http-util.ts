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

/** Outcome of reading a request body. */
export type BodyResult =
  | { readonly ok: true; readonly body: Buffer }
  | { readonly ok: false; readonly error: SwitchyardError };

/**
 * Reads a request body up to `bytesMax`. A declared Content-Length over the limit fails at once; a
 * chunked body fails as soon as it passes the limit (the rest is not read: the connection closes).
 * Returns a function that cancels the read (`done` is then never called).
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
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > bytesMax) {
    done({ ok: false, error: tooLarge() });
    return () => {};
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (size > bytesMax) {
      finished = true;
      chunks.length = 0;
      req.pause();
      done({ ok: false, error: tooLarge() });
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (finished) return;
    finished = true;
    done({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
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
