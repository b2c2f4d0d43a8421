import { createProfilePolicy, type ProfileSpec } from '../profile.ts';
import { buildProfile, type ProfileConfig, profileParams } from '../profile-policy/profile-policy.ts';
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
 * llm-d's default scheduling profile as a `profile` config: no filter beyond the eligible one, then
 * `queueWeight x queue + kvUsageWeight x kv-usage + prefixCacheWeight x prefix-cache`, then the
 * max-score picker (seeded random tie-break). The same YAML under `type: profile` decides the same.
 */
export function llmdProfileConfig(params: LlmdParams = LLMD_DEFAULTS): ProfileConfig {
  return profileParams.parse({
    scorers: [
      { type: 'queue', weight: params.queueWeight },
      { type: 'kv-usage', weight: params.kvUsageWeight },
      {
        type: 'prefix-cache',
        weight: params.prefixCacheWeight,
        params: params.capacityBlocks === undefined ? {} : { capacityBlocks: params.capacityBlocks },
      },
    ],
    picker: { type: 'max-score' },
  });
}

/**
 * llm-d's default profile as a spec, with `extraFilters` after the eligible filter (a deployment's
 * own, e.g. by zone). A fresh prefix-cache scorer (and index) per call.
 */
export function llmdProfile(
  params: LlmdParams = LLMD_DEFAULTS,
  extraFilters: readonly Filter[] = [],
): ProfileSpec {
  const spec = buildProfile(llmdProfileConfig(params));
  return { ...spec, filters: [...spec.filters, ...extraFilters] };
}

/** The llm-d profile as a routing policy. */
export function createLlmd(params: LlmdParams = LLMD_DEFAULTS): RoutingPolicy {
  return createProfilePolicy('llm-d', llmdProfile(params));
}
