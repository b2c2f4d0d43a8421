/**
 * A workload cut only by maxRequests lasts at most 31 days of simulated time, as one cut by
 * durationS, stages or a rate curve's end: `sim --rate 0.00001 --requests 100 --autoscaler kpa`
 * simulated 126 days, its control loop ticking every 2 s through them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { createWorkload } from './create.ts';

const build = (spec: Record<string, unknown>) => createWorkload(spec as never, new Rng(1));
const DAY = 86_400;

test('a count that takes more than 31 days to arrive is refused, per kind', () => {
  const cases: Record<string, unknown>[] = [
    { kind: 'poisson', rateRps: 0.00001, maxRequests: 100 },
    { kind: 'constant', stages: [{ rateRps: 0.00001, durationS: 1e12 }], maxRequests: 100 },
    { kind: 'gamma', rateRps: 100 / (32 * DAY), cv: 2, maxRequests: 100 },
    { kind: 'sinusoid', rateMinRps: 0, rateMaxRps: 0.00002, periodS: 3600, maxRequests: 100 },
    { kind: 'multi-model', models: 2, rateRps: 0.00001, maxRequests: 100 },
  ];
  for (const spec of cases) {
    const e = refusal(() => build({ ...spec, ...FIXED_LENGTHS }));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT', String(spec['kind']));
    assert.match(
      e.message,
      /maxRequests \(--requests\) 100 at the .* rate would take about .* more than 2678400 s \(31 days\)/,
    );
    assert.equal(e.details?.['param'], 'workload.maxRequests');
  }
});

test('a count within 31 days, or with durationS, still runs', () => {
  // 100 requests at 100 / (30 days): about 30 days.
  build({ kind: 'poisson', rateRps: 100 / (30 * DAY), maxRequests: 100, ...FIXED_LENGTHS });
  // durationS bounds it, whatever the count.
  build({ kind: 'poisson', rateRps: 0.00001, maxRequests: 100, durationS: 3600, ...FIXED_LENGTHS });
  // Stages reach the count in their first 1,000 s.
  const staged = build({
    kind: 'constant',
    stages: [
      { rateRps: 0.1, durationS: 1000 },
      { rateRps: 0.00001, durationS: 1e12 },
    ],
    maxRequests: 50,
    ...FIXED_LENGTHS,
  });
  assert.equal([...staged].length, 50);
});

test('sim --rate 0.00001 --requests 100 --autoscaler kpa exits 2 before the run', async () => {
  const r = await runCliInProcess([
    'sim',
    '--no-progress',
    '--rate',
    '0.00001',
    '--requests',
    '100',
    '--autoscaler',
    'kpa',
  ]);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /about 10,000,000 s \(116 days\).*\[SY_ERR_INVALID_ARGUMENT\]/);
});
