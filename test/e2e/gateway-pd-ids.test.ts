/**
 * End-to-end: the ids of answers served through a prefill/decode pair are unique (task A of stop
 * 28, the live path reviewed as unseen clients use it).
 *
 * A P/D engine's front server tags each request for its inner OpenAI server, which names the answer
 * after the tag (`chatcmpl-TAG`). The tag was a bare counter (`pd0`, `pd1`, ...), so two decode
 * engines behind one gateway answered the same ids, as did an engine after a restart: a client that
 * keys answers by `id` (a cache, a log, the openai SDKs' streaming accumulators) mixed them up. The
 * tag now starts with a random base per engine process (src/engine-servers/pd-front.ts). Checked
 * for both protocols, one prefill and two decode sim engines, round robin spreading the requests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chat, json, pdStats, simPdCluster } from './support/pd.ts';

const REQUESTS = 4;

for (const protocol of ['vllm', 'sglang'] as const) {
  const cluster = simPdCluster({ protocol, prefills: 1, decodes: 2, releaseMs: 30_000 });

  describe(`${protocol} P/D answer ids`, { timeout: 60_000 }, () => {
    it('every answer has its own id, however many decode engines serve them', async () => {
      const ids: string[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
        assert.equal(r.status, 200, JSON.stringify(r.body));
        ids.push(r.body['id'] as string);
      }
      const served = await Promise.all(cluster.decode.engines.map((e) => pdStats(e.url)));
      assert.deepEqual(
        served.map((s) => s['requests']),
        [REQUESTS / 2, REQUESTS / 2],
        'round robin gave each decode engine half the requests',
      );
      for (const id of ids) assert.match(id, /^chatcmpl-\S+$/);
      assert.equal(new Set(ids).size, REQUESTS, `ids: ${ids.join(', ')}`);
    });
  });
}
