/**
 * Retry rules for the proxy: what may be retried on another instance (only before the first byte
 * reached the client), and how long to wait first (exponential backoff with jitter from a seeded Rng).
 */

/** Why one upstream attempt did not produce a usable response. */
export type AttemptFailure =
  /** Could not connect, or the connection broke before a response (counts against health). */
  | 'connect'
  /** The engine answered 5xx. */
  | 'status-5xx'
  /** The engine answered 429 (its own queue is full). */
  | 'status-429'
  /** No body byte within firstByteTimeoutMs. */
  | 'first-byte-timeout'
  /** P/D (SGLang): the pair's prefill leg failed, so the decode waiting for its KV was aborted. */
  | 'pd-prefill';

/** Error codes undici and Node use for a connection that failed or broke. */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
]);

/** Whether an error from the HTTP client is a connection failure (retryable, a health strike). */
export function isConnectError(error: unknown): boolean {
  let e: unknown = error;
  for (let depth = 0; depth < 4 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The failure an upstream HTTP status means, or undefined when the response is the answer. */
export function statusFailure(status: number): AttemptFailure | undefined {
  if (status === 429) return 'status-429';
  if (status >= 500) return 'status-5xx';
  return undefined;
}

/** Backoff is shared with the twin's retries (src/policies/reliability.ts). */
export { type BackoffConfig, backoffMs } from '../policies/reliability.ts';
