import type { InstanceId } from '../../../core/ids.ts';
import type { KvEvent } from '../../../core/kv-events.ts';
import type { Request } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { Scorer } from '../types.ts';

/** The prefix-cache scorer, with a read-out of its index for tests and reports. */
export interface PrefixCacheScorer extends Scorer {
  /** Chain blocks the index believes an instance holds. */
  cachedBlocks(instanceId: InstanceId): number;
}

/** Options of the prefix-cache scorer. */
export interface PrefixCacheScorerOptions {
  /** Per-instance bound of the index in chain blocks; undefined: the instance's KV cache in chain blocks. */
  readonly capacityBlocks?: number | undefined;
}

/**
 * Prefix-cache affinity: `matched leading blocks / request blocks` from an approximate index of
 * what each instance caches, learned in `onRouted` (llm-d's `prefix-cache-scorer` in approximate
 * mode). Each scorer owns its index, so two profiles never share learned state by accident.
 */
export function createPrefixCacheScorer(options: PrefixCacheScorerOptions = {}): PrefixCacheScorer {
  const index = new PrefixCacheIndex({
    capacity: options.capacityBlocks === undefined ? 'kv-cache' : { blocks: options.capacityBlocks },
  });
  return {
    name: 'prefix-cache',
    score(view, request, candidates, out) {
      index.observe(view);
      const blocks = request.prefix.hashes.length;
      if (blocks === 0) {
        out.fill(0, 0, candidates.length);
        return;
      }
      index.match(request.prefix.hashes);
      for (let i = 0; i < candidates.length; i++)
        out[i] = index.matchedBlocks(index.slotOf((candidates[i] as InstanceView).id)) / blocks;
    },
    onRouted(request: Request, instanceId: InstanceId) {
      index.learn(index.register(instanceId), request.prefix);
    },
    onKvEvent(instanceId: InstanceId, event: KvEvent) {
      // Only a clear applies: the engine's block hashes live in its own hash space (its block size,
      // its chain), not the request chain's, so stored and removed blocks cannot be matched here.
      if (event.type === 'AllBlocksCleared') index.clear(index.slotOf(instanceId));
    },
    cachedBlocks(instanceId) {
      return index.size(index.slotOf(instanceId));
    },
  };
}
