/**
 * The `X-Request-Id` of every answer the gateway gives. vLLM names a request after the client's
 * header (`chatcmpl-<id>`) and, under `--enable-request-id-headers`, echoes it on the response, or a
 * fresh uuid4 hex when the client sent none (XRequestIdMiddleware in
 * vllm/entrypoints/serve/utils/server_utils.py). Behind a gateway the engine's own header could not
 * be the answer's: the gateway answers errors of its own with no engine involved, and a retried
 * request meets several engines. So the gateway decides once, when the request arrives:
 *
 * - the client's `X-Request-Id` when it sent a non-empty one, else a fresh uuid4 hex (vLLM's form);
 * - that id is on the answer whatever it is: a success, a stream, the gateway's own refusal (401,
 *   413, 429, 503, ...), an engine's relayed 4xx; the engine's own header is never passed on (it is
 *   the same id when the engine echoes the client's);
 * - the client's id goes upstream with every attempt of a colocated request (proxy.ts), so the engine
 *   names the request after it (`chatcmpl-<id>`); an id the gateway made up does not, and the engine
 *   names the request itself, as vLLM's own middleware and serving code each draw their own uuid
 *   when the client sent none. A vLLM P/D pair's legs carry an id of their own per pair, as vLLM's
 *   proxy sends (src/gateway/pd/pd-exchange.ts).
 */
import { randomFillSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** What a header value may hold (Node's setHeader rule; its parser admits no other value). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]+$/;

/** Bytes of one id: a uuid4's 128 bits. */
const ID_BYTES = 16;
/**
 * Ids drawn from the system's random source at once (one 4 KiB fill), as Node's randomUUID caches
 * its own. Hot path: a request without an id of its own gets one from here, and hex-encoding the
 * bytes is a quarter of the cost of randomUUID() with its dashes stripped (about 0.3 against 1.2 us
 * a call on the 2-core dev machine), which was most of what this module added per request.
 */
const IDS_PER_FILL = 256;
const pool = Buffer.alloc(ID_BYTES * IDS_PER_FILL);
/** Offset of the next unused id in `pool`; at its length the pool is refilled. */
let poolOffset = pool.length;

/** A fresh uuid4 as 32 hex digits (vLLM's `uuid.uuid4().hex`). */
export function freshRequestId(): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const at = poolOffset;
  poolOffset += ID_BYTES;
  // RFC 9562 section 5.4: the version (4) in byte 6's high nibble, the variant (10) in byte 8's top bits.
  pool[at + 6] = ((pool[at + 6] as number) & 0x0f) | 0x40;
  pool[at + 8] = ((pool[at + 8] as number) & 0x3f) | 0x80;
  return pool.toString('hex', at, at + ID_BYTES);
}

/** Gives the request `req` its id (see the module comment), puts it on `res` and returns it. */
export function assignRequestId(req: IncomingMessage, res: ServerResponse): string {
  const header = req.headers['x-request-id'];
  const id = typeof header === 'string' && HEADER_VALUE.test(header) ? header : freshRequestId();
  res.setHeader('x-request-id', id);
  return id;
}
