import { z } from 'zod';
import type { InstanceView } from '../../core/view.ts';
import { isEligible } from './eligible.ts';
import type { Filter } from './types.ts';

/** Keeps healthy, non-draining instances that serve the request's model. Every profile starts with it. */
export const eligibleFilter: Filter = {
  name: 'eligible',
  filter(_view, request, candidates) {
    let all = true;
    for (const c of candidates) {
      if (!isEligible(c, request.model)) {
        all = false;
        break;
      }
    }
    if (all) return candidates;
    return candidates.filter((c: InstanceView) => isEligible(c, request.model));
  },
};

/**
 * Keeps the candidates whose engine queue holds at most `queueDepthMax` requests; when none does,
 * keeps them all, so a busy fleet still routes (shedding is admission's job, not a filter's). The
 * Gateway API Inference Extension's low-queueing filter.
 */
export function lowQueueFilter(queueDepthMax: number): Filter {
  return softBound('low-queue', (c) => c.waiting <= queueDepthMax);
}

/**
 * Keeps the candidates using at most `kvUsageMax` of their KV cache; when none does, keeps them all
 * (the Inference Extension's KV-cache filter, as a bound rather than a bucket).
 */
export function lowKvUsageFilter(kvUsageMax: number): Filter {
  return softBound('low-kv-usage', (c) => c.kvUsage <= kvUsageMax);
}

function softBound(name: string, keep: (c: InstanceView) => boolean): Filter {
  return {
    name,
    filter(_view, _request, candidates) {
      const kept = candidates.filter(keep);
      return kept.length > 0 ? kept : candidates;
    },
  };
}

/** One filter type a profile in config may name: a description, a strict parameter schema, a factory. */
export interface FilterEntry<P = Record<string, unknown>> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  create(params: P): Filter;
}

function filterEntry<P>(e: FilterEntry<P>): FilterEntry<unknown> {
  return e as unknown as FilterEntry<unknown>;
}

/** Filters by the name a profile uses. `eligible` always runs first whether listed or not. */
export const FILTER_CATALOGUE: Readonly<Record<string, FilterEntry<unknown>>> = {
  eligible: filterEntry({
    description: 'healthy, not draining, serves the model (always first)',
    params: z.strictObject({}),
    create: () => eligibleFilter,
  }),
  'low-queue': filterEntry({
    description: 'engine queue <= queueDepthMax (default 128); all when none is',
    params: z.strictObject({ queueDepthMax: z.number().int().min(0).default(128) }),
    create: (p) => lowQueueFilter(p.queueDepthMax),
  }),
  'low-kv-usage': filterEntry({
    description: 'KV usage <= kvUsageMax (default 0.8); all when none is',
    params: z.strictObject({ kvUsageMax: z.number().min(0).max(1).default(0.8) }),
    create: (p) => lowKvUsageFilter(p.kvUsageMax),
  }),
};
