/**
 * Pair selection for disaggregated prefill/decode: which prefill instance computes a prompt and which
 * decode instance generates from its KV. A pair policy is two routing policies, one per pool, built
 * from the routing framework's parts (src/policies/routing), so the twin (`sim --pd-policy NAME`) and
 * the live gateway (config `pd.pairPolicy`) run the same code. Each side decides over its own pool's
 * view only; a `reject` from either side is early rejection.
 *
 * - `round-robin`: each pool in turn, with its own counter.
 * - `load-aware`: prefill by least queued prefill work (pending prompt tokens, host accounting);
 *   decode by free KV cache and fewest in-flight requests.
 * - `prefix-aware`: prefill by NVIDIA Dynamo's KV cost (queued prefill plus the prompt's uncached
 *   part, so a cached prefix attracts the request only while its holder's queue does not cost more);
 *   decode as `load-aware`.
 * - `mooncake`: prefill by the `mooncake` routing policy (estimated TTFT with a remote prefix fetch,
 *   early rejection on TTFT); decode by least estimated TPOT, rejecting when no decode instance meets
 *   the TPOT SLO (mooncake-decode.ts). The decode side decides at the prefill's end, or with the
 *   parameter `decodeAt: 'arrival'` first, at arrival (`PairPolicy.decodeAt`), so a decode-side
 *   refusal comes before any prefill work.
 */
import { z } from 'zod';
import { SwitchyardError, unknownName } from '../../core/errors.ts';
import type { Request } from '../../core/request.ts';
import { eligibleFilter } from '../routing/filters.ts';
import { type MooncakeParams, mooncakeParams } from '../routing/mooncake/mooncake.ts';
import { maxScorePicker } from '../routing/pickers.ts';
import { createProfilePolicy } from '../routing/profile.ts';
import { createRoutingPolicy } from '../routing/registry.ts';
import { inFlightScorer } from '../routing/scorers/in-flight.ts';
import { kvUsageScorer } from '../routing/scorers/kv-usage.ts';
import { lowerIsBetter } from '../routing/scorers/min-max.ts';
import type { PolicyContext, RoutingPolicy, Scorer } from '../routing/types.ts';
import { createMooncakeDecode } from './mooncake-decode.ts';

/** The pair policies, by the name `--pd-policy` and the gateway's `pd.pairPolicy` use. */
export const PD_PAIR_POLICIES = ['round-robin', 'load-aware', 'prefix-aware', 'mooncake'] as const;
/** One of PD_PAIR_POLICIES. */
export type PdPairPolicyName = (typeof PD_PAIR_POLICIES)[number];

/**
 * When a pair policy's decode side decides: `prefill-end` when the prefill leg has ended (vLLM's
 * proxy order), `arrival` before the prefill side (Mooncake's Conductor picks both at once), so a
 * decode-side refusal costs no prefill work.
 */
export type PdDecodeAt = 'arrival' | 'prefill-end';

/** A pair policy: one routing policy per pool, never one shared instance. */
export interface PairPolicy {
  readonly name: string;
  /** When the decode side decides (both hosts honour it). */
  readonly decodeAt: PdDecodeAt;
  /** Decides over the prefill pool's view only. */
  readonly prefill: RoutingPolicy;
  /** Decides over the decode pool's view only. */
  readonly decode: RoutingPolicy;
}

/** Whether `name` is a pair policy (not a routing policy's name). */
export function isPdPairPolicy(name: string): name is PdPairPolicyName {
  return (PD_PAIR_POLICIES as readonly string[]).includes(name);
}

/** Weights of the decode side's load scorers (load-aware and prefix-aware). */
const decodeLoadParams = {
  /** Weight of free KV cache (1 - kvUsage, as scraped). */
  kvUsageWeight: z.number().min(0).max(1e6).default(1),
  /** Weight of in-flight requests (host accounting, min-max normalised over the pool). */
  inFlightWeight: z.number().min(0).max(1e6).default(1),
};

const loadAwareParams = z.strictObject(decodeLoadParams);

const prefixAwareParams = z.strictObject({
  /**
   * kv-cost's weight of prefill blocks against decode blocks. On a prefill instance the decode term
   * repeats the queue (a prefill leg ends with its first token), so a queued token counts w + 1 and
   * an uncached one w: 4 keeps the two within 25% of each other, as a prefill's time is.
   */
  overlapWeight: z.number().min(0).default(4),
  /** Prefix tokens the prefill side's index remembers per instance (kv-cost's). */
  indexCapacityTokens: z.number().int().positive().default(450_000),
  ...decodeLoadParams,
});

/**
 * `mooncake`'s parameters: the routing policy's, plus when the decode side decides. `arrival` is the
 * Conductor's order (no prefill spent on a decode refusal) but judges the decode pool about one TTFT
 * before the request joins it; `prefill-end` (the default) judges it as the request is about to join,
 * and met the TPOT SLO for more requests on each run measured (docs/disaggregation.md).
 */
const mooncakePairParams = mooncakeParams.extend({
  decodeAt: z.enum(['arrival', 'prefill-end']).default('prefill-end'),
});
type MooncakePairParams = z.infer<typeof mooncakePairParams>;

interface PairEntry<P> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  /** Whether a side predicts time through PolicyContext.perfModel (a gateway then needs perf models). */
  readonly needsPerfModel: boolean;
  /** When the decode side decides, given the parsed parameters. */
  decodeAt(params: P): PdDecodeAt;
  create(params: P, context: PolicyContext): { prefill: RoutingPolicy; decode: RoutingPolicy };
}

function pairEntry<P>(e: PairEntry<P>): PairEntry<unknown> {
  return e as unknown as PairEntry<unknown>;
}

const PAIRS: Readonly<Record<PdPairPolicyName, PairEntry<unknown>>> = {
  'round-robin': pairEntry({
    description: 'each pool in turn, each with its own counter',
    params: z.strictObject({}),
    needsPerfModel: false,
    decodeAt: () => 'prefill-end',
    create: (_p, context) => ({
      prefill: createRoutingPolicy('round-robin', {}, context),
      decode: createRoutingPolicy('round-robin', {}, context),
    }),
  }),
  'load-aware': pairEntry({
    description:
      'prefill: fewest queued prompt tokens; decode: free KV cache + fewest in-flight (weighted scores)',
    params: loadAwareParams,
    needsPerfModel: false,
    decodeAt: () => 'prefill-end',
    create: (p) => ({ prefill: leastPendingPrefill(), decode: decodeByLoad(p) }),
  }),
  'prefix-aware': pairEntry({
    description:
      "prefill: Dynamo's KV cost (queued prefill + the prompt's uncached part); decode: as load-aware",
    params: prefixAwareParams,
    needsPerfModel: false,
    decodeAt: () => 'prefill-end',
    create: (p, context) => ({
      prefill: createRoutingPolicy(
        'kv-cost',
        { overlapWeight: p.overlapWeight, indexCapacityTokens: p.indexCapacityTokens },
        context,
      ),
      decode: decodeByLoad(p),
    }),
  }),
  mooncake: pairEntry({
    description:
      "Mooncake's Conductor: prefill by least estimated TTFT (queue, uncached prefill or a cheaper remote prefix fetch), decode by least estimated TPOT, with early SLO rejection; the decode side decides at the prefill's end, or with decodeAt 'arrival' first, at arrival (no prefill spent on its refusal)",
    params: mooncakePairParams,
    needsPerfModel: true,
    // `decodeAt: 'arrival'` is the Conductor's order: the pair at arrival, refusals before any prefill.
    decodeAt: (p: MooncakePairParams) => p.decodeAt,
    create: ({ decodeAt: _decodeAt, ...p }: MooncakePairParams, context) => ({
      prefill: ttftOnly(createRoutingPolicy('mooncake', p, context), p),
      decode: createMooncakeDecode(p, context),
    }),
  }),
};

/** The description of a pair policy, for `--help`. */
export function pdPairPolicyDescription(name: PdPairPolicyName): string {
  return PAIRS[name].description;
}

/** Whether the pair policy predicts time (a host must know each instance's perf model). */
export function pairNeedsPerfModel(name: PdPairPolicyName): boolean {
  return PAIRS[name].needsPerfModel;
}

/**
 * Builds a pair policy with validated parameters: two fresh routing policies, one per pool. An
 * unknown name lists the valid ones (SY_ERR_UNKNOWN_NAME); an unknown or malformed parameter is named
 * (SY_ERR_INVALID_CONFIG).
 */
export function createPairPolicy(
  name: PdPairPolicyName,
  params: Readonly<Record<string, unknown>>,
  context: PolicyContext,
): PairPolicy {
  const e = entryOf(name);
  const parsed = parsePairParams(e, name, params);
  const sides = e.create(parsed, context);
  return {
    name,
    decodeAt: e.decodeAt(parsed),
    prefill: labelled(sides.prefill, `${name}/prefill`),
    decode: labelled(sides.decode, `${name}/decode`),
  };
}

/**
 * Checks a pair policy's name and parameters without building it: the one check both hosts run at
 * start-up (the gateway's `pd.params`, `sim --pd-params`).
 */
export function checkPairPolicy(name: string, params: Readonly<Record<string, unknown>>): void {
  parsePairParams(entryOf(name), name, params);
}

/** A pair policy's parameter names, sorted (for help texts and an unknown key's hint). */
export function pdPairParamNames(name: PdPairPolicyName): string[] {
  return paramNamesOf(PAIRS[name]);
}

function paramNamesOf(e: PairEntry<unknown>): string[] {
  const shape = (e.params as { shape?: object }).shape ?? {};
  return Object.keys(shape).sort();
}

function entryOf(name: string): PairEntry<unknown> {
  if (!isPdPairPolicy(name)) throw unknownName('P/D pair policy', name, [...PD_PAIR_POLICIES]);
  return PAIRS[name];
}

function parsePairParams(
  e: PairEntry<unknown>,
  name: string,
  params: Readonly<Record<string, unknown>>,
): unknown {
  const parsed = e.params.safeParse(params);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    const where = i.path.join('.') || '(params)';
    const hint = i.code === 'unrecognized_keys' ? `; valid: ${paramNamesOf(e).join(', ') || '(none)'}` : '';
    return `${where}: ${i.message}${hint}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `P/D pair policy '${name}': ${problems.join('; ')}`, {
    param: 'params',
    problems,
  });
}

/** The policy under another name, hooks and all (each side names its pair and pool in logs). */
function labelled(policy: RoutingPolicy, name: string): RoutingPolicy {
  return { ...hooksOf(policy), name, decide: policy.decide.bind(policy) };
}

/**
 * Queued prefill work: prompt tokens sent to the instance without a first token yet (host
 * accounting, fresh in both hosts), min-max normalised so the emptiest scores 1.
 */
export const pendingPrefillScorer: Scorer = {
  name: 'pending-prefill',
  score(_view, _request, candidates, out) {
    lowerIsBetter(candidates, out, (c) => c.pendingPrefillTokens);
  },
};

/** The prefill side of load-aware: the fewest queued prompt tokens (ties at random, seeded). */
function leastPendingPrefill(): RoutingPolicy {
  return createProfilePolicy('least-pending-prefill', {
    filters: [eligibleFilter],
    scorers: [{ scorer: pendingPrefillScorer, weight: 1 }],
    picker: maxScorePicker,
  });
}

/**
 * The decode side of load-aware and prefix-aware: free KV cache (as scraped: where prompts and
 * growing outputs fit) plus fewest in-flight requests (fresh host accounting, so picks between two
 * scrapes do not all pile onto the instance that looked emptiest at the last one).
 */
function decodeByLoad(p: { kvUsageWeight: number; inFlightWeight: number }): RoutingPolicy {
  return createProfilePolicy('decode-load', {
    filters: [eligibleFilter],
    scorers: [
      { scorer: kvUsageScorer, weight: p.kvUsageWeight },
      { scorer: inFlightScorer, weight: p.inFlightWeight },
    ],
    picker: maxScorePicker,
  });
}

/**
 * The `mooncake` policy judging TTFT only: on the prefill pool the TPOT a request will see is the
 * decode pool's (judged there), not a prefill instance's batch. The request it decides on carries its
 * TTFT SLO (or `ttftSloMs`) and no TPOT bound; the hooks see the request itself.
 */
function ttftOnly(policy: RoutingPolicy, p: MooncakeParams): RoutingPolicy {
  return {
    ...hooksOf(policy),
    name: policy.name,
    decide(view, request, rng) {
      const slo = { ttftMs: request.slo?.ttftMs ?? p.ttftSloMs, tpotMs: Number.POSITIVE_INFINITY };
      const judged: Request = { ...request, slo };
      return policy.decide(view, judged, rng);
    },
  };
}

function hooksOf(policy: RoutingPolicy): Partial<RoutingPolicy> {
  const out: Record<string, unknown> = {};
  for (const hook of ['onRouted', 'onFirstToken', 'onCompleted', 'onFailed', 'onKvEvent'] as const) {
    const f = policy[hook];
    if (f !== undefined) out[hook] = f.bind(policy);
  }
  return out as Partial<RoutingPolicy>;
}
