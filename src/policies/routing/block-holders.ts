/**
 * Which instance holds which prefix block, and the longest leading match of a chain on every
 * instance at once. Shared by the prefix-aware policies: `kv-events` feeds it precise engine block
 * hashes from KV events; `kv-cost`, `mooncake` and `preble` feed it chain hashes learned from their
 * own routing (approximate).
 *
 * Layout: a global table from block hash to its holders, and per instance an insertion-ordered set
 * of its hashes, oldest first, which gives both `clear` and a bounded LRU/FIFO. A block held by one
 * instance (the common case) maps to that slot number; one held by several maps to an entry in a pool
 * of holder lists (a list of slots plus two order-free fingerprints of it). The table is an
 * open-addressing int table (`int-table.ts`): one cache line per lookup, where a V8 Map costs two or
 * three, and no 2^24-entry ceiling (1,000 instances of 28,000 blocks each is already past it).
 *
 * Why the fingerprints: the common warm state is a long run of blocks all held by the same set of
 * instances (a system prompt on every instance, a long document on a few). Walking such a run
 * holder by holder costs blocks x holders (64 blocks x 1,000 instances is already too slow for a
 * 0.5 ms decision). A block whose holder set equals that of the block last intersected with cannot
 * change who is still matching, so it costs one map lookup. Equality is judged by size plus an XOR
 * and a sum of per-slot mixes (64 bits together); a false "equal" needs two different sets of the
 * same size to collide in both, about 2^-64 per comparison.
 *
 * Keys are stored as int32 (`hash | 0`): V8 keeps those as small integers, while uint32 hashes above
 * 2^31 are heap numbers and make every map lookup several times slower.
 */

import { CHAIN_ROOT } from '../../core/hash.ts';
import type { PrefixChain } from '../../core/request.ts';
import { INT_TABLE_MISSING, IntTable } from './int-table.ts';

/**
 * A chain of block hashes read front to back, so a match stops reading (and hashing) where the match
 * stops. Either a chain already in an array, or the engine-granularity chained hashes of a prompt
 * computed lazily: the same values, in the same order, as `engineBlockHashes(prefix, inputTokens,
 * blockSize)` in src/engine/prefix.ts (its doc explains the construction; a test holds the two
 * equal). One class for both, so the match loop's call to `next` stays monomorphic and inlined
 * (two cursor classes in one process made it a third slower).
 */
export class ChainCursor {
  private engine = false;
  private chain: readonly number[] = [];
  private chainTokens = 1;
  private blockSize = 1;
  private count = 0;
  private e = 0;
  private parent = CHAIN_ROOT | 0;
  private chainIndex = -1;
  private firstInChain = 0;

  /** Starts over on a chain already in an array; returns this. */
  array(hashes: readonly number[]): this {
    this.engine = false;
    this.chain = hashes;
    this.count = hashes.length;
    this.e = 0;
    return this;
  }

  /** Starts over on a prompt's engine block hashes at `blockSize`; returns this. */
  engineBlocks(prefix: PrefixChain, inputTokens: number, blockSize: number): this {
    this.engine = true;
    this.chain = prefix.hashes;
    this.chainTokens = prefix.blockTokens;
    this.blockSize = blockSize;
    const covered = Math.min(inputTokens, prefix.hashes.length * prefix.blockTokens);
    this.count = covered > 0 ? Math.floor(covered / blockSize) : 0;
    this.e = 0;
    this.parent = CHAIN_ROOT | 0;
    this.chainIndex = -1;
    this.firstInChain = 0;
    return this;
  }

  /** Blocks in the chain. */
  get length(): number {
    return this.count;
  }

  /** The next block's hash (an engine hash as int32, the same bits); at most `length` calls. */
  next(): number {
    const e = this.e++;
    if (!this.engine) return this.chain[e] as number;
    const c = Math.floor(((e + 1) * this.blockSize - 1) / this.chainTokens);
    if (c !== this.chainIndex) {
      this.chainIndex = c;
      this.firstInChain = e;
    }
    this.parent = chainHash32(this.parent, chainHash32(this.chain[c] as number, e - this.firstInChain));
    return this.parent;
  }
}

/**
 * `chainHash` from src/core/hash.ts with the same bits returned as an int32. A private copy for the
 * hot loop: the shared function is called across the process with mixed argument types (uint32
 * doubles, small integers), and its generalised type feedback made this loop over three times slower
 * in measurement. The test against `engineBlockHashes` holds the two equal.
 */
function chainHash32(parent: number, contentKey: number): number {
  let h = Math.imul(parent ^ 0x9e3779b9, 0x85ebca6b) ^ contentKey;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return h ^ (h >>> 15);
}

function mixA(slot: number): number {
  return chainHash32(0x2545f491, slot);
}

function mixB(slot: number): number {
  return chainHash32(0x68e31da4, slot);
}

/**
 * Instances an index tracks at once. Past it, registering a new instance recycles the slot of the
 * one registered least recently (instances that left the fleet stop being registered), forgetting
 * its blocks.
 */
export const BLOCK_HOLDER_INSTANCES_MAX = 16_384;

/** A bounded index of prefix blocks per instance with an all-instances longest-match query. */
export class BlockHolderIndex {
  /** Block hash -> holder slot (>= 0), or -(1 + p) for entry p of the pool when several hold it. */
  private readonly table = new IntTable();
  /** Pool entry p: the slots holding a block (two or more). */
  private readonly pool: number[][] = [];
  /**
   * Pool entry p's fingerprint at [4p .. 4p + 2]: count, XOR of mixA and sum of mixB over its slots.
   * Apart from the lists so the fast path of a match reads one small typed array, not two objects.
   */
  private poolMeta = new Int32Array(64);
  private readonly poolFree: number[] = [];
  private readonly slotOfId = new Map<string, number>();
  private readonly ids: string[] = [];
  private readonly blocks: Set<number>[] = [];
  private readonly lastUse: number[] = [];
  private readonly generations: number[] = [];
  private useTick = 0;
  private distinct = 0;
  private readonly arrayCursor = new ChainCursor();
  // Scratch for `match`, reused across calls; results are read through `matchedBlocks`.
  private alive = new Int32Array(16);
  private mark = new Int32Array(16);
  private matchedAt = new Int32Array(16);
  private matchedStamp = new Int32Array(16);
  private markStamp = 0;
  private matchStamp = 0;

  constructor(private readonly instancesMax: number = BLOCK_HOLDER_INSTANCES_MAX) {}

  /** The slot of an instance, or undefined if it is not registered. Read-only. */
  slotOf(instanceId: string): number | undefined {
    return this.slotOfId.get(instanceId);
  }

  /**
   * The slot of an instance, registering it on first sight and marking it recently used (hooks only,
   * never `decide`). At `instancesMax`, the least recently registered instance's slot is recycled:
   * its blocks are forgotten and its generation changes, so owners of per-slot state can reset it.
   */
  register(instanceId: string): number {
    let slot = this.slotOfId.get(instanceId);
    if (slot === undefined) slot = this.ids.length < this.instancesMax ? this.newSlot() : this.recycle();
    if (this.ids[slot] !== instanceId) {
      this.ids[slot] = instanceId;
      this.slotOfId.set(instanceId, slot);
    }
    this.lastUse[slot] = ++this.useTick;
    return slot;
  }

  /** Changes each time a slot is recycled for another instance. */
  generation(slot: number): number {
    return this.generations[slot] ?? 0;
  }

  /** Registered instances. */
  get slotCount(): number {
    return this.ids.length;
  }

  /** The instance id of a slot. */
  instanceId(slot: number): string {
    return this.ids[slot] as string;
  }

  /** Blocks an instance holds. */
  size(slot: number): number {
    return (this.blocks[slot] as Set<number>).size;
  }

  /** Distinct block hashes held by anyone. */
  get distinctBlocks(): number {
    return this.distinct;
  }

  /** Whether `slot` holds `hash`. */
  has(slot: number, hash: number): boolean {
    return (this.blocks[slot] as Set<number>).has(hash | 0);
  }

  /** Adds `hash` to `slot`, or marks it most recent if already there. */
  add(slot: number, hash: number): void {
    const key = hash | 0;
    const own = this.blocks[slot] as Set<number>;
    if (own.has(key)) {
      own.delete(key);
      own.add(key);
      return;
    }
    own.add(key);
    const v = this.table.get(key);
    if (v === INT_TABLE_MISSING) {
      this.table.set(key, slot);
      this.distinct++;
    } else if (v >= 0) {
      const p = this.poolFree.pop() ?? this.pool.length;
      this.pool[p] = [v, slot];
      if (4 * p + 4 > this.poolMeta.length) this.poolMeta = grow(this.poolMeta, 2 * this.poolMeta.length);
      const meta = this.poolMeta;
      meta[4 * p] = 2;
      meta[4 * p + 1] = mixA(v) ^ mixA(slot);
      meta[4 * p + 2] = (mixB(v) + mixB(slot)) | 0;
      this.table.set(key, -1 - p);
    } else {
      const p = -1 - v;
      (this.pool[p] as number[]).push(slot);
      const meta = this.poolMeta;
      meta[4 * p] = (meta[4 * p] as number) + 1;
      meta[4 * p + 1] = (meta[4 * p + 1] as number) ^ mixA(slot);
      meta[4 * p + 2] = ((meta[4 * p + 2] as number) + mixB(slot)) | 0;
    }
  }

  /** Removes `hash` from `slot`; nothing happens if it is not there. */
  remove(slot: number, hash: number): void {
    const key = hash | 0;
    const own = this.blocks[slot] as Set<number>;
    if (!own.delete(key)) return;
    this.dropHolder(slot, key);
  }

  /** Removes everything `slot` holds. */
  clear(slot: number): void {
    const own = this.blocks[slot] as Set<number>;
    for (const key of own) this.dropHolder(slot, key);
    own.clear();
  }

  /** Evicts the oldest (least recently added or touched) blocks of `slot` until it holds at most `capacity`. */
  trim(slot: number, capacity: number): void {
    const own = this.blocks[slot] as Set<number>;
    const keep = Math.max(0, Math.floor(capacity));
    if (own.size <= keep) return;
    for (const key of own) {
      if (own.size <= keep) break;
      own.delete(key);
      this.dropHolder(slot, key);
    }
  }

  /**
   * Records that `slot` holds the first `count` blocks of `hashes`, touching them from last to first
   * so a parent is always more recent than its children (eviction then removes children first and the
   * held set stays prefix-closed), then trims to `capacity`.
   */
  insertChain(slot: number, hashes: readonly number[], count: number, capacity: number): void {
    const n = Math.min(count, hashes.length, Math.max(0, Math.floor(capacity)));
    for (let i = n - 1; i >= 0; i--) this.add(slot, hashes[i] as number);
    this.trim(slot, capacity);
  }

  /** Longest consecutive leading match of `hashes` on one instance, in blocks. */
  longestMatch(slot: number, hashes: readonly number[]): number {
    const own = this.blocks[slot];
    if (own === undefined) return 0;
    let i = 0;
    while (i < hashes.length && own.has((hashes[i] as number) | 0)) i++;
    return i;
  }

  /** `matchCursor` over an array. */
  match(hashes: readonly number[]): number {
    return this.matchCursor(this.arrayCursor.array(hashes));
  }

  /**
   * Computes the longest consecutive leading match of a chain on every instance in one pass, reading
   * the chain only as far as someone still matches; read the result per slot with `matchedBlocks`
   * until the next call. Returns the longest match over all instances. Touches only scratch buffers,
   * never what the index holds.
   */
  matchCursor(chain: ChainCursor): number {
    const stamp = ++this.matchStamp;
    const length = chain.length;
    if (length === 0 || this.distinct === 0) return 0;
    const table = this.table;
    const pool = this.pool;
    const meta = this.poolMeta;
    const first = table.get(chain.next() | 0);
    if (first === INT_TABLE_MISSING) return 0;
    const alive = this.alive;
    // `alive` holds the instances matching every block so far, and is a subset of the holder set
    // last intersected with (`lastN`, `lastX`, `lastS`; `lastSingle` when that set has one slot).
    // A block held by exactly that set leaves `alive` unchanged.
    let n: number;
    let lastN: number;
    let lastSingle = -1;
    let lastX = 0;
    let lastS = 0;
    if (first >= 0) {
      alive[0] = first;
      n = 1;
      lastN = 1;
      lastSingle = first;
    } else {
      const p = -1 - first;
      const slots = pool[p] as number[];
      n = slots.length;
      for (let j = 0; j < n; j++) alive[j] = slots[j] as number;
      lastN = n;
      lastX = meta[4 * p + 1] as number;
      lastS = meta[4 * p + 2] as number;
    }
    let i = 1;
    for (; i < length; i++) {
      const v = table.get(chain.next() | 0);
      if (v === INT_TABLE_MISSING) break;
      if (v >= 0) {
        if (lastSingle === v) continue;
        // alive ∩ {v}: everyone but v drops out here.
        let kept = false;
        for (let j = 0; j < n; j++) {
          const slot = alive[j] as number;
          if (slot === v) kept = true;
          else this.record(slot, i, stamp);
        }
        if (!kept) return i;
        alive[0] = v;
        n = 1;
        lastN = 1;
        lastSingle = v;
        continue;
      }
      const p = 4 * (-1 - v);
      if (meta[p] === lastN && meta[p + 1] === lastX && meta[p + 2] === lastS) continue;
      const slots = pool[-1 - v] as number[];
      const m = ++this.markStamp;
      const mark = this.mark;
      for (let j = 0; j < slots.length; j++) mark[slots[j] as number] = m;
      let k = 0;
      for (let j = 0; j < n; j++) {
        const slot = alive[j] as number;
        if (mark[slot] === m) alive[k++] = slot;
        else this.record(slot, i, stamp);
      }
      n = k;
      // Someone matched up to here, or `alive` would have emptied earlier.
      if (n === 0) return i;
      lastN = slots.length;
      lastSingle = -1;
      lastX = meta[p + 1] as number;
      lastS = meta[p + 2] as number;
    }
    for (let j = 0; j < n; j++) this.record(alive[j] as number, i, stamp);
    return i;
  }

  /** Leading blocks of the last matched chain held by `slot` (0 when none, or `slot` is undefined). */
  matchedBlocks(slot: number | undefined): number {
    if (slot === undefined || this.matchedStamp[slot] !== this.matchStamp) return 0;
    return this.matchedAt[slot] as number;
  }

  private record(slot: number, blocks: number, stamp: number): void {
    this.matchedAt[slot] = blocks;
    this.matchedStamp[slot] = stamp;
  }

  private newSlot(): number {
    const slot = this.ids.length;
    this.ids.push('');
    this.blocks.push(new Set());
    this.lastUse.push(0);
    this.generations.push(0);
    if (slot >= this.mark.length) {
      const n = this.mark.length * 2;
      this.alive = new Int32Array(n);
      this.mark = new Int32Array(n);
      this.matchedAt = grow(this.matchedAt, n);
      this.matchedStamp = grow(this.matchedStamp, n);
    }
    return slot;
  }

  /** Frees the least recently registered slot for a new instance (rare: a linear scan is fine). */
  private recycle(): number {
    let victim = 0;
    for (let slot = 1; slot < this.ids.length; slot++) {
      if ((this.lastUse[slot] as number) < (this.lastUse[victim] as number)) victim = slot;
    }
    this.clear(victim);
    this.slotOfId.delete(this.ids[victim] as string);
    this.generations[victim] = (this.generations[victim] as number) + 1;
    // A stale match result must not be read for the new instance.
    this.matchedStamp[victim] = 0;
    return victim;
  }

  private dropHolder(slot: number, key: number): void {
    const v = this.table.get(key);
    if (v === INT_TABLE_MISSING) return;
    if (v >= 0) {
      if (v !== slot) return;
      this.table.delete(key);
      this.distinct--;
      return;
    }
    const p = -1 - v;
    const slots = this.pool[p] as number[];
    const at = slots.indexOf(slot);
    if (at < 0) return;
    slots[at] = slots[slots.length - 1] as number;
    slots.pop();
    if (slots.length === 1) {
      // Back to the compact form: one holder is a plain slot number.
      this.table.set(key, slots[0] as number);
      this.pool[p] = NO_SLOTS;
      this.poolFree.push(p);
      return;
    }
    const meta = this.poolMeta;
    meta[4 * p] = slots.length;
    meta[4 * p + 1] = (meta[4 * p + 1] as number) ^ mixA(slot);
    meta[4 * p + 2] = ((meta[4 * p + 2] as number) - mixB(slot)) | 0;
  }
}

/** A freed pool entry's list. */
const NO_SLOTS: number[] = [];

function grow(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const out = new Int32Array(n);
  out.set(a);
  return out;
}
