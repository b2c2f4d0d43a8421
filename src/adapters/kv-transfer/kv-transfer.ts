/**
 * Moving an engine's KV state between two engines over TCP (the built-in `llama` engines' P/D).
 *
 * The prefill side keeps each prompt's state in a file (what llama.cpp's sequence-state API writes)
 * and offers it under a transfer id on a `KvStateServer`; the decode side pulls it with
 * `fetchKvState` into a file of its own, which llama.cpp then loads. On the wire:
 *
 *   client HELLO {transferId} -> server META {bytes, tokens}, DATA x N, END -> client DONE
 *
 * (length-prefixed frames, framing.ts). The server reads the file a chunk at a time and writes each
 * chunk as the socket drains, so disk reads overlap the network; the client writes each piece to its
 * sink as it arrives, so the network overlaps the writes, and pauses the socket while more than
 * `inFlightBytesMax` bytes are waiting to be written (memory is bounded by that plus one socket read).
 * A connection that drops (or stalls past `idleTimeoutMs`) is retried `retriesMax` times from the
 * start; then the call throws SY_ERR_KV_TRANSFER_FAILED and the caller prefills locally. The server
 * releases (deletes) a state once its client said DONE, or `releaseTimeoutMs` after the offer when
 * no decode collected it.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync, rmSync, truncateSync } from 'node:fs';
import { type AddressInfo, createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { SwitchyardError } from '../../core/errors.ts';
import { controlFrame, FrameDecoder, FrameType, frameHeader } from './framing.ts';

/** Bytes of state per DATA frame the server sends (one file read each). */
export const CHUNK_BYTES_DEFAULT = 1 << 20;
/** Bytes a client lets wait for its sink before it pauses the socket. */
export const IN_FLIGHT_BYTES_MAX_DEFAULT = 8 << 20;
/** Retries of a dropped transfer before the client gives up. */
export const RETRIES_MAX_DEFAULT = 1;
/** A transfer whose socket says nothing for this long is dropped. */
export const IDLE_TIMEOUT_MS_DEFAULT = 10_000;
/** States a server holds at once; one more offer is refused. */
export const OFFERS_MAX_DEFAULT = 1024;
/** A state no decode collected is deleted after this long (vLLM's NIXL abort timeout plays this part). */
export const RELEASE_TIMEOUT_MS_DEFAULT = 60_000;
/** Connections a server serves at once; more are closed at once. */
export const CONNECTIONS_MAX = 256;

/** A state on offer. */
interface Offer {
  readonly path: string;
  readonly bytes: number;
  readonly tokens: number;
  readonly timer: NodeJS.Timeout;
}

/** Counters of a KvStateServer. */
export interface KvServerStats {
  offered: number;
  /** Connections that sent the whole state (retries count again). */
  served: number;
  bytesSent: number;
  releasedCollected: number;
  releasedTimeout: number;
}

/** Options of a KvStateServer. */
export interface KvStateServerOptions {
  readonly chunkBytes?: number;
  readonly offersMax?: number;
  readonly releaseTimeoutMs?: number;
}

/** The prefill side: offers state files under transfer ids and streams them to whoever asks. */
export class KvStateServer {
  readonly stats: KvServerStats = {
    offered: 0,
    served: 0,
    bytesSent: 0,
    releasedCollected: 0,
    releasedTimeout: 0,
  };
  private readonly offers = new Map<string, Offer>();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private readonly chunkBytes: number;
  private readonly offersMax: number;
  private readonly releaseTimeoutMs: number;

  constructor(options: KvStateServerOptions = {}) {
    this.chunkBytes = options.chunkBytes ?? CHUNK_BYTES_DEFAULT;
    this.offersMax = options.offersMax ?? OFFERS_MAX_DEFAULT;
    this.releaseTimeoutMs = options.releaseTimeoutMs ?? RELEASE_TIMEOUT_MS_DEFAULT;
    this.server = createServer({ noDelay: true }, (socket) => this.serve(socket));
  }

  /** Listens on `host:port` (0: a free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** States on offer now. */
  get held(): number {
    return this.offers.size;
  }

  /**
   * Offers the state in `path` (the server owns the file from now on and deletes it on release).
   * Returns its transfer id; throws SY_ERR_OVERLOADED when `offersMax` states are held already.
   */
  offer(path: string, bytes: number, tokens: number): string {
    if (this.offers.size >= this.offersMax) {
      rmSync(path, { force: true });
      throw new SwitchyardError(
        'SY_ERR_OVERLOADED',
        `this prefill engine holds ${this.offersMax} KV states no decode has collected (offersMax); retry later`,
      );
    }
    const id = randomUUID();
    const timer = setTimeout(() => this.release(id, 'timeout'), this.releaseTimeoutMs);
    timer.unref();
    this.offers.set(id, { path, bytes, tokens, timer });
    this.stats.offered++;
    return id;
  }

  /** Stops listening, ends the connections and deletes every state held. */
  async close(): Promise<void> {
    for (const id of [...this.offers.keys()]) this.release(id, 'timeout');
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private release(id: string, why: 'collected' | 'timeout'): void {
    const offer = this.offers.get(id);
    if (offer === undefined) return;
    this.offers.delete(id);
    clearTimeout(offer.timer);
    rmSync(offer.path, { force: true });
    if (why === 'collected') this.stats.releasedCollected++;
    else this.stats.releasedTimeout++;
  }

  private serve(socket: Socket): void {
    if (this.sockets.size >= CONNECTIONS_MAX) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let asked: string | undefined;
    const decoder = new FrameDecoder({
      onData: () => {
        throw new Error('a client sends no DATA');
      },
      onControl: (type, payload) => {
        if (type === FrameType.hello && asked === undefined) {
          asked = String((JSON.parse(payload.toString('utf8')) as { transferId?: unknown }).transferId);
          void this.send(socket, asked);
        } else if (type === FrameType.done && asked !== undefined) {
          this.release(asked, 'collected');
          socket.end();
        } else {
          throw new Error(`unexpected frame type ${type}`);
        }
      },
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (error) {
        socket.end(controlFrame(FrameType.error, { message: (error as Error).message }));
      }
    });
  }

  /** Streams one state: META, DATA per chunk read (waiting for the socket to drain), END. */
  private async send(socket: Socket, id: string): Promise<void> {
    const offer = this.offers.get(id);
    if (offer === undefined) {
      socket.end(
        controlFrame(FrameType.error, { message: `no KV state '${id}' here (released or unknown)` }),
      );
      return;
    }
    socket.write(controlFrame(FrameType.meta, { bytes: offer.bytes, tokens: offer.tokens }));
    try {
      for await (const chunk of createReadStream(offer.path, { highWaterMark: this.chunkBytes })) {
        if (socket.destroyed) return;
        const buf = chunk as Buffer;
        socket.cork();
        socket.write(frameHeader(FrameType.data, buf.length));
        const open = socket.write(buf);
        socket.uncork();
        this.stats.bytesSent += buf.length;
        if (!open) await drainOrClose(socket);
      }
      if (socket.destroyed) return;
      socket.write(frameHeader(FrameType.end, 0));
      this.stats.served++;
    } catch (error) {
      socket.end(controlFrame(FrameType.error, { message: (error as Error).message }));
    }
  }
}

/** Resolves when the socket drains or closes, leaving no listener behind. */
function drainOrClose(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/**
 * Bytes a client gathers from the socket before it writes them to its sink in one go (a writev):
 * the socket delivers 64 KiB at most per read, and a disk write per read costs more than the copy.
 */
export const WRITE_BATCH_BYTES = 1 << 20;

/** What a fetch got. */
export interface KvFetchResult {
  readonly bytes: number;
  readonly tokens: number;
  /** Connections it took (1 + retries used). */
  readonly attempts: number;
  /** Most bytes that were waiting for the sink at once. */
  readonly peakInFlightBytes: number;
}

/** Where and how to fetch a state. */
export interface KvFetchOptions {
  readonly host: string;
  readonly port: number;
  readonly transferId: string;
  /** A new sink per attempt (default: a write stream truncating `path`). */
  readonly sink?: () => Writable;
  /**
   * The file to write, when no `sink` is given. An existing file is overwritten in place and then cut
   * to the state's size: a file kept for reuse keeps its pages (on tmpfs, allocating and zeroing
   * fresh pages costs about as much as the network).
   */
  readonly path?: string;
  readonly inFlightBytesMax?: number;
  readonly retriesMax?: number;
  readonly idleTimeoutMs?: number;
  /** Told of each failed attempt before the next (for logs and counters). */
  readonly onRetry?: (error: Error) => void;
}

/**
 * Pulls one state from a KvStateServer into a sink, retrying a dropped connection `retriesMax` times.
 * Throws SY_ERR_KV_TRANSFER_FAILED naming the last failure when every attempt failed.
 */
export async function fetchKvState(options: KvFetchOptions): Promise<KvFetchResult> {
  const retriesMax = options.retriesMax ?? RETRIES_MAX_DEFAULT;
  let last: Error | undefined;
  for (let attempt = 1; attempt <= retriesMax + 1; attempt++) {
    try {
      const got = await fetchOnce(options);
      return { ...got, attempts: attempt };
    } catch (error) {
      last = error as Error;
      if (attempt <= retriesMax) options.onRetry?.(last);
    }
  }
  throw new SwitchyardError(
    'SY_ERR_KV_TRANSFER_FAILED',
    `KV state '${options.transferId}' could not be fetched from ${options.host}:${options.port} ` +
      `in ${retriesMax + 1} attempt(s): ${last?.message ?? 'unknown'}`,
  );
}

function openSink(options: KvFetchOptions): Writable {
  if (options.sink !== undefined) return options.sink();
  if (options.path === undefined) throw new Error('fetchKvState needs a sink or a path');
  return createWriteStream(options.path, { flags: existsSync(options.path) ? 'r+' : 'w' });
}

/** One connection: HELLO, then META, DATA to the sink under the in-flight bound, END, DONE. */
function fetchOnce(options: KvFetchOptions): Promise<Omit<KvFetchResult, 'attempts'>> {
  const inFlightMax = options.inFlightBytesMax ?? IN_FLIGHT_BYTES_MAX_DEFAULT;
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: options.host, port: options.port, noDelay: true });
    let sink: Writable | undefined;
    let meta: { bytes: number; tokens: number } | undefined;
    let received = 0;
    let inFlight = 0;
    let peak = 0;
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      sink?.destroy();
      reject(error);
    };
    /** Pieces received and not yet handed to the sink. */
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = (): void => {
      if (batch.length === 0 || sink === undefined) return;
      const bytes = batchBytes;
      const pieces = batch;
      batch = [];
      batchBytes = 0;
      sink.cork();
      for (let i = 0; i < pieces.length - 1; i++) sink.write(pieces[i]);
      sink.write(pieces[pieces.length - 1], () => {
        inFlight -= bytes;
        if (inFlight < inFlightMax && socket.isPaused()) socket.resume();
      });
      sink.uncork();
    };
    const finish = async (): Promise<void> => {
      if (meta === undefined || sink === undefined) throw new Error('END before META');
      flush();
      if (received !== meta.bytes) throw new Error(`END after ${received} of ${meta.bytes} bytes`);
      const done = once(sink, 'finish');
      sink.end();
      await done;
      if (options.sink === undefined && options.path !== undefined) truncateSync(options.path, meta.bytes);
      if (settled) return;
      settled = true;
      socket.end(controlFrame(FrameType.done, {}));
      resolve({ bytes: meta.bytes, tokens: meta.tokens, peakInFlightBytes: peak });
    };
    const decoder = new FrameDecoder({
      onData: (piece) => {
        if (sink === undefined) throw new Error('DATA before META');
        received += piece.length;
        inFlight += piece.length;
        peak = Math.max(peak, inFlight);
        batch.push(piece);
        batchBytes += piece.length;
        if (batchBytes >= Math.min(WRITE_BATCH_BYTES, inFlightMax)) flush();
        if (inFlight >= inFlightMax) socket.pause();
      },
      onControl: (type, payload) => {
        if (type === FrameType.meta && meta === undefined) {
          meta = JSON.parse(payload.toString('utf8')) as { bytes: number; tokens: number };
          sink = openSink(options);
          sink.on('error', fail);
        } else if (type === FrameType.end) {
          finish().catch(fail);
        } else if (type === FrameType.error) {
          fail(new Error((JSON.parse(payload.toString('utf8')) as { message?: string }).message ?? 'error'));
        } else {
          throw new Error(`unexpected frame type ${type}`);
        }
      },
    });
    socket.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS_DEFAULT, () =>
      fail(new Error('the transfer stalled')),
    );
    socket.on('connect', () =>
      socket.write(controlFrame(FrameType.hello, { transferId: options.transferId })),
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (error) {
        fail(error as Error);
      }
    });
    socket.on('error', fail);
    socket.on('close', () => fail(new Error(`the connection closed after ${received} bytes`)));
  });
}
