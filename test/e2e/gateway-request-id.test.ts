/**
 * End-to-end: request ids and refusals as vLLM and its own P/D proxy handle them, through a gateway
 * in front of real sim engines.
 *
 * - A colocated request's `X-Request-Id` reaches the engine, which names the request after it as
 *   vLLM does (`chatcmpl-<id>`, `cmpl-<id>`); without one the engine names it.
 * - Every answer carries `X-Request-Id` (what vLLM's --enable-request-id-headers does): the client's,
 *   else a fresh uuid4 hex of the gateway's; on a success, a stream, the gateway's own refusal, an
 *   engine's relayed 4xx, a P/D answer.
 * - vLLM's P/D flow: both legs carry one fresh id, as vLLM's proxy sends (a uuid4 per request, the
 *   client's own not used). The sim's prefill engine counts notifies whose decode id was not its own
 *   (a vLLM pair before the NIXL connector's version 2 would have held that KV to its timeout).
 * - A refused prefill leg reaches the client as the engine answered it (its code and `param`).
 * - `stream_options` without `stream: true` is vLLM's 400 naming `stream_options`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL, post, sseData } from './support/cluster.ts';
import { balancedStats, chat, json, pdStats, simPdCluster } from './support/pd.ts';
import { simGateway } from './support/sim-gateway.ts';

const setup = simGateway();

const pd = simPdCluster({ protocol: 'vllm', prefills: 1, decodes: 1, releaseMs: 60_000 });

const chatBody = { model: MODEL, messages: [{ role: 'user', content: 'Name a hump yard.' }], max_tokens: 5 };

describe('X-Request-Id on a colocated request', { timeout: 30_000 }, () => {
  it("reaches the engine, which names the request after it (chat, and a streamed completion's chunks)", async () => {
    const r = await post(setup.gw.url, '/v1/chat/completions', chatBody, {
      headers: { 'x-request-id': 'bench-7' },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal((JSON.parse(r.text) as { id: string }).id, 'chatcmpl-bench-7');
    const s = await post(
      setup.gw.url,
      '/v1/completions',
      { model: MODEL, prompt: 'A classification track', max_tokens: 4, stream: true },
      { headers: { 'X-Request-Id': 'bench-8' } },
    );
    assert.equal(s.status, 200, s.text);
    const ids = sseData(s.text)
      .filter((d) => d !== '[DONE]')
      .map((d) => (JSON.parse(d) as { id: string }).id);
    assert.ok(ids.length >= 4);
    assert.deepEqual(new Set(ids), new Set(['cmpl-bench-8']));
  });

  it("is echoed on every answer: a success, a stream, the gateway's own refusal, an engine's 4xx", async () => {
    const withId = { headers: { 'x-request-id': 'trace-42' } };
    const ok = await post(setup.gw.url, '/v1/chat/completions', chatBody, withId);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers.get('x-request-id'), 'trace-42');
    const stream = await post(setup.gw.url, '/v1/chat/completions', { ...chatBody, stream: true }, withId);
    assert.equal(stream.status, 200, stream.text);
    assert.equal(sseData(stream.text).at(-1), '[DONE]');
    assert.equal(stream.headers.get('x-request-id'), 'trace-42');
    const refusals = [
      await post(setup.gw.url, '/v1/chat/completions', { ...chatBody, model: 'no-such-model' }, withId),
      await post(setup.gw.url, '/v1/chat/completions', '{"model":', withId),
      await post(setup.gw.url, '/v1/chat/completions', { ...chatBody, logprobs: true }, withId),
    ];
    assert.deepEqual(
      refusals.map((r) => [r.status, r.headers.get('x-request-id')]),
      [
        [404, 'trace-42'],
        [400, 'trace-42'],
        [400, 'trace-42'],
      ],
    );
    assert.match(refusals[2]?.text ?? '', /SY_ERR_UNSUPPORTED_PARAMETER/, "the engine's own 400, relayed");
  });

  it("is the gateway's own uuid hex when the client sent none, one per request, not sent upstream", async () => {
    const r = await post(setup.gw.url, '/v1/chat/completions', chatBody);
    assert.equal(r.status, 200, r.text);
    const header = r.headers.get('x-request-id') ?? '';
    assert.match(header, /^[0-9a-f]{32}$/);
    const id = (JSON.parse(r.text) as { id: string }).id;
    assert.match(id, /^chatcmpl-.+/);
    assert.notEqual(id, `chatcmpl-${header}`, 'the engine named it itself, as vLLM does without a header');
    const s = await post(setup.gw.url, '/v1/completions', {
      model: MODEL,
      prompt: 'A hump',
      max_tokens: 3,
      stream: true,
    });
    const streamId = s.headers.get('x-request-id') ?? '';
    assert.match(streamId, /^[0-9a-f]{32}$/);
    assert.notEqual(streamId, header, 'one id per request');
    assert.equal(sseData(s.text).at(-1), '[DONE]');
    const refused = await post(setup.gw.url, '/v1/chat/completions', { ...chatBody, model: 'no-such-model' });
    assert.equal(refused.status, 404);
    assert.match(refused.headers.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);
  });
});

describe('stream_options without stream: true', { timeout: 30_000 }, () => {
  it("is vLLM's 400 naming stream_options; empty or null options pass, as vLLM reads them", async () => {
    for (const extra of [{}, { stream: false }]) {
      const r = await post(setup.gw.url, '/v1/chat/completions', {
        ...chatBody,
        ...extra,
        stream_options: { include_usage: true },
      });
      assert.equal(r.status, 400, r.text);
      const error = (JSON.parse(r.text) as { error: { code: string; param: string; message: string } }).error;
      assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.equal(error.param, 'stream_options');
      assert.match(error.message, /stream=True/);
    }
    for (const options of [{}, null]) {
      const r = await post(setup.gw.url, '/v1/completions', {
        model: MODEL,
        prompt: 'x',
        max_tokens: 2,
        stream_options: options,
      });
      assert.equal(r.status, 200, r.text);
    }
  });
});

describe("vLLM P/D: request ids as vLLM's proxy sends them", { timeout: 30_000 }, () => {
  it('both legs carry one id per request, whatever the client sent (none, or one id twice)', async () => {
    const withId = (id: string, stream: boolean): RequestInit => {
      const init = chat(stream ? { stream: true } : {});
      return { ...init, headers: { 'content-type': 'application/json', 'x-request-id': id } };
    };
    const answer = async (init: RequestInit) => {
      const r = await fetch(`${pd.serve.url}/v1/chat/completions`, init);
      return { status: r.status, requestId: r.headers.get('x-request-id'), body: { text: await r.text() } };
    };
    const answers = await Promise.all([
      answer(chat()),
      answer(withId('dup', false)),
      answer(withId('dup', true)),
    ]);
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.match(answers[0]?.requestId ?? '', /^[0-9a-f]{32}$/, "the gateway's id, not a leg's");
    assert.deepEqual(
      answers.slice(1).map((a) => a.requestId),
      ['dup', 'dup'],
      "the client's id comes back, though the legs carried their own",
    );
    const p = await pdStats(pd.prefill.engines[0]?.url as string);
    assert.equal(p['releasedCollected'], 3, 'every decode notified the prefill of its transfer');
    assert.equal(p['heldTransfers'], 0);
    assert.equal(p['notifyIdMismatches'], 0, "each decode leg carried its prefill leg's request id");
    const d = await pdStats(pd.decode.engines[0]?.url as string);
    assert.equal(d['kvLoadFailures'], 0);
  });

  it("relays a refused prefill leg as the engine answered: its code and param, not the gateway's", async () => {
    const r = await json(`${pd.serve.url}/v1/chat/completions`, chat({ n: 2 }));
    assert.equal(r.status, 400, JSON.stringify(r.body));
    const error = r.body['error'] as { code: string; param: string | null; message: string };
    assert.equal(error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(error.param, 'n');
    assert.match(error.message, /n=2/);
    const stats = await balancedStats(pd.serve.url);
    assert.equal((stats['failed'] as Record<string, number>)['upstream_4xx'], 1);
    assert.equal((await pdStats(pd.decode.engines[0]?.url as string))['requests'], 3, 'no decode leg');
  });
});
