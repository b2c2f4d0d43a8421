import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { assignRequestId, freshRequestId } from './request-id.ts';

/** The id given a request with `header` as its X-Request-Id, and what was put on the answer. */
function assigned(header: string | undefined): { id: string; set: string | undefined } {
  let set: string | undefined;
  const res = { setHeader: (_name: string, value: string) => (set = value) } as unknown as ServerResponse;
  const req = {
    headers: header === undefined ? {} : { 'x-request-id': header },
  } as unknown as IncomingMessage;
  return { id: assignRequestId(req, res), set };
}

describe('assignRequestId', () => {
  it("keeps the client's id as it came, and puts it on the answer", () => {
    assert.deepEqual(assigned('bench-7'), { id: 'bench-7', set: 'bench-7' });
    assert.deepEqual(assigned('a, b'), { id: 'a, b', set: 'a, b' });
  });

  it("gives a fresh uuid4 hex (vLLM's form) to a request without one, or with an empty or unsendable one", () => {
    const ids = ['', undefined, 'bad\u0001id', 'über\u0100'].map((h) => assigned(h).id);
    for (const id of ids) assert.match(id, /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('draws uuid4 hex ids that stay distinct across refills of the random pool', () => {
    // 1,000 ids span several 256-id fills: a refill that reused or skipped bytes would repeat ids.
    const ids = Array.from({ length: 1000 }, freshRequestId);
    for (const id of ids) assert.match(id, /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    assert.equal(new Set(ids).size, ids.length);
  });
});
