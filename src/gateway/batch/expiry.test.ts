/**
 * OpenAI's file expiration policy (expiry.ts): the bounds `expires_after` and `output_expires_after`
 * take (anchor `created_at`, 3,600 to 2,592,000 seconds), the form fields of an upload, and the
 * moment a file is gone, on a clock the caller gives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import {
  EXPIRES_AFTER_S_MAX,
  EXPIRES_AFTER_S_MIN,
  expiresAt,
  isExpired,
  parseExpiresAfter,
  parseExpiresAfterFields,
} from './expiry.ts';

function refusal(f: () => unknown): SwitchyardError {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    return error;
  }
  assert.fail('expected a refusal');
}

describe('file expiry policy', () => {
  it('takes anchor created_at and 1 hour to 30 days; refuses the rest naming the parameter', () => {
    assert.deepEqual(parseExpiresAfter({ anchor: 'created_at', seconds: 3600 }, 'expires_after'), {
      anchor: 'created_at',
      seconds: 3600,
    });
    assert.equal(
      parseExpiresAfter({ anchor: 'created_at', seconds: EXPIRES_AFTER_S_MAX }, 'p')?.seconds,
      2_592_000,
    );
    assert.equal(parseExpiresAfter(undefined, 'p'), undefined);
    assert.equal(parseExpiresAfter(null, 'p'), undefined);
    for (const bad of [
      { anchor: 'created_at', seconds: EXPIRES_AFTER_S_MIN - 1 },
      { anchor: 'created_at', seconds: EXPIRES_AFTER_S_MAX + 1 },
      { anchor: 'created_at', seconds: 3600.5 },
      { anchor: 'created_at', seconds: '3600' },
      { anchor: 'created_at' },
      { anchor: 'last_active_at', seconds: 3600 },
      { seconds: 3600 },
      { anchor: 'created_at', seconds: 3600, extra: 1 },
      'created_at',
      [3600],
    ]) {
      const e = refusal(() => parseExpiresAfter(bad, 'output_expires_after'));
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT', JSON.stringify(bad));
      assert.equal(e.status, 400);
      assert.equal(e.toJSON().error.param, 'output_expires_after', JSON.stringify(bad));
    }
  });

  it("reads an upload's expires_after[anchor] and expires_after[seconds] fields", () => {
    assert.equal(parseExpiresAfterFields(undefined, undefined), undefined);
    assert.deepEqual(parseExpiresAfterFields('created_at', '7200'), { anchor: 'created_at', seconds: 7200 });
    for (const [anchor, seconds] of [
      ['created_at', undefined],
      [undefined, '7200'],
      ['created_at', '60'],
      ['created_at', '1e4'],
      ['created_at', ''],
      ['created_at', '99999999999'],
    ] as const) {
      const e = refusal(() => parseExpiresAfterFields(anchor, seconds));
      assert.equal(e.toJSON().error.param, 'expires_after', `${anchor} ${seconds}`);
    }
  });

  it('a file expires at created_at + seconds, on the given clock; one without a policy never does', () => {
    const at = expiresAt(1_000_000, { anchor: 'created_at', seconds: 3600 });
    assert.equal(at, 1_003_600);
    assert.equal(isExpired({ expires_at: at }, 1_003_599), false);
    assert.equal(isExpired({ expires_at: at }, 1_003_600), true);
    assert.equal(expiresAt(1_000_000, undefined), undefined);
    assert.equal(isExpired({}, Number.MAX_SAFE_INTEGER), false);
    assert.equal(isExpired({ expires_at: null }, Number.MAX_SAFE_INTEGER), false);
  });
});
