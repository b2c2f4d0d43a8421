import { assert } from '../core/assert.ts';
import type { PrefixChain } from '../core/request.ts';

/**
 * The engine blocks of one chain block, shared by every request whose chain reaches it: a node of
 * the prefix forest. A request's engine blocks are a path of nodes from a root; engine block e of
 * the request is block `e - firstBlock` of the node on its path that holds e.
 *
 * A node stands for the same engine blocks `engineBlockHashes` would hash: its blocks' hashes are
 * fixed by the chain values on the path to it and their positions, so two requests reach the same
 * node exactly when `engineBlockHashes` gives them equal hashes there (barring 32-bit collisions
 * between different prefixes, which the per-block reference cache treats as equal; see RunCache).
 */
export class PrefixNode {
  /** Unique in its forest. */
  readonly id: number;
  readonly parent: PrefixNode | undefined;
  /** The chain value (Mooncake hash id, generator hash) this node adds to its parent's prefix. */
  readonly key: number;
  /** Position, in a request's block table, of this node's first engine block. */
  readonly firstBlock: number;
  /** Engine blocks in this node; a request covers a prefix of them (all but at its prompt's end). */
  readonly size: number;
  /** Per-instance cache state of this node's blocks: the first of RunCache's records (-1: none). */
  records = -1;
  /** Live paths through this node, plus its records, plus its children: at 0 the forest drops it. */
  uses = 0;
  /** The first child, kept out of the Map: most nodes have one (its key means nothing without it). */
  private childKey = 0;
  private child: PrefixNode | undefined = undefined;
  private more: Map<number, PrefixNode> | undefined = undefined;

  constructor(id: number, parent: PrefixNode | undefined, key: number, firstBlock: number, size: number) {
    this.id = id;
    this.parent = parent;
    this.key = key;
    this.firstBlock = firstBlock;
    this.size = size;
  }

  /** The child for chain value `key`, or undefined. */
  childFor(key: number): PrefixNode | undefined {
    if (this.childKey === key && this.child !== undefined) return this.child;
    return this.more?.get(key);
  }

  /** Adds a child (the caller checked there is none for its key). */
  addChild(node: PrefixNode): void {
    if (this.child === undefined) {
      this.childKey = node.key;
      this.child = node;
    } else {
      this.more ??= new Map();
      this.more.set(node.key, node);
    }
  }

  /** Drops the child for `key`. */
  removeChild(key: number): void {
    if (this.childKey === key && this.child !== undefined) {
      this.child = undefined;
    } else {
      this.more?.delete(key);
    }
  }
}

/** Block ids of `PrefixForest.blockIds`: node id times this plus the block's place in the node. */
const BLOCK_ID_STRIDE = 65_536;

/** A request's engine blocks as nodes of a PrefixForest: what a RunCache matches and stores. */
export interface PrefixPath {
  /** The nodes, root excluded, in order; the last may be covered only in part. */
  readonly nodes: readonly PrefixNode[];
  /** Engine blocks covered (the `engineBlockHashes` length): positions [0, blocks). */
  readonly blocks: number;
}

/** The path of a request without a prefix chain. */
export const EMPTY_PATH: PrefixPath = Object.freeze({
  nodes: Object.freeze([]) as readonly PrefixNode[],
  blocks: 0,
});

/**
 * The prefix forest of one twin run: every chain prefix that live requests or cached blocks use,
 * hash-consed, so that requests of one session share their nodes instead of each carrying its own
 * per-block hashes. One forest serves every engine core of one block size (RunCache keeps each
 * core's state on the nodes).
 *
 * Bound: a node lives while a path holds it, an instance caches some of its blocks, or it has a
 * child (`uses`); so the forest never holds more nodes than the live requests' paths plus the
 * blocks cached across instances. Paths are taken by `path` and handed back by `release` (the
 * engine core does it when the request leaves it).
 */
export class PrefixForest {
  /** Engine block size, in tokens. */
  readonly blockSize: number;
  /** One root per chain block size: chains of different block sizes never share nodes. */
  private readonly roots = new Map<number, PrefixNode>();
  private live = 0;
  private nextId = 0;

  constructor(blockSize: number) {
    assert(Number.isInteger(blockSize) && blockSize >= 1, `bad blockSize ${blockSize}`);
    this.blockSize = blockSize;
  }

  /** Nodes in the forest, roots excluded (for tests and the bound). */
  get nodeCount(): number {
    return this.live;
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
    let parent = this.roots.get(bt);
    if (parent === undefined) {
      parent = new PrefixNode(this.nextId++, undefined, bt, 0, 0);
      this.roots.set(bt, parent);
    }
    const nodes: PrefixNode[] = [];
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
    let parent = this.roots.get(0);
    if (parent === undefined) {
      parent = new PrefixNode(this.nextId++, undefined, 0, 0, 0);
      this.roots.set(0, parent);
    }
    const nodes: PrefixNode[] = new Array(hashes.length);
    for (let e = 0; e < hashes.length; e++) {
      parent = this.child(parent, hashes[e] as number, e, 1);
      nodes[e] = parent;
    }
    return { nodes, blocks: hashes.length };
  }

  /**
   * One number per engine block of the path that names the block exactly (node id and position),
   * for a per-block pool that should see the same blocks as the run-length cache: unlike 32-bit
   * chained hashes these never collide. Paths of a live forest only (ids are not reused while a
   * node lives).
   */
  static blockIds(path: PrefixPath): number[] {
    const out = new Array<number>(path.blocks);
    for (const node of path.nodes) {
      assert(node.size < BLOCK_ID_STRIDE, `a node of ${node.size} blocks`);
      const end = Math.min(node.size, path.blocks - node.firstBlock);
      for (let sub = 0; sub < end; sub++) out[node.firstBlock + sub] = node.id * BLOCK_ID_STRIDE + sub;
    }
    return out;
  }

  /** Hands back a path from `path` or `pathOfHashes`. */
  release(path: PrefixPath): void {
    const nodes = path.nodes;
    for (let j = nodes.length - 1; j >= 0; j--) this.unuse(nodes[j] as PrefixNode);
  }

  /** Takes a use of a node (RunCache, for a record). */
  use(node: PrefixNode): void {
    node.uses++;
  }

  /** Drops a use; a node nobody uses leaves the forest, and its parent loses a use. */
  unuse(node: PrefixNode): void {
    let n: PrefixNode | undefined = node;
    while (n !== undefined && --n.uses === 0) {
      const parent: PrefixNode | undefined = n.parent;
      if (parent === undefined) return;
      parent.removeChild(n.key);
      this.live--;
      n = parent;
    }
  }

  private child(parent: PrefixNode, key: number, firstBlock: number, size: number): PrefixNode {
    let node = parent.childFor(key);
    if (node === undefined) {
      node = new PrefixNode(this.nextId++, parent, key, firstBlock, size);
      parent.addChild(node);
      // The child holds its parent.
      parent.uses++;
      this.live++;
    }
    node.uses++;
    return node;
  }
}
