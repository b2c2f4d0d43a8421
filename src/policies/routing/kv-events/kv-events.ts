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
   * How load enters the choice. `dynamo-cost` (default): Dynamo's KV router cost,
   * `overlapWeight x prefill blocks + active blocks`, the cheapest wins. `longest-prefix`: the longest
   * match wins and load only breaks ties, which sends every request of a hot prefix to its one holder.
   */
  score: z.enum(['dynamo-cost', 'longest-prefix']).default('dynamo-cost'),
  /** Weight of prefill blocks against active blocks in `dynamo-cost` (Dynamo's kv-overlap-score-weight). */
  overlapWeight: z.number().min(0).default(1),
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
 * computes the engine-granularity hashes of its prompt for each block size in the pool and the
 * longest consecutive leading match on each instance. By default the match is priced as Dynamo's KV
 * router does (prefill blocks it saves against the instance's active and pending blocks) and the
 * cheapest wins; with `score: 'longest-prefix'` the longest match wins. Ties go to the fewest
 * in-flight requests, then the fewest waiting, then at random (seeded).
 */
export function createKvEvents(params: KvEventsParams = kvEventsParams.parse({})): RoutingPolicy {
  const index = new PrefixCacheIndex({ capacity: { blocks: params.blocksPerInstanceMax } });
  const cursor = new ChainCursor();
  const candidates: InstanceView[] = [];
  const blockSizes: number[] = [];
  let matched = new Float64Array(64);
  let scores = new Float64Array(64);

  /**
   * Writes matched prompt tokens for each candidate, one pass over the chain per block size. An
   * exact chain (the engines' own hashes, from the gateway's tokenizer) is matched once, at the block
   * size its tokenizer config declares for every instance: the operator states it there, and the
   * scraped block size may not have arrived yet.
   */
  const matchAll = (prefix: PrefixChain, inputTokens: number): void => {
    const n = candidates.length;
    if (matched.length < n) {
      matched = new Float64Array(n * 2);
      scores = new Float64Array(n * 2);
    }
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
      if (!guarded) {
        matchAll(request.prefix, request.inputTokens);
        scoreAll(request.inputTokens);
      }
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

  /** Writes each candidate's score (higher is better) from its match and its load. */
  function scoreAll(inputTokens: number): void {
    const n = candidates.length;
    if (params.score === 'longest-prefix') {
      for (let i = 0; i < n; i++) scores[i] = matched[i] as number;
    } else {
      for (let i = 0; i < n; i++)
        scores[i] = -dynamoCost(candidates[i] as InstanceView, matched[i] as number, inputTokens);
    }
  }

  /**
   * Dynamo's KV router cost, from what the view shows: overlapWeight x prefill (the prompt tokens the
   * host sent this instance and has no first token for, plus this prompt minus its cached prefix) +
   * active KV (the blocks in use, plus this prompt). Dynamo counts blocks of one size; tokens rank
   * the same in such a pool and stay comparable when block sizes differ. Dynamo counts only the
   * uncached part of pending prompts; the view has their whole input, so the holder of a hot prefix
   * looks somewhat busier than Dynamo would see it.
   */
  function dynamoCost(c: InstanceView, matchedTokens: number, inputTokens: number): number {
    const uncached = inputTokens - Math.min(inputTokens, matchedTokens);
    const prefillTokens = c.pendingPrefillTokens + uncached;
    const activeTokens = c.kvUsage * c.kvBlocksTotal * c.blockSize + inputTokens;
    return params.overlapWeight * prefillTokens + activeTokens;
  }

  /** Negative when candidate a is better: a higher score, then less load. */
  function compare(a: number, b: number): number {
    const d = (scores[b] as number) - (scores[a] as number);
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
