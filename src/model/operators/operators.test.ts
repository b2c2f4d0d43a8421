import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pNorm } from './operators.ts';

/** The textbook form, with `**`: what pNorm's exp/log form must reproduce. */
function pNormByPow(a: number, b: number, p: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return a > b ? a * (1 + (b / a) ** p) ** (1 / p) : b * (1 + (a / b) ** p) ** (1 / p);
}

test('pNorm matches the power form within three ulps over the fitted sharpnesses and wide ratios', () => {
  // A fixed LCG so the sample is the same on every run (no Math.random in the model's tests).
  let state = 12345;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  let worst = 0;
  for (const p of [1, 1.203, 1.483, 2.15, 4.041, 4.181, 8]) {
    for (let i = 0; i < 5000; i++) {
      const a = 10 ** (next() * 12 - 6);
      const b = 10 ** (next() * 12 - 6);
      const want = pNormByPow(a, b, p);
      const got = pNorm(a, b, p);
      worst = Math.max(worst, Math.abs(got - want) / want);
    }
  }
  assert.ok(worst <= 3 * Number.EPSILON, `worst relative difference ${worst}`);
});

test('pNorm is the max when one side is zero, the sum at p = 1, and symmetric', () => {
  assert.equal(pNorm(0, 3, 2), 3);
  assert.equal(pNorm(5, 0, 2), 5);
  assert.ok(Math.abs(pNorm(2, 3, 1) - 5) < 1e-12);
  assert.ok(Math.abs(pNorm(3, 4, 2) - 5) < 1e-12);
  assert.equal(pNorm(1.5, 7.25, 2.15), pNorm(7.25, 1.5, 2.15));
  // A large sharpness is the roofline's hard max, without overflow.
  assert.ok(Math.abs(pNorm(1e300, 2e300, 64) - 2e300) / 2e300 < 1e-15);
});
