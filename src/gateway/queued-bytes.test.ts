import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Request } from '../core/request.ts';
import { QueuedBytes, queuedBytesOf } from './queued-bytes.ts';

function request(hashes: number): Request {
  return {
    id: 'r1',
    model: 'm',
    tenant: 't',
    priority: 0,
    inputTokens: 1,
    maxTokens: undefined,
    arrivalMs: 0,
    slo: undefined,
    prefix: { blockTokens: 16, hashes: new Array<number>(hashes).fill(1) },
    sessionId: undefined,
  };
}

describe('QueuedBytes', () => {
  it('counts the body and the prefix chain', () => {
    assert.equal(queuedBytesOf(request(3), Buffer.alloc(100)), 124);
  });

  it('refuses past the tenant bound first, then the total bound, and frees on release', () => {
    const q = new QueuedBytes(1000, 600);
    assert.equal(q.refusal('a', 600), undefined);
    q.hold('a', 600);
    assert.equal(q.refusal('a', 1), 'tenant');
    q.refused();
    assert.equal(q.refusal('b', 400), undefined);
    q.hold('b', 400);
    assert.equal(q.refusal('c', 1), 'total');
    q.refused();
    q.release('a', 600);
    assert.equal(q.tenantBytes('a'), 0);
    assert.equal(q.refusal('c', 600), undefined);
    assert.deepEqual(q.stats, {
      bytes: 400,
      bytesPeak: 1000,
      bytesMax: 1000,
      tenantBytesMax: 600,
      tenantBytesPeak: 600,
      tenants: 1,
      refused: 2,
    });
  });

  it('forgets a tenant that holds nothing (the map is bounded by what is queued)', () => {
    const q = new QueuedBytes(1000, 1000);
    for (let i = 0; i < 50; i++) q.hold(`t${i}`, 10);
    for (let i = 0; i < 50; i++) q.release(`t${i}`, 10);
    assert.equal(q.stats.tenants, 0);
    assert.equal(q.stats.bytes, 0);
  });
});
