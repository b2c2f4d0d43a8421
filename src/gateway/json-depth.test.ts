import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { jsonDepthExceeds } from './json-depth.ts';

/** The nesting depth of a parsed JSON value (arrays and objects). */
function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (typeof v === 'object' && v !== null) return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

const check = (text: string, max: number): boolean => jsonDepthExceeds(Buffer.from(text), max);

describe('jsonDepthExceeds', () => {
  it('counts arrays and objects, at the bound and one past it', () => {
    assert.equal(check('[[[1]]]', 3), false);
    assert.equal(check('[[[1]]]', 2), true);
    assert.equal(check('{"a":{"b":[{}]}}', 4), false);
    assert.equal(check('{"a":{"b":[{}]}}', 3), true);
    assert.equal(check('1', 2), false);
    assert.equal(check('', 2), false);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    assert.equal(check('["[[[[{{{{"]', 2), false);
    assert.equal(check('["\\"[[[[", "\\\\"]', 2), false);
    // An escaped backslash ends the string: the brackets after it count.
    assert.equal(check('["a\\\\",[[[1]]]]', 3), true);
    assert.equal(check('["a\\"",[[[1]]]]', 3), true);
  });

  it('refuses a deep array bomb of a few megabytes', () => {
    const depth = 1_000_000;
    const bomb = Buffer.concat([Buffer.alloc(depth, '['), Buffer.alloc(depth, ']')]);
    assert.equal(jsonDepthExceeds(bomb, 64), true);
  });

  it('agrees with the depth of the parsed value on generated JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 2, max: 8 }), (value, max) => {
        const text = JSON.stringify(value);
        assert.equal(check(text, max), depthOf(value) > max, text);
      }),
      { seed: 7, numRuns: 2000 },
    );
  });
});
