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
import {
  closeSync,
  constants as fsConstants,
  read as fsRead,
  write as fsWrite,
  ftruncateSync,
  openSync,
  rmSync,
} from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { SwitchyardError } from '../../core/errors.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT } from '../../model/kv-release.ts';
import { listenOn } from '../listen.ts';
import {
  controlFrame,
  DATA_FRAME_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  frameHeader,
} from './framing.ts';

/** Bytes of state per DATA frame the server sends (one file read each). */
export const CHUNK_BYTES_DEFAULT = 1 << 20;
/**
 * Chunks a server reads ahead of the socket per transfer (each a reused buffer of the chunk size,
 * back once the socket took it): enough that a file read is always under way while the socket sends.
 */
export const READ_AHEAD_CHUNKS = 4;
/**
 * DATA frame size for a state sent from memory: larger than a file chunk, since no read buffer is
 * behind it (fewer socket writes; the receiver never holds a frame whole).
 */
export const BUFFER_FRAME_BYTES = 4 << 20;
/** Chunk buffers a server keeps for reuse across transfers (16 MiB at the default chunk size). */
export const SEND_BUFFERS_KEPT_MAX = 16;
/**
 * Bytes a client lets wait for its sink: the total of its receive buffers (RECEIVE_BUFFER_BYTES
 * each); when none is free for the next socket read, the socket pauses.
 */
export const IN_FLIGHT_BYTES_MAX_DEFAULT = 8 << 20;
/** Retries of a dropped transfer before the client gives up. */
export const RETRIES_MAX_DEFAULT = 1;
/** A transfer whose socket says nothing for this long is dropped. */
export const IDLE_TIMEOUT_MS_DEFAULT = 10_000;
/** States a server holds at once; one more offer is refused. */
export const OFFERS_MAX_DEFAULT = 1024;
/**
 * A server closes a connection silent this long: longer than a client keeps an idle one
 * (CLIENT_KEEP_ALIVE_MS), so the client is normally the side that closes.
 */
export const SERVER_KEEP_ALIVE_MS_DEFAULT = 30_000;
/** Connections a server serves at once, kept-alive ones included; more are closed at once. */
export const CONNECTIONS_MAX = 256;

/** A state on offer: a file, or bytes in memory (llama.cpp's buffer state API, src/engine-servers/llama/kv-native.ts). */
interface Offer {
  readonly path?: string;
  readonly buffer?: Buffer;
  /** Told once the server is done with `buffer`: released, and no connection still sending from it. */
  readonly onRelease?: (buffer: Buffer) => void;
  readonly bytes: number;
  readonly tokens: number;
  readonly timer: NodeJS.Timeout;
  /** Connections whose socket has not yet taken all of `buffer`. */
  sending: number;
  released: boolean;
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
  /** A state no decode collected is deleted after this long (default: the shared P/D KV release timeout, src/model/kv-release.ts). */
  readonly releaseTimeoutMs?: number;
  /** A connection silent this long (a kept-alive one between transfers, or a stalled one) is closed. */
  readonly keepAliveMs?: number;
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
  private readonly store: BufferStore;
  private readonly keepAliveMs: number;

  constructor(options: KvStateServerOptions = {}) {
    this.chunkBytes = options.chunkBytes ?? CHUNK_BYTES_DEFAULT;
    this.offersMax = options.offersMax ?? OFFERS_MAX_DEFAULT;
    this.releaseTimeoutMs = options.releaseTimeoutMs ?? PD_KV_RELEASE_TIMEOUT_MS_DEFAULT;
    this.store = new BufferStore(this.chunkBytes, SEND_BUFFERS_KEPT_MAX);
    this.keepAliveMs = options.keepAliveMs ?? SERVER_KEEP_ALIVE_MS_DEFAULT;
    this.server = createServer({ noDelay: true }, (socket) => this.serve(socket));
  }

  /** Listens on `host:port` (0: a free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
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
    if (this.offers.size >= this.offersMax) rmSync(path, { force: true });
    return this.add({ path }, bytes, tokens);
  }

  /**
   * Offers the state in `buffer[0, bytes)`, sent straight from memory (no file read, no copy in this
   * process: the socket writes views of it). The buffer must not change until `onRelease` gives it
   * back (after a decode collected it or the release timeout, once no connection still sends from
   * it). Throws SY_ERR_OVERLOADED as `offer` does (the buffer is given back first).
   */
  offerBuffer(buffer: Buffer, bytes: number, tokens: number, onRelease?: (buffer: Buffer) => void): string {
    if (bytes > buffer.byteLength)
      throw new RangeError(`a ${bytes}-byte state in a ${buffer.byteLength}-byte buffer`);
    if (this.offers.size >= this.offersMax) onRelease?.(buffer);
    return this.add(onRelease === undefined ? { buffer } : { buffer, onRelease }, bytes, tokens);
  }

  private add(
    source: { path: string } | { buffer: Buffer; onRelease?: (buffer: Buffer) => void },
    bytes: number,
    tokens: number,
  ): string {
    if (this.offers.size >= this.offersMax) {
      throw new SwitchyardError(
        'SY_ERR_OVERLOADED',
        `this prefill engine holds ${this.offersMax} KV states no decode has collected (offersMax); retry later`,
      );
    }
    const id = randomUUID();
    const timer = setTimeout(() => this.release(id, 'timeout'), this.releaseTimeoutMs);
    timer.unref();
    this.offers.set(id, { ...source, bytes, tokens, timer, sending: 0, released: false });
    this.stats.offered++;
    return id;
  }

  /** Closes every connection now, kept-alive ones included (the listener stays). */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
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
    offer.released = true;
    if (offer.path !== undefined) rmSync(offer.path, { force: true });
    if (offer.buffer !== undefined && offer.sending === 0) offer.onRelease?.(offer.buffer);
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
    socket.setTimeout(this.keepAliveMs, () => socket.destroy());
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
          // The client may ask for another state on this connection (it keeps it for the next).
          this.release(asked, 'collected');
          asked = undefined;
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

  /**
   * Streams one state: META, then DATA per chunk read from the file into a reused buffer, END. Reads
   * run ahead of the socket, several at once (positional reads on the thread pool), and each buffer
   * comes back once the socket took its bytes: at most READ_AHEAD_CHUNKS buffers are out, being read
   * or waiting in the socket, so file reads overlap the network with bounded memory.
   */
  private async send(socket: Socket, id: string): Promise<void> {
    const offer = this.offers.get(id);
    if (offer === undefined) {
      socket.end(
        controlFrame(FrameType.error, { message: `no KV state '${id}' here (released or unknown)` }),
      );
      return;
    }
    if (offer.buffer !== undefined) {
      this.sendBuffer(socket, offer, offer.buffer);
      return;
    }
    let file: number | undefined;
    const reads: Promise<{ buffer: Buffer; bytes: number }>[] = [];
    try {
      file = openSync(offer.path as string, 'r');
      socket.write(controlFrame(FrameType.meta, { bytes: offer.bytes, tokens: offer.tokens }));
      const out = new BufferGate(READ_AHEAD_CHUNKS, socket);
      let readTo = 0;
      for (let sent = 0; sent < offer.bytes; ) {
        // Reads queue one after the other (measured: concurrent reads of one tmpfs file take longer
        // in all), ahead of the socket as far as the buffers allow.
        while (readTo < offer.bytes && (reads.length === 0 || out.free)) {
          if (!(await out.enter())) return;
          const at = readTo;
          const previous = reads[reads.length - 1];
          const handle = file;
          reads.push(
            previous === undefined
              ? this.readChunk(handle, at, offer.bytes)
              : previous.then(() => this.readChunk(handle, at, offer.bytes)),
          );
          readTo = Math.min(offer.bytes, readTo + this.chunkBytes);
        }
        const { buffer, bytes } = await (reads.shift() as Promise<{ buffer: Buffer; bytes: number }>);
        if (socket.destroyed) return;
        socket.cork();
        socket.write(frameHeader(FrameType.data, bytes));
        socket.write(buffer.subarray(0, bytes), () => {
          this.store.give(buffer);
          out.leave();
        });
        socket.uncork();
        sent += bytes;
        this.stats.bytesSent += bytes;
      }
      if (socket.destroyed) return;
      socket.write(frameHeader(FrameType.end, 0));
      this.stats.served++;
    } catch (error) {
      if (!socket.destroyed) socket.end(controlFrame(FrameType.error, { message: (error as Error).message }));
    } finally {
      // Reads still under way must end before the file closes.
      await Promise.allSettled(reads);
      if (file !== undefined) closeSync(file);
    }
  }

  /**
   * Streams a state held in memory: META, DATA frames that are views of the buffer (written at once,
   * corked together; the socket holds references, nothing is copied in this process), END. The
   * offer's buffer is not given back while a socket still holds views of it.
   */
  private sendBuffer(socket: Socket, offer: Offer, buffer: Buffer): void {
    const frameBytes = Math.min(DATA_FRAME_BYTES_MAX, Math.max(this.chunkBytes, BUFFER_FRAME_BYTES));
    offer.sending++;
    let settled = false;
    const taken = (): void => {
      if (settled) return;
      settled = true;
      offer.sending--;
      if (offer.released && offer.sending === 0) offer.onRelease?.(buffer);
    };
    socket.once('close', taken);
    socket.cork();
    socket.write(controlFrame(FrameType.meta, { bytes: offer.bytes, tokens: offer.tokens }));
    for (let at = 0; at < offer.bytes; at += frameBytes) {
      const bytes = Math.min(frameBytes, offer.bytes - at);
      socket.write(frameHeader(FrameType.data, bytes));
      socket.write(buffer.subarray(at, at + bytes));
      this.stats.bytesSent += bytes;
    }
    socket.write(frameHeader(FrameType.end, 0), () => {
      socket.off('close', taken);
      taken();
    });
    socket.uncork();
    this.stats.served++;
  }

  /** Reads the chunk at `position` (all of it, or the rest of a `bytes`-long state) into a buffer. */
  private async readChunk(
    file: number,
    position: number,
    bytes: number,
  ): Promise<{ buffer: Buffer; bytes: number }> {
    const buffer = this.store.take();
    const want = Math.min(buffer.length, bytes - position);
    let got = 0;
    while (got < want) {
      const bytesRead = await new Promise<number>((resolve, reject) =>
        fsRead(file, buffer, got, want - got, position + got, (error, n) =>
          error === null ? resolve(n) : reject(error),
        ),
      );
      if (bytesRead === 0) throw new Error(`the state file ended after ${position + got} of ${bytes} bytes`);
      got += bytesRead;
    }
    return { buffer, bytes: got };
  }
}

/** Counts buffers handed to a socket; `enter` waits while `countMax` are out (or the socket closed). */
class BufferGate {
  private count = 0;
  private wake: (() => void) | undefined;

  constructor(
    private readonly countMax: number,
    private readonly socket: Socket,
  ) {}

  /** Resolves true once one more buffer may go out, false when the socket closed meanwhile. */
  async enter(): Promise<boolean> {
    while (this.count >= this.countMax && !this.socket.destroyed) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.socket.off('close', done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        this.socket.on('close', done);
      });
    }
    if (this.socket.destroyed) return false;
    this.count++;
    return true;
  }

  /** True when one more buffer may go out now. */
  get free(): boolean {
    return this.count < this.countMax;
  }

  /** A buffer came back. */
  leave(): void {
    this.count--;
    this.wake?.();
  }
}

/**
 * Buffers of one size kept for reuse, at most `keptMax`: a fresh buffer of a MiB is mapped memory
 * that page-faults on its first touch (measured: reusing them is what makes a file read or a socket
 * read into them cheap); more than `keptMax` are left to the garbage collector.
 */
export class BufferStore {
  private readonly kept: Buffer[] = [];

  constructor(
    readonly bytes: number,
    readonly keptMax: number,
  ) {}

  /** A kept buffer, or a fresh one (contents undefined). */
  take(): Buffer {
    return this.kept.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
  }

  /** Gives a buffer back (kept when there is room and it has this store's size). */
  give(buffer: Buffer): void {
    if (buffer.length === this.bytes && this.kept.length < this.keptMax) this.kept.push(buffer);
  }

  /** Buffers kept now. */
  get size(): number {
    return this.kept.length;
  }
}

/**
 * Bytes of each buffer a client's socket reads into (node's own reads deliver 64 KiB at most, each in
 * a fresh buffer; one read of up to a MiB into a reused buffer costs a sixteenth of the reads).
 */
export const RECEIVE_BUFFER_BYTES = 1 << 20;
/** Buffers of RECEIVE_BUFFER_BYTES a process keeps for its fetches (16 MiB: two fetches' worth). */
export const RECEIVE_BUFFERS_KEPT_MAX = 16;
const receiveStore = new BufferStore(RECEIVE_BUFFER_BYTES, RECEIVE_BUFFERS_KEPT_MAX);

/** What a fetch got. */
export interface KvFetchResult {
  readonly bytes: number;
  readonly tokens: number;
  /** Connections it took (1 + retries used). */
  readonly attempts: number;
  /** Most bytes that were waiting for the sink at once. */
  readonly peakInFlightBytes: number;
  /** With the `buffer` option: the buffer holding the state in `[0, bytes)`. */
  readonly buffer?: Buffer;
}

/** Where and how to fetch a state. */
export interface KvFetchOptions {
  readonly host: string;
  readonly port: number;
  readonly transferId: string;
  /** A new sink per attempt (default: positional writes to `path`). */
  readonly sink?: () => Writable;
  /**
   * Receive into memory instead of a file: called at META with the state's size, it returns a buffer
   * at least that long (one kept for reuse, or a new one); the result's `buffer` holds the state.
   * The whole state is then in memory at once (the in-flight bound still bounds the receive buffers).
   */
  readonly buffer?: (bytes: number) => Buffer;
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
  /**
   * Stops the fetch (a decode whose client left): the connection is destroyed, nothing is retried,
   * and the fetch rejects with KvFetchAbortedError. Without it only `idleTimeoutMs` ends a fetch.
   */
  readonly signal?: AbortSignal;
}

/** A fetch stopped by its `signal`: not a transfer failure, never retried. */
export class KvFetchAbortedError extends Error {
  override readonly name = 'AbortError';
}

function abortedError(options: KvFetchOptions): KvFetchAbortedError {
  const reason = options.signal?.reason;
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  return new KvFetchAbortedError(
    `KV state '${options.transferId}' fetch from ${options.host}:${options.port} was aborted (${why})`,
    { cause: reason },
  );
}

/**
 * Pulls one state from a KvStateServer into a sink, retrying a dropped connection `retriesMax` times.
 * Throws SY_ERR_KV_TRANSFER_FAILED naming the last failure when every attempt failed, and
 * KvFetchAbortedError (at once, no retry) when `signal` fires.
 */
export async function fetchKvState(options: KvFetchOptions): Promise<KvFetchResult> {
  const retriesMax = options.retriesMax ?? RETRIES_MAX_DEFAULT;
  let last: Error | undefined;
  for (let attempt = 1; attempt <= retriesMax + 1; attempt++) {
    if (options.signal?.aborted) throw abortedError(options);
    try {
      const got = await fetchOnce(options);
      return { ...got, attempts: attempt };
    } catch (error) {
      if (error instanceof KvFetchAbortedError || options.signal?.aborted) throw abortedError(options);
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

/** Where a fetch's DATA goes, piece by piece, each at its offset in the state. */
interface PieceSink {
  /** At META: the state's size (a memory sink takes its buffer). */
  begin?(bytes: number): void;
  /** A memory sink's buffer, after finish. */
  readonly buffer?: Buffer | undefined;
  /** Writes `piece` (a view into a receive buffer) at `position`; `done` once its memory is free. */
  write(piece: Buffer, position: number, done: (error?: Error | null) => void): void;
  /** After the last piece was done: the state is `bytes` long and stored. */
  finish(bytes: number): Promise<void>;
  /** Drops it after a failure (a file is closed once its writes came back). */
  abort(): void;
}

/**
 * A state file written with positional writes straight from the receive buffers (no reassembly).
 * It is opened without truncation and cut to the state's size at the end: a file kept for reuse
 * keeps its pages (on tmpfs, allocating and zeroing fresh pages costs about as much as the network).
 */
class FileSink implements PieceSink {
  private readonly fd: number;
  private pending = 0;
  private aborted = false;
  private closed = false;

  constructor(path: string) {
    // Opening, cutting and closing are synchronous: microseconds on a local or tmpfs file, where a
    // thread-pool round trip each costs a wake-up of a pool thread and of the event loop (measured
    // on the small states between engines, where these fixed costs are most of a transfer).
    this.fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT, 0o600);
  }

  write(piece: Buffer, position: number, done: (error?: Error | null) => void): void {
    this.pending++;
    fsWrite(this.fd, piece, 0, piece.length, position, (error) => {
      this.pending--;
      done(error);
      if (this.aborted && this.pending === 0) this.close();
    });
  }

  async finish(bytes: number): Promise<void> {
    ftruncateSync(this.fd, bytes);
    this.close();
  }

  abort(): void {
    this.aborted = true;
    if (this.pending === 0) this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/**
 * A state received into one buffer (the caller's, at META). Its connection reads DATA payload
 * straight into the buffer at its offset (`transferOn`'s `nextBuffer`: the socket's reads land in a
 * view of it, no copy); pieces that arrived in a receive buffer anyway (those after a frame header
 * in the same read) are copied to their offset.
 */
class BufferSink implements PieceSink {
  buffer: Buffer | undefined;

  constructor(private readonly take: (bytes: number) => Buffer) {}

  begin(bytes: number): void {
    const buffer = this.take(bytes);
    if (buffer.byteLength < bytes)
      throw new Error(`a ${buffer.byteLength}-byte buffer for a ${bytes}-byte state`);
    this.buffer = buffer;
  }

  write(piece: Buffer, position: number, done: (error?: Error | null) => void): void {
    piece.copy(this.buffer as Buffer, position);
    done();
  }

  async finish(): Promise<void> {}

  abort(): void {
    this.buffer = undefined;
  }
}

/** A caller's Writable as a sink (pieces arrive in order, so positions are implied). */
class StreamSink implements PieceSink {
  constructor(
    private readonly stream: Writable,
    onError: (error: Error) => void,
  ) {
    stream.on('error', onError);
  }

  write(piece: Buffer, _position: number, done: (error?: Error | null) => void): void {
    this.stream.write(piece, done);
  }

  async finish(): Promise<void> {
    const finished = once(this.stream, 'finish');
    this.stream.end();
    await finished;
  }

  abort(): void {
    this.stream.destroy();
  }
}

function openSink(options: KvFetchOptions, onError: (error: Error) => void): PieceSink {
  if (options.sink !== undefined) return new StreamSink(options.sink(), onError);
  if (options.buffer !== undefined) return new BufferSink(options.buffer);
  if (options.path === undefined) throw new Error('fetchKvState needs a sink or a path');
  return new FileSink(options.path);
}

/**
 * The receive buffers of one connection: each socket read lands in one (node's `onread`), DATA
 * pieces go to the sink as views into it, and a buffer is read into again once the sink is done
 * with every piece in it. At most `countMax` exist, so bytes waiting for the sink stay under
 * `countMax * bytes`; when the next read would have no free buffer, the socket pauses.
 */
class ReceiveBuffers {
  /** The buffer the socket reads into next; never one the sink still holds. */
  current: Buffer;
  private readonly free: Buffer[] = [];
  private readonly refs = new Map<Buffer, number>();
  private created = 1;
  /** Its socket closed and its buffers went back to the store. */
  private retired = false;

  constructor(
    readonly bytes: number,
    readonly countMax: number,
  ) {
    this.current = this.take();
  }

  /** One more piece of `buffer` is with the sink. */
  hold(buffer: Buffer): void {
    this.refs.set(buffer, (this.refs.get(buffer) ?? 0) + 1);
  }

  /** The sink is done with one piece of `buffer`; true when a paused socket may read again. */
  release(buffer: Buffer): boolean {
    const left = (this.refs.get(buffer) ?? 1) - 1;
    if (left > 0) {
      this.refs.set(buffer, left);
      return false;
    }
    this.refs.delete(buffer);
    if (buffer !== this.current) this.free.push(buffer);
    return this.available >= 1;
  }

  /**
   * After a read into `buffer`: false when the socket must pause (the next buffer handed out is the
   * last one available, so the read after it would have none).
   */
  mayReadOn(buffer: Buffer): boolean {
    return !this.refs.has(buffer) || this.available > 1;
  }

  /** The buffer for the next read (node's `onread.buffer`, called after each read). */
  next(): Buffer {
    if (this.refs.has(this.current)) {
      const free = this.free.pop();
      if (free !== undefined) this.current = free;
      else if (this.created < this.countMax) {
        this.created++;
        this.current = this.take();
      }
      // else: unreachable, mayReadOn paused the socket before the last one was handed out.
    }
    return this.current;
  }

  /** Buffers the sink holds pieces of. */
  get held(): number {
    return this.refs.size;
  }

  /**
   * Gives the free buffers back to the process's store; `current` too once the socket closed (until
   * then it may read into it).
   */
  recycle(withCurrent = false): void {
    if (this.retired) return;
    // Given away, so no longer counted: the connection takes fresh ones for its next transfer.
    for (const buffer of this.free.splice(0)) {
      receiveStore.give(buffer);
      this.created--;
    }
    if (!withCurrent) return;
    // Once: a buffer given twice would be shared by two transfers.
    this.retired = true;
    if (!this.refs.has(this.current)) receiveStore.give(this.current);
  }

  private get available(): number {
    return this.free.length + this.countMax - this.created;
  }

  private take(): Buffer {
    return this.bytes === RECEIVE_BUFFER_BYTES ? receiveStore.take() : Buffer.allocUnsafeSlow(this.bytes);
  }
}

/** Idle connections a process keeps per KV server (peer), for its next fetches from there. */
export const CLIENT_CONNECTIONS_PER_PEER_MAX = 4;
/** Idle connections a process keeps in all (each holds one receive buffer, 1 MiB). */
export const CLIENT_CONNECTIONS_KEPT_MAX = 16;
/** An idle kept connection is closed after this long (the server waits longer: SERVER_KEEP_ALIVE_MS). */
export const CLIENT_KEEP_ALIVE_MS = 5_000;

/** What one transfer on a connection is told. */
interface TransferHandlers {
  /** A socket read of `bytes` bytes into `buffer`; false pauses the socket. */
  onRead(bytes: number, buffer: Buffer): boolean;
  /** The connection failed or closed. */
  onGone(error: Error): void;
  /**
   * Where the next socket read goes, when the transfer wants it somewhere of its own (a state
   * received into memory reads DATA straight into its buffer); undefined: a receive buffer.
   */
  nextBuffer?(): Buffer | undefined;
}

/** Counters of this process's kept-alive KV connections (for tests and `/pd/stats`). */
export const kvConnectionStats = { opened: 0, reused: 0, reopened: 0 };

/** This process's KV client connections, as a decode engine's `/pd/stats` shows them. */
export interface KvConnectionCounters {
  /** Fresh connections opened (a first fetch from a peer, or none kept idle for it). */
  readonly opened: number;
  /** Fetches answered on a kept-alive connection (one found closed first counts in `reopened`). */
  readonly reused: number;
  /** Kept connections found closed at their next fetch and replaced by a fresh one. */
  readonly reopened: number;
  /** Idle connections kept now (at most CLIENT_CONNECTIONS_KEPT_MAX). */
  readonly idle: number;
}

/** A snapshot of the counters and the idle connections kept now. */
export function kvConnectionCounters(): KvConnectionCounters {
  return { ...kvConnectionStats, idle: idleCount };
}

/**
 * A connection to a KV server with its receive buffers (node's `onread`: reads land in them, not
 * in fresh buffers). Between transfers it waits, unreferenced, in the process's pool.
 */
class KvConnection {
  readonly socket: Socket;
  readonly buffers: ReceiveBuffers;
  handlers: TransferHandlers | undefined;
  /** Transfers completed on it. */
  served = 0;

  constructor(
    readonly key: string,
    host: string,
    port: number,
    bufferBytes: number,
    countMax: number,
  ) {
    this.buffers = new ReceiveBuffers(bufferBytes, countMax);
    this.socket = createConnection({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => this.handlers?.nextBuffer?.() ?? this.buffers.next(),
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          if (this.handlers === undefined) {
            // Bytes while idle: the server broke the protocol; this connection is not reused.
            this.socket.destroy();
            return false;
          }
          return this.handlers.onRead(bytes, buffer as Buffer);
        },
      },
    });
    kvConnectionStats.opened++;
    this.socket.on('error', (error) => this.gone(error));
    this.socket.on('close', () => this.gone(new Error('the connection closed')));
    // One listener for the connection's life (a transfer's stall, or an idle connection's age).
    this.socket.on('timeout', () =>
      this.handlers === undefined
        ? this.socket.destroy()
        : this.handlers.onGone(new Error('the transfer stalled')),
    );
  }

  /** True when it can carry another transfer. */
  get usable(): boolean {
    return !this.socket.destroyed && this.socket.writable && this.socket.readyState === 'open';
  }

  private gone(error: Error): void {
    dropIdle(this);
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.onGone(error);
    if (this.socket.destroyed && handlers === undefined) this.buffers.recycle(true);
  }
}

/** Idle connections by peer (`host:port:bufferBytes:count`). */
const idleConnections = new Map<string, KvConnection[]>();
let idleCount = 0;

/** An idle connection to `key`'s peer, or undefined. */
function takeIdle(key: string): KvConnection | undefined {
  const list = idleConnections.get(key);
  while (list !== undefined && list.length > 0) {
    const connection = list.pop() as KvConnection;
    idleCount--;
    if (list.length === 0) idleConnections.delete(key);
    if (!connection.usable) {
      connection.socket.destroy();
      continue;
    }
    connection.socket.setTimeout(0);
    connection.socket.ref();
    return connection;
  }
  return undefined;
}

/** Puts a connection whose transfer completed back in the pool, or closes it when the pool is full. */
function keepIdle(connection: KvConnection): void {
  const list = idleConnections.get(connection.key) ?? [];
  if (
    !connection.usable ||
    list.length >= CLIENT_CONNECTIONS_PER_PEER_MAX ||
    idleCount >= CLIENT_CONNECTIONS_KEPT_MAX
  ) {
    connection.socket.end();
    return;
  }
  list.push(connection);
  idleConnections.set(connection.key, list);
  idleCount++;
  connection.socket.unref();
  connection.socket.setTimeout(CLIENT_KEEP_ALIVE_MS);
}

/** Forgets an idle connection that closed. */
function dropIdle(connection: KvConnection): void {
  const list = idleConnections.get(connection.key);
  const at = list?.indexOf(connection) ?? -1;
  if (list === undefined || at < 0) return;
  list.splice(at, 1);
  idleCount--;
  if (list.length === 0) idleConnections.delete(connection.key);
}

/** Idle connections kept now: in all, and to one peer. */
export function kvIdleConnections(host?: string, port?: number): number {
  if (host === undefined) return idleCount;
  let n = 0;
  for (const [key, list] of idleConnections) if (key.startsWith(`${host}:${port}:`)) n += list.length;
  return n;
}

/** Closes every idle kept connection (a process about to exit, or a test). */
export function closeIdleKvConnections(): void {
  const lists = [...idleConnections.values()];
  idleConnections.clear();
  idleCount = 0;
  for (const list of lists) for (const connection of list) connection.socket.destroy();
}

/**
 * One attempt: on a kept connection when there is one (a kept connection that turns out closed
 * before any answer is replaced by a fresh one, not counted as an attempt), else a fresh one.
 */
async function fetchOnce(options: KvFetchOptions): Promise<Omit<KvFetchResult, 'attempts'>> {
  const inFlightMax = options.inFlightBytesMax ?? IN_FLIGHT_BYTES_MAX_DEFAULT;
  // At least two buffers, so the socket reads into one while the sink writes the other.
  const bufferBytes = Math.max(1, Math.min(RECEIVE_BUFFER_BYTES, Math.floor(inFlightMax / 2)));
  const countMax = Math.max(2, Math.floor(inFlightMax / bufferBytes));
  const key = `${options.host}:${options.port}:${bufferBytes}:${countMax}`;
  const kept = takeIdle(key);
  if (kept !== undefined) {
    try {
      // Counted at its first answer: a kept connection found closed first is `reopened` instead.
      return await transferOn(kept, options, () => kvConnectionStats.reused++);
    } catch (error) {
      if (!(error instanceof StaleConnection)) throw error;
      kvConnectionStats.reopened++;
    }
  }
  if (options.signal?.aborted) throw abortedError(options);
  return transferOn(new KvConnection(key, options.host, options.port, bufferBytes, countMax), options);
}

/** A kept connection that closed before its transfer got any answer. */
class StaleConnection extends Error {}

/**
 * One transfer on a connection: HELLO, then META, DATA to the sink under the in-flight bound, END,
 * DONE. `onAnswered` runs once, at the first bytes the server sends back.
 */
function transferOn(
  connection: KvConnection,
  options: KvFetchOptions,
  onAnswered?: () => void,
): Promise<Omit<KvFetchResult, 'attempts'>> {
  const { socket, buffers } = connection;
  const reused = connection.served > 0;
  return new Promise((resolve, reject) => {
    let meta: { bytes: number; tokens: number } | undefined;
    let answered = false;
    let received = 0;
    let inFlight = 0;
    let peak = 0;
    let settled = false;
    let ended = false;
    let paused = false;
    /** The buffer of the read being decoded. */
    let reading: Buffer = buffers.current;
    /** A view of the memory sink's buffer the next read was given (DATA read straight in place). */
    let direct: Buffer | undefined;
    /** The next read of a frame header, when the read after it is to go in place. */
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    const onAbort = (): void => fail(abortedError(options));
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      connection.handlers = undefined;
      socket.destroy();
      sink?.abort();
      const stale = reused && !answered && !(error instanceof KvFetchAbortedError);
      reject(stale ? new StaleConnection(error.message) : error);
    };
    let sink: PieceSink | undefined;
    try {
      sink = openSink(options, fail);
    } catch (error) {
      settled = true;
      keepIdle(connection);
      reject(error);
      return;
    }
    const finish = async (): Promise<void> => {
      if (meta === undefined) throw new Error('END before META');
      if (received !== meta.bytes) throw new Error(`END after ${received} of ${meta.bytes} bytes`);
      await sink?.finish(meta.bytes);
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      connection.handlers = undefined;
      connection.served++;
      buffers.recycle();
      socket.setTimeout(0);
      socket.write(controlFrame(FrameType.done, {}));
      keepIdle(connection);
      const buffer = sink?.buffer;
      resolve({
        bytes: meta.bytes,
        tokens: meta.tokens,
        peakInFlightBytes: peak,
        ...(buffer === undefined ? {} : { buffer }),
      });
    };
    const pieceDone = (buffer: Buffer, bytes: number, error?: Error | null): void => {
      if (error) {
        fail(error);
        return;
      }
      inFlight -= bytes;
      if (buffers.release(buffer) && paused && !settled) {
        paused = false;
        socket.resume();
      }
      if (ended && inFlight === 0) finish().catch(fail);
    };
    const decoder = new FrameDecoder({
      onData: (piece) => {
        if (meta === undefined) throw new Error('DATA before META');
        if (received + piece.length > meta.bytes)
          throw new Error(`more than the ${meta.bytes} bytes announced`);
        const buffer = reading;
        const bytes = piece.length;
        buffers.hold(buffer);
        inFlight += bytes;
        peak = Math.max(peak, inFlight);
        sink?.write(piece, received, (error) => pieceDone(buffer, bytes, error));
        received += bytes;
      },
      onControl: (type, payload) => {
        if (type === FrameType.meta && meta === undefined) {
          meta = JSON.parse(payload.toString('utf8')) as { bytes: number; tokens: number };
          if (!Number.isSafeInteger(meta.bytes) || meta.bytes < 0)
            throw new Error('META without a byte count');
          sink?.begin?.(meta.bytes);
        } else if (type === FrameType.end && meta !== undefined && !ended) {
          ended = true;
          if (inFlight === 0) finish().catch(fail);
        } else if (type === FrameType.error) {
          fail(new Error((JSON.parse(payload.toString('utf8')) as { message?: string }).message ?? 'error'));
        } else {
          throw new Error(`unexpected frame type ${type}`);
        }
      },
    });
    connection.handlers = {
      nextBuffer: () => {
        direct = undefined;
        const target = sink instanceof BufferSink ? sink.buffer : undefined;
        if (settled || target === undefined || meta === undefined || received >= meta.bytes) return undefined;
        const inFrame = decoder.dataRemaining;
        if (inFrame > 0) {
          direct = target.subarray(received, received + Math.min(inFrame, meta.bytes - received));
          return direct;
        }
        // Between frames, more DATA to come: read just the header, so the payload after it is read
        // in place (a receive buffer would take up to a MiB of it, to be copied).
        const wanted = decoder.headerWanted;
        return wanted > 0 ? header.subarray(0, wanted) : undefined;
      },
      onRead: (bytes, buffer) => {
        if (settled) return false;
        if (!answered) {
          answered = true;
          onAnswered?.();
        }
        if (direct !== undefined && buffer === direct) {
          direct = undefined;
          try {
            decoder.skipData(bytes);
          } catch (error) {
            fail(error as Error);
            return false;
          }
          received += bytes;
          return true;
        }
        reading = buffer;
        try {
          decoder.push(reading.subarray(0, bytes));
        } catch (error) {
          fail(error as Error);
          return false;
        }
        if (buffers.mayReadOn(reading)) return true;
        paused = true;
        return false;
      },
      onGone: (error) =>
        fail(
          error.message === 'the connection closed'
            ? new Error(`the connection closed after ${received} bytes`)
            : error,
        ),
    };
    socket.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS_DEFAULT);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const hello = controlFrame(FrameType.hello, { transferId: options.transferId });
    if (socket.readyState === 'open') socket.write(hello);
    else socket.once('connect', () => socket.write(hello));
  });
}
