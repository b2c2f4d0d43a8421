/**
 * An inter-arrival CV past what a Gamma renewal process can draw is refused before the run. `sim
 * --workload gamma --cv 1e-200` and `--cv 1e300` hung (the shape 1/cv^2 overflowed or vanished and
 * every gap was NaN), and `--cv 1e5 --rate 5 --duration 100` drew billions of arrivals at one
 * instant (gaps of shape 1e-10 are all but always 0) and never ended.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { ARRIVAL_CV_MAX, ARRIVAL_CV_MIN, gammaArrivals } from './arrivals.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { parseWorkloadSpec } from './create.ts';

const gamma = (cv: number) => ({ kind: 'gamma', rateRps: 5, cv, durationS: 100, ...FIXED_LENGTHS });

test('the spec refuses a cv outside [1e-150, 1e4], naming cv and --cv', () => {
  for (const cv of [1e-200, 1e5, 1e300]) {
    const e = refusal(() => parseWorkloadSpec(gamma(cv)));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(e.message, /workload\.cv: an inter-arrival cv \(--cv\) of at (least|most)/);
  }
  for (const cv of [ARRIVAL_CV_MIN, 0.5, 3, ARRIVAL_CV_MAX])
    assert.equal(parseWorkloadSpec(gamma(cv)).kind, 'gamma');
  // The other kinds with a cv take the same bound.
  const e = refusal(() =>
    parseWorkloadSpec({
      kind: 'sinusoid',
      rateMinRps: 1,
      rateMaxRps: 2,
      periodS: 60,
      cv: 1e5,
      ...FIXED_LENGTHS,
    }),
  );
  assert.match(e.message, /workload\.cv/);
});

test('gammaArrivals itself refuses them (bench reaches it through --burstiness)', () => {
  assert.throws(() => gammaArrivals(5, 1e5, new Rng(1)), /invalid cv '100000'/);
  assert.throws(() => gammaArrivals(5, 1e-200, new Rng(1)), /invalid cv/);
  const gaps = gammaArrivals(5, ARRIVAL_CV_MIN, new Rng(1));
  // At the least cv the gaps are the rate's own.
  assert.ok(Math.abs(gaps.nextGapMs() - 200) < 1e-6);
});

test('sim --cv 1e5 exits 2 before the run', async () => {
  const r = await runCliInProcess([
    'sim',
    '--no-progress',
    '--cv',
    '1e5',
    '--rate',
    '5',
    '--duration',
    '100',
  ]);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /cv: an inter-arrival cv \(--cv\) of at most 10000/);
});
