/**
 * End-to-end: a P/D engine names its answer after the client's X-Request-Id (`chatcmpl-<id>`), as
 * a colocated engine does, and two clients sending the same id at once each get their own KV.
 *
 * The P/D front server tagged every request for its inner server with a tag of its own, and the
 * answer was named after the tag (`chatcmpl-pd<random><n>`) whatever the client sent. The tags stay
 * (the prefill/decode bookkeeping is keyed by them, so a client's id must never reach it); the
 * answer is renamed on the way out.
 *
 * - vLLM: the client (as vLLM's proxy does) calls the prefill engine, then the decode engine with the
 *   prefill's kv_transfer_params, both with X-Request-Id; the gateway's own vLLM pair sends a fresh
 *   id per pair instead (src/gateway/pd/pd-exchange.ts), so this is engine to engine.
 * - SGLang: through the gateway, which passes the client's id to both legs; without the header,
 *   vLLM's body `request_id` names the answer, as on a colocated engine.
 *
 * Each pair of same-id requests has prompts of different lengths: a decode that took the other's
 * KV would report the other's prompt as cached.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL, REQUEST_DEADLINE_MS, streamedResponseIds } from './support/cluster.ts';
import { simPdCluster } from './support/pd.ts';

const SAME = 'client-id "7"';

const body = (words: number, extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'word '.repeat(words) }],
  max_tokens: 8,
  ...extra,
});

async function post(
  url: string,
  value: unknown,
  header: string | null = SAME,
): Promise<{ status: number; body: Record<string, unknown>; text: string }> {
  const r = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(header === null ? {} : { 'x-request-id': header }),
    },
    body: JSON.stringify(value),
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
  });
  const text = await r.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {}
  return { status: r.status, body: parsed, text };
}

interface Usage {
  prompt_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

/** The answer is ours: named after the client's id, its usage that of its own prompt, the KV transferred. */
function assertOwn(r: { status: number; body: Record<string, unknown>; text: string }): Usage {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body['id'], `chatcmpl-${SAME}`);
  const usage = r.body['usage'] as Usage;
  assert.ok(usage.prompt_tokens > 0);
  return usage;
}

const vllm = simPdCluster({ protocol: 'vllm', prefills: 1, decodes: 1, releaseMs: 30_000 });
const sglang = simPdCluster({ protocol: 'sglang', prefills: 1, decodes: 1, releaseMs: 30_000 });

describe('P/D answers carry the client X-Request-Id', { timeout: 90_000 }, () => {
  it('vLLM engines: two same-id requests at once, each named after it with its own KV', async () => {
    const prefillUrl = `${vllm.prefill.engines[0]!.url}/v1/chat/completions`;
    const decodeUrl = `${vllm.decode.engines[0]!.url}/v1/chat/completions`;
    const one = async (words: number) => {
      const p = await post(
        prefillUrl,
        body(words, { kv_transfer_params: { do_remote_decode: true }, max_tokens: 1 }),
      );
      assert.equal(p.status, 200, p.text);
      assert.equal(p.body['id'], `chatcmpl-${SAME}`);
      const params = p.body['kv_transfer_params'];
      assert.ok(typeof params === 'object' && params !== null, p.text);
      return post(decodeUrl, body(words, { kv_transfer_params: params }));
    };
    const [a, b] = await Promise.all([one(100), one(300)]);
    const ua = assertOwn(a!);
    const ub = assertOwn(b!);
    assert.ok(ub.prompt_tokens > ua.prompt_tokens, `${ua.prompt_tokens} vs ${ub.prompt_tokens}`);
    assert.equal(ua.prompt_tokens_details?.cached_tokens, ua.prompt_tokens - 1, JSON.stringify(ua));
    assert.equal(ub.prompt_tokens_details?.cached_tokens, ub.prompt_tokens - 1, JSON.stringify(ub));
  });

  it("vLLM engines: a Responses answer is named after the body's request_id as it is, as colocated", async () => {
    // vLLM's Responses answer id is the body's request_id itself; the header does not name it. The
    // front keeps the client's id from the inner server (its tags key the P/D state) and renames.
    const url = `${vllm.decode.engines[0]!.url}/v1/responses`;
    const request = { model: MODEL, input: 'word '.repeat(20), max_output_tokens: 4, request_id: 'resp "9"' };
    const whole = await post(url, request);
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.body['id'], 'resp "9"');
    const streamed = await post(url, { ...request, stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    const ids = streamedResponseIds(streamed.text);
    assert.ok(ids.length >= 2, streamed.text);
    for (const id of ids) assert.equal(id, 'resp "9"');
    // Without it, the header names it as before.
    const byHeader = await post(url, { ...request, request_id: undefined });
    assert.equal(byHeader.body['id'], `resp_${SAME}`);
  });

  it('SGLang through the gateway: same-id requests at once, streamed and not, each its own', async () => {
    const url = `${sglang.serve.url}/v1/chat/completions`;
    const [a, b] = await Promise.all([post(url, body(100)), post(url, body(300))]);
    const ua = assertOwn(a!);
    const ub = assertOwn(b!);
    assert.ok(ub.prompt_tokens > ua.prompt_tokens, `${ua.prompt_tokens} vs ${ub.prompt_tokens}`);
    assert.equal(ua.prompt_tokens_details?.cached_tokens, ua.prompt_tokens - 1, JSON.stringify(ua));
    assert.equal(ub.prompt_tokens_details?.cached_tokens, ub.prompt_tokens - 1, JSON.stringify(ub));

    const streamed = await post(url, body(50, { stream: true }));
    assert.equal(streamed.status, 200, streamed.text);
    const events = streamed.text
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice('data: '.length)) as { id: string });
    assert.ok(events.length >= 8, streamed.text);
    for (const e of events) assert.equal(e.id, `chatcmpl-${SAME}`);

    // Without the header, vLLM's body request_id names it, as on a colocated engine.
    const byBody = await post(url, body(50, { request_id: 'from-body' }), null);
    assert.equal(byBody.status, 200, byBody.text);
    assert.equal(byBody.body['id'], 'chatcmpl-from-body');
  });
});
