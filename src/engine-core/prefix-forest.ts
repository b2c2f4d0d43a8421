import { assert } from '../core/assert.ts';
import type { PrefixChain } from '../core/request.ts';

/** No node. */
const NONE = -1;
/** Nodes (and child-table slots) allocated up front; both double as needed. */
const NODES_INITIAL = 1024;
/** Block ids of `PrefixForest.blockIds`: node id times this plus the block's place in the node. */
const BLOCK_ID_STRIDE = 65_536;

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
  private parentOf = new Int32Array(NODES_INITIAL);
  private keyOf = new Float64Array(NODES_INITIAL);
  private firstOf = new Int32Array(NODES_INITIAL);
  private sizeOf = new Int32Array(NODES_INITIAL);
  private usesOf = new Int32Array(NODES_INITIAL);
  private recsOf = new Int32Array(NODES_INITIAL);
  /** Child table: node ids, NONE for empty; capacity a power of two at least twice the nodes. */
  private slots = new Int32Array(2 * NODES_INITIAL).fill(NONE);
  /**
   * Each slot's full hash of (parent, key), beside it: probes and the deletion's shifts compare and
   * re-home entries from here without reading the node arrays (a cache miss each).
   */
  private slotHash = new Int32Array(2 * NODES_INITIAL);
  private slotMask = 2 * NODES_INITIAL - 1;
  /** Free node ids, chained through `parentOf`. */
  private freeHead = NONE;
  private top = 0;
  /** One root per chain block size: chains of different block sizes never share nodes. */
  private readonly roots = new Map<number, number>();
  private live = 0;

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
    return this.firstOf[node] as number;
  }

  /** Engine blocks in the node; a request covers a prefix of them (all but at its prompt's end). */
  sizeOfNode(node: number): number {
    return this.sizeOf[node] as number;
  }

  /** RunCache's first record of the node (NONE: none). */
  recordsOf(node: number): number {
    return this.recsOf[node] as number;
  }

  /** Sets RunCache's first record of the node. */
  setRecords(node: number, record: number): void {
    this.recsOf[node] = record;
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
    const nodes: number[] = [];
    for (let c = 0; ; c++) {
      const lo = Math.floor((c * bt) / bs);
      if (lo >= blocks) break;
      const hi = Math.floor(((c + 1) * bt) / bs);
      // A chain block shorter than an engine block may hold none; the next one's hash ignores it.
      if (hi === lo) continue;
      parent = this.child(parent, chain[c] as number, lo, hi - lo);
      nodes.push(parent);
    }
    return { nodes, blocks };
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
    for (let e = 0; e < hashes.length; e++) {
      parent = this.child(parent, hashes[e] as number, e, 1);
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
      const first = this.firstOf[node] as number;
      const size = this.sizeOf[node] as number;
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
    this.usesOf[node] = (this.usesOf[node] as number) + 1;
  }

  /** Drops a use; a node nobody uses leaves the forest, and its parent loses a use. */
  unuse(node: number): void {
    let n = node;
    while (n !== NONE) {
      const uses = (this.usesOf[n] as number) - 1;
      this.usesOf[n] = uses;
      if (uses > 0) return;
      const parent = this.parentOf[n] as number;
      // Roots stay.
      if (parent === NONE) return;
      this.unindex(n);
      this.parentOf[n] = this.freeHead;
      this.freeHead = n;
      this.live--;
      n = parent;
    }
  }

  private rootFor(key: number): number {
    let root = this.roots.get(key);
    if (root === undefined) {
      root = this.newNode(NONE, key, 0, 0);
      this.roots.set(key, root);
    }
    return root;
  }

  /** The child of `parent` for chain value `key`, created when missing; takes a use of it. */
  private child(parent: number, key: number, firstBlock: number, size: number): number {
    const slots = this.slots;
    const hashes = this.slotHash;
    const mask = this.slotMask;
    const hash = hashOf(parent, key);
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const n = slots[i] as number;
      if (n === NONE) break;
      if (hashes[i] === hash && this.parentOf[n] === parent && this.keyOf[n] === key) {
        this.usesOf[n] = (this.usesOf[n] as number) + 1;
        return n;
      }
    }
    const node = this.newNode(parent, key, firstBlock, size);
    // newNode may have grown the table: index afresh.
    this.index(node, hash);
    // The child holds its parent, and the caller holds the child.
    this.usesOf[parent] = (this.usesOf[parent] as number) + 1;
    this.usesOf[node] = 1;
    this.live++;
    return node;
  }

  private newNode(parent: number, key: number, firstBlock: number, size: number): number {
    let n = this.freeHead;
    if (n !== NONE) {
      this.freeHead = this.parentOf[n] as number;
    } else {
      n = this.top++;
      if (n >= this.parentOf.length) this.grow();
    }
    this.parentOf[n] = parent;
    this.keyOf[n] = key;
    this.firstOf[n] = firstBlock;
    this.sizeOf[n] = size;
    this.usesOf[n] = 0;
    this.recsOf[n] = NONE;
    return n;
  }

  private index(node: number, hash: number): void {
    const slots = this.slots;
    const mask = this.slotMask;
    let i = hash & mask;
    while (slots[i] !== NONE) i = (i + 1) & mask;
    slots[i] = node;
    this.slotHash[i] = hash;
  }

  /** Removes a node from the child table, shifting later entries back (no tombstones). */
  private unindex(node: number): void {
    const slots = this.slots;
    const hashes = this.slotHash;
    const mask = this.slotMask;
    let hole = hashOf(this.parentOf[node] as number, this.keyOf[node] as number) & mask;
    while (slots[hole] !== node) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const moved = slots[j] as number;
      if (moved === NONE) break;
      const home = (hashes[j] as number) & mask;
      // `moved` may fill the hole unless its home lies cyclically in (hole, j].
      const homeInRange = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (homeInRange) continue;
      slots[hole] = moved;
      hashes[hole] = hashes[j] as number;
      hole = j;
    }
    slots[hole] = NONE;
  }

  /** Doubles the node arrays and the child table (re-indexing every live child). */
  private grow(): void {
    const n = 2 * this.parentOf.length;
    this.parentOf = growI32(this.parentOf, n);
    this.firstOf = growI32(this.firstOf, n);
    this.sizeOf = growI32(this.sizeOf, n);
    this.usesOf = growI32(this.usesOf, n);
    this.recsOf = growI32(this.recsOf, n);
    const keys = new Float64Array(n);
    keys.set(this.keyOf);
    this.keyOf = keys;
    this.slots = new Int32Array(2 * n).fill(NONE);
    this.slotHash = new Int32Array(2 * n);
    this.slotMask = 2 * n - 1;
    // Live non-root nodes: free ones chain through parentOf, so mark them first.
    const free = new Uint8Array(this.top);
    for (let f = this.freeHead; f !== NONE; f = this.parentOf[f] as number) free[f] = 1;
    const roots = new Set(this.roots.values());
    for (let k = 0; k < this.top; k++) {
      if (free[k] === 1 || roots.has(k) || k === this.top - 1) continue;
      this.index(k, hashOf(this.parentOf[k] as number, this.keyOf[k] as number));
    }
  }
}

function growI32(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

/** The full hash of (parent, key), as an int32; keys that are not uint32 hash their bits. */
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
