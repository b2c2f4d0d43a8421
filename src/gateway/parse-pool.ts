/**
 * Parsing large request bodies off the event loop. Decoding and JSON.parse of a 7.9 MB body, and
 * the routing fields of what it holds, cost tens of milliseconds of the gateway's one event loop;
 * one to three such bodies a second held every other request (health checks included) behind them.
 * Bodies of `limits.offThreadParseBytes` or more go to a small pool of worker threads (piscina)
 * that runs the main thread's own parse (parse-worker.ts) and answers the same fields or error.
 *
 * Bounds: `threads` workers (at most THREADS_MAX, leaving a core to the event loop), and the bytes
 * of bodies queued for or inside a worker (`bytesMax`; the gateway passes limits.readingBytesMax):
 * a body that would pass it is refused 503 SY_ERR_PARSE_QUEUE_FULL with Retry-After, never queued.
 * A worker that dies (or throws something that is not a handled error) does not lose its body: the
 * body is parsed on the main thread instead, as it was before the pool, and piscina starts a new
 * worker in its place.
 */
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { SwitchyardError } from '../core/errors.ts';
import type { PrefixChain } from '../core/request.ts';
import { noteBodyPriority } from './engine-priority.ts';
import type { ParseReply, ParseTask } from './parse-worker.ts';
import type { ExchangeKind } from './proxy.ts';
import { type BodyFields, parseBodyFields } from './request-build.ts';

/** Retry-After of a body refused because the parse queue is full. */
export const PARSE_FULL_RETRY_AFTER_MS = 1000;
/** Most worker threads by default: parsing is a burst per large body, not steady work. */
const THREADS_MAX = 4;

/** How a pool is sized; the defaults suit the gateway. */
export interface ParsePoolOptions {
  /** Bytes of bodies queued for or inside a worker at once (the gateway: limits.readingBytesMax). */
  readonly bytesMax: number;
  /** Worker threads; default: the cores less one, from 1 to THREADS_MAX. */
  readonly threads?: number;
  /** The worker module (tests pass one that crashes); default parse-worker next to this file. */
  readonly workerUrl?: URL;
}

/** Counters for /stats. */
export interface ParsePoolStats {
  /** Bodies parsed by a worker (fields or a handled error). */
  offThread: number;
  /** Bodies parsed on the main thread after their worker failed. */
  fallbacks: number;
  /** Bodies refused 503 because the queue held `bytesMax`. */
  refused: number;
  /** Bytes queued for or inside a worker now, and the most ever. */
  bytes: number;
  bytesPeak: number;
}

/**
 * The worker module beside this one, with this module's own extension: `.ts` when the sources run
 * through tsx (tests, `bin/switchyard.mjs` before a build), `.js` from dist/.
 */
function defaultWorkerUrl(): URL {
  const ext = extname(fileURLToPath(import.meta.url));
  return new URL(`./parse-worker${ext}`, import.meta.url);
}

/**
 * Node options for a worker that loads `url`: a TypeScript module needs tsx's loader. A worker
 * inherits the parent's execArgv, which names tsx under `node --import tsx`, but not when tsx was
 * registered from code (bin/switchyard.mjs without a build), so it is added when missing.
 */
function workerExecArgv(url: URL): string[] | undefined {
  if (!/\.[cm]?ts$/.test(url.pathname)) return undefined;
  const argv = process.execArgv;
  const hasTsx = argv.some(
    (a, i) => /(^|[=/])tsx(\/|$)/.test(a) || (a === '--import' && argv[i + 1] === 'tsx'),
  );
  return hasTsx ? undefined : [...argv, '--import', 'tsx'];
}

/** A pool of parse workers (see the module comment); threads start with the first body. */
export class ParsePool {
  readonly stats: ParsePoolStats = { offThread: 0, fallbacks: 0, refused: 0, bytes: 0, bytesPeak: 0 };
  private pool: Piscina<ParseTask, ParseReply> | undefined;
  private readonly threads: number;
  private readonly workerUrl: URL;

  constructor(readonly options: ParsePoolOptions) {
    this.threads = options.threads ?? Math.min(THREADS_MAX, Math.max(1, availableParallelism() - 1));
    this.workerUrl = options.workerUrl ?? defaultWorkerUrl();
  }

  /**
   * The fields of `body` as `parseBodyFields` gives them, parsed on a worker. Rejects with the
   * SwitchyardError the main thread would throw, or with SY_ERR_PARSE_QUEUE_FULL (answer it with
   * PARSE_FULL_RETRY_AFTER_MS) when the queue holds `bytesMax`.
   */
  parse(kind: ExchangeKind, body: Buffer): Promise<BodyFields> {
    const n = body.byteLength;
    if (this.stats.bytes + n > this.options.bytesMax) {
      this.stats.refused++;
      return Promise.reject(queueFull(this.options.bytesMax));
    }
    this.stats.bytes += n;
    this.stats.bytesPeak = Math.max(this.stats.bytesPeak, this.stats.bytes);
    return this.run(kind, body).finally(() => {
      this.stats.bytes -= n;
    });
  }

  private async run(kind: ExchangeKind, body: Buffer): Promise<BodyFields> {
    let reply: ParseReply;
    try {
      // Shared memory is posted as a handle (no copy of the bytes on this thread).
      reply = await this.piscina().run({ kind, body: ownBytes(body) });
    } catch {
      // The worker died or hit a bug: parse here, as before the pool (same answer or same 500).
      this.stats.fallbacks++;
      const fields = parseBodyFields(kind, body);
      noteBodyPriority(body, fields.priority);
      return fields;
    }
    this.stats.offThread++;
    if (!reply.ok)
      throw new SwitchyardError(reply.code, reply.message, reply.details as Record<string, unknown>);
    const fields = fieldsOfReply(reply);
    noteBodyPriority(body, fields.priority);
    return fields;
  }

  private piscina(): Piscina<ParseTask, ParseReply> {
    if (this.pool !== undefined) return this.pool;
    const execArgv = workerExecArgv(this.workerUrl);
    this.pool = new Piscina<ParseTask, ParseReply>({
      filename: this.workerUrl.href,
      minThreads: this.threads,
      maxThreads: this.threads,
      // The queue is bounded in bytes above; piscina's own stays unbounded below that.
      maxQueue: Number.POSITIVE_INFINITY,
      ...(execArgv === undefined ? {} : { execArgv }),
    });
    // A worker that fails with no task on it has nothing to answer; piscina replaces it.
    this.pool.on('error', () => {});
    return this.pool;
  }

  /** Stops the workers (a task still running is rejected and parsed on the main thread). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.destroy();
  }
}

/**
 * A buffer for a body of `bytes` declared bytes: in shared memory when it will go to a parse worker
 * (`bytes` at least `offThreadBytes`, when that is not 0), so handing it over copies nothing. Posting
 * a 7.9 MB Buffer to a worker cost the event loop 3 ms (median; up to 16) of structured cloning, a
 * shared one 0.1 ms (bench/gateway-large-body.ts); the main thread keeps the same bytes to proxy.
 */
export function bodyBuffer(bytes: number, offThreadBytes: number): Buffer {
  return offThreadBytes > 0 && bytes >= offThreadBytes
    ? Buffer.from(new SharedArrayBuffer(bytes))
    : Buffer.allocUnsafe(bytes);
}

/** `body` if it is in shared memory, else a copy in shared memory (one memcpy, cheaper than a clone). */
function ownBytes(body: Buffer): Uint8Array {
  if (body.buffer instanceof SharedArrayBuffer) return body;
  const shared = Buffer.from(new SharedArrayBuffer(body.byteLength));
  body.copy(shared);
  return shared;
}

/** The fields a worker's reply carries, shaped exactly as the main thread's parse gives them. */
function fieldsOfReply(r: Extract<ParseReply, { ok: true }>): BodyFields {
  const prefix: PrefixChain =
    r.exact === undefined
      ? { blockTokens: r.blockTokens, hashes: Array.from(r.hashes) }
      : { blockTokens: r.blockTokens, hashes: Array.from(r.hashes), exact: r.exact };
  return {
    model: r.model,
    inputTokens: r.inputTokens,
    maxTokens: r.maxTokens,
    stream: r.stream,
    priority: r.priority,
    user: r.user,
    prefix,
    // Embeddings only, as the main thread's parse gives it (absent, not undefined, otherwise).
    ...(r.inputTokensCapped === undefined ? {} : { inputTokensCapped: r.inputTokensCapped }),
    ...(r.generations === undefined ? {} : { generations: r.generations }),
  };
}

function queueFull(bytesMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_PARSE_QUEUE_FULL',
    `large bodies waiting to be parsed already hold up to ${bytesMax} bytes (limits.readingBytesMax); retry later`,
    { param: 'body' },
  );
}
