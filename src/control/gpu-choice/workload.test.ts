import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { bucketize } from './workload.ts';

describe('gpu-choice bucketize', () => {
  it('groups lengths on the grid, profiles each bucket at its largest lengths, shares sum to 1', () => {
    const buckets = bucketize([
      { inputTokens: 100, generatedTokens: 100 },
      { inputTokens: 120, generatedTokens: 200 },
      { inputTokens: 3000, generatedTokens: 300, weight: 2 },
    ]);
    assert.equal(buckets.length, 2);
    const [short, long] = buckets;
    assert.equal(short?.label, 'in 1-127 / out 64-255');
    assert.equal(short?.inputTokens, 120);
    assert.equal(short?.generatedTokens, 200);
    assert.equal(short?.share, 0.5);
    assert.equal(long?.label, 'in 2048-8191 / out 256-1023');
    assert.equal(long?.share, 0.5);
  });

  it('puts lengths past the last edge in an open bucket', () => {
    const [bucket] = bucketize([{ inputTokens: 100_000, generatedTokens: 5000 }]);
    assert.equal(bucket?.label, 'in 32768+ / out 4096+');
    assert.equal(bucket?.inputTokensMax, Number.POSITIVE_INFINITY);
  });

  it('rejects no samples, zero lengths and all-zero weights with SY_ERR_INVALID_ARGUMENT', () => {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (error) {
        return error instanceof SwitchyardError ? error.code : 'other';
      }
      return undefined;
    };
    assert.equal(
      code(() => bucketize([])),
      'SY_ERR_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => bucketize([{ inputTokens: 0, generatedTokens: 10 }])),
      'SY_ERR_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => bucketize([{ inputTokens: 10, generatedTokens: 10, weight: 0 }])),
      'SY_ERR_INVALID_ARGUMENT',
    );
  });
});
