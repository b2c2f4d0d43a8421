/**
 * Reading a completion body: one object per request and shared listener functions (they find their
 * reader on the request) instead of a handful of closures per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import type { LimitsConfig } from './config.ts';
import type { ExchangeKind } from './proxy.ts';
import type { TenantEntry } from './request-build.ts';

/** A request body being read, and what to do when it is late. */
export interface Reading {
  readonly res: ServerResponse;
  readonly deadlineMs: number;
  /** Gives up the read and answers `error`. */
  fail(error: SwitchyardError): void;
}

/** What a BodyReader asks of the gateway: its limits, and where a finished or failed read goes. */
export interface BodyReaderHost {
  readonly limits: LimitsConfig;
  /** The body was read (or could not be): parse, admit, start. */
  bodyRead(r: BodyReader, result: Buffer | SwitchyardError): void;
  /** The read was given up (deadline, broken connection): answer `error` and close. */
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

/**
 * A completion body being read: `readBody`'s behaviour (a declared or actual size over the limit
 * fails at once, the rest unread), with one object per request and shared listener functions.
 */
export class BodyReader implements Reading {
  private first: Buffer | undefined = undefined;
  private chunks: Buffer[] | undefined = undefined;
  size = 0;
  finished = false;

  constructor(
    readonly host: BodyReaderHost,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly kind: ExchangeKind,
    readonly tenant: TenantEntry | undefined,
    readonly arrivalMs: number,
    readonly deadlineMs: number,
  ) {}

  /** Starts listening for the body's chunks. */
  attach(): void {
    const req = this.req as ReqWithReader;
    req[BODY_READER] = this;
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
    req.on('error', onBodyError);
  }

  fail(error: SwitchyardError): void {
    this.finished = true;
    this.host.bodyFailed(this, error);
  }

  data(chunk: Buffer): void {
    if (this.finished) return;
    this.size += chunk.length;
    const max = this.host.limits.bodyBytesMax;
    if (this.size > max) {
      this.finished = true;
      this.first = undefined;
      this.chunks = undefined;
      this.req.pause();
      this.host.bodyRead(this, bodyTooLarge(max));
      return;
    }
    if (this.first === undefined) this.first = chunk;
    else if (this.chunks === undefined) this.chunks = [this.first, chunk];
    else this.chunks.push(chunk);
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    const body =
      this.chunks !== undefined
        ? Buffer.concat(this.chunks, this.size)
        : (this.first ?? Buffer.concat([], 0));
    this.first = undefined;
    this.chunks = undefined;
    this.host.bodyRead(this, body);
  }

  error(error: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.host.bodyRead(
      this,
      new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `request body could not be read: ${error.message}`, {
        param: 'body',
      }),
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
