import { AssertionError, assert } from '../core/assert.ts';
import type { PrefixForest, PrefixPath } from './prefix-forest.ts';

/**
 * Stale LRU entries (left by revived runs) kept at most this many beyond twice the live ones before
 * the queue is compacted: the queue's bound.
 */
const QUEUE_SLACK = 1024;
/** No record, no run. */
const NONE = -1;
/** A run's stamp while it is in use (not in the LRU). */
const IN_USE = -1;

/**
 * The records and runs of every RunCache of one forest, in typed arrays with free lists.
 *
 * A record is one instance's cached blocks of one prefix node: the head of its runs, its cache, and
 * the next record of the same node (another instance's; the node's list starts at
 * `PrefixForest.recordsOf(node)`). A run is a range [lo, hi) of the node's blocks cached in one instance, all
 * with one ref count; a record's runs are a list sorted by lo, disjoint. A free run (ref 0) sits
 * in its cache's LRU queue under its stamp. Bound: live records and runs are at most twice the
 * blocks cached across the caches; the arrays grow by doubling and are never shrunk.
 */
class RunPools {
  recCache = new Int32Array(1024);
  recNext = new Int32Array(1024);
  recFirstRun = new Int32Array(1024);
  recNode = new Int32Array(1024);
  private recFree = NONE;
  private recTop = 0;

  runLo = new Int32Array(1024);
  runHi = new Int32Array(1024);
  runRef = new Int32Array(1024);
  runRec = new Int32Array(1024);
  runNext = new Int32Array(1024);
  runPrev = new Int32Array(1024);
  /** The queue entry's stamp while free; IN_USE otherwise. */
  runStamp = new Float64Array(1024);
  private runFree = NONE;
  private runTop = 0;
  private caches = 0;
  private readonly forest: PrefixForest;

  constructor(forest: PrefixForest) {
    this.forest = forest;
  }

  /** A new cache's id. */
  register(): number {
    return this.caches++;
  }

  newRecord(node: number, cache: number): number {
    let r = this.recFree;
    if (r !== NONE) {
      this.recFree = this.recNext[r] as number;
    } else {
      r = this.recTop++;
      if (r >= this.recCache.length) this.growRecords();
    }
    this.recCache[r] = cache;
    this.recFirstRun[r] = NONE;
    this.recNode[r] = node;
    this.recNext[r] = this.forest.recordsOf(node);
    this.forest.setRecords(node, r);
    return r;
  }

  /** Unlinks an empty record from its node's list and frees it. */
  dropRecord(r: number): void {
    const node = this.recNode[r] as number;
    const next = this.recNext[r] as number;
    const head = this.forest.recordsOf(node);
    if (head === r) {
      this.forest.setRecords(node, next);
    } else {
      let p = head;
      while (this.recNext[p] !== r) p = this.recNext[p] as number;
      this.recNext[p] = next;
    }
    this.recNode[r] = NONE;
    this.recCache[r] = NONE;
    this.recNext[r] = this.recFree;
    this.recFree = r;
  }

  /** A new run [lo, hi) of record `rec` with `ref` references, in use, linked after `prev` (NONE: first). */
  newRun(rec: number, lo: number, hi: number, ref: number, prev: number): number {
    let u = this.runFree;
    if (u !== NONE) {
      this.runFree = this.runNext[u] as number;
    } else {
      u = this.runTop++;
      if (u >= this.runLo.length) this.growRuns();
    }
    this.runLo[u] = lo;
    this.runHi[u] = hi;
    this.runRef[u] = ref;
    this.runRec[u] = rec;
    this.runStamp[u] = IN_USE;
    const next = prev === NONE ? (this.recFirstRun[rec] as number) : (this.runNext[prev] as number);
    this.runPrev[u] = prev;
    this.runNext[u] = next;
    if (prev === NONE) this.recFirstRun[rec] = u;
    else this.runNext[prev] = u;
    if (next !== NONE) this.runPrev[next] = u;
    return u;
  }

  /** Unlinks a run from its record and frees it. */
  dropRun(u: number): void {
    const prev = this.runPrev[u] as number;
    const next = this.runNext[u] as number;
    if (prev === NONE) this.recFirstRun[this.runRec[u] as number] = next;
    else this.runNext[prev] = next;
    if (next !== NONE) this.runPrev[next] = prev;
    this.runStamp[u] = IN_USE;
    this.runRec[u] = NONE;
    this.runNext[u] = this.runFree;
    this.runFree = u;
  }

  private growRecords(): void {
    const n = 2 * this.recCache.length;
    this.recCache = grow(this.recCache, n);
    this.recNext = grow(this.recNext, n);
    this.recFirstRun = grow(this.recFirstRun, n);
    this.recNode = grow(this.recNode, n);
  }

  private growRuns(): void {
    const n = 2 * this.runLo.length;
    this.runLo = grow(this.runLo, n);
    this.runHi = grow(this.runHi, n);
    this.runRef = grow(this.runRef, n);
    this.runRec = grow(this.runRec, n);
    this.runNext = grow(this.runNext, n);
    this.runPrev = grow(this.runPrev, n);
    const stamps = new Float64Array(n);
    stamps.set(this.runStamp);
    this.runStamp = stamps;
  }
}

function grow(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

const poolsOf = new WeakMap<PrefixForest, RunPools>();

/** The pools every RunCache of `forest` shares (their records link per node). */
function poolsFor(forest: PrefixForest): RunPools {
  let pools = poolsOf.get(forest);
  if (pools === undefined) {
    pools = new RunPools(forest);
    poolsOf.set(forest, pools);
  }
  return pools;
}

/**
 * What a sequence holds in a RunCache: a prefix of its path's blocks, [0, done), each either a
 * cached block it shares (a hit or one it stored) or, where another block already held that
 * content when it stored (a duplicate), a block of its own that nobody can hit. Blocks past `done`
 * (the prompt's uncached part, decode blocks) are anonymous and counted by the engine core.
 */
export class RunHold {
  readonly path: PrefixPath;
  /**
   * The record of path node j where this sequence holds blocks (so it cannot be dropped), else
   * NONE or stale: entries past the nodes it holds are not read.
   */
  readonly recs: number[] = [];
  /** Leading positions hit or stored on this admission. */
  done = 0;
  /** The path node holding position `done` (or past the last). */
  node = 0;
  /** Duplicate positions in [0, done), as ascending [lo, hi) pairs; undefined when none. */
  dups: number[] | undefined = undefined;
  dupBlocks = 0;

  constructor(path: PrefixPath) {
    this.path = path;
  }
}

/**
 * The paged KV pool with a prefix cache, as `BlockPool` plus the engine core's block tables model
 * it, but in runs of blocks instead of one block at a time: a twin replaying 12k-token prompts
 * spent most of its time hashing, indexing, evicting and releasing 750 blocks per request one by
 * one (docs/benchmarks.md). Here a request's blocks are a path in a shared PrefixForest, and each
 * instance keeps, per node it caches, a few runs of blocks with equal ref counts; matching, storing,
 * releasing and evicting cost O(nodes and runs touched), not O(blocks).
 *
 * It gives what the per-block pool gives, operation for operation: the same hits (the longest
 * cached prefix, capped), the same hits on free cached blocks, the same free and used counts, and
 * the same evictions, in vLLM's order. Blocks are anonymous here (no block ids): only counts of
 * truly free blocks and each free cached run's place in the LRU matter, never which physical block
 * holds what. The LRU is a queue of free runs, each evicted from its top block down, which is the
 * order a sequence's last-to-first release appends blocks in; a revived run leaves a stale entry
 * that eviction skips. Ref counts and free runs are per (instance, node) record, so a block shared
 * by several sequences is counted once, as in the pool. Records and runs live in typed arrays
 * (RunPools, one per forest, shared by its caches), not objects: hundreds of thousands of them live
 * for minutes of virtual time, and as objects the young-generation collector copied each one.
 *
 * One difference, by design: blocks are the same block when they are the same node position, where
 * the per-block pool compares 32-bit hashes, so two different prefixes whose hashes collide are
 * the same block there and not here (vLLM compares full hashes, as this does). KV events are not
 * produced (a host that reads them uses the per-block pool).
 */
export class RunCache {
  /** Total blocks. */
  readonly numBlocks: number;
  private readonly forest: PrefixForest;
  private readonly pools: RunPools;
  /** This cache's id in the pools. */
  private readonly id: number;
  /** Free blocks that hold no cached content. */
  private trulyFree: number;
  /** Free blocks that still hold a cached prefix (the LRU's blocks). */
  private lruFree = 0;
  /** The LRU: free runs in the order they were freed, with the stamp each was queued under. */
  private queueRuns = new Int32Array(1024);
  private queueStamps = new Float64Array(1024);
  private head = 0;
  private tail = 0;
  /** Queue entries whose run is still free under their stamp. */
  private queueLive = 0;
  private nextStamp = 0;
  // The last `match`, for `commit`.
  private readonly matchRecs: number[] = [];
  private readonly matchLens: number[] = [];
  private matchCount = 0;
  private matchHits = 0;
  private matchFree = 0;

  constructor(numBlocks: number, forest: PrefixForest) {
    assert(
      Number.isInteger(numBlocks) && numBlocks >= 1,
      `numBlocks must be a positive integer, got ${numBlocks}`,
    );
    this.numBlocks = numBlocks;
    this.forest = forest;
    this.pools = poolsFor(forest);
    this.id = this.pools.register();
    this.trulyFree = numBlocks;
  }

  /** Blocks allocation can hand out: truly free plus free cached ones. */
  get freeCount(): number {
    return this.trulyFree + this.lruFree;
  }

  /** Blocks held by at least one sequence. */
  get usedCount(): number {
    return this.numBlocks - this.trulyFree - this.lruFree;
  }

  /** Free blocks that still hold a cached prefix. */
  get cachedFreeCount(): number {
    return this.lruFree;
  }

  /** Of the hits the last `match` found, how many were free cached blocks. */
  get lastMatchFree(): number {
    return this.matchFree;
  }

  /**
   * The longest cached prefix of the sequence's path, at most `cap` blocks: its hit count. Changes
   * nothing; `commit` takes the hits.
   */
  match(hold: RunHold, cap: number): number {
    const p = this.pools;
    const forest = this.forest;
    const nodes = hold.path.nodes;
    let hits = 0;
    let free = 0;
    let count = 0;
    for (let j = 0; j < nodes.length; j++) {
      const node = nodes[j] as number;
      const first = forest.firstBlockOf(node);
      const k = Math.min(forest.sizeOfNode(node), cap - first);
      if (k <= 0) break;
      const rec = this.recordOf(node);
      if (rec === NONE) break;
      let m = 0;
      for (let u = p.recFirstRun[rec] as number; u !== NONE && m < k; u = p.runNext[u] as number) {
        if (p.runLo[u] !== m) break;
        const hi = p.runHi[u] as number;
        const top = hi < k ? hi : k;
        if (p.runRef[u] === 0) free += top - m;
        m = top;
      }
      if (m === 0) break;
      this.matchRecs[count] = rec;
      this.matchLens[count] = m;
      count++;
      hits = first + m;
      if (m < k) break;
    }
    this.matchCount = count;
    this.matchHits = hits;
    this.matchFree = free;
    return hits;
  }

  /** Takes the hits of the last `match` (which must be on `hold`): a reference on each block. */
  commit(hold: RunHold): void {
    assert(hold.done === 0, 'commit on a sequence that holds blocks');
    const count = this.matchCount;
    for (let j = 0; j < count; j++) {
      const rec = this.matchRecs[j] as number;
      hold.recs[j] = rec;
      this.acquire(rec, this.matchLens[j] as number);
    }
    hold.done = this.matchHits;
    // The node holding position `done`: the one after the last hit node when that was hit whole.
    const lastWhole =
      count > 0 && this.matchLens[count - 1] === this.forest.sizeOfNode(hold.path.nodes[count - 1] as number);
    hold.node = count === 0 ? 0 : lastWhole ? count : count - 1;
    this.matchCount = 0;
  }

  /** Hands out `count` anonymous blocks: truly free ones first, then evicted cached ones. */
  allocate(count: number): void {
    if (count > this.trulyFree + this.lruFree) throw new AssertionError('allocate on an exhausted pool');
    const fromFree = count < this.trulyFree ? count : this.trulyFree;
    this.trulyFree -= fromFree;
    if (count > fromFree) this.evict(count - fromFree);
  }

  /**
   * Registers the sequence's blocks at positions [hold.done, to) as computed: each becomes a cached
   * block it holds, or stays its own anonymous block where the content is cached already.
   */
  store(hold: RunHold, to: number): void {
    const forest = this.forest;
    const nodes = hold.path.nodes;
    let pos = hold.done;
    let j = hold.node;
    while (pos < to) {
      const node = nodes[j] as number;
      const first = forest.firstBlockOf(node);
      const size = forest.sizeOfNode(node);
      const a = pos - first;
      const b = Math.min(size, to - first);
      // Held records cannot have been dropped; the hold's blocks from an earlier chunk are there.
      const heldBefore = pos > first && this.holdsIn(hold, j, first, a);
      let rec = heldBefore ? (hold.recs[j] as number) : this.recordOf(node);
      if (rec === NONE) rec = this.newRecord(node);
      if (this.claim(rec, a, b, hold) > 0 || heldBefore) hold.recs[j] = rec;
      pos = first + b;
      if (b === size) j++;
    }
    hold.done = to;
    hold.node = j;
  }

  /**
   * Frees every block the sequence holds, `blocks` in all (anonymous ones included), last to first
   * as vLLM does: cached blocks nobody else holds join the LRU, the tail first.
   */
  release(hold: RunHold, blocks: number): void {
    const done = hold.done;
    const held = done - hold.dupBlocks;
    assert(blocks >= held, 'release of more cached blocks than the sequence holds');
    // Anonymous blocks go back to the free count; their order does not matter.
    this.trulyFree += blocks - held;
    const nodes = hold.path.nodes;
    const dups = hold.dups;
    let d = dups === undefined ? -2 : dups.length - 2;
    let j = hold.node < nodes.length ? hold.node : nodes.length - 1;
    const forest = this.forest;
    for (; j >= 0; j--) {
      const node = nodes[j] as number;
      const first = forest.firstBlockOf(node);
      if (first >= done) continue;
      let hi = Math.min(forest.sizeOfNode(node), done - first);
      // Held ranges are [0, hi) minus the duplicates, released from the top.
      while (hi > 0) {
        // Duplicates wholly above the range are done with.
        while (d >= 0 && ((dups as number[])[d] as number) - first >= hi) d -= 2;
        let lo = 0;
        if (d >= 0) {
          const dupLo = ((dups as number[])[d] as number) - first;
          const dupHi = ((dups as number[])[d + 1] as number) - first;
          if (dupHi >= hi) {
            // The range's top is a duplicate: nothing to release there. One reaching into an
            // earlier node stays for it.
            hi = dupLo > 0 ? dupLo : 0;
            if (dupLo >= 0) d -= 2;
            continue;
          }
          if (dupHi > 0) lo = dupHi;
        }
        this.releaseRange(hold.recs[j] as number, lo, hi);
        hi = lo;
      }
    }
    hold.recs.length = 0;
    hold.done = 0;
    hold.node = 0;
    hold.dups = undefined;
    hold.dupBlocks = 0;
  }

  /** Checks the free counts against the LRU queue. O(queue); for tests. */
  checkInvariants(): void {
    const p = this.pools;
    let free = 0;
    let live = 0;
    for (let i = this.head; i < this.tail; i++) {
      const u = this.queueRuns[i] as number;
      if (p.runStamp[u] !== this.queueStamps[i]) continue;
      live++;
      const rec = p.runRec[u] as number;
      assert(p.runRef[u] === 0 && (p.runHi[u] as number) > (p.runLo[u] as number), 'queued run is not free');
      assert(rec !== NONE && p.recCache[rec] === this.id, 'queued run left its record');
      free += (p.runHi[u] as number) - (p.runLo[u] as number);
    }
    assert(free === this.lruFree, `LRU holds ${free} blocks, count says ${this.lruFree}`);
    assert(live === this.queueLive, `LRU has ${live} live entries, count says ${this.queueLive}`);
    assert(
      this.trulyFree >= 0 && this.trulyFree + this.lruFree <= this.numBlocks,
      'free counts out of range',
    );
  }

  /** Whether the hold's blocks [first, first + a) of node j include a held one (not all duplicates). */
  private holdsIn(hold: RunHold, j: number, first: number, a: number): boolean {
    const dups = hold.dups;
    if (dups === undefined) return true;
    // Duplicates are merged ranges: the node's first `a` blocks are all duplicates iff one covers them.
    for (let d = dups.length - 2; d >= 0; d -= 2) {
      if ((dups[d + 1] as number) <= first) break;
      if ((dups[d] as number) <= first && (dups[d + 1] as number) >= first + a) return false;
    }
    return j < hold.recs.length && hold.recs[j] !== undefined && hold.recs[j] !== NONE;
  }

  private recordOf(node: number): number {
    const p = this.pools;
    const id = this.id;
    for (let r = this.forest.recordsOf(node); r !== NONE; r = p.recNext[r] as number) {
      if (p.recCache[r] === id) return r;
    }
    return NONE;
  }

  private newRecord(node: number): number {
    this.forest.use(node);
    return this.pools.newRecord(node, this.id);
  }

  /** One more reference on the record's blocks [0, m) (all cached): revives the free ones. */
  private acquire(rec: number, m: number): void {
    const p = this.pools;
    for (let u = p.recFirstRun[rec] as number; u !== NONE; u = p.runNext[u] as number) {
      const lo = p.runLo[u] as number;
      if (lo >= m) break;
      const hi = p.runHi[u] as number;
      const ref = p.runRef[u] as number;
      if (hi > m) {
        if (ref === 0) {
          // The part above m stays free, in its place in the LRU.
          this.lruFree -= m - lo;
          p.newRun(rec, lo, m, 1, p.runPrev[u] as number);
          p.runLo[u] = m;
        } else {
          p.newRun(rec, m, hi, ref, u);
          p.runHi[u] = m;
          p.runRef[u] = ref + 1;
        }
        return;
      }
      if (ref === 0) {
        this.lruFree -= hi - lo;
        p.runStamp[u] = IN_USE;
        this.queueLive--;
      }
      p.runRef[u] = ref + 1;
    }
  }

  /**
   * The sequence stores blocks [a, b) of the record's node: new ones become runs it holds, the
   * others duplicates. Returns the blocks it now holds there.
   */
  private claim(rec: number, a: number, b: number, hold: RunHold): number {
    const p = this.pools;
    const first = this.forest.firstBlockOf(p.recNode[rec] as number);
    let held = 0;
    let cur = a;
    let prev = NONE;
    let u = p.recFirstRun[rec] as number;
    while (u !== NONE && (p.runHi[u] as number) <= cur) {
      prev = u;
      u = p.runNext[u] as number;
    }
    while (cur < b) {
      const lo = u === NONE ? b : (p.runLo[u] as number);
      if (lo > cur) {
        const top = lo < b ? lo : b;
        prev = this.insertHeld(rec, prev, cur, top);
        held += top - cur;
        cur = top;
        continue;
      }
      const hi = p.runHi[u] as number;
      const top = hi < b ? hi : b;
      this.addDup(hold, first + cur, first + top);
      cur = top;
      prev = u;
      u = p.runNext[u] as number;
    }
    return held;
  }

  /** A run [lo, hi) with one reference after `prev`, merged into `prev` when that is an equal in-use run ending at lo; returns it. */
  private insertHeld(rec: number, prev: number, lo: number, hi: number): number {
    const p = this.pools;
    if (prev !== NONE && p.runHi[prev] === lo && p.runRef[prev] === 1) {
      p.runHi[prev] = hi;
      return prev;
    }
    return p.newRun(rec, lo, hi, 1, prev);
  }

  private addDup(hold: RunHold, lo: number, hi: number): void {
    const dups = hold.dups;
    hold.dupBlocks += hi - lo;
    if (dups === undefined) {
      hold.dups = [lo, hi];
    } else if (dups[dups.length - 1] === lo) {
      dups[dups.length - 1] = hi;
    } else {
      dups.push(lo, hi);
    }
  }

  /** Drops one reference on the record's blocks [a, b) (all held), from the top down. */
  private releaseRange(rec: number, a: number, b: number): void {
    const p = this.pools;
    // The last run of the record: walk down from it.
    let u = p.recFirstRun[rec] as number;
    while (p.runNext[u] !== NONE) u = p.runNext[u] as number;
    while (u !== NONE) {
      const prev = p.runPrev[u] as number;
      const lo = p.runLo[u] as number;
      const hi = p.runHi[u] as number;
      if (lo >= b) {
        u = prev;
        continue;
      }
      if (hi <= a) break;
      const ref = p.runRef[u] as number;
      if (hi > b) {
        p.newRun(rec, b, hi, ref, u);
        p.runHi[u] = b;
      }
      if (lo < a) {
        p.newRun(rec, lo, a, ref, prev);
        p.runLo[u] = a;
      }
      if (ref <= 0) throw new AssertionError('release of a free cached block');
      p.runRef[u] = ref - 1;
      if (ref === 1) this.enqueue(u);
      u = prev;
    }
  }

  /** A run just became free: to the LRU's tail, merged into the entry before it when that is its upper neighbour. */
  private enqueue(u: number): void {
    const p = this.pools;
    const lo = p.runLo[u] as number;
    const hi = p.runHi[u] as number;
    this.lruFree += hi - lo;
    if (this.tail > this.head) {
      const last = this.queueRuns[this.tail - 1] as number;
      if (
        p.runStamp[last] === this.nextStamp - 1 &&
        this.queueStamps[this.tail - 1] === this.nextStamp - 1 &&
        p.runRec[last] === p.runRec[u] &&
        p.runLo[last] === hi
      ) {
        // Freed just after the run above it: evicting the two top-down is evicting one run.
        p.runLo[last] = lo;
        p.dropRun(u);
        return;
      }
    }
    const stamp = this.nextStamp++;
    p.runStamp[u] = stamp;
    if (this.tail === this.queueRuns.length) this.makeRoom();
    this.queueRuns[this.tail] = u;
    this.queueStamps[this.tail] = stamp;
    this.tail++;
    this.queueLive++;
  }

  /** Evicts `count` free cached blocks from the LRU's head (the caller checked there are enough). */
  private evict(count: number): void {
    const p = this.pools;
    let left = count;
    while (left > 0) {
      if (this.head === this.tail) throw new AssertionError('LRU exhausted');
      const u = this.queueRuns[this.head] as number;
      if (p.runStamp[u] !== this.queueStamps[this.head]) {
        this.head++;
        continue;
      }
      const size = (p.runHi[u] as number) - (p.runLo[u] as number);
      const t = left < size ? left : size;
      p.runHi[u] = (p.runHi[u] as number) - t;
      left -= t;
      if (t === size) {
        this.queueLive--;
        this.head++;
        const rec = p.runRec[u] as number;
        p.dropRun(u);
        if (p.recFirstRun[rec] === NONE) {
          const node = p.recNode[rec] as number;
          p.dropRecord(rec);
          this.forest.unuse(node);
        }
      }
    }
    this.lruFree -= count;
  }

  /** The queue is full at its tail: drop stale entries and the consumed head, growing if still full. */
  private makeRoom(): void {
    const p = this.pools;
    const runs = this.queueRuns;
    const stamps = this.queueStamps;
    let w = 0;
    // Stale entries are dropped only when there are many, so each compaction pays for itself.
    const dropStale = this.tail - this.head > 2 * this.queueLive + QUEUE_SLACK;
    for (let i = this.head; i < this.tail; i++) {
      const u = runs[i] as number;
      if (dropStale && p.runStamp[u] !== stamps[i]) continue;
      runs[w] = u;
      stamps[w] = stamps[i] as number;
      w++;
    }
    this.head = 0;
    this.tail = w;
    if (w > runs.length / 2) {
      const bigger = new Int32Array(2 * runs.length);
      bigger.set(runs.subarray(0, w));
      const biggerStamps = new Float64Array(2 * runs.length);
      biggerStamps.set(stamps.subarray(0, w));
      this.queueRuns = bigger;
      this.queueStamps = biggerStamps;
    }
  }
}
