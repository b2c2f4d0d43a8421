/**
 * Reading a completion body, with every bound on it in one place:
 *
 * - time: the body must arrive within `limits.bodyReadTimeoutMs` of its head (and within the
 *   request deadline); a late one gets 408 and the connection closes (the gateway's sweep calls
 *   `expire`).
 * - size: a body over `limits.bodyBytesMax` (declared or actual) is refused 413.
 * - bytes held at once: all bodies being read share `limits.readingBytesMax`; one that would pass it
 *   is refused 503 with Retry-After, so many large bodies at once cannot take the gateway's memory.
 * - depth: a body nested deeper than `limits.jsonDepthMax` is refused 400 before it is parsed.
 *
 * A refused body is read and dropped (up to DISCARD_BYTES_MAX, within the time bound) before the
 * answer goes out: most HTTP clients read no answer until they have sent their whole body, and
 * closing on them mid-send gives them a broken pipe instead of the error. A body too large to wait
 * for is answered at once and the connection closed.
 *
 * One object per request and shared listener functions (they find their reader on the request)
 * instead of a handful of closures per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import type { LimitsConfig } from './config.ts';
import { DISCARD_BYTES_MAX } from './http-util.ts';
import { jsonDepthExceeds } from './json-depth.ts';
import { bodyBuffer } from './parse-pool.ts';
import type { ExchangeKind } from './proxy.ts';
import type { TenantEntry } from './request-build.ts';

/** Retry-After of a body refused because others hold `readingBytesMax`. */
const READING_FULL_RETRY_AFTER_MS = 1000;
/** Longest wait for a closing answer to drain before its connection is cut. */
const CLOSE_LINGER_MS = 2000;

/** A request body being read, and what to do when it is late. */
export interface Reading {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly deadlineMs: number;
  /** Gives up the read and answers `error`, then closes the connection. */
  fail(error: SwitchyardError): void;
  /** The deadline passed: answers the refusal already decided, else 408, and closes. */
  expire(): void;
}

/** Bytes held by bodies being read, against `limits.readingBytesMax`. */
export class ReadingBudget {
  bytes = 0;

  constructor(readonly bytesMax: number) {}

  /** Takes `n` bytes, or returns false (taking nothing) when that would pass the bound. */
  take(n: number): boolean {
    if (this.bytes + n > this.bytesMax) return false;
    this.bytes += n;
    return true;
  }

  give(n: number): void {
    this.bytes -= n;
  }
}

/** What a BodyReader asks of the gateway: its limits, and where a finished or failed read goes. */
export interface BodyReaderHost {
  readonly limits: LimitsConfig;
  readonly readingBudget: ReadingBudget;
  /** The body was read, or refused after reading it (`r.retryAfterMs` then applies): parse, admit, start. */
  bodyRead(r: BodyReader, result: Buffer | SwitchyardError): void;
  /** The read was given up (deadline, broken connection, too large to drop): answer `error`, then `r.close()`. */
  bodyFailed(r: BodyReader, error: SwitchyardError): void;
}

const BODY_READER = Symbol('switchyard.bodyReader');
type ReqWithReader = IncomingMessage & { [BODY_READER]?: BodyReader };

/** The 413 for a body over `limits.bodyBytesMax`. */
export function bodyTooLarge(bytesMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_REQUEST_TOO_LARGE',
    `request body exceeds ${bytesMax} bytes (limits.bodyBytesMax)`,
    { param: 'body' },
  );
}

function readingFull(bytesMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_READING_BYTES_FULL',
    `bodies being read already hold up to ${bytesMax} bytes (limits.readingBytesMax); retry later`,
    { param: 'body' },
  );
}

function tooDeep(depthMax: number): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `request body nests JSON deeper than ${depthMax} levels (limits.jsonDepthMax)`,
    { param: 'body' },
  );
}

/** The declared Content-Length, or undefined (chunked, or not a plain number). */
function declaredLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** A completion body being read (see the module comment). */
export class BodyReader implements Reading {
  /** The body so far when its length was declared: one buffer, filled as chunks come (no final copy). */
  private whole: Buffer | undefined = undefined;
  private first: Buffer | undefined = undefined;
  private chunks: Buffer[] | undefined = undefined;
  /** Bytes taken from the host's reading budget. */
  private held = 0;
  /** The declared length, when it was declared and taken from the budget whole. */
  private declared: number | undefined = undefined;
  /** Set once the body is refused: it is dropped as it comes and this is the answer. */
  private refusal: SwitchyardError | undefined = undefined;
  /** Retry-After of the refusal, when it has one. */
  retryAfterMs: number | undefined = undefined;
  /** Bytes received (kept or dropped). */
  size = 0;
  finished = false;
  readonly deadlineMs: number;
  private readonly timeoutLimit: 'bodyReadTimeoutMs' | 'requestTimeoutMs';

  constructor(
    readonly host: BodyReaderHost,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly kind: ExchangeKind,
    readonly tenant: TenantEntry | undefined,
    readonly arrivalMs: number,
  ) {
    const { bodyReadTimeoutMs, requestTimeoutMs } = host.limits;
    this.timeoutLimit = bodyReadTimeoutMs <= requestTimeoutMs ? 'bodyReadTimeoutMs' : 'requestTimeoutMs';
    this.deadlineMs = arrivalMs + Math.min(bodyReadTimeoutMs, requestTimeoutMs);
  }

  /** Checks the declared length against the bounds and starts listening for the body's chunks. */
  start(): void {
    const declared = declaredLength(this.req);
    const { bodyBytesMax } = this.host.limits;
    if (declared !== undefined) {
      if (declared > bodyBytesMax) this.refuse(bodyTooLarge(bodyBytesMax));
      else if (!this.host.readingBudget.take(declared)) this.refuseFull();
      else {
        this.held = declared;
        this.declared = declared;
      }
      if (this.refusal !== undefined && declared > DISCARD_BYTES_MAX) {
        // Too much to drop and wait for: answer now, and close on the rest.
        this.fail(this.refusal);
        return;
      }
    }
    this.listen();
  }

  private listen(): void {
    const req = this.req as ReqWithReader;
    req[BODY_READER] = this;
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
    req.on('error', onBodyError);
  }

  /**
   * Starts a read whose answer is decided already (draining, no valid key): the body is read and
   * dropped, then `error` is answered (with Retry-After when `retryAfterMs` is given).
   */
  startRefused(error: SwitchyardError, retryAfterMs?: number): void {
    this.refusal = error;
    this.retryAfterMs = retryAfterMs;
    const declared = declaredLength(this.req);
    if (declared !== undefined && declared > DISCARD_BYTES_MAX) {
      this.fail(error);
      return;
    }
    this.listen();
  }

  fail(error: SwitchyardError): void {
    if (this.finished) return;
    this.finish();
    this.host.bodyFailed(this, error);
  }

  expire(): void {
    this.fail(this.refusal ?? this.lateError());
  }

  /**
   * Closes the connection after the answer. The answer says `connection: close`, so Node ends the
   * socket once it is out; it is not destroyed at once because a client still sending would get a
   * reset that can swallow the answer. The linger bounds a client that keeps sending.
   */
  close(): void {
    const socket = this.req.socket;
    setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  data(chunk: Buffer): void {
    if (this.finished) return;
    const start = this.size;
    this.size += chunk.length;
    if (this.refusal !== undefined) {
      if (this.size > DISCARD_BYTES_MAX) this.fail(this.refusal);
      return;
    }
    const { bodyBytesMax } = this.host.limits;
    if (this.size > bodyBytesMax) {
      this.refuse(bodyTooLarge(bodyBytesMax));
      return;
    }
    if (this.declared !== undefined) {
      // Copied into the one buffer (Node's parser never passes more than the declared length); a body
      // for a parse worker's is in shared memory (parse-pool.ts).
      this.whole ??= bodyBuffer(this.declared, this.host.limits.offThreadParseBytes);
      chunk.copy(this.whole, start);
      return;
    }
    if (!this.host.readingBudget.take(chunk.length)) {
      this.refuseFull();
      return;
    }
    this.held += chunk.length;
    if (this.first === undefined) this.first = chunk;
    else if (this.chunks === undefined) this.chunks = [this.first, chunk];
    else this.chunks.push(chunk);
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    const refusal = this.refusal;
    const body = refusal === undefined ? this.body() : undefined;
    this.whole = undefined;
    this.first = undefined;
    this.chunks = undefined;
    try {
      if (body === undefined) this.host.bodyRead(this, refusal as SwitchyardError);
      else if (jsonDepthExceeds(body, this.host.limits.jsonDepthMax))
        this.host.bodyRead(this, tooDeep(this.host.limits.jsonDepthMax));
      else this.host.bodyRead(this, body);
    } finally {
      // Past bodyRead the body is a queued or running request's, or the parse pool's (which bounds
      // its own bytes, parse-pool.ts), not a read's.
      this.releaseBudget();
    }
  }

  error(error: Error): void {
    if (this.finished) return;
    this.finish();
    this.host.bodyRead(
      this,
      new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `request body could not be read: ${error.message}`, {
        param: 'body',
      }),
    );
  }

  /** The whole body, from the one buffer or the chunks. */
  private body(): Buffer {
    if (this.whole !== undefined)
      return this.size === this.whole.length ? this.whole : this.whole.subarray(0, this.size);
    if (this.chunks !== undefined) return Buffer.concat(this.chunks, this.size);
    return this.first ?? Buffer.alloc(0);
  }

  /** Refuses the body: what came is dropped, what comes is dropped, the answer waits for its end. */
  private refuse(error: SwitchyardError): void {
    this.refusal = error;
    this.dropBody();
  }

  private refuseFull(): void {
    this.retryAfterMs = READING_FULL_RETRY_AFTER_MS;
    this.refuse(readingFull(this.host.readingBudget.bytesMax));
  }

  private dropBody(): void {
    this.declared = undefined;
    this.whole = undefined;
    this.first = undefined;
    this.chunks = undefined;
    this.releaseBudget();
  }

  private releaseBudget(): void {
    this.host.readingBudget.give(this.held);
    this.held = 0;
  }

  private finish(): void {
    this.finished = true;
    this.dropBody();
  }

  private lateError(): SwitchyardError {
    const ms = this.host.limits[this.timeoutLimit];
    return new SwitchyardError(
      'SY_ERR_REQUEST_TIMEOUT',
      `request body not received within ${ms} ms of its head (limits.${this.timeoutLimit})`,
      { param: 'body' },
    );
  }
}

function onBodyData(this: ReqWithReader, chunk: Buffer): void {
  this[BODY_READER]?.data(chunk);
}

function onBodyEnd(this: ReqWithReader): void {
  this[BODY_READER]?.end();
}

function onBodyError(this: ReqWithReader, error: Error): void {
  this[BODY_READER]?.error(error);
}
