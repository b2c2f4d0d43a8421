/**
 * Poisson and Gamma workloads without shared prefixes. The hot loop allocates only the request
 * object and its id string: lengths land in a reused PairSampler and every request shares the
 * frozen NO_PREFIX chain, so a million requests cost well under a second.
 */
import { NO_PREFIX } from '../core/request.ts';
import type { Rng } from '../core/rng.ts';
import { type ArrivalProcess, gammaArrivals, poissonArrivals } from './arrivals.ts';
import { buildRequest, defaultsOf, type RequestDefaults } from './common.ts';
import { type LengthsLoader, type PairSampler, pairSampler } from './lengths.ts';
import type { WorkloadSpecOf } from './spec.ts';
import type { TwinRequest } from './types.ts';

/** When a generated stream stops: whichever comes first. */
export interface StreamLimits {
  /** Requests to emit at most (Infinity for no cap). */
  readonly maxRequests: number;
  /** Arrivals at or after this time end the stream (Infinity for no cap). */
  readonly durationMs: number;
}

/** The limits a spec asks for, Infinity where unset. */
export function limitsOf(spec: {
  maxRequests?: number | undefined;
  durationS?: number | undefined;
}): StreamLimits {
  return {
    maxRequests: spec.maxRequests ?? Number.POSITIVE_INFINITY,
    durationMs: spec.durationS === undefined ? Number.POSITIVE_INFINITY : spec.durationS * 1000,
  };
}

/** Requests from a renewal arrival process with independent lengths, ids r0, r1, … */
export function* independentRequests(
  arrivals: ArrivalProcess,
  lengths: PairSampler,
  defaults: RequestDefaults,
  limits: StreamLimits,
): Generator<TwinRequest> {
  const { maxRequests, durationMs } = limits;
  let t = 0;
  for (let i = 0; i < maxRequests; i++) {
    t += arrivals.nextGapMs();
    if (t >= durationMs) return;
    lengths.sample();
    yield buildRequest(defaults, i, lengths.inputTokens, lengths.outputTokens, t, NO_PREFIX, undefined);
  }
}

/** A Poisson or Gamma workload from its validated spec; `rng` is used as this stream's root. */
export function renewalRequests(
  spec: WorkloadSpecOf<'poisson' | 'gamma'>,
  rng: Rng,
  load: LengthsLoader,
): Generator<TwinRequest> {
  const arrivalRng = rng.fork('arrivals');
  const arrivals =
    spec.kind === 'poisson'
      ? poissonArrivals(spec.rateRps, arrivalRng)
      : gammaArrivals(spec.rateRps, spec.cv, arrivalRng);
  return independentRequests(
    arrivals,
    pairSampler(spec.input, spec.output, rng.fork('lengths'), load),
    defaultsOf(spec),
    limitsOf(spec),
  );
}
