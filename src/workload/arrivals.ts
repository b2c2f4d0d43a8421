/**
 * Arrival processes: renewal processes that hand out inter-arrival gaps. Poisson has exponential
 * gaps; Gamma gaps with shape k = 1 / cv² and the same mean give any coefficient of variation
 * (cv > 1 is burstier than Poisson, cv < 1 more regular); constant gaps are what load generators
 * that pace requests evenly send (cv 0).
 */
import { invalidArgument } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';

/**
 * Least inter-arrival CV: below it the Gamma shape 1 / cv^2 overflows to Infinity, every gap is NaN
 * and a run hung on NaN arrival times.
 */
export const ARRIVAL_CV_MIN = 1e-150;
/**
 * Most inter-arrival CV. Gamma gaps of shape 1 / cv^2 are nearly all 0 with a rare huge one, so a
 * renewal process starting at an arrival sends about cv^2 / 7 arrivals at once before its first real
 * gap (measured: 5 req/s for 100 s gave 116 thousand requests at cv 1,000 and 1.28 million at
 * 3,000); past about 1e4 that first batch alone runs past the 50-million bound and a run never ends
 * (cv 1e5 hung). ServeGen's fitted windows reach a CV of about 1,040.
 */
export const ARRIVAL_CV_MAX = 1e4;

/** A source of inter-arrival gaps. */
export interface ArrivalProcess {
  /** The next gap in ms (> 0 almost surely). */
  nextGapMs(): number;
}

class PoissonArrivals implements ArrivalProcess {
  constructor(
    private readonly rng: Rng,
    private readonly ratePerMs: number,
  ) {}

  nextGapMs(): number {
    return this.rng.exponential(this.ratePerMs);
  }
}

class GammaArrivals implements ArrivalProcess {
  constructor(
    private readonly rng: Rng,
    private readonly shape: number,
    private readonly scaleMs: number,
  ) {}

  nextGapMs(): number {
    return this.rng.gamma(this.shape, this.scaleMs);
  }
}

class ConstantArrivals implements ArrivalProcess {
  constructor(private readonly gapMs: number) {}

  nextGapMs(): number {
    return this.gapMs;
  }
}

function checkRate(rateRps: number): void {
  if (!(rateRps > 0 && Number.isFinite(rateRps)))
    throw invalidArgument('rateRps', rateRps, 'a positive number');
}

/** Poisson arrivals at `rateRps` requests per second. */
export function poissonArrivals(rateRps: number, rng: Rng): ArrivalProcess {
  checkRate(rateRps);
  return new PoissonArrivals(rng, rateRps / 1000);
}

/**
 * Gamma-renewal arrivals with mean rate `rateRps` and inter-arrival coefficient of variation `cv`.
 * cv = 1 returns the Poisson process itself (the same numbers for the same rng), not a Gamma
 * sampler that happens to have shape 1.
 */
export function gammaArrivals(rateRps: number, cv: number, rng: Rng): ArrivalProcess {
  checkRate(rateRps);
  if (!(cv >= ARRIVAL_CV_MIN && cv <= ARRIVAL_CV_MAX))
    throw invalidArgument('cv', cv, `a number from ${ARRIVAL_CV_MIN} to ${ARRIVAL_CV_MAX}`);
  if (cv === 1) return poissonArrivals(rateRps, rng);
  const shape = 1 / (cv * cv);
  const meanGapMs = 1000 / rateRps;
  return new GammaArrivals(rng, shape, meanGapMs / shape);
}

/** Constant-rate arrivals: every gap is exactly 1000 / `rateRps` ms. Draws no randomness. */
export function constantArrivals(rateRps: number): ArrivalProcess {
  checkRate(rateRps);
  return new ConstantArrivals(1000 / rateRps);
}
