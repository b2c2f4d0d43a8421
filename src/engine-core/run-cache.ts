import { AssertionError, assert } from '../core/assert.ts';
import type { PrefixForest, PrefixNode, PrefixPath } from './prefix-forest.ts';

/**
 * Stale LRU entries (left by revived runs) kept at most this many beyond twice the live ones before
 * the queue is compacted: the queue's bound.
 */
const QUEUE_SLACK = 1024;

/**
 * A range [lo, hi) of one node's blocks, cached in one instance, all with the same ref count. A
 * free run (ref 0) sits in the LRU queue under its `stamp` and is evicted from the top down.
 */
class Run {
  lo: number;
  hi: number;
  ref: number;
  /** The queue entry that holds this run while it is free; -1 while in use. */
  stamp = -1;
  readonly rec: NodeRecord;

  constructor(rec: NodeRecord, lo: number, hi: number, ref: number) {
    this.rec = rec;
    this.lo = lo;
    this.hi = hi;
    this.ref = ref;
  }
}

/** One instance's cached blocks of one prefix node: its runs, sorted by `lo`, disjoint. */
export class NodeRecord {
  readonly node: PrefixNode;
  readonly cache: RunCache;
  /** The next record of the same node (another instance's). */
  next: NodeRecord | undefined = undefined;
  readonly runs: Run[] = [];
  /** Set once its last block is evicted and it left the node's list. */
  dead = false;

  constructor(node: PrefixNode, cache: RunCache) {
    this.node = node;
    this.cache = cache;
  }
}

/**
 * What a sequence holds in a RunCache: a prefix of its path's blocks, [0, done), each either a
 * cached block it shares (a hit or one it stored) or, where another block already held that
 * content when it stored (a duplicate), a block of its own that nobody can hit. Blocks past `done`
 * (the prompt's uncached part, decode blocks) are anonymous and counted by the engine core.
 */
export class RunHold {
  readonly path: PrefixPath;
  /** The record of path node j, once this sequence holds or has looked at blocks there. */
  readonly recs: (NodeRecord | undefined)[] = [];
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
 * by several sequences is counted once, as in the pool.
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
  /** Free blocks that hold no cached content. */
  private trulyFree: number;
  /** Free blocks that still hold a cached prefix (the LRU's blocks). */
  private lruFree = 0;
  /** The LRU: free runs in the order they were freed, with the stamp each was queued under. */
  private queueRuns: (Run | undefined)[] = [];
  private queueStamps: number[] = [];
  private head = 0;
  /** Queue entries whose run is still free under their stamp. */
  private queueLive = 0;
  private nextStamp = 0;
  // The last `match`, for `commit`.
  private readonly matchRecs: NodeRecord[] = [];
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
    const nodes = hold.path.nodes;
    let hits = 0;
    let free = 0;
    let count = 0;
    for (let j = 0; j < nodes.length; j++) {
      const node = nodes[j] as PrefixNode;
      const k = Math.min(node.size, cap - node.firstBlock);
      if (k <= 0) break;
      const rec = this.recordOf(node);
      if (rec === undefined) break;
      let m = 0;
      const runs = rec.runs;
      for (let i = 0; i < runs.length && m < k; i++) {
        const r = runs[i] as Run;
        if (r.lo !== m) break;
        const top = r.hi < k ? r.hi : k;
        if (r.ref === 0) free += top - m;
        m = top;
      }
      if (m === 0) break;
      this.matchRecs[count] = rec;
      this.matchLens[count] = m;
      count++;
      hits = node.firstBlock + m;
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
      const rec = this.matchRecs[j] as NodeRecord;
      hold.recs[j] = rec;
      this.acquire(rec, this.matchLens[j] as number);
    }
    hold.done = this.matchHits;
    // The node holding position `done`: the one after the last hit node when that was hit whole.
    const lastWhole =
      count > 0 && this.matchLens[count - 1] === (hold.path.nodes[count - 1] as PrefixNode).size;
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
    const nodes = hold.path.nodes;
    let pos = hold.done;
    let j = hold.node;
    while (pos < to) {
      const node = nodes[j] as PrefixNode;
      const first = node.firstBlock;
      const a = pos - first;
      const b = Math.min(node.size, to - first);
      let rec = hold.recs[j];
      if (rec === undefined || rec.dead) {
        rec = this.recordOf(node) ?? this.newRecord(node);
        hold.recs[j] = rec;
      }
      this.claim(rec, a, b, hold);
      pos = first + b;
      if (b === node.size) j++;
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
    for (; j >= 0; j--) {
      const node = nodes[j] as PrefixNode;
      const first = node.firstBlock;
      if (first >= done) continue;
      let hi = Math.min(node.size, done - first);
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
        this.releaseRange(hold.recs[j] as NodeRecord, lo, hi);
        hi = lo;
      }
    }
    hold.recs.length = 0;
    hold.done = 0;
    hold.node = 0;
    hold.dups = undefined;
    hold.dupBlocks = 0;
  }

  /**
   * Checks the counts against the queue and every record of the forest nodes in `paths`. O(queue);
   * for tests.
   */
  checkInvariants(): void {
    let free = 0;
    let live = 0;
    for (let i = this.head; i < this.queueRuns.length; i++) {
      const r = this.queueRuns[i];
      if (r === undefined || r.stamp !== this.queueStamps[i]) continue;
      live++;
      assert(r.ref === 0 && r.hi > r.lo, 'queued run is not free');
      assert(!r.rec.dead && r.rec.runs.includes(r), 'queued run left its record');
      free += r.hi - r.lo;
    }
    assert(free === this.lruFree, `LRU holds ${free} blocks, count says ${this.lruFree}`);
    assert(live === this.queueLive, `LRU has ${live} live entries, count says ${this.queueLive}`);
    assert(
      this.trulyFree >= 0 && this.trulyFree + this.lruFree <= this.numBlocks,
      'free counts out of range',
    );
  }

  private recordOf(node: PrefixNode): NodeRecord | undefined {
    for (let r = node.records; r !== undefined; r = r.next) if (r.cache === this) return r;
    return undefined;
  }

  private newRecord(node: PrefixNode): NodeRecord {
    const rec = new NodeRecord(node, this);
    rec.next = node.records;
    node.records = rec;
    this.forest.use(node);
    return rec;
  }

  private dropRecord(rec: NodeRecord): void {
    rec.dead = true;
    const node = rec.node;
    if (node.records === rec) {
      node.records = rec.next;
    } else {
      let r = node.records as NodeRecord;
      while (r.next !== rec) r = r.next as NodeRecord;
      r.next = rec.next;
    }
    this.forest.unuse(node);
  }

  /** One more reference on the record's blocks [0, m) (all cached): revives the free ones. */
  private acquire(rec: NodeRecord, m: number): void {
    const runs = rec.runs;
    for (let i = 0; i < runs.length; i++) {
      const r = runs[i] as Run;
      if (r.lo >= m) break;
      if (r.hi > m) {
        if (r.ref === 0) {
          // The part above m stays free, in its place in the LRU.
          this.lruFree -= m - r.lo;
          insertAt(runs, i, new Run(rec, r.lo, m, 1));
          r.lo = m;
        } else {
          insertAt(runs, i + 1, new Run(rec, m, r.hi, r.ref));
          r.hi = m;
          r.ref++;
        }
        return;
      }
      if (r.ref === 0) {
        this.lruFree -= r.hi - r.lo;
        r.stamp = -1;
        this.queueLive--;
      }
      r.ref++;
    }
  }

  /** The sequence stores blocks [a, b) of the record's node: new ones become its runs, others dups. */
  private claim(rec: NodeRecord, a: number, b: number, hold: RunHold): void {
    const runs = rec.runs;
    const first = rec.node.firstBlock;
    let cur = a;
    let i = 0;
    while (i < runs.length && (runs[i] as Run).hi <= cur) i++;
    while (cur < b) {
      const r = runs[i];
      if (r === undefined || r.lo >= b) {
        this.insertHeld(rec, i, cur, b);
        return;
      }
      if (r.lo > cur) {
        i = this.insertHeld(rec, i, cur, r.lo) + 1;
      }
      const top = r.hi < b ? r.hi : b;
      const lo = r.lo > cur ? r.lo : cur;
      this.addDup(hold, first + lo, first + top);
      cur = top;
      i++;
    }
  }

  /** Inserts a run [lo, hi) with one reference at index i, merged into an equal in-use run left of it; returns its index. */
  private insertHeld(rec: NodeRecord, i: number, lo: number, hi: number): number {
    const runs = rec.runs;
    const left = i > 0 ? (runs[i - 1] as Run) : undefined;
    if (left !== undefined && left.hi === lo && left.ref === 1) {
      left.hi = hi;
      return i - 1;
    }
    insertAt(runs, i, new Run(rec, lo, hi, 1));
    return i;
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
  private releaseRange(rec: NodeRecord, a: number, b: number): void {
    const runs = rec.runs;
    for (let i = runs.length - 1; i >= 0; i--) {
      const r = runs[i] as Run;
      if (r.lo >= b) continue;
      if (r.hi <= a) break;
      if (r.hi > b) {
        insertAt(runs, i + 1, new Run(rec, b, r.hi, r.ref));
        r.hi = b;
      }
      if (r.lo < a) {
        insertAt(runs, i, new Run(rec, r.lo, a, r.ref));
        r.lo = a;
        i++;
      }
      if (r.ref <= 0) throw new AssertionError('release of a free cached block');
      if (--r.ref === 0) this.enqueue(r, i);
    }
  }

  /** A run just became free: to the LRU's tail, merged into the entry before it when that is its upper neighbour. */
  private enqueue(r: Run, index: number): void {
    const len = r.hi - r.lo;
    this.lruFree += len;
    const tail = this.queueRuns.length - 1;
    const last = tail >= this.head ? this.queueRuns[tail] : undefined;
    if (
      last !== undefined &&
      last.rec === r.rec &&
      last.lo === r.hi &&
      last.stamp === this.nextStamp - 1 &&
      last.stamp === this.queueStamps[tail]
    ) {
      // Freed just after the run above it: evicting the two top-down is evicting one run.
      last.lo = r.lo;
      removeAt(r.rec.runs, index);
      return;
    }
    r.stamp = this.nextStamp++;
    this.queueRuns.push(r);
    this.queueStamps.push(r.stamp);
    this.queueLive++;
    if (this.queueRuns.length - this.head > 2 * this.queueLive + QUEUE_SLACK) this.compact();
  }

  /** Evicts `count` free cached blocks from the LRU's head (the caller checked there are enough). */
  private evict(count: number): void {
    const runs = this.queueRuns;
    const stamps = this.queueStamps;
    let left = count;
    while (left > 0) {
      const r = runs[this.head];
      if (r === undefined) throw new AssertionError('LRU exhausted');
      if (r.stamp !== stamps[this.head]) {
        runs[this.head++] = undefined;
        continue;
      }
      const size = r.hi - r.lo;
      const t = left < size ? left : size;
      r.hi -= t;
      left -= t;
      if (t === size) {
        r.stamp = -1;
        this.queueLive--;
        runs[this.head++] = undefined;
        const recRuns = r.rec.runs;
        removeAt(recRuns, recRuns.indexOf(r));
        if (recRuns.length === 0) this.dropRecord(r.rec);
      }
    }
    this.lruFree -= count;
    if (this.head > QUEUE_SLACK && 2 * this.head > runs.length) this.compact();
  }

  /** Drops the queue's stale entries and its consumed head. */
  private compact(): void {
    const runs: (Run | undefined)[] = [];
    const stamps: number[] = [];
    for (let i = this.head; i < this.queueRuns.length; i++) {
      const r = this.queueRuns[i];
      if (r === undefined || r.stamp !== this.queueStamps[i]) continue;
      runs.push(r);
      stamps.push(r.stamp);
    }
    this.queueRuns = runs;
    this.queueStamps = stamps;
    this.head = 0;
  }
}

/** Inserts at index i, shifting the rest up (Array.prototype.splice allocates its result array). */
function insertAt(runs: Run[], i: number, run: Run): void {
  let j = runs.length;
  runs.push(run);
  for (; j > i; j--) runs[j] = runs[j - 1] as Run;
  runs[i] = run;
}

/** Removes index i, shifting the rest down. */
function removeAt(runs: Run[], i: number): void {
  for (let j = i + 1; j < runs.length; j++) runs[j - 1] = runs[j] as Run;
  runs.pop();
}
