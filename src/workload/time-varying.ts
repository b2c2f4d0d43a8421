/**
 * Workloads whose rate changes over time: a sinusoid, a rate curve (file or inline points) and
 * bursts. Arrivals are a unit-rate renewal process (Poisson, or Gamma gaps with the spec's CV)
 * pushed through the inverse of the rate's integral, so they are deterministic per seed and the
 * expected count in any interval is the integral of the rate over it (see rate-profile.ts).
 */
import { assertNever } from '../core/assert.ts';
import type { Rng } from '../core/rng.ts';
import { defaultsOf } from './common.ts';
import type { LengthsLoader } from './lengths.ts';
import { pairSampler } from './lengths.ts';
import {
  burstRate,
  type RatePoint,
  type RateProfile,
  rateCurve,
  repeating,
  sinusoidRate,
} from './rate-profile.ts';
import type { WorkloadSpecOf } from './spec.ts';
import { limitsOf, timedRequests } from './synthetic.ts';
import type { TwinRequest } from './types.ts';

/** The kinds this module generates. */
export type TimeVaryingSpec = WorkloadSpecOf<'sinusoid' | 'rate-curve' | 'bursts'>;

/** The kinds generated here, for dispatch. */
export const TIME_VARYING_KINDS = ['sinusoid', 'rate-curve', 'bursts'] as const;

/**
 * A stationary unit-rate renewal process: gaps of mean 1 with coefficient of variation `cv`. The
 * first gap is the forward recurrence time (U times a Gamma of shape k + 1, the length-biased gap),
 * so the expected count from 0 to y is exactly y, with no start-up excess of about (cv² − 1) / 2.
 */
export function unitGaps(cv: number, rng: Rng): () => number {
  if (cv === 1) return () => rng.exponential(1);
  const shape = 1 / (cv * cv);
  let first = true;
  return () => {
    if (!first) return rng.gamma(shape, 1 / shape);
    first = false;
    return rng.next() * rng.gamma(shape + 1, 1 / shape);
  };
}

/**
 * Arrival times (ms) of the process whose integrated rate is `profile`: y_k = y_{k-1} + gap,
 * t_k = Λ⁻¹(y_k). Ends where the profile ends (never, for a periodic one: the caller's limits stop it).
 */
export function* modulatedArrivalTimesMs(profile: RateProfile, cv: number, rng: Rng): Generator<number> {
  const gap = unitGaps(cv, rng);
  let y = 0;
  for (;;) {
    y += gap();
    const tS = profile.inverse(y);
    if (!(tS < profile.endS)) return;
    yield tS * 1000;
  }
}

/**
 * The rate profile of a time-varying spec. A rate curve from a file needs its points read first
 * (`filePoints`, from readRateCurve), so that generation does no I/O.
 */
export function profileOf(spec: TimeVaryingSpec, filePoints?: readonly RatePoint[]): RateProfile {
  switch (spec.kind) {
    case 'sinusoid':
      return sinusoidRate(spec.rateMinRps, spec.rateMaxRps, spec.periodS, spec.phaseS);
    case 'bursts':
      return burstRate(spec.baseRateRps, spec.burstRateRps, spec.burstS, spec.gapS);
    case 'rate-curve': {
      const points = spec.points ?? filePoints ?? [];
      const scaled = points.map((p) => ({ timeS: p.timeS, rateRps: p.rateRps * spec.rateScale }));
      const curve = rateCurve(scaled);
      return spec.repeat ? repeating(curve) : curve;
    }
    default:
      return assertNever(spec, 'time-varying kind');
  }
}

/** A time-varying workload's requests; `rng` is this stream's root. */
export function timeVaryingRequests(
  spec: TimeVaryingSpec,
  rng: Rng,
  load: LengthsLoader,
  filePoints?: readonly RatePoint[],
): Generator<TwinRequest> {
  const times = modulatedArrivalTimesMs(profileOf(spec, filePoints), spec.cv, rng.fork('arrivals'));
  const lengths = pairSampler(spec.input, spec.output, rng.fork('lengths'), load);
  return timedRequests(times, lengths, defaultsOf(spec), limitsOf(spec));
}

/** The same workload with every rate multiplied by `k` (goodput sweeps). */
export function scaleTimeVarying<S extends TimeVaryingSpec>(spec: S, k: number): S {
  switch (spec.kind) {
    case 'sinusoid':
      return { ...spec, rateMinRps: spec.rateMinRps * k, rateMaxRps: spec.rateMaxRps * k };
    case 'bursts':
      return { ...spec, baseRateRps: spec.baseRateRps * k, burstRateRps: spec.burstRateRps * k };
    case 'rate-curve':
      return { ...spec, rateScale: spec.rateScale * k };
    default:
      return assertNever(spec, 'time-varying kind');
  }
}

/** A label for reports: `sinusoid 1..24 req/s period 600 s`. */
export function describeTimeVarying(spec: TimeVaryingSpec): string {
  const cv = spec.cv !== 1 ? ` cv ${spec.cv}` : '';
  switch (spec.kind) {
    case 'sinusoid':
      return `sinusoid ${spec.rateMinRps}..${spec.rateMaxRps} req/s period ${spec.periodS} s${cv}`;
    case 'bursts':
      return `bursts ${spec.baseRateRps} req/s, ${spec.burstRateRps} req/s for ${spec.burstS} s every ${spec.gapS + spec.burstS} s${cv}`;
    case 'rate-curve': {
      const source = spec.file ?? `${spec.points?.length ?? 0} points`;
      const scale = spec.rateScale !== 1 ? ` at ${spec.rateScale}x rate` : '';
      return `rate-curve ${source}${scale}${spec.repeat ? ' repeated' : ''}${cv}`;
    }
    default:
      return assertNever(spec, 'time-varying kind');
  }
}
