import { assertNever } from '../core/assert.ts';
import { scaleMultiModel } from '../workload/multi-model.ts';
import type { WorkloadSpec } from '../workload/spec.ts';
import { scaleRenewalRate } from '../workload/synthetic.ts';
import { scaleTimeVarying } from '../workload/time-varying.ts';

/** One evaluated point of a goodput sweep. */
export interface GoodputPoint {
  /** Multiplier on the workload's own arrival rate. */
  readonly scale: number;
  readonly rateRps: number;
  /** Fraction of requests meeting both the TTFT and the TPOT SLO (rejections count as misses). */
  readonly attainment: number;
}

/** The outcome of a sweep (DistServe's goodput: the highest rate at which >= target meet both SLOs). */
export interface GoodputResult {
  readonly goodputRps: number;
  readonly scale: number;
  readonly targetAttainment: number;
  /** Every point evaluated, in rate order. */
  readonly points: readonly GoodputPoint[];
}

/** Options of a sweep; the bounds keep it finite whatever the workload does. */
export interface GoodputOptions {
  readonly targetAttainment: number;
  /** Bisection steps after bracketing; each halves the bracket (geometrically). */
  readonly bisectSteps: number;
  /** The sweep never scales the rate beyond these factors. */
  readonly scaleMin: number;
  readonly scaleMax: number;
}

export const GOODPUT_DEFAULTS: GoodputOptions = {
  targetAttainment: 0.9,
  bisectSteps: 6,
  scaleMin: 1 / 256,
  scaleMax: 256,
};

/** The workload with its arrival rate multiplied by `k` (the same requests, compressed in time for a trace). */
export function scaleWorkload(spec: WorkloadSpec, k: number): WorkloadSpec {
  switch (spec.kind) {
    case 'trace':
      return { ...spec, rateScale: spec.rateScale * k };
    case 'poisson':
    case 'gamma':
    case 'constant':
      return scaleRenewalRate(spec, k);
    case 'system-prompts':
      return { ...spec, rateRps: spec.rateRps * k };
    case 'sessions':
      return { ...spec, sessionRateRps: spec.sessionRateRps * k };
    case 'sinusoid':
    case 'rate-curve':
    case 'bursts':
      return scaleTimeVarying(spec, k);
    case 'servegen':
      return { ...spec, rateScale: spec.rateScale * k };
    case 'multi-model':
      return scaleMultiModel(spec, k);
    default:
      return assertNever(spec, 'workload kind');
  }
}

/**
 * Finds the highest rate multiplier whose attainment meets the target: bracket by doubling or
 * halving from 1, then bisect geometrically. Attainment falls with load, so the search assumes it is
 * monotone, which holds up to noise; the points are all reported so a reader can see the curve.
 */
export function goodputSweep(
  evaluate: (scale: number) => { attainment: number; rateRps: number },
  options: GoodputOptions = GOODPUT_DEFAULTS,
): GoodputResult {
  const points: GoodputPoint[] = [];
  const cache = new Map<number, boolean>();
  const meets = (scale: number): boolean => {
    const known = cache.get(scale);
    if (known !== undefined) return known;
    const { attainment, rateRps } = evaluate(scale);
    points.push({ scale, rateRps, attainment });
    const ok = attainment >= options.targetAttainment;
    cache.set(scale, ok);
    return ok;
  };
  let lo: number;
  let hi: number;
  if (meets(1)) {
    lo = 1;
    hi = 2;
    while (hi <= options.scaleMax && meets(hi)) {
      lo = hi;
      hi *= 2;
    }
    if (hi > options.scaleMax) hi = lo;
  } else {
    hi = 1;
    lo = 0.5;
    while (lo >= options.scaleMin && !meets(lo)) {
      hi = lo;
      lo /= 2;
    }
    if (lo < options.scaleMin) {
      points.sort((a, b) => a.scale - b.scale);
      return { goodputRps: 0, scale: 0, targetAttainment: options.targetAttainment, points };
    }
  }
  for (let i = 0; i < options.bisectSteps && hi > lo; i++) {
    const mid = Math.sqrt(lo * hi);
    if (meets(mid)) lo = mid;
    else hi = mid;
  }
  points.sort((a, b) => a.scale - b.scale);
  const best = points.find((p) => p.scale === lo);
  const rateAtLo = best?.rateRps ?? 0;
  return { goodputRps: rateAtLo, scale: lo, targetAttainment: options.targetAttainment, points };
}
