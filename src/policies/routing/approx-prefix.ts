/**
 * What the router believes each instance's prefix cache holds, learned from its own routing (a
 * request sent to an instance leaves its prompt's blocks there) and tuned for the decision path.
 *
 * Same model as `PrefixIndex` (one LRU of chain blocks per instance, bounded by a capacity), but the
 * match does not walk the whole chain. Chains are prefix-closed: an insert touches a chain from its
 * last block to its first, so a parent is always more recent than its children and LRU eviction
 * removes children first; an instance holding block i therefore holds blocks 0..i-1, and the set of
 * holders can only shrink along a chain. The match binary-searches for the positions where the
 * number of holders drops and assigns each dropped holder its depth. Cost: O(levels x log(blocks))
 * map lookups plus the holders at those levels, instead of every holder of every block: a
 * 6,250-block chain whose first 125 blocks sit on all of 1,000 instances costs microseconds, where
 * a block-by-block walk costs milliseconds.
 *
 * Block hashes are keyed as int32 (`hash | 0`, a bijection on uint32): V8 keeps those as small
 * integers, where uint32 values above 2^31 would be heap numbers; inserts run 2.5x faster.
 *
 * Bounds: at most `PREFIX_INSTANCES_MAX` instances and `capacity` blocks per instance. Instances
 * that leave the view are dropped on the next sweep (every `PREFIX_SWEEP_EVERY_ROUTES` routes).
 */
import type { InstanceId } from '../../core/ids.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { Request } from '../../core/request.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import { chainCapacityBlocks } from './prefix-index.ts';

/** Most instances tracked at once; a new one beyond it is not learned until a sweep frees a slot. */
export const PREFIX_INSTANCES_MAX = 65_536;
/** Routes between sweeps that drop instances gone from the view and refresh their KV capacity. */
export const PREFIX_SWEEP_EVERY_ROUTES = 4096;
/** KV tokens assumed for an instance not seen in a view yet, or reporting no KV size (512 Ki tokens). */
export const PREFIX_FALLBACK_KV_TOKENS = 524_288;

interface Node {
  readonly hash: number;
  readonly slot: number;
  /** Position in the block's holder list, for O(1) removal. */
  pos: number;
  prev: Node | undefined;
  next: Node | undefined;
}

interface Holding {
  readonly id: InstanceId;
  readonly blocks: Map<number, Node>;
  head: Node | undefined;
  tail: Node | undefined;
  size: number;
  /** The instance's KV cache in tokens (kvBlocksTotal x blockSize), from the latest view seen. */
  kvTokens: number;
}

/** Options of the approximate prefix cache. */
export interface ApproxPrefixCacheOptions {
  /**
   * Per-instance bound in chain blocks. Undefined: the instance's KV cache converted to chain
   * blocks (`chainCapacityBlocks(kvBlocksTotal, blockSize, prefix.blockTokens)`).
   */
  readonly capacityBlocks?: number | undefined;
}

/**
 * The router's approximate view of every instance's prefix cache. `observe` and `match` are for
 * `decide` (they write only scratch buffers and a reference to the latest view, whose static facts,
 * KV size and instance set, the hooks need because hooks receive no view); `learn`, `clear` and
 * `onKvEvent` are for hooks.
 */
export class ApproxPrefixCache {
  private readonly capacityBlocks: number | undefined;
  private readonly holders = new Map<number, Node[]>();
  private readonly slotOf = new Map<InstanceId, number>();
  private readonly holdings: (Holding | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  private view: ClusterView | undefined = undefined;
  private routesSinceSweep = 0;
  // Decision scratch, reused by every match.
  private slotMatched = new Int32Array(64);
  private slotStamp = new Uint32Array(64);
  private stamp = 0;
  private levels = new Int32Array(64);
  private levelCount = 0;
  private out = new Int32Array(64);

  constructor(options: ApproxPrefixCacheOptions = {}) {
    this.capacityBlocks = options.capacityBlocks;
  }

  /** Remembers the latest view, so hooks can read instance KV sizes and which instances still exist. */
  observe(view: ClusterView): void {
    this.view = view;
  }

  /**
   * Matched leading blocks of `hashes` for `candidates[0..count)`: `result[i]` for `candidates[i]`.
   * The returned array is reused by the next call.
   */
  match(
    hashes: readonly number[],
    candidates: readonly InstanceView[],
    count = candidates.length,
  ): Int32Array {
    if (this.out.length < count) this.out = new Int32Array(count * 2);
    const out = this.out;
    out.fill(0, 0, count);
    const blocks = hashes.length;
    const first = blocks > 0 ? this.holderCount(hashes, 0) : 0;
    if (first === 0) return out;
    this.levelCount = 0;
    this.findLevels(hashes, 0, blocks, first, 0);
    const stamp = this.nextStamp();
    // Deepest level first: a holder keeps the depth of the deepest level it appears in.
    for (let k = this.levelCount - 1; k >= 0; k--) {
      const level = this.levels[k] as number;
      const list = this.holders.get((hashes[level] as number) | 0);
      if (list === undefined) continue;
      for (const node of list) {
        if (this.slotStamp[node.slot] === stamp) continue;
        this.slotStamp[node.slot] = stamp;
        this.slotMatched[node.slot] = level + 1;
      }
    }
    for (let i = 0; i < count; i++) {
      const slot = this.slotOf.get((candidates[i] as InstanceView).id);
      if (slot !== undefined && this.slotStamp[slot] === stamp) out[i] = this.slotMatched[slot] as number;
    }
    return out;
  }

  /** Records that `instanceId` now holds the request's chain (up to its capacity), evicting LRU blocks. */
  learn(request: Request, instanceId: InstanceId): void {
    if (++this.routesSinceSweep >= PREFIX_SWEEP_EVERY_ROUTES) this.sweep();
    const hashes = request.prefix.hashes;
    if (hashes.length === 0) return;
    const slot = this.slotFor(instanceId);
    if (slot === undefined) return;
    const holding = this.holdings[slot] as Holding;
    const capacity =
      this.capacityBlocks ?? chainCapacityBlocks(holding.kvTokens, 1, request.prefix.blockTokens);
    this.insert(holding, slot, hashes, capacity);
  }

  /** Forgets everything an instance holds (its cache was cleared). */
  clear(instanceId: InstanceId): void {
    const slot = this.slotOf.get(instanceId);
    if (slot === undefined) return;
    const holding = this.holdings[slot] as Holding;
    while (holding.tail !== undefined) this.evict(holding, holding.tail);
  }

  /**
   * Engine KV events. Only `AllBlocksCleared` applies: the engine's block hashes live in its own
   * hash space (its block size, its chain), not the request chain's, so stored and removed blocks
   * cannot be matched against it; a precise index is a separate structure.
   */
  onKvEvent(instanceId: InstanceId, event: KvEvent): void {
    if (event.type === 'AllBlocksCleared') this.clear(instanceId);
  }

  /** Blocks held for an instance. */
  size(instanceId: InstanceId): number {
    const slot = this.slotOf.get(instanceId);
    return slot === undefined ? 0 : (this.holdings[slot] as Holding).size;
  }

  /** Instances tracked. */
  instances(): number {
    return this.slotOf.size;
  }

  /** Longest leading match of `hashes` on one instance, walking block by block (for tests and checks). */
  longestMatch(instanceId: InstanceId, hashes: readonly number[]): number {
    const slot = this.slotOf.get(instanceId);
    if (slot === undefined) return 0;
    const blocks = (this.holdings[slot] as Holding).blocks;
    let i = 0;
    while (i < hashes.length && blocks.has((hashes[i] as number) | 0)) i++;
    return i;
  }

  private holderCount(hashes: readonly number[], at: number): number {
    if (at >= hashes.length) return 0;
    return this.holders.get((hashes[at] as number) | 0)?.length ?? 0;
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
      if (this.levelCount === this.levels.length) {
        const grown = new Int32Array(this.levels.length * 2);
        grown.set(this.levels);
        this.levels = grown;
      }
      this.levels[this.levelCount++] = lo;
      return;
    }
    const mid = (lo + hi) >>> 1;
    const countMid = this.holderCount(hashes, mid);
    this.findLevels(hashes, lo, mid, countLo, countMid);
    this.findLevels(hashes, mid, hi, countMid, countHi);
  }

  private nextStamp(): number {
    this.stamp = (this.stamp + 1) >>> 0;
    if (this.stamp === 0) {
      this.slotStamp.fill(0);
      this.stamp = 1;
    }
    return this.stamp;
  }

  private slotFor(instanceId: InstanceId): number | undefined {
    const known = this.slotOf.get(instanceId);
    if (known !== undefined) return known;
    if (this.slotOf.size >= PREFIX_INSTANCES_MAX) {
      this.sweep();
      if (this.slotOf.size >= PREFIX_INSTANCES_MAX) return undefined;
    }
    const slot = this.freeSlots.pop() ?? this.holdings.length;
    this.holdings[slot] = {
      id: instanceId,
      blocks: new Map(),
      head: undefined,
      tail: undefined,
      size: 0,
      kvTokens: kvTokensOf(this.view?.instances.find((x) => x.id === instanceId)),
    };
    this.slotOf.set(instanceId, slot);
    if (slot >= this.slotStamp.length) {
      const stamps = new Uint32Array(this.slotStamp.length * 2);
      stamps.set(this.slotStamp);
      this.slotStamp = stamps;
      this.slotMatched = new Int32Array(stamps.length);
    }
    return slot;
  }

  /** Drops instances gone from the latest view and refreshes the KV size of the others. */
  private sweep(): void {
    this.routesSinceSweep = 0;
    const view = this.view;
    if (view === undefined) return;
    const present = new Map<InstanceId, InstanceView>();
    for (const instance of view.instances) present.set(instance.id, instance);
    for (let slot = 0; slot < this.holdings.length; slot++) {
      const holding = this.holdings[slot];
      if (holding === undefined) continue;
      const instance = present.get(holding.id);
      if (instance !== undefined) {
        holding.kvTokens = kvTokensOf(instance);
        continue;
      }
      while (holding.tail !== undefined) this.evict(holding, holding.tail);
      this.holdings[slot] = undefined;
      this.slotOf.delete(holding.id);
      this.freeSlots.push(slot);
    }
  }

  private insert(holding: Holding, slot: number, hashes: readonly number[], capacity: number): void {
    const limit = Math.max(0, Math.floor(capacity));
    const n = Math.min(hashes.length, limit);
    // Last to first, so every parent ends up more recent than its children (prefix-closed sets).
    for (let i = n - 1; i >= 0; i--) {
      const hash = (hashes[i] as number) | 0;
      let node = holding.blocks.get(hash);
      if (node === undefined) {
        let list = this.holders.get(hash);
        if (list === undefined) {
          list = [];
          this.holders.set(hash, list);
        }
        node = { hash, slot, pos: list.length, prev: undefined, next: undefined };
        list.push(node);
        holding.blocks.set(hash, node);
        holding.size++;
      } else {
        unlink(holding, node);
      }
      pushFront(holding, node);
    }
    while (holding.size > limit && holding.tail !== undefined) this.evict(holding, holding.tail);
  }

  private evict(holding: Holding, node: Node): void {
    unlink(holding, node);
    holding.blocks.delete(node.hash);
    holding.size--;
    const list = this.holders.get(node.hash);
    if (list === undefined) return;
    const last = list.pop() as Node;
    if (last !== node) {
      list[node.pos] = last;
      last.pos = node.pos;
    }
    if (list.length === 0) this.holders.delete(node.hash);
  }
}

function kvTokensOf(instance: InstanceView | undefined): number {
  const tokens = instance === undefined ? 0 : instance.kvBlocksTotal * instance.blockSize;
  return tokens > 0 ? tokens : PREFIX_FALLBACK_KV_TOKENS;
}

function unlink(holding: Holding, node: Node): void {
  if (node.prev !== undefined) node.prev.next = node.next;
  else if (holding.head === node) holding.head = node.next;
  if (node.next !== undefined) node.next.prev = node.prev;
  else if (holding.tail === node) holding.tail = node.prev;
  node.prev = undefined;
  node.next = undefined;
}

function pushFront(holding: Holding, node: Node): void {
  node.next = holding.head;
  node.prev = undefined;
  if (holding.head !== undefined) holding.head.prev = node;
  holding.head = node;
  if (holding.tail === undefined) holding.tail = node;
}
