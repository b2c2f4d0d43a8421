import { z } from 'zod';
import { routeTo } from '../../../core/decision.ts';
import type { InstanceId, RequestId } from '../../../core/ids.ts';
import type { Request } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import { eligibleInto, noEligibleInstance } from '../eligible.ts';
import { maxScorePicker, softmaxPicker } from '../pickers.ts';
import { PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { Picker, RoutingPolicy } from '../types.ts';

/** Parameters of `kv-cost`; every key has a default. */
export const kvCostParams = z.strictObject({
  /** Weight of prefill blocks against decode blocks (Dynamo's kv-overlap-score-weight). */
  overlapWeight: z.number().min(0).default(1),
  /** 0 picks the cheapest; above 0, softmax sampling over the min-max normalised negated cost. */
  temperature: z.number().min(0).default(0),
  /**
   * Tokens of prefix the approximate index remembers per instance before it forgets the least recently
   * routed ones: the KV capacity of the instance (about 450,000 tokens for an 8B model on one 80 GB
   * GPU). A parameter because the routing hooks do not see the instance's view.
   */
  indexCapacityTokens: z.number().int().positive().default(450_000),
  /** Requests tracked between routing and completion; past it the oldest is forgotten. */
  requestsTrackedMax: z.number().int().positive().default(100_000),
});
/** Validated `kv-cost` parameters. */
export type KvCostParams = z.infer<typeof kvCostParams>;

/** What one routed request adds to its instance until it completes. */
interface ActiveRecord {
  readonly slot: number;
  /** The slot's generation when routed: a recycled slot no longer carries this request. */
  readonly generation: number;
  /** Prompt tokens the instance must compute (not found in its cache when routed). */
  readonly prefillTokens: number;
  /** Tokens of KV the request holds while decoding (its prompt). */
  readonly decodeTokens: number;
  prefillDone: boolean;
}

/**
 * NVIDIA Dynamo's KV router cost. For each eligible instance,
 *   cost = overlapWeight * (activePrefillTokens + uncachedTokens) / blockSize
 *        + (activeDecodeTokens + promptTokens) / blockSize
 * where the active tokens are the router's own accounting of what it sent and has not seen finish
 * (prefill until the first token, decode until completion), and `uncachedTokens` is the prompt minus
 * the prefix the approximate index says the instance holds. The cheapest wins (ties at random from
 * the seeded generator), or with `temperature > 0` one is sampled by softmax.
 */
export function createKvCost(params: KvCostParams = kvCostParams.parse({})): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { tokens: params.indexCapacityTokens } });
  const active = new Map<RequestId, ActiveRecord>();
  let prefillTokens = new Float64Array(16);
  let decodeTokens = new Float64Array(16);
  const picker: Picker = params.temperature > 0 ? softmaxPicker(params.temperature) : maxScorePicker;
  // Scratch reused across decisions; not state: each decision overwrites what it reads.
  const candidates: InstanceView[] = [];
  let scores = new Float64Array(64);

  const generations: number[] = [];
  const register = (instanceId: InstanceId): number => {
    const slot = index.register(instanceId);
    if (slot >= prefillTokens.length) {
      prefillTokens = grow(prefillTokens, slot * 2);
      decodeTokens = grow(decodeTokens, slot * 2);
    }
    const generation = index.generation(slot);
    if (generations[slot] !== generation) {
      // A new slot, or one recycled from an instance gone from the fleet: start from nothing.
      generations[slot] = generation;
      prefillTokens[slot] = 0;
      decodeTokens[slot] = 0;
    }
    return slot;
  };

  const release = (id: RequestId): void => {
    const rec = active.get(id);
    if (rec === undefined) return;
    active.delete(id);
    if (rec.generation !== index.generation(rec.slot)) return;
    if (!rec.prefillDone) prefillTokens[rec.slot] = (prefillTokens[rec.slot] as number) - rec.prefillTokens;
    decodeTokens[rec.slot] = (decodeTokens[rec.slot] as number) - rec.decodeTokens;
  };

  return {
    name: 'kv-cost',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      const n = candidates.length;
      if (n === 0) return noEligibleInstance(request.model);
      if (scores.length < n) scores = new Float64Array(n * 2);
      const prefix = request.prefix;
      index.match(prefix.hashes);
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < n; i++) {
        const instance = candidates[i] as InstanceView;
        const slot = index.slotOf(instance.id);
        const cached = Math.min(request.inputTokens, index.matchedBlocks(slot) * prefix.blockTokens);
        const activePrefill = slot === undefined ? 0 : (prefillTokens[slot] as number);
        const activeDecode = slot === undefined ? 0 : (decodeTokens[slot] as number);
        const cost =
          (params.overlapWeight * (activePrefill + request.inputTokens - cached) +
            activeDecode +
            request.inputTokens) /
          instance.blockSize;
        scores[i] = cost;
        if (cost < min) min = cost;
        if (cost > max) max = cost;
      }
      // Higher score wins: the negated cost, min-max normalised as Dynamo does before its softmax so
      // the temperature means the same whatever the scale of the costs.
      const range = max - min;
      for (let i = 0; i < n; i++) scores[i] = range > 0 ? -((scores[i] as number) - min) / range : 0;
      const chosen = picker.pick(candidates, scores.subarray(0, n), rng);
      return routeTo((candidates[chosen] as InstanceView).id);
    },
    onRouted(request: Request, instanceId: InstanceId) {
      release(request.id);
      const slot = register(instanceId);
      const prefix = request.prefix;
      const cached = Math.min(
        request.inputTokens,
        index.longestMatch(slot, prefix.hashes) * prefix.blockTokens,
      );
      const rec: ActiveRecord = {
        slot,
        generation: index.generation(slot),
        prefillTokens: request.inputTokens - cached,
        decodeTokens: request.inputTokens,
        prefillDone: false,
      };
      active.set(request.id, rec);
      prefillTokens[slot] = (prefillTokens[slot] as number) + rec.prefillTokens;
      decodeTokens[slot] = (decodeTokens[slot] as number) + rec.decodeTokens;
      // Map order is insertion order, so the first key is the longest-tracked request: a host that
      // lost its completion is the likeliest reason the bound is reached.
      if (active.size > params.requestsTrackedMax) release(active.keys().next().value as RequestId);
      index.learn(slot, prefix);
    },
    onFirstToken(request: Request) {
      const rec = active.get(request.id);
      if (rec === undefined || rec.prefillDone) return;
      rec.prefillDone = true;
      if (rec.generation !== index.generation(rec.slot)) return;
      prefillTokens[rec.slot] = (prefillTokens[rec.slot] as number) - rec.prefillTokens;
    },
    onCompleted(request: Request) {
      release(request.id);
    },
    onFailed(request: Request) {
      release(request.id);
    },
  };
}

function grow(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const out = new Float64Array(Math.max(16, n));
  out.set(a);
  return out;
}
