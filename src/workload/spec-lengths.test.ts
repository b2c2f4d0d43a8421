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
    assert.deepEqual(issues({ kind: 'normal', mean: 3 }), [
      'kind: kind must be fixed, uniform, lognormal or empirical (got "normal")',
    ]);
    assert.deepEqual(issues({ lo: 1, hi: 2 }), ['kind: kind must be fixed, uniform, lognormal or empirical']);
    assert.deepEqual(issues(512), [
      ': a length distribution is an object with a kind (fixed, uniform, lognormal or empirical)',
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
