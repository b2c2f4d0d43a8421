/**
 * End-to-end: content parts a text model cannot read, through the gateway (task A of stop 28, the
 * live path reviewed as unseen clients use it).
 *
 * The built-in engines read a message's content parts for their `text` only. A chat message with an
 * `image_url` (or `input_audio`) part, or a Responses message with an `input_image` part, was served
 * with the part silently dropped: 200 and an answer to the text alone, so a client asking about an
 * image got an answer about nothing. They are refused now, 400 SY_ERR_UNSUPPORTED_PARAMETER naming
 * the part (src/engine-servers/content-parts.ts), as vLLM refuses them for a model that is not
 * multimodal; a real backend (a recorder standing for vLLM) still gets the bytes unchanged.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post, simAndRecorder } from './support/cluster.ts';

const REAL = 'real-model';
const wire = simAndRecorder(REAL);

const IMAGE = '{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}';
const AUDIO = '{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}';

/** A chat body as the openai SDK writes it, the user's content parts `parts`. */
const chatBody = (model: string, parts: string, extra = ''): string =>
  `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[${parts}]}],"model":"${model}","max_tokens":4${extra}}`;

describe('content parts a built-in engine cannot read', () => {
  for (const [name, part] of [
    ['image_url', IMAGE],
    ['input_audio', AUDIO],
  ] as const) {
    it(`sim chat: a ${name} part is 400 naming it, streamed or not`, async () => {
      for (const extra of ['', ',"stream":true']) {
        const body = chatBody(MODEL, `{"type":"text","text":"what is this?"},${part}`, extra);
        const reply = await post(wire.gw.url, '/v1/chat/completions', body);
        assert.equal(reply.status, 400, reply.text);
        const e = assertErrorBody(reply.text, 400);
        assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
        assert.equal(e.error.param, 'messages[1].content[1]');
        assert.match(e.error.message, new RegExp(`content part of type "${name}"`));
      }
    });
  }

  it('sim chat: text parts alone are served', async () => {
    const reply = await post(
      wire.gw.url,
      '/v1/chat/completions',
      chatBody(MODEL, '{"type":"text","text":"what"},{"type":"text","text":" is this?"}'),
    );
    assert.equal(reply.status, 200, reply.text);
    const answer = JSON.parse(reply.text) as { usage: { completion_tokens: number } };
    assert.equal(answer.usage.completion_tokens, 4);
  });

  it("sim chat: an assistant message's refusal part (the openai SDK's, replayed in history) is served", async () => {
    // A refusal part is text the model wrote, not media: vLLM reads it as text for any model, so a
    // conversation holding an earlier refusal must go on being served.
    const body =
      `{"model":"${MODEL}","max_tokens":4,"messages":[{"role":"user","content":"hi"},` +
      '{"role":"assistant","content":[{"type":"refusal","refusal":"I cannot help with that."}]},' +
      '{"role":"user","content":"then say hello"}]}';
    const reply = await post(wire.gw.url, '/v1/chat/completions', body);
    assert.equal(reply.status, 200, reply.text);
  });

  it("sim chat: a refusal part's text counts in the prompt, as vLLM renders it as text", async () => {
    const REFUSAL = 'I cannot help with that, not today and not with any of those tools.';
    const promptTokens = async (assistant: string): Promise<number> => {
      const body =
        `{"model":"${MODEL}","max_tokens":1,"messages":[{"role":"user","content":"hi"},` +
        `{"role":"assistant","content":${assistant}},{"role":"user","content":"then say hello"}]}`;
      const reply = await post(wire.gw.url, '/v1/chat/completions', body);
      assert.equal(reply.status, 200, reply.text);
      return (JSON.parse(reply.text) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
    };
    const asPart = await promptTokens(`[{"type":"refusal","refusal":"${REFUSAL}"}]`);
    const asString = await promptTokens(JSON.stringify(REFUSAL));
    const empty = await promptTokens('""');
    assert.ok(asString > empty, `the refusal text costs tokens (${asString} vs ${empty})`);
    assert.equal(asPart, asString, 'a refusal part counts as its text would');
  });

  it('sim Responses: an input_image part is 400 naming it; input_text alone is served', async () => {
    const body = (parts: string): string =>
      `{"model":"${MODEL}","input":[{"role":"user","content":[${parts}]}],"max_output_tokens":4}`;
    const refused = await post(
      wire.gw.url,
      '/v1/responses',
      body(
        '{"type":"input_text","text":"what is this?"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo="}',
      ),
    );
    assert.equal(refused.status, 400, refused.text);
    const e = assertErrorBody(refused.text, 400);
    assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(e.error.param, 'input[0].content[1]');
    const served = await post(wire.gw.url, '/v1/responses', body('{"type":"input_text","text":"hi"}'));
    assert.equal(served.status, 200, served.text);
  });

  it('a real backend gets the image part as the client sent it', async () => {
    const bytes = chatBody(REAL, `{"type":"text","text":"what is this?"},${IMAGE}`);
    const reply = await post(wire.gw.url, '/v1/chat/completions', bytes);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(wire.upstream.received.at(-1)?.body, bytes);
  });
});
