/**
 * A response sink for requests the gateway makes itself (Batch API lines). The proxy writes an
 * answer to a `ServerResponse`; this object has the part of that interface the proxy and the error
 * helpers use (writeHead, write, end, destroy, the state flags and events) and collects the answer
 * in memory instead of sending it, so a batch line travels the clients' own path through admission,
 * routing, retries and proxying.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';

/** What a captured request ended with. */
export type CapturedAnswer =
  | { readonly kind: 'answer'; readonly status: number; readonly body: Buffer }
  /** Cut after the head (the upstream failed mid-answer): no usable body. */
  | { readonly kind: 'cut'; readonly status: number | undefined };

/** Bytes of one captured answer, at most; a longer one is cut (a completion is far smaller). */
export const CAPTURE_BYTES_MAX = 16 * 1024 * 1024;

/** Collects one answer; `done` is called exactly once. */
export class CaptureResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  shouldKeepAlive = false;
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private settled = false;

  constructor(private readonly done: (answer: CapturedAnswer) => void) {
    super();
  }

  /** This object where the proxy expects a `ServerResponse` (it uses only what is defined here). */
  asServerResponse(): ServerResponse {
    return this as unknown as ServerResponse;
  }

  writeHead(status: number, _headers?: unknown): this {
    this.statusCode = status;
    this.headersSent = true;
    return this;
  }

  setHeader(_name: string, _value: unknown): this {
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.destroyed) return false;
    this.headersSent = true;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.bytes += buf.length;
    if (this.bytes > CAPTURE_BYTES_MAX) {
      this.destroy();
      return false;
    }
    this.chunks.push(buf);
    return true;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded || this.destroyed) return this;
    if (chunk !== undefined) this.write(chunk);
    if (this.destroyed) return this;
    this.headersSent = true;
    this.writableEnded = true;
    this.writableFinished = true;
    this.settle({ kind: 'answer', status: this.statusCode, body: Buffer.concat(this.chunks, this.bytes) });
    this.emit('finish');
    this.emit('close');
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    const committed = this.headersSent;
    this.destroyed = true;
    this.chunks.length = 0;
    this.settle({ kind: 'cut', status: committed ? this.statusCode : undefined });
    this.emit('close');
    return this;
  }

  private settle(answer: CapturedAnswer): void {
    if (this.settled) return;
    this.settled = true;
    this.done(answer);
  }
}
