import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NO_PREFIX, type Request } from '../core/request.ts';
import { traceRequests } from './trace-source.ts';
import { readTrace } from './traces/read.ts';

const azure = readTrace('sample:azure-conv');
const mooncake = readTrace('sample:mooncake-conversation');

function span(rs: readonly Request[]): number {
  return (rs.at(-1)?.arrivalMs ?? 0) - (rs[0]?.arrivalMs ?? 0);
}

describe('traceRequests', () => {
  it('replays every record in order with ids r<index> and the record lengths', () => {
    const rs = [...traceRequests(azure)];
    assert.equal(rs.length, azure.records.length);
    rs.forEach((r, i) => {
      assert.equal(r.id, `r${i}`);
      assert.equal(r.arrivalMs, azure.records[i]?.arrivalMs);
      assert.equal(r.inputTokens, azure.records[i]?.inputTokens);
      assert.equal(r.prefix, NO_PREFIX);
      assert.equal(r.model, 'default');
    });
  });

  it('rateScale 2 halves the span and 0.5 doubles it', () => {
    const base = span([...traceRequests(azure)]);
    assert.ok(Math.abs(span([...traceRequests(azure, { rateScale: 2 })]) - base / 2) < 1e-6);
    assert.ok(Math.abs(span([...traceRequests(azure, { rateScale: 0.5 })]) - base * 2) < 1e-6);
  });

  it('slices by trace time, rebases to the slice start, then scales', () => {
    const rs = [...traceRequests(azure, { startS: 100, durationS: 60, rateScale: 2 })];
    const expected = azure.records.filter((r) => r.arrivalMs >= 100_000 && r.arrivalMs < 160_000);
    assert.equal(rs.length, expected.length);
    assert.ok(rs.length > 100);
    assert.equal(rs[0]?.id, 'r0');
    assert.equal(rs[0]?.arrivalMs, ((expected[0]?.arrivalMs ?? 0) - 100_000) / 2);
    assert.ok(rs.every((r) => r.arrivalMs >= 0 && r.arrivalMs < 30_000));
  });

  it('stops at maxRequests and tags model, tenant, priority and SLO', () => {
    const slo = { ttftMs: 500, tpotMs: 50 };
    const rs = [...traceRequests(azure, { maxRequests: 5, model: 'm', tenant: 't', priority: 2, slo })];
    assert.equal(rs.length, 5);
    assert.ok(rs.every((r) => r.model === 'm' && r.tenant === 't' && r.priority === 2 && r.slo === slo));
  });

  it('is re-iterable', () => {
    const source = traceRequests(azure, { maxRequests: 10 });
    assert.deepEqual([...source], [...source]);
  });

  it('maps Mooncake hash_ids to 512-token prefix chains', () => {
    const rs = [...traceRequests(mooncake, { maxRequests: 2 })];
    assert.deepEqual(rs[0]?.prefix, { blockTokens: 512, hashes: mooncake.records[0]?.hashIds });
    // Requests 0 and 1 share their first block (id 0) and nothing after.
    assert.equal(rs[0]?.prefix.hashes[0], rs[1]?.prefix.hashes[0]);
    assert.notEqual(rs[0]?.prefix.hashes[1], rs[1]?.prefix.hashes[1]);
  });

  it('rejects bad options', () => {
    for (const bad of [
      { rateScale: 0 },
      { rateScale: Number.NaN },
      { startS: -1 },
      { durationS: 0 },
      { maxRequests: 1.5 },
    ]) {
      assert.throws(() => traceRequests(azure, bad), { code: 'SY_ERR_INVALID_ARGUMENT' });
    }
  });
});
