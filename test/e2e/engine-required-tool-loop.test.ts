/**
 * End-to-end: an agent loop whose every turn must call a tool, as pydantic-ai runs one for an agent
 * with a function tool and a structured `output_type` (its default tool output, `final_result`),
 * against the built-in engines through a gateway (stop 36, task C). pydantic-ai sends, every turn,
 * both tools and on chat `tool_choice: "required"`, on the Responses API `tool_choice: {"type":
 * "allowed_tools", "mode": "required", "tools": [final_result, get_weather]}`; the run ends when the
 * model calls `final_result`. The bodies are pydantic-ai's as its OpenAIChatModel and
 * OpenAIResponsesModel build them (its own tests' snapshots of tool_choice; the package is not in
 * this machine's Python index, so they were sent with the Python `openai` client, docs/gateway.md
 * "Checked in stop 36"). To stop 36 the Responses turn was 400 naming tool_choice, and on chat the
 * sim called the first listed tool every turn, so the loop never ended: now the tools not yet
 * called since the last user turn are generated first (tool-calls.ts requiredOrder). The llama
 * engine (random weights, seeded) must serve the same bodies with calls among the tools.
 * LangChain's `create_agent(llm, tools, response_format=Model)` (its default ToolStrategy) runs the
 * same loop with `tool_choice: "required"` on both APIs; its second-turn bodies, captured by a
 * logging proxy, are replayed last (before: GraphRecursionError, the first tool called every turn).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { post } from './support/cluster.ts';
import { validatedJson } from './support/json-schema.ts';
import { builtinEngineGateways } from './support/llama.ts';

const { engines: ENGINES } = builtinEngineGateways();

const WEATHER = {
  name: 'get_weather',
  description: 'Get the weather in a city.',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 12 } },
    required: ['city'],
    additionalProperties: false,
  },
  strict: true,
};
const FINAL = {
  name: 'final_result',
  description: 'The final response which ends this conversation',
  parameters: {
    type: 'object',
    properties: {
      sky: { type: 'string', enum: ['clear', 'rain'] },
      celsius: { type: 'integer', minimum: 0, maximum: 50 },
    },
    required: ['sky', 'celsius'],
    additionalProperties: false,
  },
  strict: true,
};
const SCHEMAS: Record<string, object> = { get_weather: WEATHER.parameters, final_result: FINAL.parameters };
const USER = { role: 'user', content: 'What is the weather in Paris?' };
const ALLOWED = {
  type: 'allowed_tools',
  mode: 'required',
  tools: [
    { type: 'function', name: 'final_result' },
    { type: 'function', name: 'get_weather' },
  ],
};
/** The llama engine's tokens are nearly characters: room for a call; a seed for one answer. */
const LLAMA_EXTRA = { seed: 7 };
const TOKENS = 256;

/** A generated call: its name and arguments. */
interface Called {
  name: string;
  arguments: string;
}

/** Each call names one of the two tools and its arguments hold under that tool's schema. */
function checkCalls(calls: readonly Called[]): void {
  assert.ok(calls.length >= 1);
  for (const call of calls) {
    const schema = SCHEMAS[call.name];
    assert.ok(schema !== undefined, `a call to ${call.name}`);
    validatedJson(call.arguments, schema);
  }
}

/** One chat turn: the calls made, or none when the turn ran out of tokens (llama). */
async function chatTurn(url: string, model: string, messages: unknown[], extra: object): Promise<Called[]> {
  const reply = await post(url, '/v1/chat/completions', {
    model,
    messages,
    tools: [
      { type: 'function', function: WEATHER },
      { type: 'function', function: FINAL },
    ],
    tool_choice: 'required',
    max_completion_tokens: TOKENS,
    ...extra,
  });
  assert.equal(reply.status, 200, reply.text);
  const choice = (
    JSON.parse(reply.text) as {
      choices: { finish_reason: string; message: { tool_calls?: { function: Called }[] } }[];
    }
  ).choices[0]!;
  assert.equal(choice.finish_reason, 'tool_calls', reply.text);
  const calls = (choice.message.tool_calls ?? []).map((c) => c.function);
  checkCalls(calls);
  return calls;
}

/** One Responses turn: the `function_call` items, with the echoed tool_choice checked. */
async function responsesTurn(
  url: string,
  model: string,
  input: unknown[],
  extra: object,
): Promise<(Called & { call_id: string })[]> {
  const reply = await post(url, '/v1/responses', {
    model,
    input,
    tools: [
      { type: 'function', ...WEATHER },
      { type: 'function', ...FINAL },
    ],
    tool_choice: ALLOWED,
    max_output_tokens: TOKENS,
    store: false,
    ...extra,
  });
  assert.equal(reply.status, 200, reply.text);
  const response = JSON.parse(reply.text) as {
    status: string;
    tool_choice: unknown;
    output: { type: string; name: string; arguments: string; call_id: string }[];
  };
  assert.equal(response.status, 'completed', reply.text);
  assert.deepEqual(response.tool_choice, ALLOWED);
  const calls = response.output.filter((o) => o.type === 'function_call');
  assert.equal(calls.length, response.output.length, 'only function_call items');
  checkCalls(calls);
  return calls;
}

for (const engine of ENGINES)
  describe(`pydantic-ai's required tool loop on the ${engine.name} engine`, () => {
    const extra = engine.name === 'llama' ? LLAMA_EXTRA : {};

    it('chat, tool_choice "required": the tool, then final_result (sim); calls among the tools (llama)', async () => {
      const first = await chatTurn(engine.url(), engine.model, [USER], extra);
      if (engine.name !== 'sim') return;
      assert.deepEqual(
        first.map((c) => c.name),
        ['get_weather'],
      );
      const history = [
        USER,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: first[0] }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
      ];
      const second = await chatTurn(engine.url(), engine.model, history, extra);
      assert.deepEqual(
        second.map((c) => c.name),
        ['final_result'],
      );
    });

    it('Responses, allowed_tools required: served and echoed; the tool, then final_result (sim)', async () => {
      const first = await responsesTurn(engine.url(), engine.model, [USER], extra);
      if (engine.name !== 'sim') return;
      assert.deepEqual(
        first.map((c) => c.name),
        ['get_weather'],
      );
      const call = first[0]!;
      const history = [
        USER,
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' },
      ];
      const second = await responsesTurn(engine.url(), engine.model, history, extra);
      assert.deepEqual(
        second.map((c) => c.name),
        ['final_result'],
      );
    });
  });

/** LangChain 1.4.2 (langchain-openai 1.6.6) create_agent ToolStrategy: the second turns as sent, less `model`. */
const LC_WEATHER_PARAMS = { properties: { city: { type: 'string' } }, required: ['city'], type: 'object' };
const LC_MODEL_PARAMS = {
  properties: {
    sky: { enum: ['clear', 'rain'], type: 'string' },
    celsius: { maximum: 50, minimum: 0, type: 'integer' },
  },
  required: ['sky', 'celsius'],
  type: 'object',
};
const LC_CHAT_SECOND = {
  messages: [
    { content: 'What is the weather in Paris?', role: 'user' },
    {
      content: null,
      role: 'assistant',
      tool_calls: [
        {
          type: 'function',
          id: 'chatcmpl-tool-8f5fecf2755e1c1e6b49afa8218d1ccd',
          function: { name: 'get_weather', arguments: '{"city": ""}' },
        },
      ],
    },
    { content: 'sunny in ', role: 'tool', tool_call_id: 'chatcmpl-tool-8f5fecf2755e1c1e6b49afa8218d1ccd' },
  ],
  max_completion_tokens: 64,
  seed: 7,
  stream: false,
  tool_choice: 'required',
  tools: [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Get the weather for a city.',
        parameters: LC_WEATHER_PARAMS,
      },
    },
    {
      type: 'function',
      function: { name: 'Weather', description: 'Weather report.', parameters: LC_MODEL_PARAMS },
    },
  ],
};
const LC_RESPONSES_SECOND = {
  input: [
    { content: 'What is the weather in Paris?', role: 'user', type: 'message' },
    {
      arguments: '{"city":""}',
      call_id: 'call_7d80f18a62663ecac14356d8',
      name: 'get_weather',
      type: 'function_call',
      id: 'fc_f7d1d26dd28386976a423a53383b1b08',
      status: 'completed',
    },
    { type: 'function_call_output', output: 'sunny in ', call_id: 'call_7d80f18a62663ecac14356d8' },
  ],
  max_output_tokens: 64,
  stream: false,
  tool_choice: 'required',
  tools: [
    {
      type: 'function',
      name: 'get_weather',
      description: 'Get the weather for a city.',
      parameters: LC_WEATHER_PARAMS,
    },
    { type: 'function', name: 'Weather', description: 'Weather report.', parameters: LC_MODEL_PARAMS },
  ],
};

describe("LangChain create_agent's ToolStrategy second turn on the sim engine", () => {
  const sim = ENGINES.find((e) => e.name === 'sim')!;
  it('chat: after the tool result, the call is to the output tool Weather', async () => {
    const reply = await post(sim.url(), '/v1/chat/completions', { ...LC_CHAT_SECOND, model: sim.model });
    assert.equal(reply.status, 200, reply.text);
    const message = (
      JSON.parse(reply.text) as { choices: { message: { tool_calls: { function: Called }[] } }[] }
    ).choices[0]!.message;
    assert.deepEqual(
      message.tool_calls.map((c) => c.function.name),
      ['Weather'],
    );
    validatedJson(message.tool_calls[0]!.function.arguments, LC_MODEL_PARAMS);
  });
  it('Responses: after the function_call_output, a function_call to Weather', async () => {
    const reply = await post(sim.url(), '/v1/responses', { ...LC_RESPONSES_SECOND, model: sim.model });
    assert.equal(reply.status, 200, reply.text);
    const output = (JSON.parse(reply.text) as { output: { type: string; name: string; arguments: string }[] })
      .output;
    assert.deepEqual(
      output.map((o) => [o.type, o.name]),
      [['function_call', 'Weather']],
    );
    validatedJson(output[0]!.arguments, LC_MODEL_PARAMS);
  });
});
