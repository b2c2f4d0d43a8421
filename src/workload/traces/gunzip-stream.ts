/**
 * A gzip file's decompressed bytes, a piece at a time, for the synchronous trace reader (text.ts
 * `fileLines`): the twin reads its workload synchronously, and node's zlib decompresses
 * synchronously only in one call (gunzipSync), which held the whole inflated text in memory before
 * the first line. Here a worker thread streams the file through zlib.createGunzip() and hands each
 * piece over one shared buffer (Atomics wait/notify), so memory stays at one piece, as for a plain
 * file, and a reader that stops early stops the decompression with it.
 */
import { Worker } from 'node:worker_threads';

/** Bytes of decompressed text handed over at once. */
export const GUNZIP_PIECE_BYTES = 1024 * 1024;

/**
 * Longest wait for the worker's next piece: the worker answers within a read and an inflate of
 * one piece, so a wait this long means it is gone (it could not start, or was killed) or its reads
 * block (a pipe nobody writes to), and the read fails with GunzipTimeoutError rather than hang.
 */
export const GUNZIP_PIECE_WAIT_MS = 60_000;

/**
 * The worker gave no piece within the wait bound: not damaged data (the bytes read so far were
 * sound), so the caller reports it as a timeout, not as a corrupt file.
 */
export class GunzipTimeoutError extends Error {
  /** The bound that passed, in milliseconds. */
  readonly waitMs: number;

  constructor(waitMs: number) {
    super(`no decompressed data for ${waitMs / 1000} s: the gunzip worker stopped or its reads block`);
    this.name = 'GunzipTimeoutError';
    this.waitMs = waitMs;
  }
}

// The shared buffer: four int32 slots of control, then the piece (or an error's message).
const STATE = 0;
const LENGTH = 1;
const CONTROL_BYTES = 16;
/** Slot empty: the worker may write the next piece. */
const EMPTY = 0;
/** A piece is there: the reader takes it. */
const FULL = 1;
/** The file ended (nothing more after the last piece taken). */
const END = 2;
/** Reading or decompressing failed; the message is in the data area. */
const FAILED = 3;
/** The reader stopped: the worker ends. */
const CLOSED = 4;

/** The worker, plain JavaScript run from a string (eval), so it needs no loader. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { createReadStream } = require('node:fs');
const { createGunzip } = require('node:zlib');
const control = new Int32Array(workerData.shared, 0, 4);
const data = new Uint8Array(workerData.shared, ${CONTROL_BYTES});
function handOver(state, bytes) {
  for (;;) {
    const now = Atomics.load(control, ${STATE});
    if (now === ${CLOSED}) return false;
    if (now === ${EMPTY}) break;
    Atomics.wait(control, ${STATE}, now);
  }
  data.set(bytes);
  Atomics.store(control, ${LENGTH}, bytes.length);
  Atomics.store(control, ${STATE}, state);
  Atomics.notify(control, ${STATE});
  return true;
}
function fail(error) {
  const text = Buffer.from(String((error && error.message) || error)).subarray(0, data.length);
  handOver(${FAILED}, text);
  process.exit(0);
}
process.on('uncaughtException', fail);
const input = createReadStream(workerData.path);
const gunzip = createGunzip();
input.on('error', fail);
gunzip.on('error', fail);
gunzip.on('data', (chunk) => {
  for (let at = 0; at < chunk.length; at += data.length) {
    if (!handOver(${FULL}, chunk.subarray(at, at + data.length))) process.exit(0);
  }
});
gunzip.on('end', () => {
  handOver(${END}, new Uint8Array(0));
  process.exit(0);
});
input.pipe(gunzip);
`;

/**
 * Decompressed pieces of one gzip file, in order; `next()` blocks until the worker has one. Call
 * `close()` when done (always, early or not): it ends the worker.
 */
export class GunzipPieces {
  private readonly control: Int32Array;
  private readonly data: Uint8Array;
  private readonly worker: Worker;
  private finished = false;
  private readonly waitMs: number;

  /** `waitMs`: the bound on one wait for the next piece (GUNZIP_PIECE_WAIT_MS). */
  constructor(path: string, waitMs = GUNZIP_PIECE_WAIT_MS) {
    this.waitMs = waitMs;
    const shared = new SharedArrayBuffer(CONTROL_BYTES + GUNZIP_PIECE_BYTES);
    this.control = new Int32Array(shared, 0, 4);
    this.data = new Uint8Array(shared, CONTROL_BYTES);
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, shared } });
    // A reader that stops early must not keep the process alive.
    this.worker.unref();
  }

  /**
   * The next piece of decompressed bytes (a copy; empty once the file ended). Throws an Error with
   * zlib's or the file system's message when reading or decompressing failed, and a
   * GunzipTimeoutError when no piece came within the wait bound.
   */
  next(): Buffer {
    if (this.finished) return Buffer.alloc(0);
    let state = Atomics.load(this.control, STATE);
    if (state === EMPTY) {
      // Waited for in a loop, within the one bound: a wait can end with the slot still empty. V8
      // returned 'ok' so a few times in a hundred replays of the Mooncake trace on a loaded machine,
      // and the empty slot, read as the end of the file, cut the text mid-line (a parse error
      // naming a row that is sound).
      const deadline = performance.now() + this.waitMs;
      while (state === EMPTY) {
        const left = deadline - performance.now();
        if (left <= 0 || Atomics.wait(this.control, STATE, EMPTY, left) === 'timed-out') {
          this.close();
          throw new GunzipTimeoutError(this.waitMs);
        }
        state = Atomics.load(this.control, STATE);
      }
    }
    const length = Atomics.load(this.control, LENGTH);
    const bytes = Buffer.from(this.data.subarray(0, length));
    if (state === FULL) {
      Atomics.store(this.control, STATE, EMPTY);
      Atomics.notify(this.control, STATE);
      return bytes;
    }
    this.finished = true;
    if (state === FAILED) throw new Error(bytes.toString('utf8'));
    return Buffer.alloc(0);
  }

  /**
   * The control words the worker and the reader share (slot 0: the piece slot's state). For tests:
   * a thread that calls `Atomics.notify` on slot 0 wakes a waiting reader with no piece there.
   */
  get controlForTests(): Int32Array {
    return this.control;
  }

  /** Ends the worker (it stops reading and decompressing); safe to call more than once. */
  close(): void {
    this.finished = true;
    Atomics.store(this.control, STATE, CLOSED);
    Atomics.notify(this.control, STATE);
    void this.worker.terminate();
  }
}
