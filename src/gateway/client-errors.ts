/**
 * Answers for what never reaches a request handler: requests Node's HTTP parser refuses (garbage,
 * oversized or stalled heads, broken bodies), CONNECT, and connections refused before any request.
 * Each gets the same OpenAI-style JSON error as a handled request, written on the raw socket, then
 * the connection closes.
 *
 * Why close after a parse error: HTTP/1.1 frames a request by its head (Content-Length or chunked);
 * once the parser has failed, where the refused request ends is unknown, so any request pipelined
 * behind it cannot be found reliably (RFC 9112 section 9.3.2: a client must be ready to resend
 * pipelined requests when the connection closes). The refusal is counted once; a request still
 * being answered on that connection when the bad one arrives is answered first.
 */
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type ErrorCode, SwitchyardError } from '../core/errors.ts';
import type { Reading } from './body-reader.ts';

/** What answering a refused request needs of the gateway. */
export interface ClientErrorHost {
  /** The body read of the response `res` answers, when its body is still arriving. */
  readingFor(res: ServerResponse): Reading | undefined;
  /** Counts a refusal (the `rejected` counters). */
  countRejection(code: ErrorCode): void;
  /** Counts a connection closed at the head timeout before it sent a byte: no request, so no refusal. */
  countIdleTimeout(): void;
}

/** A whole HTTP/1.1 error answer that closes the connection, as bytes for a raw socket. */
export function rawErrorResponse(error: SwitchyardError, headers: Record<string, string> = {}): string {
  const body = JSON.stringify(error.toJSON());
  let head = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return `${head}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** The error to answer for one of Node's parser or socket errors. */
export function clientErrorOf(error: NodeJS.ErrnoException): SwitchyardError {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new SwitchyardError('SY_ERR_REQUEST_TOO_LARGE', 'request head too large', { param: 'headers' });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new SwitchyardError('SY_ERR_REQUEST_TIMEOUT', 'request not received in time');
    case 'HPE_PAUSED_H2_UPGRADE':
      // HTTP/2's connection preface ("PRI * HTTP/2.0"): curl --http2-prior-knowledge, an h2c-only
      // client. The gateway speaks HTTP/1.1 (as vLLM's uvicorn server does); say so.
      return new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        'HTTP/2 without TLS (prior knowledge) is not served: the gateway speaks HTTP/1.1; send the request over HTTP/1.1',
        { param: 'protocol' },
      );
    default:
      return new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `malformed HTTP request (${error.code ?? 'parse error'})`,
      );
  }
}

/** Socket errors that say the client's connection broke, not that its request was malformed. */
const CONNECTION_BROKEN: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

/** Sockets already given their one refusal (the parser may report each later chunk again). */
const answered = new WeakSet<Duplex>();

/** Sockets whose refusal waits for the answer ahead of it. */
const deferred = new WeakSet<Duplex>();

/** How long a refused connection may stay half-closed for its answer to drain before it is cut. */
const REFUSED_LINGER_MS = 2000;

/** Writes `error` on `socket` and closes it, once; a socket that cannot be written is just cut. */
export function answerOnSocket(
  host: ClientErrorHost,
  socket: Duplex,
  error: SwitchyardError,
  headers?: Record<string, string>,
  count: () => void = () => host.countRejection(error.code),
): void {
  if (answered.has(socket)) return;
  answered.add(socket);
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  count();
  // Ending (not destroying) lets the answer reach a client still sending; the linger bounds it.
  socket.end(rawErrorResponse(error, headers));
  setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
}

/** Whether `socket` was refused on the raw socket (a request parsed from it afterwards is ignored). */
export function wasRefused(socket: Duplex): boolean {
  return answered.has(socket);
}

/** Node's server 'clientError': one JSON error, then close (see the module comment). */
export function answerClientError(host: ClientErrorHost, error: NodeJS.ErrnoException, socket: Duplex): void {
  const e = clientErrorOf(error);
  const pending = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (pending === undefined || pending === null) {
    // A new connection that sent nothing by the head timeout (a browser's preconnect, a client's
    // spare pooled socket) is closed with Node's 408, but it carried no request to refuse: it is
    // counted apart, so `rejected` counts only requests. (A keep-alive connection idle after a
    // request is closed silently at keepAliveTimeout instead, and never gets here.)
    const idle =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT' && (socket as { bytesRead?: number }).bytesRead === 0;
    answerOnSocket(host, socket, e, undefined, idle ? () => host.countIdleTimeout() : undefined);
    return;
  }
  // The handler holds a request on this connection. Its body not yet whole: the broken body is that
  // request's, answer it there, once. (A whole body whose end event is still on its way means the
  // bad bytes are a request pipelined behind it.)
  const reading = host.readingFor(pending);
  if (reading !== undefined && !reading.req.complete) {
    reading.fail(e);
    return;
  }
  // The client broke the connection (a reset: it closed with the answer unread, as an aborted
  // fetch does) while its request is answered: that request ends as a client abort, counted by its
  // own accounting. Nothing was refused, and nothing can be written to a reset socket.
  if (CONNECTION_BROKEN.has(error.code ?? '')) {
    socket.destroy();
    return;
  }
  // It is being answered: a bad request pipelined behind it. Let the answer finish, then refuse
  // the bad one and close; a connection that breaks first ends both. (The answer keeps its
  // keep-alive: a closing answer would end the socket before the refusal could follow it.)
  if (answered.has(socket) || deferred.has(socket)) return;
  if (pending.writableFinished) {
    answerOnSocket(host, socket, e);
    return;
  }
  deferred.add(socket);
  pending.once('finish', () => {
    if (socket.writable) answerOnSocket(host, socket, e);
    else refusedUnanswered(host, socket, e);
  });
  pending.once('close', () => {
    if (!pending.writableFinished) refusedUnanswered(host, socket, e);
  });
}

/** The connection closed before the refusal could be written (the answer ahead ended it, or it broke): it still counts, once. */
function refusedUnanswered(host: ClientErrorHost, socket: Duplex, e: SwitchyardError): void {
  if (answered.has(socket)) return;
  answered.add(socket);
  host.countRejection(e.code);
  // Not destroyed here: the answer ahead is ending it (cutting now could lose that answer's tail).
  setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
}

/** Server 'connect' (an HTTP CONNECT): the gateway is no proxy for tunnels: 405, then close. */
export function answerConnect(host: ClientErrorHost, req: IncomingMessage, socket: Duplex): void {
  const e = new SwitchyardError(
    'SY_ERR_METHOD_NOT_ALLOWED',
    `method CONNECT not allowed on ${req.url ?? '/'}: the gateway does not tunnel`,
    { param: 'method' },
  );
  answerOnSocket(host, socket, e, { allow: 'GET, HEAD, POST' });
}
