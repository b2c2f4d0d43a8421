/**
 * End-to-end: structured output on both built-in engines, through a live gateway (task G, stop 34).
 * `response_format` (json_object, json_schema), the Responses API's `text.format`, vLLM's
 * `structured_outputs` / `guided_json` / `guided_choice`, on chat, completions and responses,
 * streamed and not. Before, every one of them was 400 SY_ERR_UNSUPPORTED_PARAMETER.
 *
 * The llama engine runs the tiny random-weight model: its text is gibberish, but under the grammar
 * it is JSON that validates against the schema. The sim answers the schema's minimal instance.
 * Each output is parsed and validated with zod's `fromJSONSchema` (zod is already a dependency).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import * as z from 'zod';
import { assertErrorBody, MODEL, post, simAndRecorder, sseData } from './support/cluster.ts';
import { validatedJson } from './support/json-schema.ts';
import { LLAMA_MODEL, llamaGateway } from './support/llama.ts';

const REAL = 'real-model';
const wire = simAndRecorder(REAL);
const llama = llamaGateway();

const ENGINES = [
  { name: 'sim', url: () => wire.gw.url, model: MODEL },
  { name: 'llama', url: () => llama.gw.url, model: LLAMA_MODEL },
] as const;

/** Nested object, enum, array, required; strings bounded so the random model's JSON closes soon. */
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    role: { enum: ['admin', 'user', 'guest'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 6 }, minItems: 1, maxItems: 3 },
    address: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 10 }, zip: { type: 'integer' } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
    active: { type: 'boolean' },
    stars: { type: 'integer', minimum: 1, maximum: 5 },
  },
  required: ['name', 'role', 'tags', 'address', 'stars'],
  additionalProperties: false,
} as const;

const CHAT = (model: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  model,
  messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
  max_tokens: 400,
  seed: 7,
  ...extra,
});
const COMPLETION = (model: string, extra: Record<string, unknown>): Record<string, unknown> => ({
  model,
  prompt: 'A person as JSON:',
  max_tokens: 400,
  seed: 7,
  ...extra,
});

interface ChatAnswer {
  choices: { message: { content: string }; text: string; finish_reason: string }[];
}

/** The text and last finish reason of a chat or completions SSE body. */
function streamed(text: string): { text: string; finish: string | null } {
  let out = '';
  let finish: string | null = null;
  for (const data of sseData(text)) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as {
      choices: { delta?: { content?: string }; text?: string; finish_reason: string | null }[];
    };
    for (const c of chunk.choices) {
      out += c.delta?.content ?? c.text ?? '';
      if (c.finish_reason !== null) finish = c.finish_reason;
    }
  }
  return { text: out, finish };
}

const personFormat = { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } };

for (const engine of ENGINES) {
  describe(`structured output on the ${engine.name} engine (through the gateway)`, () => {
    it('chat response_format json_schema: the content validates, finish_reason stop', async () => {
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { response_format: personFormat }),
      );
      assert.equal(reply.status, 200, reply.text);
      const choice = (JSON.parse(reply.text) as ChatAnswer).choices[0]!;
      validatedJson(choice.message.content, PERSON);
      assert.equal(choice.finish_reason, 'stop');
    });

    it('chat response_format json_schema, streamed', async () => {
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { response_format: personFormat, stream: true, seed: 8 }),
      );
      assert.equal(reply.status, 200, reply.text);
      const { text, finish } = streamed(reply.text);
      validatedJson(text, PERSON);
      assert.equal(finish, 'stop');
    });

    it('completions json_object, streamed and not: a JSON object', async () => {
      for (const stream of [false, true]) {
        const body = COMPLETION(engine.model, { response_format: { type: 'json_object' }, stream, seed: 3 });
        const reply = await post(engine.url(), '/v1/completions', body);
        assert.equal(reply.status, 200, reply.text);
        const { text, finish } = stream
          ? streamed(reply.text)
          : {
              text: (JSON.parse(reply.text) as ChatAnswer).choices[0]!.text,
              finish: (JSON.parse(reply.text) as ChatAnswer).choices[0]!.finish_reason,
            };
        validatedJson(text, { type: 'object' });
        assert.equal(finish, 'stop', `stream ${stream}`);
      }
    });

    it("vLLM's guided_json (as JSON text) and structured_outputs.json on completions", async () => {
      for (const extra of [
        { guided_json: JSON.stringify(PERSON) },
        { structured_outputs: { json: PERSON } },
      ]) {
        const reply = await post(engine.url(), '/v1/completions', COMPLETION(engine.model, extra));
        assert.equal(reply.status, 200, reply.text);
        validatedJson((JSON.parse(reply.text) as ChatAnswer).choices[0]!.text, PERSON);
      }
    });

    it('choices: guided_choice and structured_outputs.choice answer one of them', async () => {
      const choices = ['yes', 'no', 'maybe "so"'];
      const completion = await post(
        engine.url(),
        '/v1/completions',
        COMPLETION(engine.model, { guided_choice: choices }),
      );
      assert.equal(completion.status, 200, completion.text);
      const c = (JSON.parse(completion.text) as ChatAnswer).choices[0]!;
      assert.ok(choices.includes(c.text), c.text);
      assert.equal(c.finish_reason, 'stop');
      const chat = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { structured_outputs: { choice: choices }, stream: true }),
      );
      const { text, finish } = streamed(chat.text);
      assert.ok(choices.includes(text), text);
      assert.equal(finish, 'stop');
    });

    it('responses text.format json_schema, streamed and not; the format is echoed', async () => {
      const format = { type: 'json_schema', name: 'person', schema: PERSON, strict: true };
      const body = {
        model: engine.model,
        input: 'A person as JSON.',
        max_output_tokens: 400,
        seed: 7,
        text: { format },
      };
      const reply = await post(engine.url(), '/v1/responses', body);
      assert.equal(reply.status, 200, reply.text);
      const response = JSON.parse(reply.text) as {
        status: string;
        output: { content: { text: string }[] }[];
        text: { format: unknown };
      };
      assert.equal(response.status, 'completed');
      validatedJson(response.output[0]!.content[0]!.text, PERSON);
      assert.deepEqual(response.text.format, format);
      const events = await post(engine.url(), '/v1/responses', { ...body, stream: true, seed: 9 });
      assert.equal(events.status, 200, events.text);
      let text = '';
      let last = '';
      for (const data of sseData(events.text)) {
        const event = JSON.parse(data) as { type: string; delta?: string };
        if (event.type === 'response.output_text.delta') text += event.delta;
        last = event.type;
      }
      validatedJson(text, PERSON);
      assert.equal(last, 'response.completed');
    });

    it('max_tokens too small: finish_reason length, the JSON cut', async () => {
      const reply = await post(
        engine.url(),
        '/v1/chat/completions',
        CHAT(engine.model, { response_format: personFormat, max_tokens: 3 }),
      );
      assert.equal(reply.status, 200, reply.text);
      const choice = (JSON.parse(reply.text) as ChatAnswer).choices[0]!;
      assert.equal(choice.finish_reason, 'length');
      assert.throws(() => JSON.parse(choice.message.content));
    });

    it('a schema keyword the grammars cannot enforce is 400 naming it; malformed and oversized 400', async () => {
      const cases: { extra: Record<string, unknown>; code: string; param: string; message: RegExp }[] = [
        {
          extra: {
            response_format: {
              type: 'json_schema',
              json_schema: { name: 'x', schema: { type: 'string', pattern: '^a' } },
            },
          },
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
          param: 'response_format.json_schema.schema',
          message: /keyword 'pattern' at #\/pattern/,
        },
        {
          extra: { guided_json: { type: 'object', properties: { n: { type: 'integer', minimum: 3 } } } },
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
          param: 'guided_json',
          message: /'minimum' at #\/properties\/n\/minimum/,
        },
        {
          extra: {
            response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'text' } } },
          },
          code: 'SY_ERR_INVALID_ARGUMENT',
          param: 'response_format.json_schema.schema',
          message: /#\/type: expected one of/,
        },
        {
          extra: {
            response_format: {
              type: 'json_schema',
              json_schema: {
                name: 'big',
                schema: {
                  type: 'object',
                  properties: Object.fromEntries(
                    Array.from({ length: 2000 }, (_, i) => [`field_${i}`, { type: 'string' }]),
                  ),
                },
              },
            },
          },
          code: 'SY_ERR_INVALID_ARGUMENT',
          param: 'response_format.json_schema.schema',
          message: /above the bound of 32768/,
        },
        {
          // A fractional range no sign-and-digits grammar holds (an integer range is an enum).
          extra: {
            guided_json: { type: 'object', properties: { n: { type: 'number', minimum: 0.5, maximum: 2 } } },
          },
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
          param: 'guided_json',
          message: /'maximum' at #\/properties\/n\/maximum/,
        },
        {
          extra: { structured_outputs: { regex: '[a-z]+' } },
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
          param: 'structured_outputs',
          message: /'regex'/,
        },
        {
          extra: { response_format: { type: 'json_object' }, guided_choice: ['a', 'b'] },
          code: 'SY_ERR_INVALID_ARGUMENT',
          param: 'guided_choice',
          message: /only one structured output constraint/,
        },
        {
          extra: { response_format: { type: 'json_object' }, ignore_eos: true },
          code: 'SY_ERR_UNSUPPORTED_PARAMETER',
          param: 'ignore_eos',
          message: /structured output/,
        },
      ];
      for (const { extra, code, param, message } of cases) {
        for (const stream of [false, true]) {
          const reply = await post(
            engine.url(),
            '/v1/chat/completions',
            CHAT(engine.model, { ...extra, stream }),
          );
          const e = assertErrorBody(reply.text, 400, param).error;
          assert.equal(e.code, code, reply.text);
          assert.equal(e.param, param);
          assert.match(e.message as string, message);
        }
      }
      const responses = await post(engine.url(), '/v1/responses', {
        model: engine.model,
        input: 'x',
        text: { format: { type: 'json_schema', name: 'x', schema: { not: { type: 'null' } } } },
      });
      const e = assertErrorBody(responses.text, 400).error;
      assert.equal(e.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
      assert.equal(e.param, 'text.format.schema');
    });

    it("the openai Node SDK's chat.completions.parse with zodResponseFormat", async () => {
      const client = new OpenAI({ baseURL: `${engine.url()}/v1`, apiKey: 'unused', maxRetries: 0 });
      const Person = z.object({
        name: z.string().max(12),
        role: z.enum(['admin', 'user', 'guest']),
        tags: z.array(z.string().max(6)).min(1).max(3),
        pet: z.object({ kind: z.literal('cat'), age: z.number().int() }).nullable(),
      });
      const completion = await client.chat.completions.parse({
        model: engine.model,
        messages: [{ role: 'user', content: 'A person.' }],
        response_format: zodResponseFormat(Person, 'person'),
        max_tokens: 400,
        seed: 11,
      });
      const parsed = completion.choices[0]!.message.parsed;
      assert.ok(parsed !== null);
      assert.ok(Person.safeParse(parsed).success);
    });
  });
}

describe('JSON mode on the sim', () => {
  it("json_object with a schema in the prompt answers that schema's instance (the AI SDK's JSON mode)", async () => {
    const schema = JSON.stringify(PERSON);
    const reply = await post(wire.gw.url, '/v1/chat/completions', {
      model: MODEL,
      messages: [
        {
          role: 'system',
          content: `JSON schema:\n${schema}\nYou MUST answer with a JSON object that matches the JSON schema above.`,
        },
        { role: 'user', content: 'A person.' },
      ],
      response_format: { type: 'json_object' },
    });
    assert.equal(reply.status, 200, reply.text);
    const content = (JSON.parse(reply.text) as ChatAnswer).choices[0]!.message.content;
    validatedJson(content, PERSON);
    assert.notEqual(content, '{}');
  });
});

describe('pass-through', () => {
  it('a real backend gets response_format and guided_json bytes unchanged', async () => {
    const bytes =
      `{"model":"${REAL}","messages":[{"role":"user","content":"hi"}],"max_tokens":4,` +
      `"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"string","pattern":"^a"}}},` +
      `"guided_json":{"type":"object"}}`;
    const reply = await post(wire.gw.url, '/v1/chat/completions', bytes);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(wire.upstream.received.at(-1)?.body, bytes);
  });
});
