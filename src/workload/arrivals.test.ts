import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { type ArrivalProcess, gammaArrivals, poissonArrivals } from './arrivals.ts';

const N = 200_000;

function gapStats(p: ArrivalProcess): { meanMs: number; cv: number } {
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < N; i++) {
    const g = p.nextGapMs();
    sum += g;
    sumSq += g * g;
  }
  const meanMs = sum / N;
  return { meanMs, cv: Math.sqrt(sumSq / N - meanMs * meanMs) / meanMs };
}

describe('arrival processes', () => {
  it('Poisson has the requested mean rate and CV 1', () => {
    const { meanMs, cv } = gapStats(poissonArrivals(50, new Rng(1)));
    assert.ok(Math.abs(meanMs - 20) / 20 < 0.015, `mean gap ${meanMs}`);
    assert.ok(Math.abs(cv - 1) < 0.02, `cv ${cv}`);
  });

  for (const cv of [0.5, 2, 4]) {
    it(`Gamma with cv ${cv} keeps the mean rate and has that CV`, () => {
      const s = gapStats(gammaArrivals(50, cv, new Rng(2)));
      assert.ok(Math.abs(s.meanMs - 20) / 20 < 0.03, `mean gap ${s.meanMs}`);
      assert.ok(Math.abs(s.cv - cv) / cv < 0.08, `cv ${s.cv}`);
    });
  }

  it('Gamma with cv > 1 has a higher inter-arrival variance than Poisson at the same rate', () => {
    const poisson = gapStats(poissonArrivals(10, new Rng(3)));
    const bursty = gapStats(gammaArrivals(10, 3, new Rng(3)));
    const variance = (s: { meanMs: number; cv: number }) => (s.meanMs * s.cv) ** 2;
    assert.ok(variance(bursty) > 4 * variance(poisson));
  });

  it('Gamma with cv 1 is exactly the Poisson stream', () => {
    const a = poissonArrivals(7, new Rng(9));
    const b = gammaArrivals(7, 1, new Rng(9));
    for (let i = 0; i < 1000; i++) assert.equal(a.nextGapMs(), b.nextGapMs());
  });

  it('reject non-positive rates and CVs', () => {
    assert.throws(() => poissonArrivals(0, new Rng(1)), { code: 'SY_ERR_INVALID_ARGUMENT' });
    assert.throws(() => gammaArrivals(1, -1, new Rng(1)), { code: 'SY_ERR_INVALID_ARGUMENT' });
  });
});
