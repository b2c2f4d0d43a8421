import { AssertionError, assert } from '../core/assert.ts';
import type { PrefixForest, PrefixPath } from './prefix-forest.ts';

/**
 * Stale LRU entries (left by revived runs) kept at most this many beyond twice the live ones before
 * the queue is compacted: the queue's bound.
 */
const QUEUE_SLACK = 1024;
/** No record, no run. */
const NONE = -1;
/** Where reads made only to bring lines into cache leave a value, so they are not optimised away. */
const readAheadSink = new Int32Array(1);
/** A run's stamp while it is in use (not in the LRU). */
const IN_USE = -1;

/** Int32 fields of a run (RunPools.run, RUN_STRIDE per run); its stamp is a double beside them. */
const LO = 0;
const HI = 1;
const REF = 2;
const REC = 3;
const NEXT = 4;
const PREV = 5;
/** Int32 entries per run: the six fields above and the stamp's two words (one double). */
const RUN_STRIDE = 8;
/** The stamp's index in the Float64Array view: run u's stamp is `runStamp[u * 4 + STAMP]`. */
const STAMP = 3;
/** Int32 fields of a record (RunPools.rec, REC_STRIDE per record). */
const R_CACHE = 0;
const R_NEXT = 1;
const R_FIRST = 2;
const R_NODE = 3;
const REC_STRIDE = 4;
/** Records and runs allocated up front; both double as needed. */
const POOL_INITIAL = 1024;

/**
 * The records and runs of every RunCache of one forest, in typed arrays with free lists.
 *
 * A record is one instance's cached blocks of one prefix node: the head of its runs, its cache, and
 * the next record of the same node (another instance's; the node's list starts at
 * `PrefixForest.recordsOf(node)`). A run is a range [lo, hi) of the node's blocks cached in one instance, all
 * with one ref count; a record's runs are a list sorted by lo, disjoint. A free run (ref 0) sits
 * in its cache's LRU queue under its stamp. Bound: live records and runs are at most twice the
 * blocks cached across the caches; the arrays grow by doubling and are never shrunk.
 *
 * Each run's fields sit together (32 bytes, stamp included), as do each record's (16 bytes): the
 * LRU evicts runs freed long ago, scattered over the pools, and with one array per field every
 * field read was a cache miss of its own (about a tenth of a long-prompt replay went to evicting).
 */
class RunPools {
  /** Records: REC_STRIDE int32 fields each. */
  rec = new Int32Array(POOL_INITIAL * REC_STRIDE);
  private recFree = NONE;
  private recTop = 0;

  /** Runs: RUN_STRIDE int32 entries each, the last two the stamp (see `runStamp`). */
  run = new Int32Array(POOL_INITIAL * RUN_STRIDE);
  /** The same memory as doubles: run u's stamp is `runStamp[u * 4 + STAMP]`, IN_USE unless free. */
  runStamp = new Float64Array(this.run.buffer);
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
      this.recFree = this.rec[r * REC_STRIDE + R_NEXT] as number;
    } else {
      r = this.recTop++;
      if (r * REC_STRIDE >= this.rec.length) this.growRecords();
    }
    const rec = this.rec;
    const b = r * REC_STRIDE;
    rec[b + R_CACHE] = cache;
    rec[b + R_FIRST] = NONE;
    rec[b + R_NODE] = node;
    rec[b + R_NEXT] = this.forest.recordsOf(node);
    this.forest.setRecords(node, r);
    return r;
  }

  /** Unlinks an empty record from its node's list and frees it. */
  dropRecord(r: number): void {
    const rec = this.rec;
    const b = r * REC_STRIDE;
    const node = rec[b + R_NODE] as number;
    const next = rec[b + R_NEXT] as number;
    const head = this.forest.recordsOf(node);
    if (head === r) {
      this.forest.setRecords(node, next);
    } else {
      let p = head;
      while (rec[p * REC_STRIDE + R_NEXT] !== r) p = rec[p * REC_STRIDE + R_NEXT] as number;
      rec[p * REC_STRIDE + R_NEXT] = next;
    }
    rec[b + R_NODE] = NONE;
    rec[b + R_CACHE] = NONE;
    rec[b + R_NEXT] = this.recFree;
    this.recFree = r;
  }

  /** A new run [lo, hi) of record `rec` with `ref` references, in use, linked after `prev` (NONE: first). */
  newRun(rec: number, lo: number, hi: number, ref: number, prev: number): number {
    let u = this.runFree;
    if (u !== NONE) {
      this.runFree = this.run[u * RUN_STRIDE + NEXT] as number;
    } else {
      u = this.runTop++;
      if (u * RUN_STRIDE >= this.run.length) this.growRuns();
    }
    const run = this.run;
    const b = u * RUN_STRIDE;
    run[b + LO] = lo;
    run[b + HI] = hi;
    run[b + REF] = ref;
    run[b + REC] = rec;
    this.runStamp[u * 4 + STAMP] = IN_USE;
    const recFirst = rec * REC_STRIDE + R_FIRST;
    const next = prev === NONE ? (this.rec[recFirst] as number) : (run[prev * RUN_STRIDE + NEXT] as number);
    run[b + PREV] = prev;
    run[b + NEXT] = next;
    if (prev === NONE) this.rec[recFirst] = u;
    else run[prev * RUN_STRIDE + NEXT] = u;
    if (next !== NONE) run[next * RUN_STRIDE + PREV] = u;
    return u;
  }

  /** Unlinks a run from its record and frees it. */
  dropRun(u: number): void {
    const run = this.run;
    const b = u * RUN_STRIDE;
    const prev = run[b + PREV] as number;
    const next = run[b + NEXT] as number;
    if (prev === NONE) this.rec[(run[b + REC] as number) * REC_STRIDE + R_FIRST] = next;
    else run[prev * RUN_STRIDE + NEXT] = next;
    if (next !== NONE) run[next * RUN_STRIDE + PREV] = prev;
    this.runStamp[u * 4 + STAMP] = IN_USE;
    run[b + REC] = NONE;
    run[b + NEXT] = this.runFree;
    this.runFree = u;
  }

  private growRecords(): void {
    this.rec = grow(this.rec, 2 * this.rec.length);
  }

  private growRuns(): void {
    this.run = grow(this.run, 2 * this.run.length);
    this.runStamp = new Float64Array(this.run.buffer);
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
  readonly recs: number[];
  /** Leading positions hit or stored on this admission. */
  done = 0;
  /** The path node holding position `done` (or past the last). */
  node = 0;
  /** Duplicate positions in [0, done), as ascending [lo, hi) pairs; undefined when none. */
  dups: number[] | undefined = undefined;
  dupBlocks = 0;

  constructor(path: PrefixPath) {
    this.path = path;
    // Sized once (NONE: no record), not grown entry by entry on every admission.
    this.recs = new Array<number>(path.nodes.length).fill(NONE);
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
      for (
        let u = p.rec[rec * REC_STRIDE + R_FIRST] as number;
        u !== NONE && m < k;
        u = p.run[u * RUN_STRIDE + NEXT] as number
      ) {
        if (p.run[u * RUN_STRIDE + LO] !== m) break;
        const hi = p.run[u * RUN_STRIDE + HI] as number;
        const top = hi < k ? hi : k;
        if (p.run[u * RUN_STRIDE + REF] === 0) free += top - m;
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

  /** Takes back `count` anonymous blocks handed out by `allocate` and held by no sequence. */
  freeAnonymous(count: number): void {
    assert(count >= 0 && this.trulyFree + this.lruFree + count <= this.numBlocks, 'free of unheld blocks');
    this.trulyFree += count;
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
    hold.recs.fill(NONE);
    hold.done = 0;
    hold.node = 0;
    hold.dups = undefined;
    hold.dupBlocks = 0;
  }

  /**
   * How many leading blocks of the sequence's path, at most `capBlocks`, are cached blocks held by
   * exactly `holders` sequences: with `holders` every sequence holding KV in this cache, the blocks
   * all of them share (vLLM's `get_num_common_prefix_blocks`, which the engine core turns into
   * cascade attention's prefix). A duplicate position (a block of its own) or an unheld one ends it.
   * O(nodes and runs walked), at most one past the shared prefix.
   */
  sharedPrefixBlocks(hold: RunHold, holders: number, capBlocks: number): number {
    let limit = hold.done < capBlocks ? hold.done : capBlocks;
    const dups = hold.dups;
    if (dups !== undefined && (dups[0] as number) < limit) limit = dups[0] as number;
    const p = this.pools;
    const forest = this.forest;
    const nodes = hold.path.nodes;
    let shared = 0;
    for (let j = 0; shared < limit && j < nodes.length; j++) {
      const node = nodes[j] as number;
      const first = forest.firstBlockOf(node);
      const k = Math.min(forest.sizeOfNode(node), limit - first);
      // Positions below `done` that are not duplicates are held, so the record is the hold's.
      const rec = hold.recs[j] as number;
      if (rec === NONE) break;
      let m = 0;
      for (
        let u = p.rec[rec * REC_STRIDE + R_FIRST] as number;
        u !== NONE && m < k;
        u = p.run[u * RUN_STRIDE + NEXT] as number
      ) {
        if (p.run[u * RUN_STRIDE + LO] !== m || p.run[u * RUN_STRIDE + REF] !== holders) break;
        const hi = p.run[u * RUN_STRIDE + HI] as number;
        m = hi < k ? hi : k;
      }
      shared = first + m;
      if (m < k) break;
    }
    return shared;
  }

  /** Checks the free counts against the LRU queue. O(queue); for tests. */
  checkInvariants(): void {
    const p = this.pools;
    let free = 0;
    let live = 0;
    for (let i = this.head; i < this.tail; i++) {
      const u = this.queueRuns[i] as number;
      if (p.runStamp[u * 4 + STAMP] !== this.queueStamps[i]) continue;
      live++;
      const rec = p.run[u * RUN_STRIDE + REC] as number;
      assert(
        p.run[u * RUN_STRIDE + REF] === 0 &&
          (p.run[u * RUN_STRIDE + HI] as number) > (p.run[u * RUN_STRIDE + LO] as number),
        'queued run is not free',
      );
      assert(rec !== NONE && p.rec[rec * REC_STRIDE + R_CACHE] === this.id, 'queued run left its record');
      free += (p.run[u * RUN_STRIDE + HI] as number) - (p.run[u * RUN_STRIDE + LO] as number);
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
    return (hold.recs[j] ?? NONE) !== NONE;
  }

  /**
   * This cache's record of the node (NONE: none). A record found behind others moves to the front
   * of the node's list (the list's order means nothing else): a node every instance caches (a
   * shared system prompt) has a record per instance, and a request waiting at the front of an
   * instance's queue is matched again every step, its whole path, so without the move each
   * lookup walked past the other instances' records (a tenth of a replay of long multi-turn
   * sessions on 16 instances went to that walk).
   */
  private recordOf(node: number): number {
    const rec = this.pools.rec;
    const id = this.id;
    const head = this.forest.recordsOf(node);
    let prev = NONE;
    for (let r = head; r !== NONE; r = rec[r * REC_STRIDE + R_NEXT] as number) {
      if (rec[r * REC_STRIDE + R_CACHE] === id) {
        if (prev !== NONE) {
          rec[prev * REC_STRIDE + R_NEXT] = rec[r * REC_STRIDE + R_NEXT] as number;
          rec[r * REC_STRIDE + R_NEXT] = head;
          this.forest.setRecords(node, r);
        }
        return r;
      }
      prev = r;
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
    for (
      let u = p.rec[rec * REC_STRIDE + R_FIRST] as number;
      u !== NONE;
      u = p.run[u * RUN_STRIDE + NEXT] as number
    ) {
      const lo = p.run[u * RUN_STRIDE + LO] as number;
      if (lo >= m) break;
      const hi = p.run[u * RUN_STRIDE + HI] as number;
      const ref = p.run[u * RUN_STRIDE + REF] as number;
      if (hi > m) {
        if (ref === 0) {
          // The part above m stays free, in its place in the LRU.
          this.lruFree -= m - lo;
          p.newRun(rec, lo, m, 1, p.run[u * RUN_STRIDE + PREV] as number);
          p.run[u * RUN_STRIDE + LO] = m;
        } else {
          p.newRun(rec, m, hi, ref, u);
          p.run[u * RUN_STRIDE + HI] = m;
          p.run[u * RUN_STRIDE + REF] = ref + 1;
        }
        return;
      }
      if (ref === 0) {
        this.lruFree -= hi - lo;
        p.runStamp[u * 4 + STAMP] = IN_USE;
        this.queueLive--;
      }
      p.run[u * RUN_STRIDE + REF] = ref + 1;
    }
  }

  /**
   * The sequence stores blocks [a, b) of the record's node: new ones become runs it holds, the
   * others duplicates. Returns the blocks it now holds there.
   */
  private claim(rec: number, a: number, b: number, hold: RunHold): number {
    const p = this.pools;
    const first = this.forest.firstBlockOf(p.rec[rec * REC_STRIDE + R_NODE] as number);
    let held = 0;
    let cur = a;
    let prev = NONE;
    let u = p.rec[rec * REC_STRIDE + R_FIRST] as number;
    while (u !== NONE && (p.run[u * RUN_STRIDE + HI] as number) <= cur) {
      prev = u;
      u = p.run[u * RUN_STRIDE + NEXT] as number;
    }
    while (cur < b) {
      const lo = u === NONE ? b : (p.run[u * RUN_STRIDE + LO] as number);
      if (lo > cur) {
        const top = lo < b ? lo : b;
        prev = this.insertHeld(rec, prev, cur, top);
        held += top - cur;
        cur = top;
        continue;
      }
      const hi = p.run[u * RUN_STRIDE + HI] as number;
      const top = hi < b ? hi : b;
      this.addDup(hold, first + cur, first + top);
      cur = top;
      prev = u;
      u = p.run[u * RUN_STRIDE + NEXT] as number;
    }
    return held;
  }

  /** A run [lo, hi) with one reference after `prev`, merged into `prev` when that is an equal in-use run ending at lo; returns it. */
  private insertHeld(rec: number, prev: number, lo: number, hi: number): number {
    const p = this.pools;
    if (prev !== NONE && p.run[prev * RUN_STRIDE + HI] === lo && p.run[prev * RUN_STRIDE + REF] === 1) {
      p.run[prev * RUN_STRIDE + HI] = hi;
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
    let u = p.rec[rec * REC_STRIDE + R_FIRST] as number;
    while (p.run[u * RUN_STRIDE + NEXT] !== NONE) u = p.run[u * RUN_STRIDE + NEXT] as number;
    while (u !== NONE) {
      const prev = p.run[u * RUN_STRIDE + PREV] as number;
      const lo = p.run[u * RUN_STRIDE + LO] as number;
      const hi = p.run[u * RUN_STRIDE + HI] as number;
      if (lo >= b) {
        u = prev;
        continue;
      }
      if (hi <= a) break;
      const ref = p.run[u * RUN_STRIDE + REF] as number;
      if (hi > b) {
        p.newRun(rec, b, hi, ref, u);
        p.run[u * RUN_STRIDE + HI] = b;
      }
      if (lo < a) {
        p.newRun(rec, lo, a, ref, prev);
        p.run[u * RUN_STRIDE + LO] = a;
      }
      if (ref <= 0) throw new AssertionError('release of a free cached block');
      p.run[u * RUN_STRIDE + REF] = ref - 1;
      if (ref === 1) this.enqueue(u);
      u = prev;
    }
  }

  /** A run just became free: to the LRU's tail, merged into the entry before it when that is its upper neighbour. */
  private enqueue(u: number): void {
    const p = this.pools;
    const lo = p.run[u * RUN_STRIDE + LO] as number;
    const hi = p.run[u * RUN_STRIDE + HI] as number;
    this.lruFree += hi - lo;
    if (this.tail > this.head) {
      const last = this.queueRuns[this.tail - 1] as number;
      if (
        p.runStamp[last * 4 + STAMP] === this.nextStamp - 1 &&
        this.queueStamps[this.tail - 1] === this.nextStamp - 1 &&
        p.run[last * RUN_STRIDE + REC] === p.run[u * RUN_STRIDE + REC] &&
        p.run[last * RUN_STRIDE + LO] === hi
      ) {
        // Freed just after the run above it: evicting the two top-down is evicting one run.
        p.run[last * RUN_STRIDE + LO] = lo;
        p.dropRun(u);
        return;
      }
    }
    const stamp = this.nextStamp++;
    p.runStamp[u * 4 + STAMP] = stamp;
    if (this.tail === this.queueRuns.length) this.makeRoom();
    this.queueRuns[this.tail] = u;
    this.queueStamps[this.tail] = stamp;
    this.tail++;
    this.queueLive++;
  }

  /** Evicts `count` free cached blocks from the LRU's head (the caller checked there are enough). */
  private evict(count: number): void {
    const p = this.pools;
    // The common case, a decode sub-step's block or two taken off the head run without using it
    // up (about nine in ten calls on the Mooncake replay): the loop's first pass, minus the
    // read-ahead, whose lines this one entry already has in cache.
    if (this.head < this.tail) {
      const u = this.queueRuns[this.head] as number;
      const b = u * RUN_STRIDE;
      const hi = p.run[b + HI] as number;
      if (
        p.runStamp[u * 4 + STAMP] === this.queueStamps[this.head] &&
        hi - (p.run[b + LO] as number) > count
      ) {
        p.run[b + HI] = hi - count;
        this.lruFree -= count;
        return;
      }
    }
    readAheadSink[0] = this.touchEvictions(count);
    let left = count;
    while (left > 0) {
      if (this.head === this.tail) throw new AssertionError('LRU exhausted');
      const u = this.queueRuns[this.head] as number;
      if (p.runStamp[u * 4 + STAMP] !== this.queueStamps[this.head]) {
        this.head++;
        continue;
      }
      const size = (p.run[u * RUN_STRIDE + HI] as number) - (p.run[u * RUN_STRIDE + LO] as number);
      const t = left < size ? left : size;
      p.run[u * RUN_STRIDE + HI] = (p.run[u * RUN_STRIDE + HI] as number) - t;
      left -= t;
      if (t === size) {
        this.queueLive--;
        this.head++;
        const rec = p.run[u * RUN_STRIDE + REC] as number;
        p.dropRun(u);
        if (p.rec[rec * REC_STRIDE + R_FIRST] === NONE) {
          const node = p.rec[rec * REC_STRIDE + R_NODE] as number;
          p.dropRecord(rec);
          this.forest.unuse(node);
        }
      }
    }
    this.lruFree -= count;
  }

  /**
   * Reads the run, record and node (`PrefixForest.touch`) of each LRU entry `evict(count)` is
   * about to visit, and returns a value made from them (for `readAheadSink`, so the reads are not
   * dropped). Changes nothing.
   *
   * Why: the entries at the LRU's head were freed long ago, so each one's run, record and node is a
   * cache miss, and in `evict`'s own loop every miss waits behind the previous entry's work. Here
   * the entries are independent, so the processor fetches many of them at once, and the loop then
   * finds them in cache (a fifth of a long-prompt replay went to evicting).
   */
  private touchEvictions(count: number): number {
    const p = this.pools;
    const run = p.run;
    const rec = p.rec;
    const forest = this.forest;
    const queue = this.queueRuns;
    let sink = 0;
    let blocks = 0;
    for (let h = this.head; h < this.tail && blocks < count; h++) {
      const b = (queue[h] as number) * RUN_STRIDE;
      // A stale entry's run may be free (record NONE) or reused: its size is then only an estimate.
      blocks += (run[b + HI] as number) - (run[b + LO] as number);
      const r = run[b + REC] as number;
      if (r !== NONE) sink ^= forest.touch(rec[r * REC_STRIDE + R_NODE] as number);
    }
    return sink;
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
      if (dropStale && p.runStamp[u * 4 + STAMP] !== stamps[i]) continue;
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
