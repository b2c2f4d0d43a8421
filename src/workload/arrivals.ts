/**
 * Arrival processes: renewal processes that hand out inter-arrival gaps. Poisson has exponential
 * gaps; Gamma gaps with shape k = 1 / cv² and the same mean give any coefficient of variation
 * (cv > 1 is burstier than Poisson, cv < 1 more regular); constant gaps are what load generators
 * that pace requests evenly send (cv 0).
 */
import { invalidArgument } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';

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
  if (!(cv > 0 && Number.isFinite(cv))) throw invalidArgument('cv', cv, 'a positive number');
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
