/**
 * The reusable scorers by the name a profile in config uses, each with a strict parameter schema,
 * so profiles other than llm-d's (and users' YAML) can compose them with their own weights.
 */
import { z } from 'zod';
import { SwitchyardError, unknownName } from '../../../core/errors.ts';
import type { Scorer } from '../types.ts';
import { inFlightScorer } from './in-flight.ts';
import { createKvCostScorer, KV_COST_SCORER_DEFAULTS } from './kv-cost.ts';
import { kvUsageScorer } from './kv-usage.ts';
import { createPrefixCacheScorer } from './prefix-cache.ts';
import { queueScorer } from './queue.ts';
import { sessionAffinityScorer } from './session-affinity.ts';

/** One registered scorer type: a description, a strict parameter schema, and a factory. */
export interface ScorerEntry<P = Record<string, unknown>> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  /** A fresh scorer: a stateful one (prefix-cache) never shares its index with another profile. */
  create(params: P): Scorer;
}

function scorerEntry<P>(e: ScorerEntry<P>): ScorerEntry<unknown> {
  return e as unknown as ScorerEntry<unknown>;
}

/** The schema of the prefix-cache scorer's parameters. */
export const prefixCacheScorerParams = z.strictObject({
  /** Per-instance bound of the index in chain blocks; absent: the instance's KV cache in chain blocks. */
  capacityBlocks: z.number().int().positive().optional(),
});

/** The schema of the kv-cost scorer's parameters (the `kv-cost` policy's, less the picker's temperature). */
export const kvCostScorerParams = z.strictObject({
  overlapWeight: z.number().min(0).default(KV_COST_SCORER_DEFAULTS.overlapWeight),
  indexCapacityTokens: z.number().int().positive().default(KV_COST_SCORER_DEFAULTS.indexCapacityTokens),
  requestsTrackedMax: z.number().int().positive().default(KV_COST_SCORER_DEFAULTS.requestsTrackedMax),
});

export const SCORER_CATALOGUE: Readonly<Record<string, ScorerEntry<unknown>>> = {
  queue: scorerEntry({
    description: 'engine queue, min-max normalised: (max - waiting) / (max - min)',
    params: z.strictObject({}),
    create: () => queueScorer,
  }),
  'in-flight': scorerEntry({
    description: 'in-flight requests, min-max normalised: (max - inFlight) / (max - min)',
    params: z.strictObject({}),
    create: () => inFlightScorer,
  }),
  'kv-usage': scorerEntry({
    description: 'free KV cache: 1 - kvUsage',
    params: z.strictObject({}),
    create: () => kvUsageScorer,
  }),
  'prefix-cache': scorerEntry({
    description: 'matched prefix blocks / request blocks, from an approximate index learned from routing',
    params: prefixCacheScorerParams,
    create: (p) => createPrefixCacheScorer({ capacityBlocks: p.capacityBlocks }),
  }),
  'session-affinity': scorerEntry({
    description:
      'session affinity: 1 for the instance the session (else tenant) hashes to by rendezvous hashing',
    params: z.strictObject({}),
    create: () => sessionAffinityScorer,
  }),
  'kv-cost': scorerEntry({
    description:
      "NVIDIA Dynamo's KV cost, min-max normalised: overlapWeight x prefill blocks to compute + active decode blocks",
    params: kvCostScorerParams,
    create: (p) => createKvCostScorer(p),
  }),
};

/** The scorer names a profile may use. */
export function scorerNames(): string[] {
  return Object.keys(SCORER_CATALOGUE).sort();
}

/** Builds a scorer by name with validated parameters; unknown names and parameters fail, naming them. */
export function createScorer(name: string, params: Readonly<Record<string, unknown>> = {}): Scorer {
  const e = Object.hasOwn(SCORER_CATALOGUE, name) ? SCORER_CATALOGUE[name] : undefined;
  if (e === undefined) throw unknownName('scorer', name, scorerNames());
  const parsed = e.params.safeParse(params);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`);
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `scorer '${name}': ${problems.join('; ')}`, {
      param: 'params',
      problems,
    });
  }
  return e.create(parsed.data);
}
