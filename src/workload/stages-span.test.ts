/**
 * Rate stages with no duration or count limit last at most 31 days, as `--duration` and a rate
 * curve's end do: `sim --workload constant --stages 0.00001:1e12 --autoscaler kpa` was taken (10
 * million expected requests, within the run-size bound) and its control loop set out to tick
 * through 31,000 years; two 31-day stages ran 62 days.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { createWorkload } from './create.ts';

const build = (spec: Record<string, unknown>) => createWorkload(spec as never, new Rng(1));
const stages = (...s: [number, number][]) => s.map(([rateRps, durationS]) => ({ rateRps, durationS }));

test('stages past 31 days are refused unless durationS or maxRequests bounds them', () => {
  const long = { kind: 'constant', stages: stages([0.001, 2_678_400], [0.001, 2_678_400]), ...FIXED_LENGTHS };
  const e = refusal(() => build(long));
  assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /the stages \(--stages\) last 5356800 s, more than 2678400 s \(31 days\)/);
  assert.equal([...build({ ...long, maxRequests: 3 })].length, 3);
  build({ ...long, durationS: 3600 });
  // 31 days exactly is taken.
  build({ kind: 'poisson', stages: stages([0.001, 2_678_400]), ...FIXED_LENGTHS });
});

test('sim --stages 0.00001:1e12 exits 2 before the run', async () => {
  const r = await runCliInProcess([
    'sim',
    '--no-progress',
    '--workload',
    'constant',
    '--stages',
    '0.00001:1e12',
  ]);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /the stages \(--stages\) last 1000000000000 s/);
});
