/**
 * End-to-end: a JSON body opening with a UTF-8 BOM (the gateway reads one, request-build.ts
 * jsonText, as Python's json.loads does) sent to a disaggregated model, through both P/D flows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chat, simPdCluster } from './support/pd.ts';

for (const protocol of ['vllm', 'sglang'] as const) {
  const cluster = simPdCluster({ protocol, prefills: 1, decodes: 1, releaseMs: 1500 });
  describe(`a BOM body through ${protocol} P/D`, { timeout: 60_000 }, () => {
    it('is served 200, and the gateway keeps serving', async () => {
      const body = Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from(chat({ seed: 5 }).body as string),
      ]);
      const r = await fetch(`${cluster.serve.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      const text = await r.text();
      const after = await fetch(`${cluster.serve.url}/v1/chat/completions`, chat({ seed: 5 }));
      assert.equal(after.status, 200, 'the gateway serves after it');
      assert.equal(r.status, 200, text);
    });
  });
}
