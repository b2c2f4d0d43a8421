/**
 * End-to-end: when every attempt at a request is refused 429 by the one engine behind the gateway,
 * the gateway's 429 names each instance tried once, in the order tried ("(sim0)"), not once per
 * retry ("(sim0, sim0, sim0)").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, metricSum, NoReply, post, scrape, until } from './support/cluster.ts';
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
    // One running, one waiting: two long requests fill the engine, waited for on its own gauges,
    // so it refuses the others on every attempt however slowly the machine runs (short requests
    // sent together raced the retries: on a loaded machine one could be let through, none shed).
    const holders = [0, 1].map((i) => {
      const controller = new AbortController();
      const reply = post(
        url,
        '/v1/completions',
        { model: MODEL, prompt: `hold ${i}`, max_tokens: 4096, stream: true },
        { deadlineMs: 60_000, signal: controller.signal },
      ).then(
        (r) => `status ${r.status}`,
        (error: unknown) =>
          error instanceof NoReply && error.kind === 'aborted' ? 'gave-up' : String(error),
      );
      return { controller, reply };
    });
    await until('the engine runs one request and holds one waiting', async () => {
      const m = await scrape(narrow.engine.url);
      return (
        metricSum(m, 'vllm:num_requests_running') === 1 && metricSum(m, 'vllm:num_requests_waiting') === 1
      );
    });
    const shed = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        post(url, '/v1/completions', { model: MODEL, prompt: `over ${i}`, max_tokens: 40, stream: true }),
      ),
    );
    for (const r of shed) {
      const body = assertErrorBody(r.text, 429, 'shed request');
      assert.equal(body.error.code, 'SY_ERR_OVERLOADED');
      assert.match(body.error.message, /^every instance tried \(sim0\) is overloaded: /);
    }
    for (const h of holders) h.controller.abort();
    // Both still streaming when let go: the engine was full for every attempt above.
    assert.deepEqual(await Promise.all(holders.map((h) => h.reply)), ['gave-up', 'gave-up']);
  });
});
