/** Length distributions in case and workload files: a wrong shape fails with one sentence. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWithSchema } from '../twin/config.ts';
import { lengthDistSchema, lengthDistShapeProblem, workloadSpecSchema } from './spec.ts';

/** The issues of a failed parse, as `path: message`. */
function issues(value: unknown): string[] {
  const result = lengthDistSchema.safeParse(value);
  assert.equal(result.success, false);
  return result.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
}

describe('length distribution shape', () => {
  it("names the kind's keys and what was given, in one issue", () => {
    assert.deepEqual(issues({ kind: 'uniform', min: 570, max: 790 }), [
      ': uniform takes lo and hi; got min and max',
    ]);
    assert.deepEqual(issues({ kind: 'uniform', lo: 570 }), [': uniform takes lo and hi; got lo']);
    assert.deepEqual(issues({ kind: 'fixed' }), [': fixed takes tokens; got no other key']);
    assert.deepEqual(issues({ kind: 'lognormal', mean: 500, cv: 1, lo: 1 }), [
      ': lognormal takes mean and cv, optionally min and max; got mean, cv and lo',
    ]);
    assert.deepEqual(issues({ kind: 'empirical', file: 'x.csv' }), [
      ': empirical takes trace, optionally format and column; got file',
    ]);
  });

  it('names the kinds for a missing or unknown kind, or a value that is no object', () => {
    assert.deepEqual(issues({ kind: 'gaussian', mean: 3 }), [
      'kind: kind must be fixed, uniform, lognormal, normal or empirical (got "gaussian")',
    ]);
    assert.deepEqual(issues({ lo: 1, hi: 2 }), [
      "kind: kind must be fixed, uniform, lognormal, normal or empirical: these keys are uniform's, so add kind: uniform",
    ]);
    assert.deepEqual(issues({ x: 1 }), ['kind: kind must be fixed, uniform, lognormal, normal or empirical']);
  });

  it('says how to write a bare number or a mean alone', () => {
    assert.deepEqual(issues(512), [
      ': a length distribution is an object with a kind (fixed, uniform, lognormal, normal or empirical): for 512 tokens in every request, { kind: fixed, tokens: 512 }',
    ]);
    assert.deepEqual(issues({ mean: 250 }), [
      'kind: kind must be fixed, uniform, lognormal, normal or empirical: a mean alone is { kind: fixed, tokens: <mean> } (every request that long), or give its spread: { kind: normal, mean, stdDev } or { kind: lognormal, mean, cv }',
    ]);
  });

  it('takes normal by mean and stdDev, optionally min and max, and names its keys', () => {
    assert.deepEqual(lengthDistSchema.parse({ kind: 'normal', mean: 680, stdDev: 60, max: 790 }), {
      kind: 'normal',
      mean: 680,
      stdDev: 60,
      min: 1,
      max: 790,
    });
    assert.deepEqual(issues({ kind: 'normal', mean: 680, sd: 60 }), [
      ': normal takes mean and stdDev, optionally min and max; got mean and sd',
    ]);
    assert.deepEqual(issues({ kind: 'normal', mean: 680, stdDev: 60, min: 790, max: 570 }), [
      'max: min must be <= max',
    ]);
  });

  it('leaves values of the right shape to the schema, with their paths', () => {
    assert.equal(lengthDistShapeProblem({ kind: 'uniform', lo: 9, hi: 3 }), undefined);
    assert.deepEqual(issues({ kind: 'uniform', lo: 9, hi: 3 }), ['hi: lo must be <= hi']);
    assert.match(issues({ kind: 'fixed', tokens: -1 })[0] ?? '', /^tokens: Too small/);
    assert.deepEqual(lengthDistSchema.parse({ kind: 'lognormal', mean: 100, cv: 0.5 }), {
      kind: 'lognormal',
      mean: 100,
      cv: 0.5,
      min: 1,
    });
  });

  it('reads as one line in a workload file', () => {
    const spec = {
      kind: 'poisson',
      rateRps: 1,
      maxRequests: 10,
      input: { kind: 'uniform', min: 570, max: 790 },
      output: { kind: 'fixed', tokens: 8 },
    };
    assert.throws(() => parseWithSchema(workloadSpecSchema, spec, 'workload'), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: 'workload: input: uniform takes lo and hi; got min and max',
    });
  });
});
