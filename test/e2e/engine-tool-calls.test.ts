/**
 * End-to-end: forced tool calls on both built-in engines' chat completions, through a live gateway
 * (task H, stop 34), as vLLM serves them without --enable-auto-tool-choice: a named
 * `tool_choice` and `"required"`, streamed and not; `auto` (and tools without a tool_choice) 400;
 * a parameters schema the engines cannot hold 400 naming the keyword; a tool-call history sent
 * back. Before, every request with `tools` (but `tool_choice: "none"`) was 400 naming `tools`.
 *
 * The llama engine runs the tiny random-weight model: under the grammar its arguments are JSON that
 * validates against the tool's schema. The sim answers the schema's minimal instance.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import * as z from 'zod';
import { assertErrorBody, MODEL, post, simAndRecorder, sseData } from './support/cluster.ts';
import { LLAMA_MODEL, llamaGateway } from './support/llama.ts';

const wire = simAndRecorder('real-model');
const llama = llamaGateway();

const ENGINES = [
  { name: 'sim', url: () => wire.gw.url, model: MODEL },
  { name: 'llama', url: () => llama.gw.url, model: LLAMA_MODEL },
] as const;

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

/** Parses `text` as JSON and validates it against `schema`. */
function validated(text: string, schema: object): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    assert.fail(`arguments not JSON: ${JSON.stringify(text.slice(0, 300))}`);
  }
  const check = z.fromJSONSchema(schema as never).safeParse(value);
  assert.ok(check.success, `${text} does not validate: ${JSON.stringify(check.error?.issues)}`);
  return value;
}

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
  validated(call.function.arguments, SCHEMAS[call.function.name] as object);
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

    it('tool_choice auto, and tools without a tool_choice: 400 naming tool_choice and what to send', async () => {
      for (const extra of [{ tool_choice: 'auto' }, {}]) {
        const reply = await post(engine.url(), '/v1/chat/completions', CHAT(engine.model, extra));
        assert.equal(reply.status, 400, reply.text);
        const e = assertErrorBody(reply.text, 400).error;
        assert.equal(e.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
        assert.equal(e.param, 'tool_choice');
        assert.match(e.message, /--enable-auto-tool-choice/);
        assert.match(e.message, /"required"/);
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
