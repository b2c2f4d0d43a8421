import { AssertionError, assert } from '../core/assert.ts';

/** A block state's low bit: the block has a hash. */
const HASHED = 1;
/** One reference in a block state (the ref count sits above the HASHED bit). */
const REF = 2;

/** Read a double's bits without allocating, to hash keys that are not uint32. */
const keyF64 = new Float64Array(1);
const keyU32 = new Uint32Array(keyF64.buffer);

/**
 * The paged KV block pool with a prefix cache, after vLLM's block manager.
 *
 * Every block is in exactly one of three states:
 * - in use: ref count > 0 (held by one or more running sequences; shared prefix blocks count once
 *   per holder);
 * - free and cached: ref count 0 with a hash; kept in an LRU list so a later request with the same
 *   prefix can take it back without recomputing, until allocation evicts it;
 * - truly free: ref count 0 without a hash; kept on a stack.
 *
 * Allocation takes truly free blocks first and only then evicts the least recently freed cached
 * block. All state lives in typed arrays and intrusive lists so allocation and release are O(1)
 * and allocate nothing. The hash index is an open-addressing table of block ids over a typed array
 * (a slot's key is its block's `hashes` entry), not a Map: block hashes are uint32 values that are
 * mostly above the small-integer range, so a Map boxed every key and spent a third of a
 * prefix-heavy twin run in `store` (see docs/benchmarks.md). It holds at most `numBlocks` entries,
 * so it is sized once and never grows.
 *
 * Hot paths test an invariant before building its message: a template literal is evaluated
 * eagerly, and these run tens of millions of times in a twin run.
 */
export class BlockPool {
  /** Total blocks. */
  readonly numBlocks: number;
  /**
   * Per block, its ref count times two plus one if it has a hash (see `refsOf`). One array for both
   * because release and allocate read both at a random block: one cache miss instead of two.
   */
  private readonly states: Int32Array;
  /** The block's hash where its state says it has one (hashes may be any number, so no sentinel). */
  private readonly hashes: Float64Array;
  private readonly freeStack: Int32Array;
  private freeTop = 0;
  /** LRU of free cached blocks as an intrusive doubly linked list; -1 ends it. Head is evicted first. */
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruHead = -1;
  private lruTail = -1;
  private lruSize = 0;
  /**
   * The hash index: linear probing over block ids, -1 for an empty slot; the capacity is a power of
   * two at least twice `numBlocks`, so the load factor stays under one half. Deletion shifts later
   * entries back instead of leaving tombstones, so probes stay short however long the run.
   */
  private readonly slots: Int32Array;
  private readonly slotMask: number;
  private hashedTotal = 0;
  /** Called with the hash of each block that eviction drops from the cache. */
  private readonly onEvict: ((hash: number) => void) | undefined;

  /**
   * @param numBlocks pool size, at least 1.
   * @param onEvict called when allocation evicts a cached block (the engine turns it into BlockRemoved).
   */
  constructor(numBlocks: number, onEvict?: (hash: number) => void) {
    assert(
      Number.isInteger(numBlocks) && numBlocks >= 1,
      `numBlocks must be a positive integer, got ${numBlocks}`,
    );
    this.numBlocks = numBlocks;
    this.states = new Int32Array(numBlocks);
    this.hashes = new Float64Array(numBlocks);
    this.freeStack = new Int32Array(numBlocks);
    this.lruPrev = new Int32Array(numBlocks).fill(-1);
    this.lruNext = new Int32Array(numBlocks).fill(-1);
    let capacity = 2;
    while (capacity < 2 * numBlocks) capacity *= 2;
    this.slots = new Int32Array(capacity).fill(-1);
    this.slotMask = capacity - 1;
    this.onEvict = onEvict;
    // Push in reverse so block 0 is handed out first: easier to read in tests and dumps.
    for (let b = numBlocks - 1; b >= 0; b--) this.freeStack[this.freeTop++] = b;
  }

  /** Blocks that allocation can hand out: truly free plus free cached ones. */
  get freeCount(): number {
    return this.freeTop + this.lruSize;
  }

  /** Blocks held by at least one sequence. */
  get usedCount(): number {
    return this.numBlocks - this.freeTop - this.lruSize;
  }

  /** Free blocks that still hold a cached prefix. */
  get cachedFreeCount(): number {
    return this.lruSize;
  }

  /** Blocks with a hash, in use or free. */
  get hashedCount(): number {
    return this.hashedTotal;
  }

  /** The block cached under `hash`, or -1. */
  lookup(hash: number): number {
    const slots = this.slots;
    const mask = this.slotMask;
    for (let i = this.home(hash); ; i = (i + 1) & mask) {
      const block = slots[i]!;
      if (block < 0 || this.hashes[block] === hash) return block;
    }
  }

  /** A block's ref count. */
  refCount(block: number): number {
    return this.states[block]! >> 1;
  }

  /** A block's hash, or undefined when it has none. */
  hashOf(block: number): number | undefined {
    return (this.states[block]! & HASHED) !== 0 ? this.hashes[block] : undefined;
  }

  /** Whether the block is free but cached (a hit on it takes it out of the LRU). */
  isCachedFree(block: number): boolean {
    return this.states[block] === HASHED;
  }

  /** Takes a reference on a cached block found by `lookup`, reviving it from the LRU if it was free. */
  touch(block: number): void {
    const state = this.states[block]!;
    if ((state & HASHED) === 0) throw new AssertionError(`touch on unhashed block ${block}`);
    if (state === HASHED) this.lruUnlink(block);
    this.states[block] = state + REF;
  }

  /** Hands out one block with ref count 1. The caller checks `freeCount` first. */
  allocate(): number {
    let block: number;
    if (this.freeTop > 0) {
      block = this.freeStack[--this.freeTop]!;
    } else {
      block = this.lruHead;
      assert(block >= 0, 'allocate on an exhausted pool');
      this.lruUnlink(block);
      const hash = this.hashes[block]!;
      this.unindex(block, hash);
      if (this.onEvict !== undefined) this.onEvict(hash);
    }
    // One reference, no hash (an evicted block loses its hash here).
    this.states[block] = REF;
    return block;
  }

  /** Drops one reference; at zero the block goes to the LRU when cached, else back to the free stack. */
  release(block: number): void {
    const state = this.states[block]! - REF;
    if (state < 0) throw new AssertionError(`release of free block ${block}`);
    this.states[block] = state;
    if (state >= REF) return;
    if (state === HASHED) this.lruAppend(block);
    else this.freeStack[this.freeTop++] = block;
  }

  /**
   * Registers an in-use block's computed content under `hash`. Returns false (and leaves the block
   * unhashed) when another block already holds that hash: two sequences computed the same prefix at
   * once; the first one wins and the duplicate simply is not cacheable.
   */
  store(block: number, hash: number): boolean {
    const state = this.states[block]!;
    if (state < REF) throw new AssertionError(`store on free block ${block}`);
    if ((state & HASHED) !== 0) throw new AssertionError(`store on already hashed block ${block}`);
    // NaN never equals itself, so it could be stored but never found.
    if (Number.isNaN(hash)) throw new AssertionError('store of a NaN hash');
    const slots = this.slots;
    const mask = this.slotMask;
    let i = this.home(hash);
    for (; ; i = (i + 1) & mask) {
      const other = slots[i]!;
      if (other < 0) break;
      if (this.hashes[other] === hash) return false;
    }
    slots[i] = block;
    this.hashedTotal++;
    this.hashes[block] = hash;
    this.states[block] = state | HASHED;
    return true;
  }

  /**
   * Checks every invariant of the pool in O(numBlocks). For tests and debugging, not the hot path.
   */
  checkInvariants(): void {
    const seen = new Uint8Array(this.numBlocks);
    for (let i = 0; i < this.freeTop; i++) {
      const b = this.freeStack[i]!;
      assert(seen[b] === 0, `block ${b} twice on the free stack`);
      seen[b] = 1;
      assert(this.states[b] === 0, `truly free block ${b} has refs or a hash`);
    }
    let n = 0;
    let prev = -1;
    for (let b = this.lruHead; b >= 0; b = this.lruNext[b]!) {
      assert(seen[b] === 0, `block ${b} in two free lists`);
      seen[b] = 2;
      assert(this.lruPrev[b] === prev, `LRU back link broken at ${b}`);
      assert(this.states[b] === HASHED, `LRU block ${b} has refs or no hash`);
      prev = b;
      n++;
      assert(n <= this.numBlocks, 'LRU cycle');
    }
    assert(prev === this.lruTail, 'LRU tail wrong');
    assert(n === this.lruSize, `LRU size ${this.lruSize} but ${n} linked`);
    let hashed = 0;
    for (let b = 0; b < this.numBlocks; b++) {
      const refs = this.refCount(b);
      assert(refs >= 0, `block ${b} has negative refs`);
      assert(refs > 0 === (seen[b] === 0), `block ${b} neither used nor free`);
      if ((this.states[b]! & HASHED) !== 0) {
        hashed++;
        assert(this.lookup(this.hashes[b]!) === b, `hash index misses block ${b}`);
      }
    }
    assert(hashed === this.hashedTotal, `hash index counts ${this.hashedTotal}, ${hashed} hashed`);
    let indexed = 0;
    for (let i = 0; i < this.slots.length; i++) {
      const b = this.slots[i]!;
      if (b < 0) continue;
      indexed++;
      assert((this.states[b]! & HASHED) !== 0, `hash index holds unhashed block ${b}`);
    }
    assert(indexed === hashed, `hash index holds ${indexed} entries for ${hashed} hashed blocks`);
  }

  /**
   * The home slot of a key. Block hashes are uint32 (chained hashes, or small trace ids that need
   * spreading); other numbers hash their bits. The finaliser is a 32-bit avalanche mix.
   */
  private home(hash: number): number {
    let h: number;
    if (hash >>> 0 === hash) {
      h = hash;
    } else {
      keyF64[0] = hash;
      h = keyU32[0]! ^ Math.imul(keyU32[1]!, 0x9e3779b1);
    }
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
    return (h ^ (h >>> 16)) & this.slotMask;
  }

  /**
   * Removes `block` (indexed under `hash`) from the index, shifting later entries of its probe run
   * back so that every entry stays reachable from its home slot without tombstones.
   */
  private unindex(block: number, hash: number): void {
    const slots = this.slots;
    const mask = this.slotMask;
    let hole = this.home(hash);
    while (slots[hole] !== block) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const moved = slots[j]!;
      if (moved < 0) break;
      const home = this.home(this.hashes[moved]!);
      // `moved` may fill the hole unless its home lies cyclically in (hole, j].
      const homeInRange = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (homeInRange) continue;
      slots[hole] = moved;
      hole = j;
    }
    slots[hole] = -1;
    this.hashedTotal--;
  }

  private lruAppend(block: number): void {
    this.lruPrev[block] = this.lruTail;
    this.lruNext[block] = -1;
    if (this.lruTail >= 0) this.lruNext[this.lruTail] = block;
    else this.lruHead = block;
    this.lruTail = block;
    this.lruSize++;
  }

  private lruUnlink(block: number): void {
    const prev = this.lruPrev[block]!;
    const next = this.lruNext[block]!;
    if (prev >= 0) this.lruNext[prev] = next;
    else this.lruHead = next;
    if (next >= 0) this.lruPrev[next] = prev;
    else this.lruTail = prev;
    this.lruPrev[block] = -1;
    this.lruNext[block] = -1;
    this.lruSize--;
  }
}
