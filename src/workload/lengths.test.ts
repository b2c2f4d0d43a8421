import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { cachedLengthsLoader, lengthSampler, pairSampler } from './lengths.ts';
import type { LengthDist } from './spec.ts';
import { readTraceLengths } from './traces/read.ts';

const load = cachedLengthsLoader();

function draw(dist: LengthDist, n: number, seed = 1): number[] {
  const s = lengthSampler(dist, 'input', new Rng(seed), load);
  return Array.from({ length: n }, () => s.sample());
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('length distributions', () => {
  it('fixed always gives its value', () => {
    assert.deepEqual(draw({ kind: 'fixed', tokens: 7 }, 3), [7, 7, 7]);
  });

  it('uniform covers [lo, hi] inclusive with the right mean', () => {
    const xs = draw({ kind: 'uniform', lo: 10, hi: 20 }, 50_000);
    assert.equal(Math.min(...xs), 10);
    assert.equal(Math.max(...xs), 20);
    assert.ok(Math.abs(mean(xs) - 15) < 0.1);
    assert.ok(xs.every(Number.isInteger));
  });

  it('lognormal has the requested mean and respects min and max', () => {
    const xs = draw({ kind: 'lognormal', mean: 1000, cv: 1, min: 1 }, 100_000);
    assert.ok(Math.abs(mean(xs) - 1000) / 1000 < 0.03, `mean ${mean(xs)}`);
    const clamped = draw({ kind: 'lognormal', mean: 1000, cv: 2, min: 100, max: 2000 }, 10_000);
    assert.ok(clamped.every((x) => x >= 100 && x <= 2000 && Number.isInteger(x)));
    assert.deepEqual(draw({ kind: 'lognormal', mean: 99.6, cv: 0, min: 1 }, 2), [100, 100]);
  });

  it('normal has the requested mean and spread, clipped to [min, max] and rounded', () => {
    const xs = draw({ kind: 'normal', mean: 680, stdDev: 60, min: 1 }, 100_000);
    const sd = Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
    assert.ok(Math.abs(mean(xs) - 680) < 1, `mean ${mean(xs)}`);
    assert.ok(Math.abs(sd - 60) < 1, `sd ${sd}`);
    const clipped = draw({ kind: 'normal', mean: 680, stdDev: 100, min: 570, max: 790 }, 10_000);
    assert.ok(clipped.every((x) => x >= 570 && x <= 790 && Number.isInteger(x)));
    // About 14% of draws fall below 570 and are clipped to it, as inference-perf's np.clip does.
    const atMin = clipped.filter((x) => x === 570).length / clipped.length;
    assert.ok(atMin > 0.12 && atMin < 0.16, `at min ${atMin}`);
    assert.deepEqual(draw({ kind: 'normal', mean: 249.6, stdDev: 0, min: 1 }, 2), [250, 250]);
  });

  it('empirical draws values of the trace column', () => {
    const trace = readTraceLengths('sample:azure-conv');
    const inputs = new Set(trace.map((r) => r.inputTokens));
    const xs = draw({ kind: 'empirical', trace: 'sample:azure-conv' }, 5000);
    assert.ok(xs.every((x) => inputs.has(x)));
    const traceMean = mean(trace.map((r) => r.inputTokens));
    assert.ok(Math.abs(mean(xs) - traceMean) / traceMean < 0.05);
  });

  it('empirical input and output from one trace are drawn jointly', () => {
    const pairs = new Set(
      readTraceLengths('sample:azure-conv').map((r) => `${r.inputTokens}/${r.outputTokens}`),
    );
    const dist: LengthDist = { kind: 'empirical', trace: 'sample:azure-conv' };
    const p = pairSampler(dist, dist, new Rng(4), load);
    for (let i = 0; i < 2000; i++) {
      p.sample();
      assert.ok(pairs.has(`${p.inputTokens}/${p.outputTokens}`));
    }
  });

  it('independent sides do not shift each other', () => {
    const out: LengthDist = { kind: 'uniform', lo: 1, hi: 1000 };
    const a = pairSampler({ kind: 'fixed', tokens: 5 }, out, new Rng(8), load);
    const b = pairSampler({ kind: 'uniform', lo: 1, hi: 9 }, out, new Rng(8), load);
    for (let i = 0; i < 100; i++) {
      a.sample();
      b.sample();
      assert.equal(a.outputTokens, b.outputTokens);
    }
  });
});
