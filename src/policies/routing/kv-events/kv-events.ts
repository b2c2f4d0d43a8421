import { z } from 'zod';
import { routeTo } from '../../../core/decision.ts';
import type { InstanceId } from '../../../core/ids.ts';
import type { KvEvent } from '../../../core/kv-events.ts';
import type { PrefixChain } from '../../../core/request.ts';
import type { InstanceView } from '../../../core/view.ts';
import { eligibleInto, noEligibleInstance } from '../eligible.ts';
import { ChainCursor, PrefixCacheIndex } from '../prefix-cache-index.ts';
import type { RoutingPolicy } from '../types.ts';

/** Parameters of `kv-events`; every key has a default. */
export const kvEventsParams = z.strictObject({
  /**
   * SGLang's load guard: when the pool is imbalanced (max - min in-flight > `loadGuardAbs` and
   * max > `loadGuardRel` x min over eligible instances) ignore the cache and take the least loaded.
   */
  loadGuard: z.boolean().default(false),
  loadGuardAbs: z.number().int().min(0).default(64),
  loadGuardRel: z.number().min(1).default(1.5),
  /**
   * Blocks remembered per instance. The engine reports only what it holds, so its own capacity is the
   * real bound; this one only guards against a stream that lost its BlockRemoved events (the oldest
   * stored blocks go first).
   */
  blocksPerInstanceMax: z
    .number()
    .int()
    .positive()
    .default(1 << 20),
});
/** Validated `kv-events` parameters. */
export type KvEventsParams = z.infer<typeof kvEventsParams>;

/**
 * Precise prefix-aware routing from engine KV events (llm-d's precise prefix scorer, Dynamo's KV
 * indexer). Keeps, per instance, the engine block hashes its KV events say it holds; for a request,
 * computes the engine-granularity hashes of its prompt for each block size in the pool and routes to
 * the instance with the longest consecutive leading match. Ties, and requests nobody has cached, go
 * to the fewest in-flight requests, then the fewest waiting, then at random (seeded).
 */
export function createKvEvents(params: KvEventsParams = kvEventsParams.parse({})): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { blocks: params.blocksPerInstanceMax } });
  const cursor = new ChainCursor();
  const candidates: InstanceView[] = [];
  const blockSizes: number[] = [];
  let matched = new Float64Array(64);

  /**
   * Writes matched prompt tokens for each candidate, one pass over the chain per block size. An
   * exact chain (the engines' own hashes, from the gateway's tokenizer) is matched once, at the block
   * size its tokenizer config declares for every instance: the operator states it there, and the
   * scraped block size may not have arrived yet.
   */
  const matchAll = (prefix: PrefixChain, inputTokens: number): void => {
    const n = candidates.length;
    if (matched.length < n) matched = new Float64Array(n * 2);
    blockSizes.length = 0;
    const exact = prefix.exact === true;
    for (let i = 0; i < n; i++) {
      const bs = exact ? prefix.blockTokens : (candidates[i] as InstanceView).blockSize;
      if (!blockSizes.includes(bs)) blockSizes.push(bs);
    }
    for (const bs of blockSizes) {
      index.matchCursor(cursor.engineBlocks(prefix, inputTokens, bs));
      for (let i = 0; i < n; i++) {
        const instance = candidates[i] as InstanceView;
        if (!exact && instance.blockSize !== bs) continue;
        matched[i] = index.matchedBlocks(index.slotOf(instance.id)) * bs;
      }
    }
  };

  return {
    name: 'kv-events',
    decide(view, request, rng) {
      eligibleInto(view.instances, request.model, candidates);
      const n = candidates.length;
      if (n === 0) return noEligibleInstance(request.model);
      const guarded = params.loadGuard && imbalanced(candidates, params.loadGuardAbs, params.loadGuardRel);
      if (!guarded) matchAll(request.prefix, request.inputTokens);
      let best = -1;
      let ties = 0;
      for (let i = 0; i < n; i++) {
        if (best < 0) {
          best = i;
          ties = 1;
          continue;
        }
        const order = guarded ? compareLoad(candidates[i], candidates[best]) : compare(i, best);
        if (order < 0) {
          best = i;
          ties = 1;
        } else if (order === 0 && rng.int(++ties) === 0) {
          // Reservoir sampling over the tied set: each tie is chosen with equal probability.
          best = i;
        }
      }
      return routeTo((candidates[best] as InstanceView).id);
    },
    onKvEvent(instanceId: InstanceId, event: KvEvent) {
      index.applyKvEvent(index.register(instanceId), event);
    },
  };

  /** Negative when candidate a is better: more matched tokens, then less load. */
  function compare(a: number, b: number): number {
    const d = (matched[b] as number) - (matched[a] as number);
    return d !== 0 ? d : compareLoad(candidates[a], candidates[b]);
  }
}

function compareLoad(a: InstanceView | undefined, b: InstanceView | undefined): number {
  const x = a as InstanceView;
  const y = b as InstanceView;
  return x.inFlight !== y.inFlight ? x.inFlight - y.inFlight : x.waiting - y.waiting;
}

/** SGLang's imbalance test over in-flight requests. */
function imbalanced(candidates: readonly InstanceView[], abs: number, rel: number): boolean {
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (const c of candidates) {
    if (c.inFlight < min) min = c.inFlight;
    if (c.inFlight > max) max = c.inFlight;
  }
  return max - min > abs && max > rel * min;
}
