import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bodyTimeBound, sideBodyBounds } from './http-util.ts';

describe('bodyTimeBound (the main path body deadline, for the side bodies)', () => {
  it('is the smaller of bodyReadTimeoutMs and requestTimeoutMs, named by its field', () => {
    assert.deepEqual(bodyTimeBound({ bodyReadTimeoutMs: 30_000, requestTimeoutMs: 600_000 }), {
      timeoutMs: 30_000,
      timeoutName: 'limits.bodyReadTimeoutMs',
    });
    assert.deepEqual(bodyTimeBound({ bodyReadTimeoutMs: 30_000, requestTimeoutMs: 5000 }), {
      timeoutMs: 5000,
      timeoutName: 'limits.requestTimeoutMs',
    });
  });

  it('carries the route size bound beside it', () => {
    const b = sideBodyBounds(
      { bodyReadTimeoutMs: 100, requestTimeoutMs: 200 },
      65_536,
      'the admin body bound',
    );
    assert.deepEqual(b, {
      bytesMax: 65_536,
      bytesMaxName: 'the admin body bound',
      timeoutMs: 100,
      timeoutName: 'limits.bodyReadTimeoutMs',
    });
  });
});
