/**
 * The bytes held by requests waiting in the admission queue, bounded in total and per tenant. A
 * queued request keeps its body (the gateway forwards it unchanged once admission releases it) and
 * its prefix chain; without a bound, the default queue depths times the body limit allowed about
 * 100 GiB. The twin has no bodies, so this bound is the gateway's own, not admission's: the gateway
 * asks `refusal` before it lets a request queue, `hold`s it when queued and `release`s it when the
 * request leaves the queue (sent, refused, expired or abandoned by its client).
 */
import type { Request } from '../core/request.ts';

/** Bytes a number of a prefix chain's `hashes` array costs (a JS number each). */
const BYTES_PER_HASH = 8;

/** What a queued request holds: its body buffer and its prefix chain. Same value at hold and release. */
export function queuedBytesOf(request: Request, body: Buffer): number {
  return body.length + request.prefix.hashes.length * BYTES_PER_HASH;
}

/** Which bound a request would pass, or undefined when it fits. */
export type QueuedBytesRefusal = 'total' | 'tenant';

/** A snapshot for /stats. */
export interface QueuedBytesStats {
  readonly bytes: number;
  /** The most ever held at once (bounded by `bytesMax`: what tests assert). */
  readonly bytesPeak: number;
  readonly bytesMax: number;
  readonly tenantBytesMax: number;
  /** The most one tenant ever held at once (bounded by `tenantBytesMax`). */
  readonly tenantBytesPeak: number;
  /** Tenants holding bytes now. */
  readonly tenants: number;
  /** Requests refused because they would pass a bound. */
  readonly refused: number;
}

/** Queued bytes, in total and by tenant. A tenant's entry goes when it holds nothing. */
export class QueuedBytes {
  private bytes = 0;
  private bytesPeak = 0;
  private tenantBytesPeak = 0;
  private refusedCount = 0;
  private readonly byTenant = new Map<string, number>();

  constructor(
    readonly bytesMax: number,
    readonly tenantBytesMax: number,
  ) {}

  /** Which bound holding `bytes` more for `tenant` would pass, or undefined. Read-only. */
  refusal(tenant: string, bytes: number): QueuedBytesRefusal | undefined {
    if ((this.byTenant.get(tenant) ?? 0) + bytes > this.tenantBytesMax) return 'tenant';
    if (this.bytes + bytes > this.bytesMax) return 'total';
    return undefined;
  }

  /** A request was refused for a bound (counted in `stats.refused`). */
  refused(): void {
    this.refusedCount++;
  }

  /** A request of `bytes` joined the queue. */
  hold(tenant: string, bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.bytesPeak) this.bytesPeak = this.bytes;
    const held = (this.byTenant.get(tenant) ?? 0) + bytes;
    if (held > this.tenantBytesPeak) this.tenantBytesPeak = held;
    this.byTenant.set(tenant, held);
  }

  /** A request of `bytes` left the queue. */
  release(tenant: string, bytes: number): void {
    this.bytes -= bytes;
    const left = (this.byTenant.get(tenant) ?? 0) - bytes;
    if (left > 0) this.byTenant.set(tenant, left);
    else this.byTenant.delete(tenant);
  }

  /** Bytes `tenant` holds now. */
  tenantBytes(tenant: string): number {
    return this.byTenant.get(tenant) ?? 0;
  }

  get stats(): QueuedBytesStats {
    return {
      bytes: this.bytes,
      bytesPeak: this.bytesPeak,
      bytesMax: this.bytesMax,
      tenantBytesMax: this.tenantBytesMax,
      tenantBytesPeak: this.tenantBytesPeak,
      tenants: this.byTenant.size,
      refused: this.refusedCount,
    };
  }
}
