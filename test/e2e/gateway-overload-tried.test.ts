/**
 * End-to-end: when every attempt at a request is refused 429 by the one engine behind the gateway,
 * the gateway's 429 names each instance tried once, in the order tried ("(sim0)"), not once per
 * retry ("(sim0, sim0, sim0)").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

// One engine at real time that runs one request and queues one more.
const narrow = simGateway({ limits: { retries: 2, retryBackoffBaseMs: 5, retryBackoffMaxMs: 20 } }, 1, [
  '--time-scale',
  '1',
  '--kv-events',
  'none',
  '--max-num-seqs',
  '1',
  '--max-waiting',
  '1',
]);

describe('gateway 429 after retries', { timeout: 60_000 }, () => {
  it('names each instance tried once', async () => {
    const url = narrow.gw.url;
    // One running, one waiting: the engine refuses the others on every attempt.
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        post(url, '/v1/completions', { model: MODEL, prompt: `hold ${i}`, max_tokens: 40, stream: true }),
      ),
    );
    const shed = replies.filter((r) => r.status !== 200);
    assert.ok(shed.length >= 1, 'the engine refused nothing');
    for (const r of shed) {
      const body = assertErrorBody(r.text, 429, 'shed request');
      assert.equal(body.error.code, 'SY_ERR_OVERLOADED');
      assert.match(body.error.message, /^every instance tried \(sim0\) is overloaded: /);
    }
  });
});
