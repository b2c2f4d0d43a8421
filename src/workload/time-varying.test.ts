import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { scaleWorkload } from '../twin/goodput.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import {
  burstRate,
  PiecewiseLinearRate,
  type RateProfile,
  rateCurve,
  repeating,
  sinusoidRate,
} from './rate-profile.ts';
import { modulatedArrivalTimesMs } from './time-varying.ts';

const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;

function arrivals(spec: object, seed = 1): number[] {
  return [...createWorkload(spec as never, new Rng(seed))].map((r) => r.arrivalMs);
}

function countIn(timesMs: readonly number[], fromS: number, toS: number): number {
  return timesMs.filter((t) => t >= fromS * 1000 && t < toS * 1000).length;
}

/**
 * Every bin's count is within `sigmas` standard deviations of the rate's integral over the bin.
 * A Poisson count has variance Λ; a Gamma-renewal count about cv²·Λ.
 */
function assertCountsFollow(
  timesMs: readonly number[],
  profile: RateProfile,
  binS: number,
  bins: number,
  cv = 1,
) {
  for (let b = 0; b < bins; b++) {
    const expected = profile.cumulative((b + 1) * binS) - profile.cumulative(b * binS);
    const got = countIn(timesMs, b * binS, (b + 1) * binS);
    const bound = 5 * cv * Math.sqrt(Math.max(expected, 1));
    assert.ok(
      Math.abs(got - expected) <= bound,
      `bin ${b}: ${got} arrivals, integral ${expected.toFixed(1)}`,
    );
  }
}

describe('rate profiles', () => {
  it('a piecewise-linear rate integrates exactly and inverts its integral', () => {
    const p = rateCurve([
      { timeS: 0, rateRps: 0 },
      { timeS: 10, rateRps: 20 },
      { timeS: 20, rateRps: 20 },
      { timeS: 30, rateRps: 0 },
      { timeS: 40, rateRps: 0 },
      { timeS: 50, rateRps: 6 },
    ]);
    assert.equal(p.cumulative(10), 100);
    assert.equal(p.cumulative(20), 300);
    assert.equal(p.total, 400 + 30);
    assert.equal(p.rateAt(5), 10);
    assert.equal(p.rateAt(60), 0);
    for (const t of [0.5, 3, 9.99, 10, 15, 25, 29.9, 41, 49.5]) {
      assert.ok(Math.abs(p.inverse(p.cumulative(t)) - t) < 1e-9, `t=${t}`);
    }
    // The idle stretch (30-40 s) carries no mass: the inverse jumps over it.
    assert.ok(p.inverse(p.cumulative(30) + 1e-9) > 40);
    assert.equal(p.inverse(p.total + 1), Number.POSITIVE_INFINITY);
  });

  it('a sinusoid starts at its minimum, peaks half a period in and integrates to mean x period', () => {
    const p = sinusoidRate(1, 24, 600);
    assert.ok(Math.abs(p.rateAt(0) - 1) < 1e-9);
    assert.ok(Math.abs(p.rateAt(300) - 24) < 1e-9);
    assert.ok(Math.abs(p.cumulative(600) - 12.5 * 600) < 1e-6);
    assert.ok(Math.abs(p.cumulative(1800) - 3 * 12.5 * 600) < 1e-6);
    for (const t of [0.1, 77, 300, 599.9, 600, 1234.5]) {
      assert.ok(Math.abs(p.inverse(p.cumulative(t)) - t) < 1e-6, `t=${t}`);
    }
    const shifted = sinusoidRate(1, 24, 600, 150);
    assert.ok(Math.abs(shifted.rateAt(150) - 24) < 1e-9, 'phaseS shifts the peak earlier');
    // A zero minimum still inverts (Newton falls back to bisection where the rate is 0).
    const zero = sinusoidRate(0, 10, 100);
    assert.ok(Math.abs(zero.inverse(zero.cumulative(0.5)) - 0.5) < 1e-6);
  });

  it('bursts and repeated curves are periodic', () => {
    const b = burstRate(2, 50, 10, 50);
    assert.equal(b.rateAt(49), 2);
    assert.equal(b.rateAt(55), 50);
    assert.equal(b.rateAt(60 + 49), 2);
    assert.equal(b.cumulative(120), 2 * (2 * 50 + 50 * 10));
    const r = repeating(new PiecewiseLinearRate([{ startS: 0, endS: 10, rate0Rps: 0, rate1Rps: 10 }]));
    assert.equal(r.cumulative(30), 150);
    assert.ok(Math.abs(r.inverse(r.cumulative(25)) - 25) < 1e-9);
  });

  it('rejects curves that do not start at 0 or have negative rates', () => {
    assert.throws(
      () =>
        rateCurve([
          { timeS: 1, rateRps: 1 },
          { timeS: 2, rateRps: 1 },
        ]),
      { code: 'SY_ERR_INVALID_ARGUMENT' },
    );
    assert.throws(() => sinusoidRate(5, 1, 60), { code: 'SY_ERR_INVALID_ARGUMENT' });
  });
});

describe('time-varying workloads', () => {
  it('sinusoid: each quarter period holds the integral of the rate, over ten periods', () => {
    const t = arrivals({
      kind: 'sinusoid',
      rateMinRps: 1,
      rateMaxRps: 24,
      periodS: 600,
      durationS: 6000,
      ...lengths,
    });
    assertCountsFollow(t, sinusoidRate(1, 24, 600), 150, 40);
    // The trough quarter and the peak quarter differ as the rate does, not just within noise.
    assert.ok(countIn(t, 225, 375) > 5 * countIn(t, 0, 75) + countIn(t, 525, 600));
    assert.ok((t.at(-1) as number) < 6_000_000);
  });

  it('sinusoid with cv 3 keeps the mean count per period (Gamma gaps in integrated time)', () => {
    const t = arrivals({
      kind: 'sinusoid',
      rateMinRps: 2,
      rateMaxRps: 20,
      periodS: 300,
      cv: 3,
      durationS: 3000,
      ...lengths,
    });
    assertCountsFollow(t, sinusoidRate(2, 20, 300), 300, 10, 3);
    assert.ok(Math.abs(t.length - 11 * 3000) < 5 * 3 * Math.sqrt(11 * 3000));
  });

  it('rate-curve from points: a ramp then a plateau, ending at the last point', () => {
    const points = [
      { timeS: 0, rateRps: 0 },
      { timeS: 100, rateRps: 40 },
      { timeS: 200, rateRps: 40 },
    ];
    const t = arrivals({ kind: 'rate-curve', points, ...lengths });
    assertCountsFollow(t, rateCurve(points), 20, 10);
    assert.ok((t.at(-1) as number) < 200_000);
    const doubled = arrivals({ kind: 'rate-curve', points, rateScale: 2, ...lengths });
    assertCountsFollow(doubled, rateCurve(points.map((p) => ({ ...p, rateRps: 2 * p.rateRps }))), 20, 10);
  });

  it('bursts: burst windows carry the burst rate and gaps the base rate', () => {
    const t = arrivals({
      kind: 'bursts',
      baseRateRps: 2,
      burstRateRps: 50,
      burstS: 10,
      gapS: 50,
      durationS: 1200,
      ...lengths,
    });
    assertCountsFollow(t, burstRate(2, 50, 10, 50), 10, 120);
  });

  it('is deterministic per seed and re-iterable', () => {
    const spec = {
      kind: 'sinusoid',
      rateMinRps: 1,
      rateMaxRps: 9,
      periodS: 60,
      durationS: 120,
      cv: 2,
      ...lengths,
    };
    assert.deepEqual(arrivals(spec, 7), arrivals(spec, 7));
    assert.notDeepEqual(arrivals(spec, 7), arrivals(spec, 8));
    const source = createWorkload(spec as never, new Rng(3));
    assert.deepEqual(
      [...source].map((r) => r.arrivalMs),
      [...source].map((r) => r.arrivalMs),
    );
    const take = (seed: number) => {
      const g = modulatedArrivalTimesMs(sinusoidRate(1, 2, 10), 1, new Rng(seed));
      return [1, 2, 3, 4, 5].map(() => g.next().value as number);
    };
    assert.deepEqual(take(1), take(1));
  });

  it('goodput sweeps scale every rate of a time-varying kind', () => {
    const s = parseWorkloadSpec({
      kind: 'bursts',
      baseRateRps: 1,
      burstRateRps: 10,
      burstS: 5,
      gapS: 5,
      durationS: 10,
      ...lengths,
    });
    const scaled = scaleWorkload(s, 2);
    assert.equal(scaled.kind === 'bursts' && scaled.baseRateRps + scaled.burstRateRps, 22);
  });

  it('rejects bad specs naming the field', () => {
    const bad = [
      [{ kind: 'sinusoid', rateMinRps: 5, rateMaxRps: 1, periodS: 60, durationS: 60 }, /rateMaxRps/],
      [{ kind: 'sinusoid', rateMinRps: 1, rateMaxRps: 5, periodS: 60 }, /maxRequests or durationS/],
      [{ kind: 'rate-curve' }, /exactly one of file and points/],
      [{ kind: 'bursts', baseRateRps: 1, burstRateRps: 5, burstS: 0, gapS: 1, durationS: 9 }, /burstS/],
    ] as const;
    for (const [spec, message] of bad) {
      assert.throws(() => parseWorkloadSpec({ ...spec, ...lengths }), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message,
      });
    }
    assert.throws(
      () =>
        createWorkload(
          {
            kind: 'rate-curve',
            points: [
              { timeS: 5, rateRps: 1 },
              { timeS: 9, rateRps: 1 },
            ],
            ...lengths,
          },
          new Rng(1),
        ),
      { code: 'SY_ERR_INVALID_ARGUMENT', message: /time 0/ },
    );
  });
});
