/**
 * Which instance holds which prefix blocks, and each instance's longest leading match for a chain:
 * the one index behind every prefix-aware routing policy. It is fed in one of two ways:
 *
 * - learned (approximate): `learn` records that a request routed to an instance left its prompt's
 *   chain blocks there (`prefix-affinity`, the llm-d prefix-cache scorer, `kv-cost`, `mooncake`,
 *   `preble`);
 * - precise: `applyKvEvent` applies the engine's KV events (stored, removed, cleared) in the engine's
 *   own block hashes (`kv-events`).
 *
 * Layout: a global table from block hash to its holders, and per instance an insertion-ordered set of
 * its hashes, oldest first. A block held by one instance (the common case) maps to that slot number;
 * one held by several maps to an entry in a pool of holder lists (a list of slots plus two order-free
 * fingerprints of it). The table is an open-addressing int table (`int-table.ts`): one cache line per
 * lookup, where a V8 Map costs two or three, and no 2^24-entry ceiling (1,000 instances of 28,000
 * blocks each is already past it). Keys are stored as int32 (`hash | 0`, a bijection on uint32): V8
 * keeps those as small integers, while uint32 hashes above 2^31 are heap numbers and make every
 * lookup several times slower.
 *
 * Eviction, one story for both feeds: an instance's set is in recency order; `learn` touches a chain
 * from its last block to its first, `applyKvEvent` touches stored blocks in event order; past the
 * instance's capacity the oldest go first. Bounds: at most `instancesMax` instances, each holding at
 * most its capacity in blocks (`PrefixCacheCapacity`: fixed blocks, fixed tokens, or the instance's
 * KV cache), so the table holds at most instancesMax x capacity entries. Past `instancesMax` the least
 * recently registered instance's slot is recycled; with an observed view, instances gone from it are
 * dropped every `PREFIX_INDEX_SWEEP_EVERY` registrations.
 *
 * Matching, the fastest technique for each feed:
 *
 * - Learned chains are prefix-closed: a chain hash identifies every block before it, and `learn`
 *   makes a parent more recent than its children so eviction removes children first; an instance
 *   holding block i therefore holds blocks 0..i-1 and the holder sets only shrink along a chain.
 *   `match` binary-searches for the positions where the number of holders drops and gives each
 *   holder there its depth: O(levels x log(blocks)) lookups plus the holders at those levels, where a
 *   walk costs one lookup per matched block (kv-cost's whole decision for a fully cached
 *   100,000-token prompt over 1,000 instances: 0.04 ms median, where the walk took 0.35 ms). The assignment checks that each level's holders
 *   are a subset of the level before; a chain that breaks the contract (equal hash at two positions,
 *   say) falls back to the walk.
 * - KV events may leave holes (a lost or reordered removal), so sets are not nested, and the engine
 *   hashes of a prompt are computed lazily (`ChainCursor`), so there is no array to search: the match
 *   walks the chain front to back, stopping where the last holder drops out. It reads the chain in
 *   batches (hash a batch, look all of it up, then intersect) so that the cache misses of a batch's
 *   lookups overlap: a fully cached 100,000-token prompt is 6,250 misses in a table far larger than
 *   the CPU caches, and one at a time they cost about twice as long. A block whose holder set
 *   equals that of the block last intersected with cannot change who is still matching, so it costs
 *   one lookup whatever the number of holders (a system prompt cached on 1,000 instances would
 *   otherwise cost blocks x 1,000). Equality is judged by size plus an XOR and a sum of per-slot
 *   mixes (64 bits together); a false "equal" needs two different sets of the same size to collide in
 *   both, about 2^-64 per comparison.
 *
 * The first `applyKvEvent` store or removal switches `match` to the walk for good.
 */

import { assertNever } from '../../core/assert.ts';
import { CHAIN_ROOT } from '../../core/hash.ts';
import type { InstanceId } from '../../core/ids.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { PrefixChain } from '../../core/request.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import { INT_TABLE_MISSING, IntTable } from './int-table.ts';

/**
 * Instances an index tracks at once. Past it, registering a new instance recycles the slot of the
 * one registered least recently (instances that left the fleet stop being registered), forgetting
 * its blocks.
 */
export const PREFIX_INDEX_INSTANCES_MAX = 16_384;
/** Registrations between sweeps that drop instances gone from the observed view and refresh KV sizes. */
export const PREFIX_INDEX_SWEEP_EVERY = 4096;
/** KV tokens assumed for an instance not seen in a view yet, or reporting no KV size (512 Ki tokens). */
export const PREFIX_INDEX_FALLBACK_KV_TOKENS = 524_288;
/** Engine block size assumed for an instance not seen in a view yet (vLLM's default). */
export const PREFIX_INDEX_FALLBACK_BLOCK_SIZE = 16;

/**
 * How many blocks each instance may hold, counted in the blocks being stored (chain blocks for
 * `learn`, the instance's engine blocks for `applyKvEvent`):
 * - `{ blocks }`: that many, whatever their size;
 * - `{ tokens }`: that many tokens' worth (for hooks that see no view: a typical KV cache);
 * - `'kv-cache'`: the instance's own KV cache (kvBlocksTotal x blockSize tokens) from the latest
 *   observed view, `PREFIX_INDEX_FALLBACK_KV_TOKENS` until one is seen.
 */
export type PrefixCacheCapacity = { readonly blocks: number } | { readonly tokens: number } | 'kv-cache';

/** Options of a prefix cache index. */
export interface PrefixCacheIndexOptions {
  /** Per-instance bound; default `'kv-cache'`. */
  readonly capacity?: PrefixCacheCapacity | undefined;
  /** Instances tracked at once; default `PREFIX_INDEX_INSTANCES_MAX`. */
  readonly instancesMax?: number | undefined;
}

/** Capacity in chain blocks of an instance's KV cache: engine blocks converted to the chain's block size. */
export function chainCapacityBlocks(
  kvBlocksTotal: number,
  blockSize: number,
  chainBlockTokens: number,
): number {
  return Math.max(1, Math.floor((kvBlocksTotal * blockSize) / Math.max(1, chainBlockTokens)));
}

/**
 * A chain of block hashes read front to back, so a match stops reading (and hashing) where the match
 * stops. Either a chain already in an array, or the engine-granularity chained hashes of a prompt
 * computed lazily: the same values, in the same order, as `engineBlockHashes(prefix, inputTokens,
 * blockSize)` in src/engine-core/prefix.ts (its doc explains the construction; a test holds the two
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

  /**
   * Starts over on a prompt's engine block hashes at `blockSize`; returns this. An `exact` chain
   * already holds the engine's own hashes (from token ids): it is read as it is at its own block
   * size, and matches nothing at another.
   */
  engineBlocks(prefix: PrefixChain, inputTokens: number, blockSize: number): this {
    if (prefix.exact === true) {
      this.array(prefix.hashes);
      if (blockSize !== prefix.blockTokens) this.count = 0;
      else this.count = Math.min(this.count, Math.floor(inputTokens / blockSize));
      return this;
    }
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

/** Blocks the walk reads and looks up at once: the first batch, and the most it doubles to. */
const MATCH_BATCH_MIN = 8;
const MATCH_BATCH_MAX = 128;

/** Stamps live in Int32Arrays: past this they would wrap negative and never compare equal again. */
const STAMP_MAX = 0x7fffffff;

/**
 * The prefix blocks each instance holds, learned from routing or fed by KV events, with a longest
 * leading match over all instances at once. `observe`, `match`, `matchCursor`, `matchedBlocks`,
 * `slotOf`, `size` and `longestMatch` are for `decide` (they write only scratch buffers and a
 * reference to the latest view); `register`, `learn`, `applyKvEvent` and `clear` are for hooks.
 */
export class PrefixCacheIndex {
  private readonly capacity: PrefixCacheCapacity;
  private readonly instancesMax: number;
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
  private distinct = 0;
  /** True while only `learn` has filled the index: every instance's set is then prefix-closed. */
  private closed = true;
  // Per slot. A freed slot has id '' and an empty set.
  private readonly slotOfId = new Map<InstanceId, number>();
  private readonly ids: InstanceId[] = [];
  private readonly blocks: Set<number>[] = [];
  private readonly lastUse: number[] = [];
  private readonly generations: number[] = [];
  /** The instance's KV cache in tokens and its engine block size, from the latest view seen. */
  private readonly kvTokens: number[] = [];
  private readonly blockSizes: number[] = [];
  private readonly freeSlots: number[] = [];
  private useTick = 0;
  private view: ClusterView | undefined = undefined;
  private registrationsSinceSweep = 0;
  // Decision scratch, reused by every match; results are read through `matchedBlocks`.
  private readonly arrayCursor = new ChainCursor();
  private alive = new Int32Array(16);
  private mark = new Int32Array(16);
  private matchedAt = new Int32Array(16);
  private matchedStamp = new Int32Array(16);
  private markStamp = 0;
  private matchStamp = 0;
  private levels = new Int32Array(64);
  private levelCount = 0;
  private readonly batchKeys = new Int32Array(MATCH_BATCH_MAX);
  private readonly batchValues = new Int32Array(MATCH_BATCH_MAX);

  constructor(options: PrefixCacheIndexOptions = {}) {
    this.capacity = options.capacity ?? 'kv-cache';
    this.instancesMax = Math.max(1, options.instancesMax ?? PREFIX_INDEX_INSTANCES_MAX);
  }

  /**
   * Remembers the latest view (a reference only, so `decide` may call it), from which hooks, which
   * receive no view, read instance KV sizes and which instances still exist.
   */
  observe(view: ClusterView): void {
    this.view = view;
  }

  /** The slot of an instance, or undefined if it is not registered. Read-only. */
  slotOf(instanceId: InstanceId): number | undefined {
    return this.slotOfId.get(instanceId);
  }

  /**
   * The slot of an instance, registering it on first sight and marking it recently used (hooks only,
   * never `decide`). A slot freed by a sweep, or recycled at `instancesMax` from the least recently
   * registered instance, forgets its blocks and changes generation, so owners of per-slot state can
   * reset it.
   */
  register(instanceId: InstanceId): number {
    if (this.view !== undefined && ++this.registrationsSinceSweep >= PREFIX_INDEX_SWEEP_EVERY) this.sweep();
    let slot = this.slotOfId.get(instanceId);
    if (slot === undefined) {
      slot = this.freeSlots.pop() ?? (this.ids.length < this.instancesMax ? this.newSlot() : this.recycle());
      this.ids[slot] = instanceId;
      this.slotOfId.set(instanceId, slot);
      const instance = this.view?.instances.find((x) => x.id === instanceId);
      this.kvTokens[slot] = kvTokensOf(instance);
      this.blockSizes[slot] = blockSizeOf(instance);
    }
    this.lastUse[slot] = ++this.useTick;
    return slot;
  }

  /** Changes each time a slot is freed or recycled for another instance. */
  generation(slot: number): number {
    return this.generations[slot] ?? 0;
  }

  /** Registered instances. */
  get instances(): number {
    return this.slotOfId.size;
  }

  /** Distinct block hashes held by anyone. */
  get distinctBlocks(): number {
    return this.distinct;
  }

  /** Whether `match` may binary-search: nothing but `learn` has filled the index. */
  get prefixClosed(): boolean {
    return this.closed;
  }

  /** Blocks an instance holds (0 for an unregistered one). */
  size(slot: number | undefined): number {
    return slot === undefined ? 0 : (this.blocks[slot]?.size ?? 0);
  }

  /** Whether `slot` holds `hash`. */
  has(slot: number, hash: number): boolean {
    return this.blocks[slot]?.has(hash | 0) ?? false;
  }

  /**
   * Learned feed: `slot` now holds the request's chain (as much of it as fits its capacity, from the
   * first block). Touches the chain from its last block to its first, so a parent is always more
   * recent than its children (eviction then removes children first and the set stays prefix-closed),
   * then evicts the oldest blocks past the capacity.
   */
  learn(slot: number, prefix: PrefixChain): void {
    const hashes = prefix.hashes;
    if (hashes.length === 0) return;
    const capacity = this.capacityOf(slot, prefix.blockTokens);
    const n = Math.min(hashes.length, capacity);
    for (let i = n - 1; i >= 0; i--) this.add(slot, hashes[i] as number);
    this.trim(slot, capacity);
  }

  /**
   * Precise feed: one engine KV event of `slot`, in the engine's block hashes. Stored blocks become
   * the most recent (a stream that lost its removals is bounded by evicting the oldest stored past the
   * capacity, in the instance's engine blocks); removals may leave holes, so `match` walks from here on.
   */
  applyKvEvent(slot: number, event: KvEvent): void {
    switch (event.type) {
      case 'BlockStored':
        this.closed = false;
        for (const hash of event.hashes) this.add(slot, hash);
        this.trim(slot, this.capacityOf(slot, this.blockSizes[slot] ?? PREFIX_INDEX_FALLBACK_BLOCK_SIZE));
        return;
      case 'BlockRemoved':
        this.closed = false;
        for (const hash of event.hashes) this.remove(slot, hash);
        return;
      case 'AllBlocksCleared':
        this.clear(slot);
        return;
      default:
        assertNever(event, 'KV event');
    }
  }

  /** Forgets everything an instance holds (its cache was cleared); nothing for an unregistered one. */
  clear(slot: number | undefined): void {
    if (slot === undefined) return;
    const own = this.blocks[slot];
    if (own === undefined) return;
    for (const key of own) this.dropHolder(slot, key);
    own.clear();
  }

  /** Longest consecutive leading match of `hashes` on one instance, in blocks, walking block by block. */
  longestMatch(slot: number | undefined, hashes: readonly number[]): number {
    const own = slot === undefined ? undefined : this.blocks[slot];
    if (own === undefined) return 0;
    let i = 0;
    while (i < hashes.length && own.has((hashes[i] as number) | 0)) i++;
    return i;
  }

  /**
   * Computes the longest consecutive leading match of a chain on every instance at once; read the
   * result per slot with `matchedBlocks` until the next call. Returns the longest over all instances.
   * Binary search while the index is prefix-closed, the walk otherwise (see the module doc). Touches
   * only scratch buffers, never what the index holds.
   */
  match(hashes: readonly number[]): number {
    if (this.closed) {
      const longest = this.search(hashes);
      if (longest >= 0) return longest;
    }
    return this.matchCursor(this.arrayCursor.array(hashes));
  }

  /**
   * `match` by walking a chain front to back, reading it only as far as someone still matches (and at
   * most one batch, `MATCH_BATCH_MAX` blocks, further); for chains computed lazily (engine hashes of
   * a prompt) and for an index fed by KV events.
   */
  matchCursor(chain: ChainCursor): number {
    const stamp = this.nextMatchStamp();
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
    // The chain is read in batches: hash a batch, look all of it up, then intersect. The lookups of
    // a batch do not depend on one another, so their cache misses overlap instead of queueing (the
    // table of a warm fleet is far larger than the CPU caches); batches start small and double, so a
    // short match reads few blocks past its end.
    const keys = this.batchKeys;
    const values = this.batchValues;
    let batch = MATCH_BATCH_MIN;
    let i = 1;
    walk: while (i < length) {
      const count = Math.min(batch, length - i);
      batch = Math.min(2 * batch, MATCH_BATCH_MAX);
      for (let j = 0; j < count; j++) keys[j] = chain.next() | 0;
      table.getMany(keys, values, count);
      for (let j = 0; j < count; j++, i++) {
        const v = values[j] as number;
        if (v === INT_TABLE_MISSING) break walk;
        if (v >= 0) {
          if (lastSingle === v) continue;
          // alive ∩ {v}: everyone but v drops out here.
          let kept = false;
          for (let q = 0; q < n; q++) {
            const slot = alive[q] as number;
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
        const m = this.nextMarkStamp();
        const mark = this.mark;
        for (let q = 0; q < slots.length; q++) mark[slots[q] as number] = m;
        let k = 0;
        for (let q = 0; q < n; q++) {
          const slot = alive[q] as number;
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
    }
    for (let j = 0; j < n; j++) this.record(alive[j] as number, i, stamp);
    return i;
  }

  /** Leading blocks of the last matched chain held by `slot` (0 when none, or `slot` is undefined). */
  matchedBlocks(slot: number | undefined): number {
    if (slot === undefined || this.matchedStamp[slot] !== this.matchStamp) return 0;
    return this.matchedAt[slot] as number;
  }

  /**
   * The binary-search match over prefix-closed sets. Returns the longest match, or -1 when the holder
   * sets turn out not to be nested (the caller then walks).
   */
  private search(hashes: readonly number[]): number {
    const stamp = this.nextMatchStamp();
    const blocks = hashes.length;
    const first = blocks > 0 && this.distinct > 0 ? this.holderCount(hashes, 0) : 0;
    if (first === 0) return 0;
    this.levelCount = 0;
    this.findLevels(hashes, 0, blocks, first, 0);
    // Shallowest level first, each holder recorded at the depth of every level it appears in, so the
    // deepest wins; and each level's holders must all have been holders at the level before.
    const mark = this.mark;
    let previous = 0;
    for (let k = 0; k < this.levelCount; k++) {
      const level = this.levels[k] as number;
      const v = this.table.get((hashes[level] as number) | 0);
      if (v === INT_TABLE_MISSING) return -1;
      const m = this.nextMarkStamp();
      if (v >= 0) {
        if (k > 0 && mark[v] !== previous) return -1;
        mark[v] = m;
        this.record(v, level + 1, stamp);
      } else {
        const slots = this.pool[-1 - v] as number[];
        for (let j = 0; j < slots.length; j++) {
          const slot = slots[j] as number;
          if (k > 0 && mark[slot] !== previous) return -1;
          mark[slot] = m;
          this.record(slot, level + 1, stamp);
        }
      }
      previous = m;
    }
    return (this.levels[this.levelCount - 1] as number) + 1;
  }

  private holderCount(hashes: readonly number[], at: number): number {
    if (at >= hashes.length) return 0;
    const v = this.table.get((hashes[at] as number) | 0);
    if (v === INT_TABLE_MISSING) return 0;
    return v >= 0 ? 1 : (this.poolMeta[4 * (-1 - v)] as number);
  }

  /**
   * Pushes, in ascending order, every position `p` in [lo, hi) whose holder count differs from that
   * of `p + 1`, given the counts at `lo` and `hi`. Equal counts at both ends mean equal holder sets
   * in between (the sets are nested), so the whole range is skipped.
   */
  private findLevels(
    hashes: readonly number[],
    lo: number,
    hi: number,
    countLo: number,
    countHi: number,
  ): void {
    if (countLo === countHi) return;
    if (hi - lo === 1) {
      if (this.levelCount === this.levels.length) this.levels = grow(this.levels, 2 * this.levels.length);
      this.levels[this.levelCount++] = lo;
      return;
    }
    const mid = (lo + hi) >>> 1;
    const countMid = this.holderCount(hashes, mid);
    this.findLevels(hashes, lo, mid, countLo, countMid);
    this.findLevels(hashes, mid, hi, countMid, countHi);
  }

  private record(slot: number, blocks: number, stamp: number): void {
    this.matchedAt[slot] = blocks;
    this.matchedStamp[slot] = stamp;
  }

  private nextMatchStamp(): number {
    if (++this.matchStamp >= STAMP_MAX) {
      this.matchedStamp.fill(0);
      this.matchStamp = 1;
    }
    return this.matchStamp;
  }

  private nextMarkStamp(): number {
    if (++this.markStamp >= STAMP_MAX) {
      this.mark.fill(0);
      this.markStamp = 1;
    }
    return this.markStamp;
  }

  /** The bound of `slot` in blocks of `blockTokens` tokens (see `PrefixCacheCapacity`). */
  private capacityOf(slot: number, blockTokens: number): number {
    const c = this.capacity;
    if (c === 'kv-cache') {
      return chainCapacityBlocks(this.kvTokens[slot] ?? PREFIX_INDEX_FALLBACK_KV_TOKENS, 1, blockTokens);
    }
    if ('blocks' in c) return Math.max(0, Math.floor(c.blocks));
    return Math.max(0, Math.floor(c.tokens / Math.max(1, blockTokens)));
  }

  /** Adds `hash` to `slot`, or marks it most recent if already there. Callers trim. */
  private add(slot: number, hash: number): void {
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
  private remove(slot: number, hash: number): void {
    const key = hash | 0;
    const own = this.blocks[slot] as Set<number>;
    if (!own.delete(key)) return;
    this.dropHolder(slot, key);
  }

  /** Evicts the oldest (least recently added or touched) blocks of `slot` until it holds at most `capacity`. */
  private trim(slot: number, capacity: number): void {
    const own = this.blocks[slot] as Set<number>;
    if (own.size <= capacity) return;
    for (const key of own) {
      if (own.size <= capacity) break;
      own.delete(key);
      this.dropHolder(slot, key);
    }
  }

  private newSlot(): number {
    const slot = this.ids.length;
    this.ids.push('');
    this.blocks.push(new Set());
    this.lastUse.push(0);
    this.generations.push(0);
    this.kvTokens.push(PREFIX_INDEX_FALLBACK_KV_TOKENS);
    this.blockSizes.push(PREFIX_INDEX_FALLBACK_BLOCK_SIZE);
    if (slot >= this.mark.length) {
      const n = this.mark.length * 2;
      this.alive = new Int32Array(n);
      this.mark = grow(this.mark, n);
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
    this.release(victim);
    return victim;
  }

  /** Forgets a slot's instance and blocks, and bumps its generation. */
  private release(slot: number): void {
    this.clear(slot);
    this.slotOfId.delete(this.ids[slot] as InstanceId);
    this.ids[slot] = '';
    this.generations[slot] = (this.generations[slot] as number) + 1;
    // A stale match result must not be read for the next instance in this slot.
    this.matchedStamp[slot] = 0;
  }

  /** Drops instances gone from the observed view and refreshes the KV size of the others. */
  private sweep(): void {
    this.registrationsSinceSweep = 0;
    const view = this.view;
    if (view === undefined) return;
    const present = new Map<InstanceId, InstanceView>();
    for (const instance of view.instances) present.set(instance.id, instance);
    for (let slot = 0; slot < this.ids.length; slot++) {
      const id = this.ids[slot] as InstanceId;
      if (id === '') continue;
      const instance = present.get(id);
      if (instance !== undefined) {
        this.kvTokens[slot] = kvTokensOf(instance);
        this.blockSizes[slot] = blockSizeOf(instance);
        continue;
      }
      this.release(slot);
      this.freeSlots.push(slot);
    }
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

function kvTokensOf(instance: InstanceView | undefined): number {
  const tokens = instance === undefined ? 0 : instance.kvBlocksTotal * instance.blockSize;
  return tokens > 0 ? tokens : PREFIX_INDEX_FALLBACK_KV_TOKENS;
}

function blockSizeOf(instance: InstanceView | undefined): number {
  return instance !== undefined && instance.blockSize > 0
    ? instance.blockSize
    : PREFIX_INDEX_FALLBACK_BLOCK_SIZE;
}

function grow(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const out = new Int32Array(n);
  out.set(a);
  return out;
}
