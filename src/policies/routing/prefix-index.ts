/**
 * An approximate prefix index: which instance (probably) holds which prefix blocks in its cache,
 * learned from the router's own decisions (a request routed to an instance leaves its prompt's
 * blocks there). One global map from block hash to its holders, plus an LRU list per instance with
 * a capacity, so the index forgets what the engine would have evicted. Bounded: at most
 * `capacity` blocks per instance.
 *
 * The chain is prefix-closed: inserting touches blocks from the last to the first, so a parent is
 * always more recent than its children and eviction removes children first.
 */

interface Node {
  readonly hash: number;
  readonly slot: number;
  prev: Node | undefined;
  next: Node | undefined;
}

interface InstanceLru {
  head: Node | undefined;
  tail: Node | undefined;
  size: number;
}

/** Result of a match over all instances: matched[slot] blocks for each instance slot. */
export interface PrefixMatches {
  /** Instance slots with a match of at least one block. */
  readonly slots: readonly number[];
  /** Matched leading blocks, indexed by slot (0 for instances not in `slots`). */
  readonly matched: Int32Array;
}

export class PrefixIndex {
  private readonly holders = new Map<number, Node[]>();
  private readonly slotOf = new Map<string, number>();
  private readonly ids: string[] = [];
  private readonly lrus: InstanceLru[] = [];
  private mark = new Int32Array(16);
  private matched = new Int32Array(16);
  private stamp = 0;

  /** The slot of an instance id, registering it on first sight. */
  slot(instanceId: string): number {
    let slot = this.slotOf.get(instanceId);
    if (slot === undefined) {
      slot = this.ids.length;
      this.slotOf.set(instanceId, slot);
      this.ids.push(instanceId);
      this.lrus.push({ head: undefined, tail: undefined, size: 0 });
      if (slot >= this.mark.length) {
        const grown = new Int32Array(this.mark.length * 2);
        grown.set(this.mark);
        this.mark = grown;
        this.matched = new Int32Array(this.mark.length);
      }
    }
    return slot;
  }

  /** The instance id of a slot. */
  instanceId(slot: number): string {
    return this.ids[slot] as string;
  }

  /** Blocks held for an instance. */
  size(instanceId: string): number {
    const slot = this.slotOf.get(instanceId);
    return slot === undefined ? 0 : (this.lrus[slot] as InstanceLru).size;
  }

  /**
   * Records that `instanceId` now holds the first `blocks` hashes of `hashes` (all of them by default)
   * and evicts its least recently used blocks beyond `capacity`.
   */
  insert(instanceId: string, hashes: readonly number[], capacity: number, blocks = hashes.length): void {
    const slot = this.slot(instanceId);
    const lru = this.lrus[slot] as InstanceLru;
    const n = Math.min(blocks, hashes.length, Math.max(0, Math.floor(capacity)));
    for (let i = n - 1; i >= 0; i--) {
      const hash = hashes[i] as number;
      let list = this.holders.get(hash);
      if (list === undefined) {
        list = [];
        this.holders.set(hash, list);
      }
      let node: Node | undefined;
      for (const candidate of list) {
        if (candidate.slot === slot) {
          node = candidate;
          break;
        }
      }
      if (node === undefined) {
        node = { hash, slot, prev: undefined, next: undefined };
        list.push(node);
        lru.size++;
      } else {
        unlink(lru, node);
      }
      pushFront(lru, node);
    }
    while (lru.size > capacity && lru.tail !== undefined) this.evict(lru, lru.tail);
  }

  /** Forgets one block of one instance (a precise BlockRemoved event). */
  remove(instanceId: string, hash: number): void {
    const slot = this.slotOf.get(instanceId);
    if (slot === undefined) return;
    const list = this.holders.get(hash);
    const node = list?.find((x) => x.slot === slot);
    if (node !== undefined) this.evict(this.lrus[slot] as InstanceLru, node);
  }

  /** Forgets everything an instance holds. */
  clear(instanceId: string): void {
    const slot = this.slotOf.get(instanceId);
    if (slot === undefined) return;
    const lru = this.lrus[slot] as InstanceLru;
    while (lru.tail !== undefined) this.evict(lru, lru.tail);
  }

  /** Longest consecutive leading match of `hashes` on one instance, in blocks. */
  longestMatch(instanceId: string, hashes: readonly number[]): number {
    const slot = this.slotOf.get(instanceId);
    if (slot === undefined) return 0;
    let i = 0;
    for (; i < hashes.length; i++) {
      const list = this.holders.get(hashes[i] as number);
      if (list === undefined || !list.some((x) => x.slot === slot)) break;
    }
    return i;
  }

  /**
   * Longest leading match of `hashes` on every instance at once. Walks the chain once, keeping the
   * set of instances that matched every block so far, and stops when it empties. The returned
   * arrays are reused by the next call.
   */
  matchAll(hashes: readonly number[]): PrefixMatches {
    const matched = this.matched;
    matched.fill(0, 0, this.ids.length);
    let alive: number[] = [];
    const first = hashes.length > 0 ? this.holders.get(hashes[0] as number) : undefined;
    if (first === undefined) return { slots: alive, matched };
    for (const node of first) {
      alive.push(node.slot);
      matched[node.slot] = 1;
    }
    const all = alive.slice();
    for (let i = 1; i < hashes.length && alive.length > 0; i++) {
      const list = this.holders.get(hashes[i] as number);
      if (list === undefined) break;
      const stamp = ++this.stamp;
      for (const node of list) this.mark[node.slot] = stamp;
      const next: number[] = [];
      for (const slot of alive) {
        if (this.mark[slot] === stamp) {
          next.push(slot);
          matched[slot] = i + 1;
        }
      }
      alive = next;
    }
    return { slots: all, matched };
  }

  private evict(lru: InstanceLru, node: Node): void {
    unlink(lru, node);
    lru.size--;
    const list = this.holders.get(node.hash);
    if (list === undefined) return;
    const at = list.indexOf(node);
    if (at >= 0) {
      list[at] = list[list.length - 1] as Node;
      list.pop();
    }
    if (list.length === 0) this.holders.delete(node.hash);
  }
}

function unlink(lru: InstanceLru, node: Node): void {
  if (node.prev !== undefined) node.prev.next = node.next;
  else if (lru.head === node) lru.head = node.next;
  if (node.next !== undefined) node.next.prev = node.prev;
  else if (lru.tail === node) lru.tail = node.prev;
  node.prev = undefined;
  node.next = undefined;
}

function pushFront(lru: InstanceLru, node: Node): void {
  node.next = lru.head;
  node.prev = undefined;
  if (lru.head !== undefined) lru.head.prev = node;
  lru.head = node;
  if (lru.tail === undefined) lru.tail = node;
}

/** Capacity in chain blocks of an instance's KV cache: engine blocks converted to the chain's block size. */
export function chainCapacityBlocks(
  kvBlocksTotal: number,
  blockSize: number,
  chainBlockTokens: number,
): number {
  return Math.max(1, Math.floor((kvBlocksTotal * blockSize) / Math.max(1, chainBlockTokens)));
}
