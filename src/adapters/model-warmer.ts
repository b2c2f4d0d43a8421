/**
 * Keeps model weights warm in host memory through the OS page cache: a model file read once
 * sequentially sits in the page cache, where the next engine's mmap finds it (the llama engine maps
 * its GGUF), so a restart skips the disk. Two uses:
 *
 * - `preReadFile` when an engine starts: read the file alongside the engine's own start-up (Node,
 *   node-llama-cpp's binding), so a model on disk is in memory by the time the engine maps it.
 * - `ModelWarmer` on a node: warm a model when its engine stops (or before one starts), and re-read
 *   the models it keeps (`refresh`) so pages the kernel evicted come back, within a byte budget.
 *
 * Node has no posix_fadvise(WILLNEED) and no mincore, so warming is a plain read into one reused
 * buffer: from the page cache it costs a memory copy (about 30 ms per 600 MB here), from disk the
 * disk's sequential bandwidth. Nothing is pinned: under memory pressure the kernel may still evict.
 */
import { readFileSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { freemem } from 'node:os';
import { performance } from 'node:perf_hooks';

/** Bytes read per call by default: large enough for full sequential bandwidth, small enough to share. */
export const PRE_READ_CHUNK_BYTES_DEFAULT = 4 << 20;

/** Share of MemAvailable a node's warm cache takes by default: the rest is for engines and the OS. */
export const WARM_CACHE_SHARE_DEFAULT = 0.25;
/** Most bytes a node's warm cache takes by default, however much memory is free. */
export const WARM_CACHE_BYTES_MAX_DEFAULT = 16 * 2 ** 30;

/**
 * The default budget of a node's warm cache: WARM_CACHE_SHARE_DEFAULT of MemAvailable (from
 * /proc/meminfo, which counts reclaimable page cache; elsewhere os.freemem()), at most
 * WARM_CACHE_BYTES_MAX_DEFAULT. `meminfo` is for tests.
 */
export function warmCacheBytesDefault(meminfo?: string): number {
  let availableBytes = freemem();
  try {
    const text = meminfo ?? readFileSync('/proc/meminfo', 'utf8');
    const match = /^MemAvailable:\s+(\d+) kB$/m.exec(text);
    if (match !== null) availableBytes = Number(match[1]) * 1024;
  } catch {
    // No /proc (not Linux): freemem() it is.
  }
  return Math.min(WARM_CACHE_BYTES_MAX_DEFAULT, Math.floor(availableBytes * WARM_CACHE_SHARE_DEFAULT));
}

/** What a pre-read did. */
export interface PreReadResult {
  /** Bytes read (the whole file, unless aborted). */
  readonly bytes: number;
  readonly elapsedMs: number;
  /** True when the signal stopped it before the end. */
  readonly aborted: boolean;
}

/** Options of `preReadFile`. */
export interface PreReadOptions {
  readonly chunkBytes?: number;
  /** Stops the read between chunks. */
  readonly signal?: AbortSignal;
}

/**
 * Reads `path` from start to end into one reused buffer (so its pages land in the page cache) and
 * discards the bytes. Rejects when the file cannot be opened or read.
 */
export async function preReadFile(path: string, options: PreReadOptions = {}): Promise<PreReadResult> {
  const chunkBytes = options.chunkBytes ?? PRE_READ_CHUNK_BYTES_DEFAULT;
  const startMs = performance.now();
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(chunkBytes);
    let bytes = 0;
    for (;;) {
      if (options.signal?.aborted === true) {
        return { bytes, elapsedMs: performance.now() - startMs, aborted: true };
      }
      const { bytesRead } = await file.read(buffer, 0, chunkBytes, bytes);
      if (bytesRead === 0) break;
      bytes += bytesRead;
    }
    return { bytes, elapsedMs: performance.now() - startMs, aborted: false };
  } finally {
    await file.close();
  }
}

/** Options of a `ModelWarmer`. */
export interface ModelWarmerOptions {
  /** Most bytes of model files kept warm at once; the least recently warmed go first. */
  readonly budgetBytes: number;
  readonly chunkBytes?: number;
  /** The size of a file (for tests); default `stat`. */
  readonly sizeOf?: (path: string) => Promise<number>;
  /** How a file is read in (for tests); default `preReadFile`. */
  readonly read?: (path: string) => Promise<unknown>;
}

/** What `warm` did with one model file. */
export type WarmOutcome =
  | { readonly warmed: true; readonly bytes: number; readonly dropped: readonly string[] }
  | { readonly warmed: false; readonly bytes: number; readonly reason: 'over-budget' };

/**
 * A node's set of warm model files, most recently warmed last, whose sizes add up to at most
 * `budgetBytes`. Warming a file reads it in and moves it to the end; files that no longer fit are
 * dropped from the set (no longer re-read; the kernel evicts them when it needs the memory).
 */
export class ModelWarmer {
  /** Files read in by `warm` (refreshes not counted). */
  warms = 0;
  private readonly keptBytes = new Map<string, number>();
  private readonly sizeOf: (path: string) => Promise<number>;
  private readonly read: (path: string) => Promise<unknown>;

  constructor(private readonly options: ModelWarmerOptions) {
    if (!(options.budgetBytes >= 0))
      throw new RangeError(`budgetBytes must be >= 0, got ${options.budgetBytes}`);
    this.sizeOf = options.sizeOf ?? (async (path) => (await stat(path)).size);
    const chunkBytes = options.chunkBytes ?? PRE_READ_CHUNK_BYTES_DEFAULT;
    this.read = options.read ?? ((path) => preReadFile(path, { chunkBytes }));
  }

  /** The budget this warmer keeps within. */
  get budgetBytes(): number {
    return this.options.budgetBytes;
  }

  /** The files kept warm, least recently warmed first. */
  get kept(): readonly string[] {
    return [...this.keptBytes.keys()];
  }

  /** Bytes of the files kept warm. */
  get bytes(): number {
    let sum = 0;
    for (const b of this.keptBytes.values()) sum += b;
    return sum;
  }

  /** Reads `path` in and keeps it warm, dropping the least recently warmed files past the budget. */
  async warm(path: string): Promise<WarmOutcome> {
    const bytes = await this.sizeOf(path);
    if (bytes > this.options.budgetBytes) return { warmed: false, bytes, reason: 'over-budget' };
    this.keptBytes.delete(path);
    const dropped: string[] = [];
    let total = this.bytes;
    for (const [other, otherBytes] of this.keptBytes) {
      if (total + bytes <= this.options.budgetBytes) break;
      this.keptBytes.delete(other);
      dropped.push(other);
      total -= otherBytes;
    }
    this.keptBytes.set(path, bytes);
    this.warms++;
    await this.read(path);
    return { warmed: true, bytes, dropped };
  }

  /** Re-reads every kept file (pages the kernel evicted come back); a file gone is dropped. */
  async refresh(): Promise<void> {
    for (const path of this.kept) {
      try {
        await this.read(path);
      } catch {
        this.keptBytes.delete(path);
      }
    }
  }

  /** Stops keeping `path` warm. */
  forget(path: string): void {
    this.keptBytes.delete(path);
  }
}
