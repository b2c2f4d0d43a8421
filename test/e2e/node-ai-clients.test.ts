/**
 * End-to-end: what the Node clients after the openai SDK found wanting in `switchyard serve` (stop
 * 31, task E: the Vercel AI SDK, `ai` 6 with `@ai-sdk/openai-compatible` 2 and `@ai-sdk/openai` 3,
 * and LangChain JS, `@langchain/openai` 1.5, run by hand from a folder outside the repository; the
 * project does not depend on them, so each finding is held here with the requests they send, over
 * fetch, and what they need of the answer: docs/gateway.md "Clients checked").
 *
 * - A Responses stream the gateway had to cut after its head (the engine gone mid-stream, a
 *   timeout, a drain) ended with a chat stream's `data: {"error": ...}` and `data: [DONE]`, which
 *   are no Responses events: `@ai-sdk/openai` validates every event against its Responses schemas,
 *   so `streamText` reported a page of schema mismatches ("Type validation failed ... invalid_union")
 *   in place of the gateway's message. It now ends with OpenAI's `error` event.
 * - An engine that ended a Responses stream with its own `error` event (a drain past its shutdown
 *   timeout) had the gateway append a second one (SY_ERR_UPSTREAM "ended the stream without
 *   response.completed"), which the openai SDKs raised in place of the engine's SY_ERR_DRAINING:
 *   the engine's event carried the error flat only, which they yield as a mere event.
 * - `@ai-sdk/openai`'s Responses model sends an earlier answer back as an `item_reference` unless
 *   `providerOptions.openai.store` is false. Since stop 36 the gateway stores responses and resolves
 *   the reference (gateway-response-store.test.ts replays the SDK's second turn); one it does not
 *   hold is OpenAI's 404 naming the item.
 * - `tools` with `tool_choice: "none"` on /v1/responses was 400 naming `tools` on the built-in
 *   engines, while chat serves it (stop 25): the AI SDK's `generateText({ tools, toolChoice: 'none' })`
 *   through `@ai-sdk/openai`'s default (Responses) model failed where its chat model worked.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MODEL, post, simBackend, spawnSim, sseData, startTestGateway, Teardown } from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import { simGateway, startSimGateway } from './support/sim-gateway.ts';

/** Quick engines for the whole answers. */
const quick = simGateway();
/** One engine at real speed, killed mid-stream by the test that needs it. */
const doomed = fileSetUp(new Teardown(), ['sims', 'engine', 'gw'], (teardown) =>
  startSimGateway(teardown, {}, 1, ['--time-scale', '1', '--kv-events', 'none']),
);

/** One SSE event as a client parses it: the `event:` line's value (if any) and the data. */
interface SseEvent {
  readonly event: string | undefined;
  readonly data: string;
}

function sseEvents(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split('\n\n')) {
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length > 0) out.push({ event, data: data.join('\n') });
  }
  return out;
}

/**
 * Streams a long Responses answer from `gatewayUrl` (@ai-sdk/openai's streamText body), calls
 * `kill` once three text deltas arrived, and reads on to the end.
 */
async function readStreamKilling(
  gatewayUrl: string,
  kill: () => Promise<void>,
): Promise<{ text: string; killed: boolean }> {
  const res = await fetch(`${gatewayUrl}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Talk for a long time.' }] }],
      max_output_tokens: 2000,
      stream: true,
    }),
    signal: AbortSignal.timeout(60_000),
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  let killed = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    if (!killed && text.split('event: response.output_text.delta\n').length > 3) {
      killed = true;
      await kill();
    }
  }
  return { text, killed };
}

/**
 * The events' data, each checked to be a typed Responses event numbered in order, its `event:`
 * line naming its type (what the AI SDK validates).
 */
function responsesEvents(text: string): Record<string, unknown>[] {
  const events = sseEvents(text);
  const parsed = events.map((e) => JSON.parse(e.data) as Record<string, unknown>);
  for (const [i, data] of parsed.entries()) {
    assert.equal(typeof data['type'], 'string', `event ${i}: ${events[i]?.data}`);
    assert.equal(data['sequence_number'], i, `event ${i}: ${events[i]?.data}`);
    assert.equal(events[i]?.event, data['type'], `event ${i}`);
  }
  return parsed;
}

describe('a Responses stream cut mid-way', () => {
  it('ends with a Responses error event (type, sequence_number, code, message), no [DONE]', async () => {
    const { text, killed } = await readStreamKilling(doomed.gw.url, () => doomed.engine.kill('SIGKILL'));
    assert.ok(killed, 'the stream ended before three deltas');
    assert.ok(!sseData(text).includes('[DONE]'), 'a Responses stream has no [DONE]');
    const parsed = responsesEvents(text);
    const last = parsed.at(-1) as Record<string, unknown>;
    assert.equal(last['type'], 'error', JSON.stringify(last));
    assert.equal(last['code'], 'SY_ERR_UPSTREAM');
    assert.match(String(last['message']), /failed mid-response/);
    assert.equal(last['param'], null);
    // Nested too: the openai SDKs raise an APIError with this code for an event whose data has `error`.
    assert.deepEqual(last['error'], {
      message: last['message'],
      type: 'server_error',
      code: 'SY_ERR_UPSTREAM',
      param: null,
    });
  });
});

describe("an engine's own error event on a Responses stream", () => {
  it('reaches the client alone, nested for the openai SDKs, not followed by a second error', async () => {
    const teardown = new Teardown();
    try {
      // Real time: 2,000 tokens take well past the engine's 1 s shutdown timeout.
      const engine = await spawnSim(
        ['--time-scale', '1', '--kv-events', 'none', '--shutdown-timeout', '1'],
        0,
        teardown,
      );
      const gw = await startTestGateway({ backends: [simBackend('draining', engine, false)] }, teardown);
      const { text } = await readStreamKilling(gw.url, () => engine.kill('SIGTERM'));
      const parsed = responsesEvents(text);
      const errors = parsed.filter((d) => d['type'] === 'error');
      assert.equal(errors.length, 1, text.slice(-1500));
      const last = parsed.at(-1) as Record<string, unknown>;
      assert.equal(last['type'], 'error');
      assert.equal(last['code'], 'SY_ERR_DRAINING', JSON.stringify(last));
      assert.deepEqual(last['error'], {
        message: last['message'],
        type: 'server_error',
        code: 'SY_ERR_DRAINING',
        param: null,
      });
    } finally {
      await teardown.run();
    }
  });
});

describe('Responses tools the request forbids calling', () => {
  // @ai-sdk/openai's body for generateText({ tools, toolChoice: 'none' }) on its Responses model.
  const body = (toolChoice: string, stream: boolean): object => ({
    model: MODEL,
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'weather in Paris?' }] }],
    max_output_tokens: 4,
    tools: [
      {
        type: 'function',
        name: 'weather',
        description: 'the weather in a city',
        parameters: {
          $schema: 'http://json-schema.org/draft-07/schema#',
          type: 'object',
          properties: { city: { type: 'string' } },
          required: ['city'],
          additionalProperties: false,
        },
      },
    ],
    tool_choice: toolChoice,
    ...(stream ? { stream: true } : {}),
  });

  it('are served as text with tool_choice "none", as chat serves them; "auto" calls one', async () => {
    const whole = await post(quick.gw.url, '/v1/responses', body('none', false));
    assert.equal(whole.status, 200, whole.text);
    const response = JSON.parse(whole.text) as {
      status: string;
      tool_choice: string;
      output: { type: string; content: { text: string }[] }[];
      usage: { output_tokens: number };
    };
    assert.equal(response.status, 'incomplete');
    assert.equal(response.tool_choice, 'none');
    assert.equal(response.output[0]?.type, 'message');
    assert.ok((response.output[0]?.content[0]?.text ?? '').length > 0);
    assert.equal(response.usage.output_tokens, 4);

    const streamed = await post(quick.gw.url, '/v1/responses', body('none', true));
    assert.equal(streamed.status, 200, streamed.text);
    const types = sseData(streamed.text).map((d) => (JSON.parse(d) as { type: string }).type);
    assert.equal(types.filter((t) => t === 'response.output_text.delta').length, 4, types.join());
    assert.equal(types.at(-1), 'response.incomplete');

    // As on chat: auto is answered with a call by the engines' rule (400 to stop 34;
    // engine-responses-tool-calls.test.ts).
    const auto = await post(quick.gw.url, '/v1/responses', body('auto', false));
    assert.equal(auto.status, 200, auto.text);
    const called = JSON.parse(auto.text) as { output: { type: string }[] };
    assert.equal(called.output[0]?.type, 'function_call');
  });
});

describe("the AI SDK's second turn on /v1/responses", () => {
  const turn = (assistant: object): object => ({
    model: MODEL,
    input: [
      { role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
      assistant,
      { role: 'user', content: [{ type: 'input_text', text: 'more' }] },
    ],
    max_output_tokens: 2,
  });

  it('a reference to an answer the gateway did not store is 404 naming it; the message form is served', async () => {
    const referenced = await post(
      quick.gw.url,
      '/v1/responses',
      turn({ type: 'item_reference', id: 'msg_1' }),
    );
    assert.equal(referenced.status, 404, referenced.text);
    const error = (JSON.parse(referenced.text) as { error: { code: string; param: string; message: string } })
      .error;
    assert.equal(error.code, 'SY_ERR_ITEM_NOT_FOUND');
    assert.equal(error.param, 'input[1]');
    assert.equal(error.message, "Item with id 'msg_1' not found.");
    // With providerOptions.openai.store false the SDK sends the answer itself, with its item id.
    const sent = await post(
      quick.gw.url,
      '/v1/responses',
      turn({ role: 'assistant', content: [{ type: 'output_text', text: ' an and' }], id: 'msg_1' }),
    );
    assert.equal(sent.status, 200, sent.text);
  });
});
