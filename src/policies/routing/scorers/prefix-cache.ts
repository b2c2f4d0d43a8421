import type { InstanceId } from '../../../core/ids.ts';
import type { KvEvent } from '../../../core/kv-events.ts';
import type { Request } from '../../../core/request.ts';
import { ApproxPrefixCache, type ApproxPrefixCacheOptions } from '../approx-prefix.ts';
import type { Scorer } from '../types.ts';

/** The prefix-cache scorer, with a read-out of its index for tests and reports. */
export interface PrefixCacheScorer extends Scorer {
  /** Chain blocks the index believes an instance holds. */
  cachedBlocks(instanceId: InstanceId): number;
}

/**
 * Prefix-cache affinity: `matched leading blocks / request blocks` from an approximate index of
 * what each instance caches, learned in `onRouted` (llm-d's `prefix-cache-scorer` in approximate
 * mode). Each scorer owns its index, so two profiles never share learned state by accident.
 */
export function createPrefixCacheScorer(options: ApproxPrefixCacheOptions = {}): PrefixCacheScorer {
  const cache = new ApproxPrefixCache(options);
  return {
    name: 'prefix-cache',
    score(view, request, candidates, out) {
      cache.observe(view);
      const blocks = request.prefix.hashes.length;
      if (blocks === 0) {
        out.fill(0, 0, candidates.length);
        return;
      }
      const matched = cache.match(request.prefix.hashes, candidates);
      for (let i = 0; i < candidates.length; i++) out[i] = (matched[i] as number) / blocks;
    },
    onRouted(request: Request, instanceId: InstanceId) {
      cache.learn(request, instanceId);
    },
    onKvEvent(instanceId: InstanceId, event: KvEvent) {
      cache.onKvEvent(instanceId, event);
    },
    cachedBlocks(instanceId) {
      return cache.size(instanceId);
    },
  };
}
