/**
 * A workload holds at most WORKLOAD_REQUESTS_MAX requests: `sim --requests 1e12`, or an open-loop
 * rate over a long duration (`--rate 1000 --duration 2678400`, 2.7 billion expected arrivals), ran
 * for years with the twin's per-request figures growing, instead of failing at once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import { WORKLOAD_DURATION_MAX_S, WORKLOAD_REQUESTS_MAX } from './spec.ts';

const lengths = FIXED_LENGTHS;

const build = (spec: Record<string, unknown>) => createWorkload(spec as never, new Rng(1));

describe('workload request bound (50 million)', () => {
  it('maxRequests past the bound is refused, naming it; the bound itself is taken', () => {
    assert.equal(WORKLOAD_REQUESTS_MAX, 50_000_000);
    const e = refusal(() =>
      parseWorkloadSpec({ kind: 'poisson', rateRps: 10, maxRequests: 1e12, ...lengths }),
    );
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(e.message, /workload\.maxRequests: at most 50000000 requests in one run/);
    assert.equal(
      parseWorkloadSpec({ kind: 'poisson', rateRps: 10, maxRequests: WORKLOAD_REQUESTS_MAX, ...lengths })
        .kind,
      'poisson',
    );
  });

  it('an open-loop rate over a long duration is refused by its expected count, unless maxRequests cuts it', () => {
    const longRun = { kind: 'poisson', rateRps: 1000, durationS: WORKLOAD_DURATION_MAX_S, ...lengths };
    const e = refusal(() => build(longRun));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(
      e.message,
      /about 2,678,400,000 requests \(rateRps \(--rate\) 1000 x durationS \(--duration\) 2678400\), more than 50,000,000/,
    );
    assert.match(e.message, /maxRequests \(--requests\) of at most 50000000/);
    // Cut by maxRequests, the same rate and duration run.
    assert.equal([...build({ ...longRun, maxRequests: 3 })].length, 3);
    // Just under the bound is taken (built lazily: nothing is drawn here).
    build({ ...longRun, durationS: WORKLOAD_REQUESTS_MAX / 1000 });
  });

  it('stages, time-varying and multi-model kinds are counted too', () => {
    const stages = [
      { rateRps: 1e6, durationS: 100 },
      { rateRps: 5, durationS: 10 },
    ];
    assert.match(
      refusal(() => build({ kind: 'constant', stages, ...lengths })).message,
      /about 100,000,050 requests \(the stages \(--stages\)\)/,
    );
    // durationS cuts the stages: 1e6 x 40 s is under the bound.
    build({ kind: 'constant', stages, durationS: 40, ...lengths });
    assert.match(
      refusal(() =>
        build({
          kind: 'sinusoid',
          rateMinRps: 0,
          rateMaxRps: 2e4,
          periodS: 3600,
          durationS: 86_400,
          ...lengths,
        }),
      ).message,
      /about 864,000,000 requests \(the sinusoid rate over 86400 s\)/,
    );
    assert.match(
      refusal(() => build({ kind: 'multi-model', models: 3, rateRps: 1e5, durationS: 2e6, ...lengths }))
        .message,
      /about 200,000,000,000 requests/,
    );
    assert.match(
      refusal(() =>
        build({
          kind: 'sessions',
          sessionRateRps: 1e4,
          durationS: 1e4,
          turns: { kind: 'fixed', tokens: 2 },
          userTokens: lengths.input,
          output: lengths.output,
        }),
      ).message,
      /about 100,000,000 requests \(sessionRateRps 10000/,
    );
  });

  it('sim refuses --requests 1e12 and --rate x --duration past the bound with exit status 2, naming the flags', async () => {
    const many = await runCliInProcess(['sim', '--no-progress', '--requests', '1e12']);
    assert.equal(many.code, USAGE_EXIT_CODE);
    assert.match(
      many.stderr,
      /option '--requests <n>' argument '1e12' is invalid\. '1e12' is more than 50000000 requests, the most one run holds/,
    );
    const long = await runCliInProcess(['sim', '--no-progress', '--rate', '1000', '--duration', '2678400']);
    assert.equal(long.code, USAGE_EXIT_CODE);
    assert.match(long.stderr, /rateRps \(--rate\) 1000 x durationS \(--duration\) 2678400/);
  });
});
