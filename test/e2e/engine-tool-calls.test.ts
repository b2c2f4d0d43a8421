/**
 * End-to-end: forced tool calls on both built-in engines' chat completions, through a live gateway
 * (task H, stop 34), as vLLM serves them: a named `tool_choice` and `"required"`, streamed and not;
 * a parameters schema the engines cannot hold 400 naming the keyword; a tool-call history sent
 * back. Before, every request with `tools` (but `tool_choice: "none"`) was 400 naming `tools`.
 * Stop 35 (task G): `auto` (and tools without a tool_choice, which were 400) follow the rule of
 * tool-calls.ts autoToolChoice, answered as vLLM's auto tool parser answers; a tool result after
 * the last user turn is answered in text and counts in the prompt; the legacy `functions` (400
 * before) are served in their own answer shape; openai-node's runTools completes a round trip.
 *
 * The llama engine runs the tiny random-weight model: under the grammar its arguments are JSON that
 * validates against the tool's schema. The sim answers the schema's minimal instance.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { assertErrorBody, MODEL, post, sseData } from './support/cluster.ts';
import { validatedJson } from './support/json-schema.ts';
import { builtinEngineGateways } from './support/llama.ts';

const { sim: wire, engines: ENGINES } = builtinEngineGateways();

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
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: WEATHER } },
  { type: 'function', function: { name: 'search', parameters: SEARCH } },
];
const NAMED = { type: 'function', function: { name: 'search' } };

const CHAT = (model: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  model,
  messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
  max_tokens: 300,
  seed: 7,
  tools: TOOLS,
  ...extra,
});

interface Call {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}
interface Answer {
  choices: { message: { content: string | null; tool_calls?: Call[] }; finish_reason: string }[];
}

/** A streamed answer's calls, as a client accumulates them by index, and its finish reason. */
function streamedCalls(text: string): {
  calls: Call[];
  content: string;
  finish: string | null;
  first: unknown;
} {
  const calls: Call[] = [];
  let content = '';
  let finish: string | null = null;
  let first: unknown;
  for (const data of sseData(text)) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as {
      choices: {
        delta: {
          content?: string;
          tool_calls?: {
            index: number;
            id?: string;
            type?: string;
            function: { name?: string; arguments?: string };
          }[];
        };
        finish_reason: string | null;
      }[];
    };
    for (const c of chunk.choices) {
      content += c.delta.content ?? '';
      for (const d of c.delta.tool_calls ?? []) {
        if (calls[d.index] === undefined) {
          first ??= d;
          assert.ok(
            d.id !== undefined && d.function.name !== undefined,
            'a call first comes with id and name',
          );
          calls[d.index] = {
            id: d.id,
            type: d.type ?? '',
            function: { name: d.function.name, arguments: '' },
          };
        }
        (calls[d.index] as Call).function.arguments += d.function.arguments ?? '';
      }
      if (c.finish_reason !== null) finish = c.finish_reason;
    }
  }
  return { calls, content, finish, first };
}

function checkCall(call: Call | undefined, names: readonly string[]): void {
  assert.ok(call !== undefined, 'a tool call');
  assert.match(call.id, /^chatcmpl-tool-[0-9a-f]{32}$/);
  assert.equal(call.type, 'function');
  assert.ok(names.includes(call.function.name), call.function.name);
  validatedJson(call.function.arguments, SCHEMAS[call.function.name] as object);
}

for (const engine of ENGINES) {
  describe(`forced tool calls on the ${engine.name} engine (through the gateway)`, () => {
    it('named tool_choice: one call whose arguments validate, content "", finish stop', async () => {
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { tool_choice: NAMED }),
      );
      assert.equal(reply.status, 200, reply.text);
      const choice = (JSON.parse(reply.text) as Answer).choices[0]!;
      assert.equal(choice.message.tool_calls?.length, 1);
      checkCall(choice.message.tool_calls?.[0], ['search']);
      assert.equal(choice.message.content, '');
      assert.equal(choice.finish_reason, 'stop');
    });

    it('named tool_choice, streamed: id, type and name first, then argument pieces', async () => {
      const body = CHAT(engine.model, { tool_choice: NAMED, stream: true, seed: 8 });
      const reply = await post(engine.url(), '/v1/chat/completions', body);
      assert.equal(reply.status, 200, reply.text);
      const { calls, content, finish, first } = streamedCalls(reply.text);
      assert.equal(calls.length, 1);
      checkCall(calls[0], ['search']);
      assert.equal((first as { type?: string }).type, 'function');
      assert.equal(content, '');
      assert.equal(finish, 'stop');
    });

    it('tool_choice required: calls to listed tools, finish tool_calls, streamed and not', async () => {
      for (const stream of [false, true]) {
        const body = CHAT(engine.model, { tool_choice: 'required', parallel_tool_calls: false, stream });
        const reply = await post(engine.url(), '/v1/chat/completions', body);
        assert.equal(reply.status, 200, reply.text);
        const { calls, finish } = stream
          ? streamedCalls(reply.text)
          : (() => {
              const choice = (JSON.parse(reply.text) as Answer).choices[0]!;
              return { calls: choice.message.tool_calls ?? [], finish: choice.finish_reason };
            })();
        assert.equal(calls.length, 1, `stream ${stream}: ${reply.text.slice(0, 400)}`);
        checkCall(calls[0], ['get_weather', 'search']);
        assert.equal(finish, 'tool_calls', `stream ${stream}`);
      }
    });

    it('tool_choice auto, and tools without one: one call by the rule, content null, finish tool_calls, streamed and not', async () => {
      // The rule (tool-calls.ts autoToolChoice): the first listed tool named in the last user turn,
      // else the first tool.
      const cases = [
        { extra: { tool_choice: 'auto' }, ask: 'What is the weather in Paris?', name: 'get_weather' },
        { extra: {}, ask: 'Please search for Paris.', name: 'search' },
      ];
      for (const { extra, ask, name } of cases)
        for (const stream of [false, true]) {
          const body = CHAT(engine.model, { ...extra, stream, messages: [{ role: 'user', content: ask }] });
          const reply = await post(engine.url(), '/v1/chat/completions', body);
          assert.equal(reply.status, 200, reply.text);
          if (stream) {
            const { calls, content, finish } = streamedCalls(reply.text);
            assert.equal(calls.length, 1);
            checkCall(calls[0], [name]);
            assert.equal(content, '');
            assert.equal(finish, 'tool_calls');
          } else {
            const choice = (JSON.parse(reply.text) as Answer).choices[0]!;
            assert.equal(choice.message.tool_calls?.length, 1);
            checkCall(choice.message.tool_calls?.[0], [name]);
            // As vLLM's auto tool parsers answer a call with no text before it (hermes, llama3_json).
            assert.equal(choice.message.content, null);
            assert.equal(choice.finish_reason, 'tool_calls');
          }
        }
    });

    it('auto after a tool result: text; the calls and results count in the prompt', async () => {
      const first = await post(engine.url(), '/v1/chat/completions', CHAT(engine.model, {}));
      assert.equal(first.status, 200, first.text);
      const call = (JSON.parse(first.text) as Answer).choices[0]!.message.tool_calls?.[0] as Call;
      const history = [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"sky": "clear", "celsius": 21}' },
      ];
      for (const stream of [false, true]) {
        const reply = await post(
          engine.url(),
          '/v1/chat/completions',
          CHAT(engine.model, {
            messages: history,
            max_tokens: 5,
            stream,
            ...(stream ? { stream_options: { include_usage: true } } : {}),
          }),
        );
        assert.equal(reply.status, 200, reply.text);
        if (stream) {
          const { calls, content, finish } = streamedCalls(reply.text);
          assert.equal(calls.length, 0);
          assert.ok(content.length > 0);
          assert.equal(finish, 'length');
        } else {
          const choice = (JSON.parse(reply.text) as Answer).choices[0]!;
          assert.equal(choice.message.tool_calls, undefined);
          assert.equal(typeof choice.message.content, 'string');
          assert.equal(choice.finish_reason, 'length');
        }
      }
      // The assistant's call is in the prompt: the same history without it counts fewer tokens.
      const usage = async (messages: unknown[]): Promise<number> => {
        const reply = await post(
          engine.url(),
          '/v1/chat/completions',
          CHAT(engine.model, { messages, max_tokens: 1, tool_choice: 'none' }),
        );
        assert.equal(reply.status, 200, reply.text);
        return (JSON.parse(reply.text) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
      };
      const stripped = [history[0], { role: 'assistant', content: null }, history[2]];
      const noResult = [history[0], history[1], { role: 'tool', tool_call_id: call.id, content: '' }];
      const full = await usage(history);
      assert.ok(full > (await usage(stripped)), 'the tool call counts');
      assert.ok(full > (await usage(noResult)), 'the tool result counts');
    });

    it('legacy functions: named answers message.function_call (finish stop), auto finish function_call, then text', async () => {
      const functions = TOOLS.map((t) => t.function);
      const legacy = (extra: Record<string, unknown>): Record<string, unknown> => {
        const { tools: _, ...rest } = CHAT(engine.model, extra);
        return { ...rest, functions };
      };
      interface Legacy {
        choices: {
          message: { content: string | null; function_call?: { name: string; arguments: string } };
          finish_reason: string;
        }[];
      }
      for (const [extra, name, finish] of [
        [{ function_call: { name: 'search' } }, 'search', 'stop'],
        [{ function_call: 'auto' }, 'get_weather', 'function_call'],
        [{}, 'get_weather', 'function_call'],
      ] as const) {
        const reply = await post(engine.url(), '/v1/chat/completions', legacy(extra));
        assert.equal(reply.status, 200, reply.text);
        const choice = (JSON.parse(reply.text) as Legacy).choices[0]!;
        assert.equal(choice.message.content, null);
        assert.equal(choice.message.function_call?.name, name);
        validatedJson(choice.message.function_call?.arguments ?? '', SCHEMAS[name] as object);
        assert.equal((choice.message as { tool_calls?: unknown }).tool_calls, undefined);
        assert.equal(choice.finish_reason, finish);
      }
      // Streamed: the name first, then argument pieces, as OpenAI streamed function_call.
      const streamed = await post(engine.url(), '/v1/chat/completions', legacy({ stream: true }));
      assert.equal(streamed.status, 200, streamed.text);
      let fnName = '';
      let args = '';
      let finish: string | null = null;
      for (const data of sseData(streamed.text)) {
        if (data === '[DONE]') continue;
        const c = (
          JSON.parse(data) as {
            choices: {
              delta: { function_call?: { name?: string; arguments?: string } };
              finish_reason: string | null;
            }[];
          }
        ).choices[0]!;
        if (c.delta.function_call?.name !== undefined) {
          assert.equal(fnName, '', 'the name comes once');
          fnName = c.delta.function_call.name;
        }
        args += c.delta.function_call?.arguments ?? '';
        finish = c.finish_reason ?? finish;
      }
      assert.equal(fnName, 'get_weather');
      validatedJson(args, WEATHER);
      assert.equal(finish, 'function_call');
      // The function's result sent back (role function): text.
      const messages = [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: null, function_call: { name: fnName, arguments: args } },
        { role: 'function', name: fnName, content: '{"sky": "clear"}' },
      ];
      const after = await post(engine.url(), '/v1/chat/completions', legacy({ messages, max_tokens: 4 }));
      assert.equal(after.status, 200, after.text);
      const text = (JSON.parse(after.text) as Legacy).choices[0]!;
      assert.equal(text.message.function_call, undefined);
      assert.equal(typeof text.message.content, 'string');
      // A malformed choice is 400 naming it.
      const bad = await post(engine.url(), '/v1/chat/completions', legacy({ function_call: 'required' }));
      assert.equal(bad.status, 400, bad.text);
      assert.equal(assertErrorBody(bad.text, 400).error.param, 'function_call');
    });

    // The sim only: runTools throws on an answer that ends by "length" (LengthFinishReasonError, as
    // against OpenAI), and the llama engine's tiny random-weight model never ends on its own.
    it('openai-node runTools with auto: a call, the tool run, then a text answer', {
      skip: engine.name === 'llama',
    }, async () => {
      const client = new OpenAI({ baseURL: `${engine.url()}/v1`, apiKey: 'x', maxRetries: 0 });
      const seen: unknown[] = [];
      const runner = client.chat.completions.runTools({
        model: engine.model,
        messages: [{ role: 'user', content: 'Please search for Paris.' }],
        // No max_tokens: the answer ends as a model ending on its own ("stop"); runTools throws on a
        // "length" answer (LengthFinishReasonError), as it does against OpenAI.
        tools: [
          {
            type: 'function',
            function: {
              name: 'search',
              description: 'Search',
              parameters: SEARCH as unknown as Record<string, unknown>,
              // Without parse the SDK hands over the arguments' text.
              function: (args: string) => {
                seen.push(JSON.parse(args));
                return '{"hits": 2}';
              },
            },
          },
        ],
      });
      const content = await runner.finalContent();
      assert.equal(seen.length, 1);
      validatedJson(JSON.stringify(seen[0]), SEARCH);
      assert.equal(typeof content, 'string');
      const roles = runner.messages.map((m) => m.role);
      assert.deepEqual(roles, ['user', 'assistant', 'tool', 'assistant']);
    });

    it('auto beside response_format json_schema: a call first (format left aside), then JSON under the format; a forced call beside it drops the format', async () => {
      // The OpenAI Agents SDK with an outputType sends tools and the format on every turn; to stop
      // 35 task G the call turn was 400 naming response_format.
      const format = {
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'report', schema: REPORT, strict: true },
        },
      };
      for (const stream of [false, true]) {
        const first = await post(
          engine.url(),
          '/v1/chat/completions',
          CHAT(engine.model, { ...format, stream }),
        );
        assert.equal(first.status, 200, first.text);
        let call: Call;
        if (stream) {
          const { calls, content, finish } = streamedCalls(first.text);
          assert.equal(calls.length, 1, first.text.slice(0, 400));
          assert.equal(content, '');
          assert.equal(finish, 'tool_calls');
          call = calls[0] as Call;
        } else {
          const choice = (JSON.parse(first.text) as Answer).choices[0]!;
          assert.equal(choice.message.tool_calls?.length, 1, first.text.slice(0, 400));
          assert.equal(choice.message.content, null);
          assert.equal(choice.finish_reason, 'tool_calls');
          call = choice.message.tool_calls?.[0] as Call;
        }
        checkCall(call, ['get_weather']);
        const messages = [
          { role: 'user', content: 'What is the weather in Paris?' },
          { role: 'assistant', content: null, tool_calls: [{ ...call, type: 'function' }] },
          { role: 'tool', tool_call_id: call.id, content: '{"sky": "clear", "celsius": 21}' },
        ];
        const second = await post(
          engine.url(),
          '/v1/chat/completions',
          CHAT(engine.model, { ...format, stream, messages }),
        );
        assert.equal(second.status, 200, second.text);
        const { calls, content, finish } = stream
          ? streamedCalls(second.text)
          : (() => {
              const choice = (JSON.parse(second.text) as Answer).choices[0]!;
              return {
                calls: choice.message.tool_calls ?? [],
                content: choice.message.content ?? '',
                finish: choice.finish_reason,
              };
            })();
        assert.equal(calls.length, 0);
        assert.equal(finish, 'stop', `stream ${stream}: ${content}`);
        validatedJson(content, REPORT);
      }
      // A forced call beside the format is made, the format dropped, as vLLM does (its tool
      // parser's adjust_request; the OpenAI Agents SDK with toolChoice "required" and an
      // outputType sends both). To stop 36 it was 400 naming response_format.
      for (const tool_choice of [NAMED, 'required']) {
        const forced = await post(
          engine.url(),
          '/v1/chat/completions',
          CHAT(engine.model, { ...format, tool_choice }),
        );
        assert.equal(forced.status, 200, forced.text);
        const choice = (JSON.parse(forced.text) as Answer).choices[0]!;
        assert.equal(choice.finish_reason, tool_choice === 'required' ? 'tool_calls' : 'stop', forced.text);
        checkCall(
          choice.message.tool_calls?.[0],
          tool_choice === 'required' ? ['get_weather', 'search'] : ['search'],
        );
      }
    });

    it('tool_choice none: served as text, tools ignored', async () => {
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { tool_choice: 'none', max_tokens: 4 }),
      );
      assert.equal(reply.status, 200, reply.text);
      const choice = (JSON.parse(reply.text) as Answer).choices[0]!;
      assert.equal(choice.message.tool_calls, undefined);
      assert.equal(typeof choice.message.content, 'string');
    });

    it('a parameters schema the engines cannot hold: 400 naming the keyword; an unlisted name: 400', async () => {
      const tools = [
        {
          type: 'function',
          function: {
            name: 'f',
            parameters: { type: 'object', properties: { s: { type: 'string', pattern: '^a+$' } } },
          },
        },
      ];
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { tools, tool_choice: { type: 'function', function: { name: 'f' } } }),
      );
      assert.equal(reply.status, 400, reply.text);
      const e = assertErrorBody(reply.text, 400).error;
      assert.equal(e.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
      assert.match(e.message, /pattern/);
      assert.match(e.param ?? '', /^tools\[0\]/);
      const unlisted = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { tool_choice: { type: 'function', function: { name: 'nope' } } }),
      );
      assert.equal(unlisted.status, 400, unlisted.text);
      assert.equal(assertErrorBody(unlisted.text, 400).error.param, 'tool_choice');
    });

    it('a tool-call history sent back (assistant tool_calls + tool message), then a forced call again', async () => {
      const first = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { tool_choice: NAMED }),
      );
      assert.equal(first.status, 200, first.text);
      const message = (JSON.parse(first.text) as Answer).choices[0]!.message;
      const call = message.tool_calls?.[0] as Call;
      const messages = [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"results": 3}' },
      ];
      const again = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, {
          messages,
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
        }),
      );
      assert.equal(again.status, 200, again.text);
      checkCall((JSON.parse(again.text) as Answer).choices[0]!.message.tool_calls?.[0], ['get_weather']);
    });

    it('openai-node: a named tool_choice and required through the SDK', async () => {
      const client = new OpenAI({ baseURL: `${engine.url()}/v1`, apiKey: 'x', maxRetries: 0 });
      const tools = TOOLS as OpenAI.Chat.Completions.ChatCompletionTool[];
      for (const tool_choice of [NAMED, 'required'] as const) {
        const done = await client.chat.completions.create({
          model: engine.model,
          messages: [{ role: 'user', content: 'Search.' }],
          max_tokens: 300,
          tools,
          tool_choice: tool_choice as OpenAI.Chat.Completions.ChatCompletionToolChoiceOption,
          parallel_tool_calls: false,
        });
        const call = done.choices[0]?.message.tool_calls?.[0] as Call | undefined;
        checkCall(call, tool_choice === 'required' ? ['get_weather', 'search'] : ['search']);
      }
    });
  });
}

describe('tools off chat completions', () => {
  it('completions with tools stays 400 naming tools', async () => {
    const reply = await post(wire.gw.url, '/v1/completions', {
      model: MODEL,
      prompt: 'x',
      max_tokens: 4,
      tools: TOOLS,
      tool_choice: 'required',
    });
    assert.equal(reply.status, 400, reply.text);
    assert.equal(assertErrorBody(reply.text, 400).error.param, 'tools');
  });
});
