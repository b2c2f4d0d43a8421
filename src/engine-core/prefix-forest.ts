import { assert } from '../core/assert.ts';
import type { PrefixChain } from '../core/request.ts';

/** No node. */
const NONE = -1;
/** Where reads made only to bring lines into cache leave a value, so they are not optimised away. */
const readAheadSink = new Int32Array(1);
/** `PrefixForest.path`'s scratch entries per node: chain index, first and end block, hash. */
const P_CHAIN = 0;
const P_LO = 1;
const P_HI = 2;
const P_HASH = 3;
const PATH_STRIDE = 4;
/** Nodes (and child-table slots) allocated up front; both double as needed. */
const NODES_INITIAL = 1024;
/** Block ids of `PrefixForest.blockIds`: node id times this plus the block's place in the node. */
const BLOCK_ID_STRIDE = 65_536;
/** Int32 fields of a node (PrefixForest.node, NODE_STRIDE per node); its key is a double beside them. */
const PARENT = 0;
const FIRST = 1;
const SIZE = 2;
const USES = 3;
const RECS = 4;
/** The node's full hash of (parent, key), as its child-table slot keeps it. */
const HASH = 5;
/** Int32 entries per node: the six fields above and the key's two words (one double). */
const NODE_STRIDE = 8;
/** The key's index in the Float64Array view: node n's key is `keyOf[n * 4 + KEY]`. */
const KEY = 3;

/** Read a double's bits without allocating, to hash keys that are not uint32. */
const keyF64 = new Float64Array(1);
const keyU32 = new Uint32Array(keyF64.buffer);

/**
 * A request's engine blocks as nodes of a PrefixForest: what a RunCache matches and stores. A node
 * is the engine blocks of one chain block; engine block e of the request is block
 * `e - forest.firstBlockOf(node)` of the node on its path that holds e.
 */
export interface PrefixPath {
  /** The nodes (forest node ids), root excluded, in order; the last may be covered only in part. */
  readonly nodes: readonly number[];
  /** Engine blocks covered (the `engineBlockHashes` length): positions [0, blocks). */
  readonly blocks: number;
}

/** The path of a request without a prefix chain. */
export const EMPTY_PATH: PrefixPath = Object.freeze({
  nodes: Object.freeze([]) as readonly number[],
  blocks: 0,
});

/**
 * The prefix forest of one twin run: every chain prefix that live requests or cached blocks use,
 * hash-consed, so that requests of one session share their nodes instead of each carrying its own
 * per-block hashes. One forest serves every engine core of one block size (RunCache keeps each
 * core's state on the nodes, through `recordsOf`).
 *
 * A node stands for the same engine blocks `engineBlockHashes` would hash: its blocks' hashes are
 * fixed by the chain values on the path to it and their positions, so two requests reach the same
 * node exactly when `engineBlockHashes` gives them equal hashes there (barring 32-bit collisions
 * between different prefixes, which the per-block reference cache treats as equal; see RunCache).
 *
 * Nodes are ids into typed arrays, and a node's children are found through one open-addressing
 * table keyed by (parent, chain value): a replay creates hundreds of thousands of nodes that live
 * as long as their blocks stay cached, and as objects every young-generation collection copied them.
 *
 * Bound: a node lives while a path holds it, an instance caches some of its blocks, or it has a
 * child (its use count); so the forest never holds more nodes than the live requests' paths plus
 * the blocks cached across instances. Paths are taken by `path` and handed back by `release` (the
 * engine core does it when the request leaves it). Ids of dropped nodes are reused.
 */
export class PrefixForest {
  /** Engine block size, in tokens. */
  readonly blockSize: number;
  /**
   * Nodes: NODE_STRIDE int32 entries each (parent, first block, size, uses, RunCache's first record,
   * hash, then the key as a double in `keyOf`), together so that a node costs one cache line, not
   * one per field: the LRU drops nodes made long before, scattered over the arrays.
   */
  private node = new Int32Array(NODES_INITIAL * NODE_STRIDE);
  /** The same memory as doubles: node n's chain value is `keyOf[n * 4 + KEY]`. */
  private keyOf = new Float64Array(this.node.buffer);
  /**
   * Child table: pairs (node id, NONE for empty; that node's full hash of (parent, key)), capacity a
   * power of two at least twice the nodes. The hash sits beside the id, so probes and the deletion's
   * shifts compare and re-home entries without reading the nodes, and a probe reads one line.
   */
  private slots = newSlots(2 * NODES_INITIAL);
  private slotMask = 2 * NODES_INITIAL - 1;
  /** Free node ids, chained through their PARENT field. */
  private freeHead = NONE;
  private top = 0;
  /** One root per chain block size: chains of different block sizes never share nodes. */
  private readonly roots = new Map<number, number>();
  private live = 0;
  /** `path`'s scratch: PATH_STRIDE entries per node of the path being made. */
  private pathScratch = new Int32Array(64 * PATH_STRIDE);

  constructor(blockSize: number) {
    assert(Number.isInteger(blockSize) && blockSize >= 1, `bad blockSize ${blockSize}`);
    this.blockSize = blockSize;
  }

  /** Nodes in the forest, roots excluded (for tests and the bound). */
  get nodeCount(): number {
    return this.live;
  }

  /** Position, in a request's block table, of the node's first engine block. */
  firstBlockOf(node: number): number {
    return this.node[node * NODE_STRIDE + FIRST] as number;
  }

  /** Engine blocks in the node; a request covers a prefix of them (all but at its prompt's end). */
  sizeOfNode(node: number): number {
    return this.node[node * NODE_STRIDE + SIZE] as number;
  }

  /** RunCache's first record of the node (NONE: none). */
  recordsOf(node: number): number {
    return this.node[node * NODE_STRIDE + RECS] as number;
  }

  /**
   * Reads what dropping the node would read (its record list, its child-table slot, its parent's
   * use count) and returns a value made from them; changes nothing. RunCache calls it ahead of an
   * eviction batch so that those cache misses overlap instead of following one another.
   */
  touch(node: number): number {
    const nodes = this.node;
    const b = node * NODE_STRIDE;
    const parent = nodes[b + PARENT] as number;
    const slot = this.slots[2 * ((nodes[b + HASH] as number) & this.slotMask)] as number;
    return (
      (nodes[b + RECS] as number) ^
      slot ^
      (parent === NONE ? 0 : (nodes[parent * NODE_STRIDE + USES] as number))
    );
  }

  /** Sets RunCache's first record of the node. */
  setRecords(node: number, record: number): void {
    this.node[node * NODE_STRIDE + RECS] = record;
  }

  /**
   * The path of a request's prefix: the same engine blocks as
   * `engineBlockHashes(prefix, inputTokens, blockSize)`, one node per chain block that holds any.
   * Chain block c holds engine blocks [floor(c * bt / bs), floor((c + 1) * bt / bs)) (bt its block
   * tokens, bs the engine's), those whose last token lies in it. Takes a use of every node: hand the
   * path back with `release`.
   */
  path(prefix: PrefixChain, inputTokens: number): PrefixPath {
    const bt = prefix.blockTokens;
    assert(Number.isInteger(bt) && bt >= 1, `bad prefix blockTokens ${bt}`);
    const bs = this.blockSize;
    const chain = prefix.hashes;
    const coveredTokens = Math.min(inputTokens, chain.length * bt);
    const blocks = coveredTokens > 0 ? Math.floor(coveredTokens / bs) : 0;
    if (blocks === 0) return EMPTY_PATH;
    let parent = this.rootFor(bt);
    // The chain blocks that hold engine blocks, in `PATH_STRIDE` entries of `pathScratch` each: the
    // chain index, its engine blocks [lo, hi), then the node's hash (below).
    let count = 0;
    const per = bt / bs;
    if (Number.isInteger(per)) {
      // Every chain block holds exactly `per` engine blocks (512-token chain blocks over 16-token
      // engine blocks, say): the same bounds as the floors below, without two divisions a block.
      count = Math.ceil(blocks / per);
      const scratch = this.pathScratchFor(count);
      for (let c = 0; c < count; c++) {
        const e = c * PATH_STRIDE;
        scratch[e + P_CHAIN] = c;
        scratch[e + P_LO] = c * per;
        scratch[e + P_HI] = c * per + per;
      }
    } else {
      // Sized first: grown by push, the array was reallocated as it grew (twice for 24 nodes).
      for (let c = 0; ; c++) {
        const lo = Math.floor((c * bt) / bs);
        if (lo >= blocks) break;
        if (Math.floor(((c + 1) * bt) / bs) !== lo) count++;
      }
      const scratch = this.pathScratchFor(count);
      let j = 0;
      for (let c = 0; j < count; c++) {
        const lo = Math.floor((c * bt) / bs);
        const hi = Math.floor(((c + 1) * bt) / bs);
        // A chain block shorter than an engine block may hold none; the next one's hash ignores it.
        if (hi === lo) continue;
        const e = j * PATH_STRIDE;
        scratch[e + P_CHAIN] = c;
        scratch[e + P_LO] = lo;
        scratch[e + P_HI] = hi;
        j++;
      }
    }
    const scratch = this.pathScratch;
    const nodes: number[] = new Array(count);
    // The nodes' hashes first: they chain the keys, not node ids, so all are known before any
    // lookup, and reading each one's slot (and the node there) here lets those cache misses overlap;
    // looked up one by one, each waited for the previous node's.
    const slots = this.slots;
    const mask = this.slotMask;
    const nodeFields = this.node;
    let sink = 0;
    let h = nodeFields[parent * NODE_STRIDE + HASH] as number;
    for (let j = 0; j < count; j++) {
      const e = j * PATH_STRIDE;
      h = hashOf(h, chain[scratch[e + P_CHAIN] as number] as number);
      scratch[e + P_HASH] = h;
      const n = slots[2 * (h & mask)] as number;
      if (n !== NONE) sink ^= nodeFields[n * NODE_STRIDE + USES] as number;
    }
    readAheadSink[0] = sink;
    for (let j = 0; j < count; j++) {
      const e = j * PATH_STRIDE;
      const lo = scratch[e + P_LO] as number;
      const key = chain[scratch[e + P_CHAIN] as number] as number;
      parent = this.child(parent, key, lo, (scratch[e + P_HI] as number) - lo, scratch[e + P_HASH] as number);
      nodes[j] = parent;
    }
    return { nodes, blocks };
  }

  /** `pathScratch`, with room for `count` nodes. */
  private pathScratchFor(count: number): Int32Array {
    if (this.pathScratch.length < count * PATH_STRIDE)
      this.pathScratch = new Int32Array(2 * count * PATH_STRIDE);
    return this.pathScratch;
  }

  /**
   * The path of engine block hashes given as they are (`EngineRequest.blockHashes`): one node per
   * block, keyed by its hash. Takes a use of every node, like `path`.
   */
  pathOfHashes(hashes: ArrayLike<number>): PrefixPath {
    if (hashes.length === 0) return EMPTY_PATH;
    // Key 0 never clashes with a chain root: those are keyed by positive block sizes.
    let parent = this.rootFor(0);
    const nodes: number[] = new Array(hashes.length);
    let h = this.node[parent * NODE_STRIDE + HASH] as number;
    for (let e = 0; e < hashes.length; e++) {
      h = hashOf(h, hashes[e] as number);
      parent = this.child(parent, hashes[e] as number, e, 1, h);
      nodes[e] = parent;
    }
    return { nodes, blocks: hashes.length };
  }

  /**
   * One number per engine block of the path that names the block exactly (node id and position),
   * for a per-block pool that should see the same blocks as the run-length cache: unlike 32-bit
   * chained hashes these never collide. Only while the path is held (ids of dropped nodes are
   * reused).
   */
  blockIds(path: PrefixPath): number[] {
    const out = new Array<number>(path.blocks);
    for (const node of path.nodes) {
      const first = this.firstBlockOf(node);
      const size = this.sizeOfNode(node);
      assert(size < BLOCK_ID_STRIDE, `a node of ${size} blocks`);
      const end = Math.min(size, path.blocks - first);
      for (let sub = 0; sub < end; sub++) out[first + sub] = node * BLOCK_ID_STRIDE + sub;
    }
    return out;
  }

  /** Hands back a path from `path` or `pathOfHashes`. */
  release(path: PrefixPath): void {
    const nodes = path.nodes;
    for (let j = nodes.length - 1; j >= 0; j--) this.unuse(nodes[j] as number);
  }

  /** Takes a use of a node (RunCache, for a record). */
  use(node: number): void {
    this.node[node * NODE_STRIDE + USES] = (this.node[node * NODE_STRIDE + USES] as number) + 1;
  }

  /** Drops a use; a node nobody uses leaves the forest, and its parent loses a use. */
  unuse(node: number): void {
    const nodes = this.node;
    let n = node;
    while (n !== NONE) {
      const b = n * NODE_STRIDE;
      const uses = (nodes[b + USES] as number) - 1;
      nodes[b + USES] = uses;
      if (uses > 0) return;
      const parent = nodes[b + PARENT] as number;
      // Roots stay.
      if (parent === NONE) return;
      this.unindex(n, nodes[b + HASH] as number);
      nodes[b + PARENT] = this.freeHead;
      this.freeHead = n;
      this.live--;
      n = parent;
    }
  }

  private rootFor(key: number): number {
    let root = this.roots.get(key);
    if (root === undefined) {
      // A root is never in the child table; its hash seeds its children's (see `hashOf`).
      root = this.newNode(NONE, key, 0, 0, hashOf(ROOT_SEED, key));
      this.roots.set(key, root);
    }
    return root;
  }

  /**
   * The child of `parent` for chain value `key`, created when missing; takes a use of it. `hash` is
   * `hashOf(parent's hash, key)`.
   */
  private child(parent: number, key: number, firstBlock: number, size: number, hash: number): number {
    const slots = this.slots;
    const mask = this.slotMask;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const n = slots[2 * i] as number;
      if (n === NONE) break;
      if (slots[2 * i + 1] === hash) {
        const b = n * NODE_STRIDE;
        const nodes = this.node;
        if (nodes[b + PARENT] === parent && this.keyOf[n * 4 + KEY] === key) {
          nodes[b + USES] = (nodes[b + USES] as number) + 1;
          return n;
        }
      }
    }
    const node = this.newNode(parent, key, firstBlock, size, hash);
    // newNode may have grown the table: index afresh.
    this.index(node, hash);
    // The child holds its parent, and the caller holds the child.
    const nodes = this.node;
    nodes[parent * NODE_STRIDE + USES] = (nodes[parent * NODE_STRIDE + USES] as number) + 1;
    nodes[node * NODE_STRIDE + USES] = 1;
    this.live++;
    return node;
  }

  private newNode(parent: number, key: number, firstBlock: number, size: number, hash: number): number {
    let n = this.freeHead;
    if (n !== NONE) {
      this.freeHead = this.node[n * NODE_STRIDE + PARENT] as number;
    } else {
      n = this.top++;
      if (n * NODE_STRIDE >= this.node.length) this.grow();
    }
    const nodes = this.node;
    const b = n * NODE_STRIDE;
    nodes[b + PARENT] = parent;
    nodes[b + FIRST] = firstBlock;
    nodes[b + SIZE] = size;
    nodes[b + USES] = 0;
    nodes[b + RECS] = NONE;
    nodes[b + HASH] = hash;
    this.keyOf[n * 4 + KEY] = key;
    return n;
  }

  private index(node: number, hash: number): void {
    const slots = this.slots;
    const mask = this.slotMask;
    let i = hash & mask;
    while (slots[2 * i] !== NONE) i = (i + 1) & mask;
    slots[2 * i] = node;
    slots[2 * i + 1] = hash;
  }

  /** Removes a node (whose full hash is `hash`) from the child table, shifting later entries back (no tombstones). */
  private unindex(node: number, hash: number): void {
    const slots = this.slots;
    const mask = this.slotMask;
    let hole = hash & mask;
    while (slots[2 * hole] !== node) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const moved = slots[2 * j] as number;
      if (moved === NONE) break;
      const movedHash = slots[2 * j + 1] as number;
      const home = movedHash & mask;
      // `moved` may fill the hole unless its home lies cyclically in (hole, j].
      const homeInRange = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (homeInRange) continue;
      slots[2 * hole] = moved;
      slots[2 * hole + 1] = movedHash;
      hole = j;
    }
    slots[2 * hole] = NONE;
  }

  /** Doubles the node arrays and the child table (re-indexing every live child). */
  private grow(): void {
    const capacity = (2 * this.node.length) / NODE_STRIDE;
    const nodes = new Int32Array(capacity * NODE_STRIDE);
    nodes.set(this.node);
    this.node = nodes;
    this.keyOf = new Float64Array(nodes.buffer);
    this.slots = newSlots(2 * capacity);
    this.slotMask = 2 * capacity - 1;
    // Live non-root nodes: free ones chain through PARENT, so mark them first.
    const free = new Uint8Array(this.top);
    for (let f = this.freeHead; f !== NONE; f = nodes[f * NODE_STRIDE + PARENT] as number) free[f] = 1;
    const roots = new Set(this.roots.values());
    for (let k = 0; k < this.top; k++) {
      if (free[k] === 1 || roots.has(k) || k === this.top - 1) continue;
      this.index(k, nodes[k * NODE_STRIDE + HASH] as number);
    }
  }
}

/** A child table of `capacity` empty (NONE, 0) pairs. */
function newSlots(capacity: number): Int32Array {
  const slots = new Int32Array(2 * capacity);
  for (let i = 0; i < slots.length; i += 2) slots[i] = NONE;
  return slots;
}

/** Seeds a root's hash. */
const ROOT_SEED = 0x2545f491;

/**
 * A child's full hash, as an int32: its parent's hash mixed with its key (keys that are not uint32
 * hash their bits). Chained through the hashes, not the node ids, so a path's hashes are known
 * before its nodes are found (`path`); a lookup still compares the parent and the key.
 */
function hashOf(parent: number, key: number): number {
  let h: number;
  if (key >>> 0 === key) {
    h = key;
  } else {
    keyF64[0] = key;
    h = (keyU32[0] as number) ^ Math.imul(keyU32[1] as number, 0x9e3779b1);
  }
  h = Math.imul(h ^ Math.imul(parent + 1, 0x85ebca6b), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return h ^ (h >>> 16);
}
