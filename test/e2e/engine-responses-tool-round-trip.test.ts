/**
 * End-to-end: an agent's second Responses turn on both built-in engines, through a live gateway
 * (task F, stop 35): the model's `function_call` item sent back with the tool's
 * `function_call_output` (what the OpenAI Agents SDK, the AI SDK's `@ai-sdk/openai` Responses model
 * with `store: false` and LangChain's `useResponsesApi` send) is served, and both count in the
 * prompt: the turn's `input_tokens` exceed those of the same turn without them. Before, the engines
 * refused either item 400 naming `input[i]`. An output answering no call sent earlier is 400
 * SY_ERR_INVALID_ARGUMENT naming it, an image output part 400 SY_ERR_UNSUPPORTED_PARAMETER.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { builtinEngineGateways } from './support/llama.ts';

const { sim: wire, engines: ENGINES } = builtinEngineGateways();

const WEATHER = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 } },
  required: ['city'],
  additionalProperties: false,
} as const;
const TOOLS = [{ type: 'function', name: 'get_weather', parameters: WEATHER, strict: true }];
const QUESTION = { role: 'user', content: 'What is the weather in Paris?' };
const TOOL_OUTPUT = '{"city":"Paris","temperature_c":21,"sky":"sunny","wind":"light, from the west"}';

interface ResponseJson {
  status: string;
  output: { type: string; call_id?: string; name?: string; arguments?: string }[];
  usage: { input_tokens: number; output_tokens: number };
}

for (const engine of ENGINES) {
  describe(`a tool round trip in Responses input items on the ${engine.name} engine (through the gateway)`, () => {
    it('the call (as answered) and its output are served, and count in the prompt', async () => {
      const first = await post(engine.url(), '/v1/responses', {
        model: engine.model,
        input: [QUESTION],
        tools: TOOLS,
        tool_choice: { type: 'function', name: 'get_weather' },
        max_output_tokens: 100,
      });
      assert.equal(first.status, 200, first.text);
      const call = (JSON.parse(first.text) as ResponseJson).output[0];
      assert.equal(call?.type, 'function_call', first.text);
      const turn = (items: unknown[]) =>
        post(engine.url(), '/v1/responses', {
          model: engine.model,
          input: items,
          tools: TOOLS,
          tool_choice: 'none',
          max_output_tokens: 4,
        });
      // The item exactly as the engine answered it (id, status included), then the tool's output.
      const second = await turn([
        QUESTION,
        call,
        { type: 'function_call_output', call_id: call?.call_id, output: TOOL_OUTPUT },
      ]);
      assert.equal(second.status, 200, second.text);
      const r = JSON.parse(second.text) as ResponseJson;
      assert.equal(r.output[0]?.type, 'message');
      const without = JSON.parse((await turn([QUESTION])).text) as ResponseJson;
      assert.ok(
        r.usage.input_tokens > without.usage.input_tokens + 10,
        `${r.usage.input_tokens} input tokens with the round trip, ${without.usage.input_tokens} without`,
      );
      // An output as input_text parts is read as text too.
      const parts = await turn([
        QUESTION,
        call,
        {
          type: 'function_call_output',
          call_id: call?.call_id,
          output: [{ type: 'input_text', text: TOOL_OUTPUT }],
        },
      ]);
      assert.equal(parts.status, 200, parts.text);
      assert.equal((JSON.parse(parts.text) as ResponseJson).usage.input_tokens, r.usage.input_tokens);
    });

    it("openai-node: the first answer's function_call item sent back as input with the tool's output", async () => {
      const client = new OpenAI({ baseURL: `${engine.url()}/v1`, apiKey: 'none', maxRetries: 0 });
      const first = await client.responses.create({
        model: engine.model,
        input: [{ role: 'user', content: 'What is the weather in Paris?' }],
        tools: TOOLS as OpenAI.Responses.FunctionTool[],
        tool_choice: { type: 'function', name: 'get_weather' },
        max_output_tokens: 100,
      });
      const call = first.output.find((o) => o.type === 'function_call');
      assert.ok(call !== undefined && call.type === 'function_call', JSON.stringify(first.output));
      const second = await client.responses.create({
        model: engine.model,
        input: [
          { role: 'user', content: 'What is the weather in Paris?' },
          // The SDK's own output item, as an agent loop sends it back.
          call,
          { type: 'function_call_output', call_id: call.call_id, output: TOOL_OUTPUT },
        ],
        tools: TOOLS as OpenAI.Responses.FunctionTool[],
        tool_choice: 'none',
        max_output_tokens: 4,
      });
      assert.equal(second.output[0]?.type, 'message');
      assert.ok((second.usage?.input_tokens ?? 0) > (first.usage?.input_tokens ?? 0));
    });

    it('refused: an output answering no call sent before it, an image output part', async () => {
      const call = {
        type: 'function_call',
        call_id: 'call_1',
        name: 'get_weather',
        arguments: '{"city":"Paris"}',
      };
      for (const [input, code, param] of [
        [
          [QUESTION, { type: 'function_call_output', call_id: 'call_1', output: 'x' }],
          'SY_ERR_INVALID_ARGUMENT',
          'input[1]',
        ],
        [
          [QUESTION, call, { type: 'function_call_output', call_id: 'call_9', output: 'x' }],
          'SY_ERR_INVALID_ARGUMENT',
          'input[2]',
        ],
        [
          [
            QUESTION,
            call,
            {
              type: 'function_call_output',
              call_id: 'call_1',
              output: [{ type: 'input_image', image_url: 'data:,' }],
            },
          ],
          'SY_ERR_UNSUPPORTED_PARAMETER',
          'input[2].output[0]',
        ],
      ] as const) {
        const reply = await post(engine.url(), '/v1/responses', {
          model: engine.model,
          input,
          max_output_tokens: 2,
        });
        const e = assertErrorBody(reply.text, 400, JSON.stringify(input)).error;
        assert.deepEqual([e.code, e.param], [code, param]);
      }
    });
  });
}

/**
 * The second-turn bodies three clients sent (captured by a logging proxy in front of `switchyard
 * serve` over one sim engine, stop 35), the model name a placeholder: `@openai/agents` 0.20.0
 * OpenAIResponsesModel `run()` (items with `id` and `status`, the output with `status` too);
 * `ai` 5.0.285 with `@ai-sdk/openai` 2.0.140 `openai.responses()` and `store: false` (the user
 * message as `input_text` parts; the call without `status`); `@langchain/openai` 1.5.8
 * `useResponsesApi` with a ToolMessage (`type: "message"` user item, `text: {}`). Each with
 * `tool_choice: "none"` set (the clients sent none or "auto", which task G serves by its own rule),
 * and LangChain's with `max_output_tokens: 8`, so the replay reads the input items only.
 */
const CAPTURED: Record<string, (model: string) => string> = {
  'openai-agents': (m) =>
    `{"model":"${m}","instructions":"Answer with the tool get_weather.","input":[{"role":"user","content":"What is the weather in Paris?"},{"id":"fc_349f719281e665e5c70a704579d9b92a","type":"function_call","name":"get_weather","call_id":"call_f7090601842a6f2e7c9a1e37","arguments":"{\\"city\\":\\"\\"}","status":"completed"},{"type":"function_call_output","call_id":"call_f7090601842a6f2e7c9a1e37","output":"sunny and 21 C in ","status":"completed"}],"include":[],"tools":[{"type":"function","name":"get_weather","description":"The weather in a city","parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"],"additionalProperties":false},"strict":true}],"stream":false,"tool_choice":"none"}`,
  'ai-sdk-openai': (m) =>
    `{"model":"${m}","input":[{"role":"user","content":[{"type":"input_text","text":"What is the weather in Paris?"}]},{"type":"function_call","call_id":"call_f1afa59f491967ec7b8bdd72","name":"get_weather","arguments":"{\\"city\\":\\"\\"}","id":"fc_6caddff1c38f4935ebbf5f2c9dedaadb"},{"type":"function_call_output","call_id":"call_f1afa59f491967ec7b8bdd72","output":"{\\"city\\":\\"\\",\\"sky\\":\\"sunny\\",\\"celsius\\":21}"}],"store":false,"tools":[{"type":"function","name":"get_weather","description":"The weather in a city","parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"],"additionalProperties":false},"strict":false}],"tool_choice":"none"}`,
  langchain: (m) =>
    `{"input":[{"type":"message","role":"user","content":"What is the weather in Paris?"},{"type":"function_call","id":"fc_6aa7c7d3df6a457564ec66669724f1d9","call_id":"call_e4f0abbaee87fc5123f0f0da","name":"get_weather","arguments":"{\\"city\\":\\"\\"}","status":"completed"},{"type":"function_call_output","call_id":"call_e4f0abbaee87fc5123f0f0da","output":"sunny and 21 C"}],"model":"${m}","stream":false,"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"],"additionalProperties":false},"description":"The weather in a city","strict":null}],"text":{},"tool_choice":"none","max_output_tokens":8}`,
};

describe("the clients' captured second turns, replayed", () => {
  for (const engine of ENGINES)
    for (const [client, body] of Object.entries(CAPTURED))
      it(`${client} on the ${engine.name} engine: served, the round trip in the prompt`, async () => {
        const reply = await fetch(`${engine.url()}/v1/responses`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: body(engine.model),
        });
        const text = await reply.text();
        assert.equal(reply.status, 200, text);
        const r = JSON.parse(text) as ResponseJson;
        // The question alone is under 10 tokens on either engine.
        assert.ok(r.usage.input_tokens > 20, text.slice(0, 400));
        if (engine.name === 'sim' && client !== 'langchain')
          assert.equal(r.status, 'completed', text.slice(0, 400));
      });
});

describe('the sim without max_output_tokens after a tool round trip', () => {
  it('is completed', async () => {
    const call = {
      type: 'function_call',
      call_id: 'call_1',
      name: 'get_weather',
      arguments: '{"city":"Paris"}',
    };
    const reply = await post(wire.gw.url, '/v1/responses', {
      model: MODEL,
      input: [QUESTION, call, { type: 'function_call_output', call_id: 'call_1', output: TOOL_OUTPUT }],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal((JSON.parse(reply.text) as ResponseJson).status, 'completed');
  });
});
