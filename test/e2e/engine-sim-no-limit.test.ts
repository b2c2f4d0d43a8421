/**
 * End-to-end: the sim engine, which has no end-of-sequence token, reports a generation that reaches
 * the server's default length as ended on its own when the client set no limit (task F, stop 35):
 * chat without `max_tokens` / `max_completion_tokens` finishes "stop" after 256 tokens, completions
 * without `max_tokens` "stop" after 16, Responses without `max_output_tokens` is `completed` (was
 * "length" and `incomplete` with `reason: max_output_tokens`, on which the OpenAI Agents SDK
 * throws). A request that set a limit and reached it keeps "length" / `incomplete`. Through a live
 * gateway, streamed and not.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL, post, simAndRecorder, sseData } from './support/cluster.ts';

const wire = simAndRecorder('real-model');

interface Chat {
  choices: { finish_reason: string; message?: { content: string }; text?: string }[];
  usage: { completion_tokens: number };
}
interface ResponseJson {
  status: string;
  incomplete_details: { reason: string } | null;
  max_output_tokens: number | null;
  output: { status: string }[];
  usage: { output_tokens: number };
}

const MESSAGES = [{ role: 'user', content: 'Tell me about rail yards.' }];

describe('the sim without a limit set ends on its own at the default', () => {
  it('chat: no limit -> stop after 256 tokens; max_tokens 256 or max_completion_tokens 256 -> length', async () => {
    const finish = async (extra: Record<string, unknown>): Promise<[string, number]> => {
      const reply = await post(wire.gw.url, '/v1/chat/completions', {
        model: MODEL,
        messages: MESSAGES,
        ...extra,
      });
      assert.equal(reply.status, 200, reply.text);
      const c = JSON.parse(reply.text) as Chat;
      return [c.choices[0]?.finish_reason ?? '', c.usage.completion_tokens];
    };
    assert.deepEqual(await finish({}), ['stop', 256]);
    assert.deepEqual(await finish({ max_tokens: null }), ['stop', 256]);
    assert.deepEqual(await finish({ max_tokens: 256 }), ['length', 256]);
    assert.deepEqual(await finish({ max_completion_tokens: 256 }), ['length', 256]);
  });

  it('chat streamed: the last chunk finishes stop', async () => {
    const reply = await post(wire.gw.url, '/v1/chat/completions', {
      model: MODEL,
      messages: MESSAGES,
      stream: true,
    });
    assert.equal(reply.status, 200, reply.text);
    const finishes = sseData(reply.text)
      .filter((d) => d !== '[DONE]')
      .map((d) => (JSON.parse(d) as Chat).choices[0]?.finish_reason)
      .filter((f) => f !== null && f !== undefined);
    assert.deepEqual(finishes, ['stop']);
  });

  it('completions: no max_tokens -> stop after 16 tokens; max_tokens 16 -> length', async () => {
    for (const [extra, want] of [
      [{}, ['stop', 16]],
      [{ max_tokens: 16 }, ['length', 16]],
    ] as const) {
      const reply = await post(wire.gw.url, '/v1/completions', {
        model: MODEL,
        prompt: 'Rail yards',
        ...extra,
      });
      assert.equal(reply.status, 200, reply.text);
      const c = JSON.parse(reply.text) as Chat;
      assert.deepEqual([c.choices[0]?.finish_reason, c.usage.completion_tokens], want);
    }
  });

  it('Responses: no max_output_tokens -> completed; max_output_tokens reached -> incomplete', async () => {
    const free = await post(wire.gw.url, '/v1/responses', {
      model: MODEL,
      input: 'Tell me about rail yards.',
    });
    assert.equal(free.status, 200, free.text);
    const r = JSON.parse(free.text) as ResponseJson;
    assert.deepEqual(
      [r.status, r.incomplete_details, r.max_output_tokens, r.output[0]?.status, r.usage.output_tokens],
      ['completed', null, null, 'completed', 256],
    );
    const cut = JSON.parse(
      (await post(wire.gw.url, '/v1/responses', { model: MODEL, input: 'hi', max_output_tokens: 256 })).text,
    ) as ResponseJson;
    assert.deepEqual([cut.status, cut.incomplete_details], ['incomplete', { reason: 'max_output_tokens' }]);
    // Streamed: the last event is response.completed.
    const streamed = await post(wire.gw.url, '/v1/responses', { model: MODEL, input: 'hi', stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    const types = sseData(streamed.text).map((d) => (JSON.parse(d) as { type: string }).type);
    assert.equal(types.at(-1), 'response.completed');
    assert.ok(!types.includes('response.incomplete'));
  });
});
