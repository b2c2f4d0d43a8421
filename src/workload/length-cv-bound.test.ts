/**
 * A log-normal length's cv is bounded: at cv 1e200, cv^2 overflowed, sigma was Infinity and every
 * drawn length NaN; `sim` then refused 36 of 50 requests and printed "tokens in -" (JSON
 * `inputTokens: null`), with no error naming the field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { refusal } from './bound-test-support.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';

const spec = (cv: number) => ({
  kind: 'poisson',
  rateRps: 5,
  maxRequests: 20,
  input: { kind: 'lognormal', mean: 1000, cv },
  output: { kind: 'fixed', tokens: 10 },
});

test('a log-normal cv past 1e150 is refused, naming workload.input.cv', () => {
  const e = refusal(() => parseWorkloadSpec(spec(1e200)));
  assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /workload\.input\.cv: a length cv of at most 1e150/);
});

test('at the bound every length is a finite count', () => {
  for (const cv of [1e150, 1e10, 3]) {
    const lengths = [...createWorkload(spec(cv) as never, new Rng(1))].map((r) => r.inputTokens);
    assert.equal(lengths.length, 20);
    assert.ok(
      lengths.every((n) => Number.isInteger(n) && n >= 1),
      `cv ${cv}: ${lengths.slice(0, 5)}`,
    );
  }
});
