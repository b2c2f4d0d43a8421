/**
 * Which idle model to stop when a node's cap on loaded models is reached and a request needs a model
 * that is not loaded. Pure: the host (the live one in src/control/loaded-model-cap.ts; the twin's
 * serverless policies may reuse it) passes each candidate's figures and its own clock's readings.
 *
 * - `lru`: the candidate used least recently goes first (Ollama and ServerlessLLM's baseline).
 * - `cost-aware`: the candidate whose eviction costs least goes first, the cost being what its next
 *   reload would take times how often it is asked for: measured start-up time x recent request
 *   rate. A model that is cheap to load again, or rarely used, goes before a slow, popular one.
 *   Equal costs (e.g. every rate decayed to zero) fall back to LRU.
 *
 * Ties end on the model name, never on the order candidates are given in.
 */

/** The eviction policies, as `--eviction` and `autoscaler.eviction` name them. */
export const EVICTION_POLICIES = ['lru', 'cost-aware'] as const;
/** One of `EVICTION_POLICIES`. */
export type EvictionPolicy = (typeof EVICTION_POLICIES)[number];
/** The default policy: the baseline every server has. */
export const EVICTION_POLICY_DEFAULT: EvictionPolicy = 'lru';
/**
 * Time constant of the request-rate estimate (`decayRate`): arrivals older than a few minutes hardly
 * count. One minute follows the usual "recent" window of serverless popularity estimates.
 */
export const POPULARITY_TAU_MS = 60_000;

/** What the policy reads of one loaded, idle model. */
export interface EvictionCandidate {
  readonly model: string;
  /** Its last request's arrival or end (host clock). */
  readonly lastUsedMs: number;
  /** How long its engine took from spawn to ready, as last measured (ms). */
  readonly startupMs: number;
  /** Its recent request rate (`rateAt`), requests per second. */
  readonly requestsPerS: number;
}

/** The policy's choice among `candidates` (undefined when there is none). */
export function chooseEviction(
  policy: EvictionPolicy,
  candidates: readonly EvictionCandidate[],
): EvictionCandidate | undefined {
  let best: EvictionCandidate | undefined;
  for (const c of candidates) if (best === undefined || before(policy, c, best)) best = c;
  return best;
}

/** The cost-aware policy's cost of evicting `c`: reload time x request rate (ms of start-up per s). */
export function evictionCost(c: EvictionCandidate): number {
  return Math.max(0, c.startupMs) * Math.max(0, c.requestsPerS);
}

/** `a` goes before `b` under `policy`. */
function before(policy: EvictionPolicy, a: EvictionCandidate, b: EvictionCandidate): boolean {
  switch (policy) {
    case 'cost-aware': {
      const ca = evictionCost(a);
      const cb = evictionCost(b);
      if (ca !== cb) return ca < cb;
      return lruBefore(a, b);
    }
    case 'lru':
      return lruBefore(a, b);
    default: {
      const never: never = policy;
      throw new RangeError(`unknown eviction policy ${String(never)}`);
    }
  }
}

function lruBefore(a: EvictionCandidate, b: EvictionCandidate): boolean {
  if (a.lastUsedMs !== b.lastUsedMs) return a.lastUsedMs < b.lastUsedMs;
  return a.model < b.model;
}

/** An exponentially decayed request rate: its value at `atMs`. */
export interface DecayedRate {
  readonly perS: number;
  readonly atMs: number;
}

/** No request yet. */
export const RATE_NONE: DecayedRate = { perS: 0, atMs: 0 };

/**
 * The rate `r` read at `nowMs`: each arrival weighs exp(-age / tauMs) / tauMs, so a steady stream of
 * x requests per second reads x, and a model left alone decays toward 0.
 */
export function rateAt(r: DecayedRate, nowMs: number, tauMs: number = POPULARITY_TAU_MS): number {
  if (r.perS === 0) return 0;
  return r.perS * Math.exp(-Math.max(0, nowMs - r.atMs) / tauMs);
}

/** `r` after one more arrival at `nowMs`. */
export function withArrival(r: DecayedRate, nowMs: number, tauMs: number = POPULARITY_TAU_MS): DecayedRate {
  return { perS: rateAt(r, nowMs, tauMs) + 1000 / tauMs, atMs: nowMs };
}
