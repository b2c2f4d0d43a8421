/**
 * End-to-end: agent loops of real clients against the built-in engines with `tool_choice: "auto"`
 * (sent, or tools with no tool_choice, which every agent framework sends), stop 35 (task G). Each
 * client's two requests were captured (a recording fetch handed to the client) while it ran a tool
 * round trip against `switchyard serve --engines 1` (sim), and are replayed here with fetch so the
 * test needs no client installed: the first turn must be answered with one call to the tool and
 * finish "tool_calls" (what makes each client run the tool), the second, which ends with the tool's
 * result, with text and no call (what ends each loop). To stop 34 the first turn was 400 naming
 * tool_choice. Both built-in engines, through a gateway. The clients' runs: docs/gateway.md.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { post } from './support/cluster.ts';
import { builtinEngineGateways } from './support/llama.ts';

const { engines: ENGINES } = builtinEngineGateways();

/** Each client's two chat bodies as sent, less `model`. */
const CAPTURED: { client: string; first: Record<string, unknown>; second: Record<string, unknown> }[] = [
  {
    client:
      'AI SDK 5.0.285 (@ai-sdk/openai-compatible 1.0.61) generateText({tools, stopWhen: stepCountIs(3)})',
    first: {
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather in a city',
            parameters: {
              $schema: 'http://json-schema.org/draft-07/schema#',
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
              additionalProperties: false,
            },
          },
        },
      ],
      tool_choice: 'auto',
    },
    second: {
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'chatcmpl-tool-733167b444f060a1c1a61ee8518d53cf',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":""}' },
            },
          ],
        },
        {
          role: 'tool',
          tool_call_id: 'chatcmpl-tool-733167b444f060a1c1a61ee8518d53cf',
          content: '{"city":"","celsius":21}',
        },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather in a city',
            parameters: {
              $schema: 'http://json-schema.org/draft-07/schema#',
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
              additionalProperties: false,
            },
          },
        },
      ],
      tool_choice: 'auto',
    },
  },
  {
    client: 'openai-node 6.49.0 chat.completions.runTools',
    first: {
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
            },
            description: 'weather',
          },
        },
      ],
      tool_choice: 'auto',
      stream: false,
    },
    second: {
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'chatcmpl-tool-a99b9310f82ba7d2689f198f4d70234c',
              type: 'function',
              function: { arguments: '{"city":""}', name: 'weather' },
            },
          ],
        },
        {
          role: 'tool',
          tool_call_id: 'chatcmpl-tool-a99b9310f82ba7d2689f198f4d70234c',
          content: '{"celsius": 21}',
        },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
            },
            description: 'weather',
          },
        },
      ],
      tool_choice: 'auto',
      stream: false,
    },
  },
  {
    client: 'LangChain JS @langchain/openai 1.5.8 bindTools, then a ToolMessage turn',
    first: {
      stream: false,
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
            },
          },
        },
      ],
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
    },
    second: {
      stream: false,
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
            },
          },
        },
      ],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: '',
          tool_calls: [
            {
              id: 'chatcmpl-tool-f9caef74c4fe81242b9db828d930a0fc',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":""}' },
            },
          ],
        },
        {
          role: 'tool',
          content: '{"celsius": 21}',
          tool_call_id: 'chatcmpl-tool-f9caef74c4fe81242b9db828d930a0fc',
        },
      ],
    },
  },
  {
    client: "OpenAI Agents JS 0.20.0, setOpenAIAPI('chat_completions'), one tool",
    first: {
      messages: [
        { content: 'Answer.', role: 'system' },
        { role: 'user', content: 'Weather in Paris?' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather in a city',
            parameters: {
              $schema: 'http://json-schema.org/draft-07/schema#',
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
              additionalProperties: false,
            },
            strict: true,
          },
        },
      ],
      stream: false,
    },
    second: {
      messages: [
        { content: 'Answer.', role: 'system' },
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'chatcmpl-tool-b08daff7e400a1c7132caa7abaa37585',
              type: 'function',
              function: { name: 'weather', arguments: '{"city":""}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'chatcmpl-tool-b08daff7e400a1c7132caa7abaa37585', content: '21 C in ' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'weather in a city',
            parameters: {
              $schema: 'http://json-schema.org/draft-07/schema#',
              type: 'object',
              properties: { city: { type: 'string', maxLength: 12 } },
              required: ['city'],
              additionalProperties: false,
            },
            strict: true,
          },
        },
      ],
      stream: false,
    },
  },
];

interface Answer {
  choices: {
    message: {
      content: string | null;
      tool_calls?: { id: string; function: { name: string; arguments: string } }[];
    };
    finish_reason: string;
  }[];
}

for (const engine of ENGINES)
  describe(`agent clients' tool round trips on the ${engine.name} engine (auto)`, () => {
    for (const { client, first, second } of CAPTURED)
      it(client, async () => {
        const call = await post(engine.url(), '/v1/chat/completions', { ...first, model: engine.model });
        assert.equal(call.status, 200, call.text);
        const called = (JSON.parse(call.text) as Answer).choices[0]!;
        assert.equal(called.finish_reason, 'tool_calls');
        assert.equal(called.message.tool_calls?.length, 1);
        assert.equal(called.message.tool_calls?.[0]?.function.name, 'weather');
        assert.equal(
          typeof (JSON.parse(called.message.tool_calls?.[0]?.function.arguments ?? '') as { city: unknown })
            .city,
          'string',
        );
        // max_tokens bounds the random model's text; the sim's answer is as the client asked.
        const extra = engine.name === 'llama' ? { max_tokens: 8 } : {};
        const text = await post(engine.url(), '/v1/chat/completions', {
          ...second,
          ...extra,
          model: engine.model,
        });
        assert.equal(text.status, 200, text.text);
        const answered = (JSON.parse(text.text) as Answer).choices[0]!;
        assert.equal(answered.message.tool_calls, undefined);
        assert.ok((answered.message.content ?? '').length > 0);
        assert.notEqual(answered.finish_reason, 'tool_calls');
      });
  });
