import type { InstanceId, RequestId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { Scorer } from '../types.ts';
import { lowerIsBetter } from './min-max.ts';

/** Options of the kv-cost scorer (the defaults of the `kv-cost` policy). */
export interface KvCostScorerOptions {
  /** Weight of prefill blocks against decode blocks (Dynamo's kv-overlap-score-weight). */
  readonly overlapWeight: number;
  /** Tokens of prefix the approximate index remembers per instance. */
  readonly indexCapacityTokens: number;
  /** Requests tracked between routing and completion; past it the oldest is forgotten. */
  readonly requestsTrackedMax: number;
}

/** Defaults: overlap weight 1, 450,000 tokens per instance, 100,000 requests tracked. */
export const KV_COST_SCORER_DEFAULTS: KvCostScorerOptions = {
  overlapWeight: 1,
  indexCapacityTokens: 450_000,
  requestsTrackedMax: 100_000,
};

/** What one routed request adds to its instance until it completes. */
interface Active {
  readonly instanceId: InstanceId;
  readonly prefillTokens: number;
  readonly decodeTokens: number;
  prefillDone: boolean;
}

/** Tokens the router has sent an instance and not yet seen through prefill / to completion. */
interface Load {
  prefillTokens: number;
  decodeTokens: number;
}

/**
 * NVIDIA Dynamo's KV-router cost as a score (the `kv-cost` policy's rule, for profiles):
 *   cost_i = (overlapWeight x (activePrefill_i + uncached_i) + activeDecode_i + prompt) / blockSize_i
 * min-max normalised so the cheapest candidate scores 1 and the dearest 0. Active tokens are the
 * router's own accounting (prefill until the first token, decode until completion, bounded by
 * `requestsTrackedMax`); `uncached_i` is the prompt minus the prefix the approximate index says
 * instance i holds. Each scorer owns its index and accounting.
 */
export function createKvCostScorer(options: KvCostScorerOptions = KV_COST_SCORER_DEFAULTS): Scorer {
  const index = new PrefixCacheIndex({ capacity: { tokens: options.indexCapacityTokens } });
  const active = new Map<RequestId, Active>();
  const loads = new Map<InstanceId, Load>();

  const release = (id: RequestId): void => {
    const rec = active.get(id);
    if (rec === undefined) return;
    active.delete(id);
    const load = loads.get(rec.instanceId);
    if (load === undefined) return;
    if (!rec.prefillDone) load.prefillTokens -= rec.prefillTokens;
    load.decodeTokens -= rec.decodeTokens;
    if (load.decodeTokens <= 0 && load.prefillTokens <= 0) loads.delete(rec.instanceId);
  };

  return {
    name: 'kv-cost',
    score(_view, request, candidates, out) {
      const prefix = request.prefix;
      index.match(prefix.hashes);
      lowerIsBetter(candidates, out, (instance: InstanceView) => {
        const cached = Math.min(
          request.inputTokens,
          index.matchedBlocks(index.slotOf(instance.id)) * prefix.blockTokens,
        );
        const load = loads.get(instance.id);
        const prefill = (load?.prefillTokens ?? 0) + request.inputTokens - cached;
        const decode = (load?.decodeTokens ?? 0) + request.inputTokens;
        return (options.overlapWeight * prefill + decode) / instance.blockSize;
      });
    },
    onRouted(request: Request, instanceId: InstanceId) {
      release(request.id);
      const slot = index.register(instanceId);
      const prefix = request.prefix;
      const cached = Math.min(
        request.inputTokens,
        index.longestMatch(slot, prefix.hashes) * prefix.blockTokens,
      );
      const rec: Active = {
        instanceId,
        prefillTokens: request.inputTokens - cached,
        decodeTokens: request.inputTokens,
        prefillDone: false,
      };
      active.set(request.id, rec);
      const load = loads.get(instanceId) ?? { prefillTokens: 0, decodeTokens: 0 };
      load.prefillTokens += rec.prefillTokens;
      load.decodeTokens += rec.decodeTokens;
      loads.set(instanceId, load);
      // Insertion order: the first key is the longest-tracked request, likeliest to have lost its end.
      if (active.size > options.requestsTrackedMax) release(active.keys().next().value as RequestId);
      index.learn(slot, prefix);
    },
    onFirstToken(request: Request) {
      const rec = active.get(request.id);
      if (rec === undefined || rec.prefillDone) return;
      rec.prefillDone = true;
      const load = loads.get(rec.instanceId);
      if (load !== undefined) load.prefillTokens -= rec.prefillTokens;
    },
    onCompleted(request: Request) {
      release(request.id);
    },
    onFailed(request: Request) {
      release(request.id);
    },
  };
}
