/**
 * End-to-end: vLLM's body `request_id` names the answer, through the gateway (task A of stop 28,
 * the live path reviewed as unseen clients use it).
 *
 * vLLM names a chat or completions answer after the `X-Request-Id` header, else after the body's
 * `request_id` (its extra field, sent through the SDKs' `extra_body`), else a fresh id. The built-in
 * engines read the header only: a client correlating answers by the `request_id` it sent found
 * another id, and a `request_id` that is not a string (vLLM's 400) was served. Both are as vLLM's now
 * (src/engine-servers/openai-server.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post, simAndRecorder, streamedResponseIds } from './support/cluster.ts';

const wire = simAndRecorder('real-model');

async function answerId(path: string, body: Record<string, unknown>, headers = {}): Promise<string> {
  const reply = await post(wire.gw.url, path, JSON.stringify(body), { headers });
  assert.equal(reply.status, 200, reply.text);
  return (JSON.parse(reply.text) as { id: string }).id;
}

const CHAT = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
const COMPLETION = { model: MODEL, prompt: 'hi', max_tokens: 2 };

describe("vLLM's body request_id", () => {
  it('names the chat and the completions answer', async () => {
    assert.equal(
      await answerId('/v1/chat/completions', { ...CHAT, request_id: 'job-17' }),
      'chatcmpl-job-17',
    );
    assert.equal(await answerId('/v1/completions', { ...COMPLETION, request_id: 'job-18' }), 'cmpl-job-18');
  });

  it('the X-Request-Id header wins over it; null or absent gives a fresh id', async () => {
    const id = await answerId(
      '/v1/chat/completions',
      { ...CHAT, request_id: 'from-body' },
      { 'x-request-id': 'from-header' },
    );
    assert.equal(id, 'chatcmpl-from-header');
    const a = await answerId('/v1/chat/completions', { ...CHAT, request_id: null });
    const b = await answerId('/v1/chat/completions', CHAT);
    assert.match(a, /^chatcmpl-\S+$/);
    assert.notEqual(a, b);
  });

  it('an id with quotes, backslashes or line breaks is JSON-escaped in the answer, streamed or not', async () => {
    // The id was written into the answer's JSON unescaped: a quote broke the JSON, and a line break in
    // a streamed answer cut an SSE event in two. vLLM's answer carries the id as sent, escaped.
    const raw = 'job "7" \\ part\n\ndata: [DONE]';
    assert.equal(await answerId('/v1/chat/completions', { ...CHAT, request_id: raw }), `chatcmpl-${raw}`);
    assert.equal(await answerId('/v1/completions', { ...COMPLETION, request_id: raw }), `cmpl-${raw}`);
    const header = 'hdr "8" \\ x';
    assert.equal(
      await answerId('/v1/chat/completions', CHAT, { 'x-request-id': header }),
      `chatcmpl-${header}`,
    );
    const streamed = await post(
      wire.gw.url,
      '/v1/chat/completions',
      JSON.stringify({ ...CHAT, request_id: raw, stream: true }),
    );
    assert.equal(streamed.status, 200, streamed.text);
    const events = streamed.text.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.at(-1), 'data: [DONE]');
    const chunks = events.slice(0, -1);
    assert.ok(chunks.length >= 2, streamed.text);
    for (const event of chunks) {
      assert.ok(event.startsWith('data: {'), event);
      assert.equal((JSON.parse(event.slice('data: '.length)) as { id: string }).id, `chatcmpl-${raw}`);
    }
  });

  it("names a Responses answer as it is, over the header, streamed or not (vLLM's id = request_id)", async () => {
    // vLLM's ResponsesRequest has `request_id` (default resp_<uuid>) and its answer's id is that
    // value itself; the engines named a Responses answer after the header only.
    const RESPONSES = { model: MODEL, input: 'hi', max_output_tokens: 2 };
    assert.equal(await answerId('/v1/responses', { ...RESPONSES, request_id: 'job-19' }), 'job-19');
    const overHeader = await answerId(
      '/v1/responses',
      { ...RESPONSES, request_id: 'from-body' },
      { 'x-request-id': 'from-header' },
    );
    assert.equal(overHeader, 'from-body');
    assert.match(await answerId('/v1/responses', RESPONSES), /^resp_\S+$/);
    const streamed = await post(
      wire.gw.url,
      '/v1/responses',
      JSON.stringify({ ...RESPONSES, request_id: 'job "20"', stream: true }),
    );
    assert.equal(streamed.status, 200, streamed.text);
    const ids = streamedResponseIds(streamed.text);
    assert.ok(ids.length >= 2, streamed.text);
    for (const id of ids) assert.equal(id, 'job "20"');
    const bad = await post(wire.gw.url, '/v1/responses', JSON.stringify({ ...RESPONSES, request_id: 5 }));
    assert.equal(bad.status, 400, bad.text);
    assert.equal(assertErrorBody(bad.text, 400).error.param, 'request_id');
  });

  it('a request_id that is not a string is 400 naming it', async () => {
    const reply = await post(wire.gw.url, '/v1/chat/completions', JSON.stringify({ ...CHAT, request_id: 5 }));
    assert.equal(reply.status, 400, reply.text);
    assert.equal(assertErrorBody(reply.text, 400).error.param, 'request_id');
  });
});
