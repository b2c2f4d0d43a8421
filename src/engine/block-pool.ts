import { assert } from '../core/assert.ts';

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
 * and allocate nothing; the hash index is a Map used only for lookups, never iterated.
 */
export class BlockPool {
  /** Total blocks. */
  readonly numBlocks: number;
  private readonly refCounts: Int32Array;
  /** The block's hash where `hashedFlags` is set (hashes may be any number, so no sentinel). */
  private readonly hashes: Float64Array;
  private readonly hashedFlags: Uint8Array;
  private readonly freeStack: Int32Array;
  private freeTop = 0;
  /** LRU of free cached blocks as an intrusive doubly linked list; -1 ends it. Head is evicted first. */
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private lruHead = -1;
  private lruTail = -1;
  private lruSize = 0;
  private readonly byHash = new Map<number, number>();
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
    this.refCounts = new Int32Array(numBlocks);
    this.hashes = new Float64Array(numBlocks);
    this.hashedFlags = new Uint8Array(numBlocks);
    this.freeStack = new Int32Array(numBlocks);
    this.lruPrev = new Int32Array(numBlocks).fill(-1);
    this.lruNext = new Int32Array(numBlocks).fill(-1);
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
    return this.byHash.size;
  }

  /** The block cached under `hash`, or -1. */
  lookup(hash: number): number {
    return this.byHash.get(hash) ?? -1;
  }

  /** A block's ref count. */
  refCount(block: number): number {
    return this.refCounts[block]!;
  }

  /** A block's hash, or undefined when it has none. */
  hashOf(block: number): number | undefined {
    return this.hashedFlags[block] === 1 ? this.hashes[block] : undefined;
  }

  /** Whether the block is free but cached (a hit on it takes it out of the LRU). */
  isCachedFree(block: number): boolean {
    return this.refCounts[block] === 0 && this.hashedFlags[block] === 1;
  }

  /** Takes a reference on a cached block found by `lookup`, reviving it from the LRU if it was free. */
  touch(block: number): void {
    const refs = this.refCounts[block]!;
    assert(this.hashedFlags[block] === 1, `touch on unhashed block ${block}`);
    if (refs === 0) this.lruUnlink(block);
    this.refCounts[block] = refs + 1;
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
      this.byHash.delete(hash);
      this.hashedFlags[block] = 0;
      if (this.onEvict !== undefined) this.onEvict(hash);
    }
    this.refCounts[block] = 1;
    return block;
  }

  /** Drops one reference; at zero the block goes to the LRU when cached, else back to the free stack. */
  release(block: number): void {
    const refs = this.refCounts[block]! - 1;
    assert(refs >= 0, `release of free block ${block}`);
    this.refCounts[block] = refs;
    if (refs > 0) return;
    if (this.hashedFlags[block] === 1) this.lruAppend(block);
    else this.freeStack[this.freeTop++] = block;
  }

  /**
   * Registers an in-use block's computed content under `hash`. Returns false (and leaves the block
   * unhashed) when another block already holds that hash: two sequences computed the same prefix at
   * once; the first one wins and the duplicate simply is not cacheable.
   */
  store(block: number, hash: number): boolean {
    assert(this.refCounts[block]! > 0, `store on free block ${block}`);
    assert(this.hashedFlags[block] === 0, `store on already hashed block ${block}`);
    if (this.byHash.has(hash)) return false;
    this.byHash.set(hash, block);
    this.hashes[block] = hash;
    this.hashedFlags[block] = 1;
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
      assert(this.refCounts[b] === 0, `free block ${b} has refs`);
      assert(this.hashedFlags[b] === 0, `truly free block ${b} has a hash`);
    }
    let n = 0;
    let prev = -1;
    for (let b = this.lruHead; b >= 0; b = this.lruNext[b]!) {
      assert(seen[b] === 0, `block ${b} in two free lists`);
      seen[b] = 2;
      assert(this.lruPrev[b] === prev, `LRU back link broken at ${b}`);
      assert(this.refCounts[b] === 0, `LRU block ${b} has refs`);
      assert(this.hashedFlags[b] === 1, `LRU block ${b} has no hash`);
      prev = b;
      n++;
      assert(n <= this.numBlocks, 'LRU cycle');
    }
    assert(prev === this.lruTail, 'LRU tail wrong');
    assert(n === this.lruSize, `LRU size ${this.lruSize} but ${n} linked`);
    let hashed = 0;
    for (let b = 0; b < this.numBlocks; b++) {
      const refs = this.refCounts[b]!;
      assert(refs >= 0, `block ${b} has negative refs`);
      assert(refs > 0 === (seen[b] === 0), `block ${b} neither used nor free`);
      if (this.hashedFlags[b] === 1) {
        hashed++;
        assert(this.byHash.get(this.hashes[b]!) === b, `hash index misses block ${b}`);
      }
    }
    assert(hashed === this.byHash.size, 'hash index holds stale entries');
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
