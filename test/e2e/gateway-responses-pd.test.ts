/**
 * End-to-end: the Responses API on a model served only by prefill/decode pools. vLLM cannot serve
 * it disaggregated: its Responses request takes no `kv_transfer_params`
 * (vllm/entrypoints/openai/responses/protocol.py, ResponsesRequest) and its P/D proxy serves
 * /v1/completions and /v1/chat/completions only, answering anything else 404
 * (tests/v1/kv_connector/nixl_integration/toy_proxy_server.py). So the gateway refuses it the same
 * way, before admission and before any engine sees it, with a stable code naming the way that works
 * (chat completions); it used to answer 503 SY_ERR_NO_INSTANCE, which a client retries forever.
 * Real sim engines in P/D roles behind a `switchyard serve`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL } from './support/cluster.ts';
import { balancedStats, chat, json, pdStats, simPdCluster } from './support/pd.ts';

const pd = simPdCluster({ protocol: 'vllm', prefills: 1, decodes: 1, releaseMs: 60_000 });

const responsesBody = (extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  instructions: 'Answer briefly.',
  input: [{ role: 'user', content: 'Name a hump yard.' }],
  max_output_tokens: 8,
  ...extra,
});

const postResponses = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe('Responses API on a P/D-only model', { timeout: 30_000 }, () => {
  it('is refused 404 SY_ERR_UNSUPPORTED_ENDPOINT naming chat completions, streamed or not', async () => {
    for (const extra of [{}, { stream: true }]) {
      const r = await json(`${pd.serve.url}/v1/responses`, postResponses(responsesBody(extra)));
      assert.equal(r.status, 404, JSON.stringify(r.body));
      const error = r.body['error'] as { code: string; param: string | null; type: string; message: string };
      assert.equal(error.code, 'SY_ERR_UNSUPPORTED_ENDPOINT');
      assert.equal(error.param, 'model');
      assert.equal(error.type, 'invalid_request_error');
      assert.match(error.message, /prefill\/decode/);
      assert.match(error.message, /\/v1\/chat\/completions/);
    }
  });

  it('reaches no engine and no admission: counted as a refusal; chat on the same model still runs P/D', async () => {
    const before = await balancedStats(pd.serve.url);
    const refused = await json(`${pd.serve.url}/v1/responses`, postResponses(responsesBody()));
    assert.equal(refused.status, 404);
    const after = await balancedStats(pd.serve.url);
    const rejected = (s: Record<string, unknown>) =>
      (s['rejected'] as Record<string, number> | undefined)?.['SY_ERR_UNSUPPORTED_ENDPOINT'] ?? 0;
    assert.equal(rejected(after) - rejected(before), 1);
    assert.equal(after['accepted'], before['accepted'], 'never offered to admission');
    assert.equal((await pdStats(pd.prefill.engines[0]?.url as string))['requests'], 0, 'no prefill leg');
    assert.equal((await pdStats(pd.decode.engines[0]?.url as string))['requests'], 0, 'no decode request');
    const c = await json(`${pd.serve.url}/v1/chat/completions`, chat());
    assert.equal(c.status, 200, JSON.stringify(c.body));
    assert.equal((await pdStats(pd.prefill.engines[0]?.url as string))['requests'], 1, 'chat went P/D');
  });
});
