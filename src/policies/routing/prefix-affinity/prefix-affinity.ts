import { routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import { loadOf } from '../load.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { RoutingPolicy } from '../types.ts';

/** Parameters of prefix-affinity (SGLang's cache-aware rule). */
export interface PrefixAffinityParams {
  /** Load signal: the host's in-flight count, or the engine queue. */
  readonly load: 'in-flight' | 'waiting';
  /** The pool is imbalanced only when max load - min load exceeds this. */
  readonly balanceAbsThreshold: number;
  /** ...and max load exceeds this times min load. */
  readonly balanceRelThreshold: number;
  /** Follow the longest match only when matched tokens / prompt tokens exceeds this. */
  readonly cacheThreshold: number;
  /** Per-instance bound of the prefix index in chain blocks; undefined: derived from the KV size. */
  readonly capacityBlocks?: number | undefined;
}

/** The defaults (SGLang router's). */
export const PREFIX_AFFINITY_DEFAULTS: PrefixAffinityParams = {
  load: 'in-flight',
  balanceAbsThreshold: 64,
  balanceRelThreshold: 1.5,
  cacheThreshold: 0.3,
};

/** prefix-affinity, with a read-out of its index for tests and reports. */
export interface PrefixAffinityPolicy extends RoutingPolicy {
  /** Chain blocks the index believes an instance holds. */
  cachedBlocks(instanceId: string): number;
}

/**
 * SGLang's cache-aware routing. When the pool is imbalanced (max - min load > abs threshold and
 * max > rel threshold x min) the least loaded instance takes the request. Otherwise the instance
 * with the longest prefix match takes it if matched tokens / prompt tokens > cache threshold, and
 * the least loaded instance takes it if not (SGLang picks the smallest tree there; least load is
 * chosen here so that a new prefix also balances load). Either way `onRouted` records the chain on
 * the chosen instance in an LRU-bounded approximate index.
 *
 * Ties: least load breaks ties on fewer in-flight requests, then the lowest index; the longest match
 * breaks ties on least load, then fewer in-flight, then the lowest index.
 */
export function createPrefixAffinity(
  params: PrefixAffinityParams = PREFIX_AFFINITY_DEFAULTS,
): PrefixAffinityPolicy {
  const index = new PrefixCacheIndex({
    capacity: params.capacityBlocks === undefined ? 'kv-cache' : { blocks: params.capacityBlocks },
  });
  const { load: signal, balanceAbsThreshold, balanceRelThreshold, cacheThreshold } = params;
  // Scratch: the eligible instances of the current decision, reused so decide does not allocate.
  const eligible: InstanceView[] = [];
  return {
    name: 'prefix-affinity',
    decide(view, request) {
      index.observe(view);
      let count = 0;
      let least: InstanceView | undefined;
      let leastLoad = 0;
      let maxLoad = 0;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        eligible[count++] = instance;
        const load = loadOf(instance, signal);
        if (
          least === undefined ||
          load < leastLoad ||
          (load === leastLoad && instance.inFlight < least.inFlight)
        ) {
          least = instance;
          leastLoad = load;
        }
        if (count === 1 || load > maxLoad) maxLoad = load;
      }
      if (least === undefined) return noEligibleInstance(request.model);
      const imbalanced =
        maxLoad - leastLoad > balanceAbsThreshold && maxLoad > balanceRelThreshold * leastLoad;
      if (imbalanced || request.inputTokens <= 0) return routeTo(least.id);
      index.match(request.prefix.hashes);
      let best = -1;
      let bestBlocks = 0;
      let bestLoad = 0;
      for (let i = 0; i < count; i++) {
        const instance = eligible[i] as InstanceView;
        const blocks = index.matchedBlocks(index.slotOf(instance.id));
        if (blocks === 0 || blocks < bestBlocks) continue;
        const load = loadOf(instance, signal);
        if (
          blocks > bestBlocks ||
          load < bestLoad ||
          (load === bestLoad && instance.inFlight < (eligible[best] as InstanceView).inFlight)
        ) {
          best = i;
          bestBlocks = blocks;
          bestLoad = load;
        }
      }
      const matchedTokens = Math.min(bestBlocks * request.prefix.blockTokens, request.inputTokens);
      if (best >= 0 && matchedTokens / request.inputTokens > cacheThreshold)
        return routeTo((eligible[best] as InstanceView).id);
      return routeTo(least.id);
    },
    onRouted(request, instanceId) {
      index.learn(index.register(instanceId), request.prefix);
    },
    onKvEvent(instanceId, event) {
      // Only a clear applies: the engine's block hashes live in its own hash space (its block size,
      // its chain), not the request chain's, so stored and removed blocks cannot be matched here.
      if (event.type === 'AllBlocksCleared') index.clear(index.slotOf(instanceId));
    },
    cachedBlocks(instanceId) {
      return index.size(index.slotOf(instanceId));
    },
  };
}
