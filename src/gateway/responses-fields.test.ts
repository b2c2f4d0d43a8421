import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { parseBodyFields } from './request-build.ts';

const MODEL = 'llama-3.1-8b';
const SYSTEM = 'You are a terse assistant who answers questions about rail yards and their switching.';
const QUESTION = 'What does a switchyard do with the cars of an incoming train, and in which order?';

function fields(body: unknown) {
  return parseBodyFields('responses', Buffer.from(JSON.stringify(body)));
}

/** The SwitchyardError `body` is refused with. */
function refusal(body: unknown): SwitchyardError {
  try {
    fields(body);
  } catch (error) {
    assert.ok(error instanceof SwitchyardError, String(error));
    return error;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

describe('parseBodyFields for a Responses body', () => {
  it('routes instructions + input as chat routes the same conversation (same prefix chain and tokens)', () => {
    const chat = parseBodyFields(
      'chat',
      Buffer.from(
        JSON.stringify({
          model: MODEL,
          messages: [
            { role: 'system', content: SYSTEM },
            { role: 'user', content: QUESTION },
          ],
        }),
      ),
    );
    const asString = fields({ model: MODEL, instructions: SYSTEM, input: QUESTION });
    const asParts = fields({
      model: MODEL,
      instructions: SYSTEM,
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: QUESTION.slice(0, 20) },
            { type: 'input_text', text: QUESTION.slice(20) },
          ],
        },
      ],
    });
    // Parts join by "\n" (vLLM parses a Responses message with its chat parser), as a chat
    // message's parts do.
    const chatParts = parseBodyFields(
      'chat',
      Buffer.from(
        JSON.stringify({
          model: MODEL,
          messages: [
            { role: 'system', content: SYSTEM },
            {
              role: 'user',
              content: [
                { type: 'text', text: QUESTION.slice(0, 20) },
                { type: 'text', text: QUESTION.slice(20) },
              ],
            },
          ],
        }),
      ),
    );
    assert.ok(chat.prefix.hashes.length >= 2, 'the text spans whole blocks');
    assert.notDeepEqual(chatParts.prefix, chat.prefix);
    for (const [r, same] of [
      [asString, chat],
      [asParts, chatParts],
    ] as const) {
      assert.deepEqual(r.prefix, same.prefix);
      assert.equal(r.inputTokens, same.inputTokens);
    }
  });

  it('a follow-up turn extends the chain of the turn before it', () => {
    const first = fields({ model: MODEL, instructions: SYSTEM, input: QUESTION });
    const second = fields({
      model: MODEL,
      instructions: SYSTEM,
      input: [
        { role: 'user', content: QUESTION },
        {
          type: 'message',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'It sorts them by destination.' }],
        },
        { role: 'user', content: 'And then?' },
      ],
    });
    assert.deepEqual(second.prefix.hashes.slice(0, first.prefix.hashes.length), first.prefix.hashes);
    assert.ok(second.inputTokens > first.inputTokens);
  });

  it('takes any integer priority, as vLLM does, clamped for the gateway own ordering', () => {
    const big = fields({ model: MODEL, input: 'hi', priority: 5_000_000 });
    assert.equal(big.priority, 1_000_000);
    const low = fields({ model: MODEL, input: 'hi', priority: Number.MIN_SAFE_INTEGER });
    assert.equal(low.priority, -1_000_000);
  });

  it('routes a tool round trip (function_call, function_call_output items) as chat routes the same turns', () => {
    const TOOL_OUTPUT = 'sunny and 21 degrees in Paris, light wind from the west';
    const responses = fields({
      model: MODEL,
      instructions: SYSTEM,
      input: [
        { role: 'user', content: QUESTION },
        {
          type: 'function_call',
          id: 'fc_1',
          call_id: 'call_1',
          name: 'weather',
          arguments: '{"city":"Paris"}',
          status: 'completed',
        },
        {
          type: 'function_call_output',
          call_id: 'call_1',
          output: [{ type: 'input_text', text: TOOL_OUTPUT }],
        },
      ],
    });
    const chat = parseBodyFields(
      'chat',
      Buffer.from(
        JSON.stringify({
          model: MODEL,
          messages: [
            { role: 'system', content: SYSTEM },
            { role: 'user', content: QUESTION },
            {
              role: 'assistant',
              content: null,
              tool_calls: [
                {
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'weather', arguments: '{"city":"Paris"}' },
                },
              ],
            },
            { role: 'tool', tool_call_id: 'call_1', content: TOOL_OUTPUT },
          ],
        }),
      ),
    );
    assert.deepEqual(responses.prefix, chat.prefix);
    assert.equal(responses.inputTokens, chat.inputTokens);
    // The call and its output are routing text: more than the question alone.
    const bare = fields({ model: MODEL, instructions: SYSTEM, input: [{ role: 'user', content: QUESTION }] });
    assert.ok(
      responses.inputTokens > bare.inputTokens + 20,
      `${responses.inputTokens} vs ${bare.inputTokens}`,
    );
  });

  it('reads model, max_output_tokens, stream, priority and user; items without a role but a tool round trip carry no text', () => {
    const r = fields({
      model: MODEL,
      input: [
        { role: 'user', content: 'hi' },
        { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'x'.repeat(400) }] },
      ],
      max_output_tokens: 12,
      stream: true,
      priority: -3,
      user: 'u1',
      reasoning: { effort: 'low' },
    });
    assert.equal(r.model, MODEL);
    assert.equal(r.maxTokens, 12);
    assert.equal(r.stream, true);
    assert.equal(r.priority, -3);
    assert.equal(r.user, 'u1');
    assert.ok(r.inputTokens < 10, 'the reasoning item is not routing text');
    const plain = fields({ model: MODEL, input: 'hi', max_output_tokens: null, stream: null });
    assert.equal(plain.maxTokens, undefined);
    assert.equal(plain.stream, false);
  });

  it('refuses a bad body with SY_ERR_INVALID_ARGUMENT naming the field', () => {
    const cases: [unknown, string][] = [
      [{ model: MODEL }, 'input'],
      [{ model: MODEL, input: null }, 'input'],
      [{ model: MODEL, input: 5 }, 'input'],
      [{ model: MODEL, input: [] }, 'input'],
      [{ model: MODEL, input: ['hi'] }, 'input[0]'],
      [{ model: MODEL, input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
      [{ model: MODEL, input: [{ role: 'user', content: 5 }] }, 'input[0].content'],
      [{ model: MODEL, input: [{ role: 'user', content: [{ text: 'x' }] }] }, 'input[0].content[0]'],
      [
        { model: MODEL, input: [{ role: 'user', content: [{ type: 'input_text', text: 5 }] }] },
        'input[0].content[0].text',
      ],
      // A tool round trip's items, malformed (OpenAI 400s these too).
      [{ model: MODEL, input: [{ type: 'function_call', name: 'f', arguments: '{}' }] }, 'input[0].call_id'],
      [{ model: MODEL, input: [{ type: 'function_call', call_id: 'c', arguments: '{}' }] }, 'input[0].name'],
      [
        { model: MODEL, input: [{ type: 'function_call', call_id: 'c', name: 'f', arguments: {} }] },
        'input[0].arguments',
      ],
      [
        { model: MODEL, input: [{ type: 'function_call_output', call_id: '', output: 'x' }] },
        'input[0].call_id',
      ],
      [
        { model: MODEL, input: [{ type: 'function_call_output', call_id: 'c', output: 5 }] },
        'input[0].output',
      ],
      [
        { model: MODEL, input: [{ type: 'function_call_output', call_id: 'c', output: [{ text: 'x' }] }] },
        'input[0].output[0]',
      ],
      [{ model: MODEL, input: 'hi', instructions: 5 }, 'instructions'],
      [{ model: MODEL, input: 'hi', previous_response_id: 'resp_1' }, 'previous_response_id'],
      [{ model: MODEL, input: 'hi', max_output_tokens: 0 }, 'max_output_tokens'],
      [{ model: MODEL, input: 'hi', stream: 'yes' }, 'stream'],
      [{ model: MODEL, input: 'hi', priority: 1.5 }, 'priority'],
      [{ input: 'hi' }, 'model'],
      [[1, 2], 'body'],
    ];
    for (const [body, param] of cases) {
      const e = refusal(body);
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT', JSON.stringify(body));
      assert.equal(e.status, 400);
      assert.equal(e.toJSON().error.param, param, JSON.stringify(body));
    }
  });
});

describe("parseBodyFields for a Responses body: vLLM's cache_salt", () => {
  it('salts the chain as chat salts the same conversation, and refuses a bad salt naming it', () => {
    const chat = (salt: string) =>
      parseBodyFields(
        'chat',
        Buffer.from(
          JSON.stringify({
            model: MODEL,
            messages: [
              { role: 'system', content: SYSTEM },
              { role: 'user', content: QUESTION },
            ],
            cache_salt: salt,
          }),
        ),
      );
    const plain = fields({ model: MODEL, instructions: SYSTEM, input: QUESTION });
    const salted = fields({ model: MODEL, instructions: SYSTEM, input: QUESTION, cache_salt: 'a' });
    assert.deepEqual(salted.prefix, chat('a').prefix);
    assert.notDeepEqual(salted.prefix.hashes, plain.prefix.hashes);
    assert.notDeepEqual(salted.prefix.hashes, chat('b').prefix.hashes);
    for (const salt of ['', 3, ['a']]) {
      const error = refusal({ model: MODEL, input: QUESTION, cache_salt: salt });
      assert.equal(error.toJSON().error.param, 'cache_salt');
    }
  });
});
