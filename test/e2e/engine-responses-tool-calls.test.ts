/**
 * End-to-end: forced function tool calls on both built-in engines' Responses API, through a live
 * gateway (task F, stop 34), in the Responses API's flat form as OpenAI and vLLM shape it: `tools:
 * [{type: "function", name, parameters}]` with `tool_choice: {type: "function", name}` or
 * "required", answered as `function_call` output items (`fc_...` id, `call_...` call_id, the
 * arguments as JSON text), streamed and not; a parameters schema the engines cannot hold 400
 * naming it. "auto" (and tools without a tool_choice), 400 at stop 34, follow the rule of
 * tool-calls.ts autoToolChoice since stop 35 (task G): one function_call item. Before, every Responses request with
 * `tools` (but `tool_choice: "none"`) was 400 naming `tools`.
 *
 * The llama engine runs the tiny random-weight model: under the grammar its arguments are JSON that
 * validates against the tool's schema. The sim answers the schema's minimal instance.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { assertErrorBody, post, sseData } from './support/cluster.ts';
import { validatedJson } from './support/json-schema.ts';
import { builtinEngineGateways } from './support/llama.ts';

const { engines: ENGINES } = builtinEngineGateways();

/** Strings bounded so the random model's JSON closes soon. */
const WEATHER = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 12 },
    unit: { enum: ['celsius', 'fahrenheit'] },
    days: { type: 'integer', minimum: 1, maximum: 7 },
  },
  required: ['city', 'unit', 'days'],
  additionalProperties: false,
} as const;
const SEARCH = {
  type: 'object',
  properties: {
    query: { type: 'string', maxLength: 10 },
    limit: { type: 'integer', minimum: 1, maximum: 3 },
  },
  required: ['query', 'limit'],
  additionalProperties: false,
} as const;
const SCHEMAS: Record<string, object> = { get_weather: WEATHER, search: SEARCH };
/** The final answer's format beside the tools (an agent's outputType); bounded for the random model. */
const REPORT = {
  type: 'object',
  properties: {
    sky: { enum: ['clear', 'cloudy', 'rain'] },
    celsius: { type: 'integer', minimum: 0, maximum: 50 },
    summary: { type: 'string', maxLength: 12 },
  },
  required: ['sky', 'celsius', 'summary'],
  additionalProperties: false,
} as const;
/** Flat, as the Responses API lists function tools (not nested under `function`). */
const TOOLS = [
  { type: 'function', name: 'get_weather', description: 'Weather', parameters: WEATHER, strict: true },
  { type: 'function', name: 'search', parameters: SEARCH, strict: true },
];
const NAMED = { type: 'function', name: 'search' };

const BODY = (model: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  model,
  input: 'What is the weather in Paris?',
  max_output_tokens: 300,
  seed: 7,
  tools: TOOLS,
  ...extra,
});

interface Item {
  type: string;
  id: string;
  call_id?: string;
  name?: string;
  arguments?: string;
  status: string;
}
interface ResponseJson {
  status: string;
  output: Item[];
  tool_choice: unknown;
  tools: unknown[];
  parallel_tool_calls: boolean;
}

/** A function_call item: its shape, ids, a listed name, and arguments that validate. */
function checkCall(item: Item | undefined, names: readonly string[]): void {
  assert.ok(item !== undefined, 'an output item');
  assert.equal(item.type, 'function_call', JSON.stringify(item));
  assert.match(item.id, /^fc_[0-9a-f]{32}$/);
  assert.match(item.call_id ?? '', /^call_[0-9a-f]{24}$/);
  assert.equal(item.status, 'completed');
  assert.ok(names.includes(item.name ?? ''), item.name);
  validatedJson(item.arguments ?? '', SCHEMAS[item.name ?? ''] as object);
}

/** A Responses stream's events, parsed, in order. */
function events(text: string): { type: string; [k: string]: unknown }[] {
  return sseData(text).map((d) => JSON.parse(d) as { type: string });
}

for (const engine of ENGINES) {
  describe(`Responses function tools on the ${engine.name} engine (through the gateway)`, () => {
    it('named tool_choice: one function_call item whose arguments validate; the choice and tools echoed', async () => {
      const reply = await post(engine.url(), '/v1/responses', BODY(engine.model, { tool_choice: NAMED }));
      assert.equal(reply.status, 200, reply.text);
      const r = JSON.parse(reply.text) as ResponseJson;
      assert.equal(r.status, 'completed');
      assert.equal(r.output.length, 1);
      checkCall(r.output[0], ['search']);
      assert.deepEqual(r.tool_choice, NAMED);
      assert.deepEqual(r.tools, TOOLS);
    });

    it('tool_choice required with parallel_tool_calls false: one call to a listed tool', async () => {
      const reply = await post(
        engine.url(),
        '/v1/responses',
        BODY(engine.model, { tool_choice: 'required', parallel_tool_calls: false }),
      );
      assert.equal(reply.status, 200, reply.text);
      const r = JSON.parse(reply.text) as ResponseJson;
      assert.equal(r.output.length, 1, reply.text.slice(0, 600));
      checkCall(r.output[0], ['get_weather', 'search']);
      assert.equal(r.tool_choice, 'required');
      assert.equal(r.parallel_tool_calls, false);
    });

    it('streamed, named and required: function_call events in order, arguments pieced together validate', async () => {
      for (const tool_choice of [NAMED, 'required']) {
        const body = BODY(engine.model, { tool_choice, parallel_tool_calls: false, stream: true, seed: 8 });
        const reply = await post(engine.url(), '/v1/responses', body);
        assert.equal(reply.status, 200, reply.text);
        const list = events(reply.text);
        const types = list.map((e) => e.type);
        const at = (t: string): number => types.indexOf(t);
        assert.equal(types[0], 'response.created');
        assert.ok(at('response.output_item.added') > 0, types.join());
        assert.ok(at('response.function_call_arguments.delta') > at('response.output_item.added'));
        assert.ok(at('response.function_call_arguments.done') > at('response.function_call_arguments.delta'));
        assert.ok(at('response.output_item.done') > at('response.function_call_arguments.done'));
        assert.equal(types.at(-1), 'response.completed');
        assert.deepEqual(
          list.map((e) => e['sequence_number']),
          list.map((_, i) => i),
        );
        const added = list[at('response.output_item.added')]?.['item'] as Item;
        const args = list
          .filter((e) => e.type === 'response.function_call_arguments.delta')
          .map((e) => e['delta'])
          .join('');
        const done = list[at('response.output_item.done')]?.['item'] as Item;
        assert.equal(added.id, done.id);
        assert.equal(added.call_id, done.call_id);
        assert.equal(args, done.arguments);
        checkCall(done, tool_choice === 'required' ? ['get_weather', 'search'] : ['search']);
        const final = list.at(-1)?.['response'] as ResponseJson | undefined;
        assert.deepEqual(final?.output, [done]);
      }
    });

    it('tool_choice auto, and tools without one: one function_call item by the rule, streamed and not', async () => {
      // The rule (tool-calls.ts autoToolChoice): the first listed tool named in the last user turn,
      // else the first tool. Before (stop 34) both were 400 naming tool_choice.
      const cases = [
        { extra: { tool_choice: 'auto' }, input: 'What is the weather in Paris?', name: 'get_weather' },
        { extra: {}, input: [{ role: 'user', content: 'Please search for Paris.' }], name: 'search' },
      ];
      for (const { extra, input, name } of cases) {
        const reply = await post(engine.url(), '/v1/responses', BODY(engine.model, { ...extra, input }));
        assert.equal(reply.status, 200, reply.text);
        const response = JSON.parse(reply.text) as ResponseJson;
        assert.equal(response.status, 'completed');
        assert.equal(response.output.length, 1);
        checkCall(response.output[0], [name]);
        assert.equal(response.tool_choice, 'auto');
        const streamed = await post(
          engine.url(),
          '/v1/responses',
          BODY(engine.model, { ...extra, input, stream: true }),
        );
        assert.equal(streamed.status, 200, streamed.text);
        const final = events(streamed.text).at(-1)?.['response'] as ResponseJson | undefined;
        assert.equal(final?.output.length, 1);
        checkCall(final?.output[0], [name]);
      }
    });

    it('auto beside text.format json_schema: a function_call first (format left aside), then JSON under the format; streamed and not', async () => {
      // The OpenAI Agents SDK with an outputType sends tools and text.format on every turn; to stop
      // 35 task G the call turn was 400 naming text.format.
      const text = { format: { type: 'json_schema', name: 'report', schema: REPORT, strict: true } };
      const ask = { role: 'user', content: 'What is the weather in Paris?' };
      for (const stream of [false, true]) {
        const final = async (reply: { status: number; text: string }): Promise<ResponseJson> => {
          assert.equal(reply.status, 200, reply.text);
          if (!stream) return JSON.parse(reply.text) as ResponseJson;
          const last = events(reply.text).at(-1);
          assert.equal(last?.type, 'response.completed', reply.text.slice(-400));
          return last?.['response'] as ResponseJson;
        };
        const first = await final(
          await post(engine.url(), '/v1/responses', BODY(engine.model, { text, stream, input: [ask] })),
        );
        assert.equal(first.status, 'completed');
        assert.equal(first.output.length, 1, JSON.stringify(first.output).slice(0, 400));
        const call = first.output[0] as Item;
        checkCall(call, ['get_weather']);
        const input = [
          ask,
          { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
          { type: 'function_call_output', call_id: call.call_id, output: '{"sky": "clear", "celsius": 21}' },
        ];
        const second = await final(
          await post(engine.url(), '/v1/responses', BODY(engine.model, { text, stream, input })),
        );
        assert.equal(second.status, 'completed', JSON.stringify(second.output).slice(0, 400));
        assert.equal(second.output.length, 1);
        const message = second.output[0] as Item & { content?: { type: string; text: string }[] };
        assert.equal(message.type, 'message');
        assert.equal(message.content?.[0]?.type, 'output_text');
        validatedJson(message.content?.[0]?.text ?? '', REPORT);
      }
    });

    it('tool_choice none: a text message, tools echoed', async () => {
      const reply = await post(
        engine.url(),
        '/v1/responses',
        BODY(engine.model, { tool_choice: 'none', max_output_tokens: 4 }),
      );
      assert.equal(reply.status, 200, reply.text);
      const r = JSON.parse(reply.text) as ResponseJson;
      assert.equal(r.output[0]?.type, 'message');
      assert.equal(r.tool_choice, 'none');
    });

    it('refused with 400: a schema the engines cannot hold, an unlisted name, a tool that is no function', async () => {
      const cases: { extra: Record<string, unknown>; param: string; code: string }[] = [
        {
          extra: {
            tools: [
              {
                type: 'function',
                name: 'f',
                parameters: { type: 'object', properties: { s: { type: 'string', pattern: '^a+$' } } },
              },
            ],
            tool_choice: { type: 'function', name: 'f' },
          },
          param: 'tools[0].parameters',
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
        },
        {
          extra: { tool_choice: { type: 'function', name: 'nope' } },
          param: 'tool_choice',
          code: 'SY_ERR_INVALID_ARGUMENT',
        },
        {
          // The chat form is no Responses tool.
          extra: { tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'required' },
          param: 'tools[0].name',
          code: 'SY_ERR_INVALID_ARGUMENT',
        },
        {
          // A hosted tool: a valid request the engines cannot serve.
          extra: { tools: [{ type: 'web_search' }], tool_choice: 'required' },
          param: 'tools[0]',
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
        },
      ];
      for (const { extra, param, code } of cases) {
        const reply = await post(engine.url(), '/v1/responses', BODY(engine.model, extra));
        assert.equal(reply.status, 400, reply.text);
        const e = assertErrorBody(reply.text, 400).error;
        assert.equal(e.param, param, reply.text);
        assert.equal(e.code, code, reply.text);
      }
    });

    it('a forced call beside text.format is made, the format dropped (as vLLM; 400 naming text.format to stop 36)', async () => {
      const reply = await post(
        engine.url(),
        '/v1/responses',
        BODY(engine.model, { tool_choice: NAMED, text: { format: { type: 'json_object' } } }),
      );
      assert.equal(reply.status, 200, reply.text);
      const output = (JSON.parse(reply.text) as { output: { type: string; name?: string }[] }).output;
      assert.deepEqual(
        output.map((o) => [o.type, o.name]),
        [['function_call', NAMED.name]],
      );
    });

    it('openai-node: responses.create and responses.stream with a named choice and required', async () => {
      const client = new OpenAI({ baseURL: `${engine.url()}/v1`, apiKey: 'x', maxRetries: 0 });
      const tools = TOOLS as OpenAI.Responses.FunctionTool[];
      for (const tool_choice of [NAMED, 'required'] as const) {
        const names = tool_choice === 'required' ? ['get_weather', 'search'] : ['search'];
        const params = {
          model: engine.model,
          input: 'Search.',
          max_output_tokens: 300,
          tools,
          tool_choice: tool_choice as
            | OpenAI.Responses.ToolChoiceFunction
            | OpenAI.Responses.ToolChoiceOptions,
          parallel_tool_calls: false,
        };
        const done = await client.responses.create(params);
        checkCall(done.output[0] as Item, names);
        const final = await client.responses.stream(params).finalResponse();
        checkCall(final.output[0] as Item, names);
      }
    });
  });
}
