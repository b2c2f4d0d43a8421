/**
 * What the workload bound tests share (duration-bound.test.ts, request-bound.test.ts): fixed
 * request lengths, and the SwitchyardError a refused spec throws.
 */
import assert from 'node:assert/strict';
import { SwitchyardError } from '../core/errors.ts';

/** 100-token prompts and 10-token outputs: lengths every bound test can spread into a spec. */
export const FIXED_LENGTHS = {
  input: { kind: 'fixed' as const, tokens: 100 },
  output: { kind: 'fixed' as const, tokens: 10 },
};

/** The SwitchyardError `f` throws; fails the test when it throws something else or nothing. */
export function refusal(f: () => unknown): SwitchyardError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof SwitchyardError, String(e));
    return e;
  }
  assert.fail('not refused');
}
