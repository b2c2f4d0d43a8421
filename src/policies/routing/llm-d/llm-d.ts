import { eligibleFilter } from '../filters.ts';
import { maxScorePicker } from '../pickers.ts';
import { createProfilePolicy, type ProfileSpec } from '../profile.ts';
import { kvUsageScorer } from '../scorers/kv-usage.ts';
import { createPrefixCacheScorer } from '../scorers/prefix-cache.ts';
import { queueScorer } from '../scorers/queue.ts';
import type { Filter, RoutingPolicy } from '../types.ts';

/** Parameters of the llm-d profile. */
export interface LlmdParams {
  readonly queueWeight: number;
  readonly kvUsageWeight: number;
  readonly prefixCacheWeight: number;
  /** Per-instance bound of the prefix index in chain blocks; undefined: derived from the KV size. */
  readonly capacityBlocks?: number | undefined;
}

/** llm-d's default weights: queue 2, KV utilisation 2, prefix cache 3. */
export const LLMD_DEFAULTS: LlmdParams = { queueWeight: 2, kvUsageWeight: 2, prefixCacheWeight: 3 };

/**
 * llm-d's default scheduling profile: the eligible filter (plus `extraFilters`, after it), then
 * `queueWeight x queue + kvUsageWeight x (1 - kvUsage) + prefixCacheWeight x prefix match`, then
 * the max-score picker with a seeded random tie-break. A fresh prefix-cache scorer (and index) per
 * call.
 */
export function llmdProfile(
  params: LlmdParams = LLMD_DEFAULTS,
  extraFilters: readonly Filter[] = [],
): ProfileSpec {
  return {
    filters: [eligibleFilter, ...extraFilters],
    scorers: [
      { scorer: queueScorer, weight: params.queueWeight },
      { scorer: kvUsageScorer, weight: params.kvUsageWeight },
      {
        scorer: createPrefixCacheScorer({ capacityBlocks: params.capacityBlocks }),
        weight: params.prefixCacheWeight,
      },
    ],
    picker: maxScorePicker,
  };
}

/** The llm-d profile as a routing policy. */
export function createLlmd(params: LlmdParams = LLMD_DEFAULTS): RoutingPolicy {
  return createProfilePolicy('llm-d', llmdProfile(params));
}
