import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseCompletionBody } from '../core/openai-api.ts';
import { CHARS_PER_TOKEN, TEXT_BLOCK_CHARS, textPrefixChain } from '../core/text-prefix.ts';
import { parseBody, parseRouting, ROUTING_PREFIX_BLOCKS_MAX, routingOf } from './fast-parse.ts';

/** Both parsers' outcome: the parsed request, or the error's code, param and message. */
function outcome(f: () => unknown): unknown {
  try {
    return { ok: f() };
  } catch (error) {
    const e = error as { code?: string; message: string; toJSON?: () => unknown };
    return { error: e.toJSON?.() ?? e.message };
  }
}

const anyValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom(0, 1, 2, 1.5, 2.5, -1, 1e7, 2 ** 20, 2 ** 20 + 1, 2 ** 60, 1e6, -1e6, 1e6 + 1),
  fc.string({ maxLength: 8 }),
  fc.constant('x'.repeat(300)),
  fc.constant({}),
  fc.constant([]),
  fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }),
);

/** A field that is mostly valid (so whole bodies often are) and sometimes anything. */
function mostly<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: anyValue, weight: 1 });
}

const role = mostly(fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool', 'function'));
const part = fc.oneof(
  { arbitrary: fc.record({ type: fc.constant('text'), text: fc.string({ maxLength: 80 }) }), weight: 6 },
  {
    arbitrary: fc.record({ type: fc.constant('image_url'), image_url: fc.constant({ url: 'x' }) }),
    weight: 2,
  },
  { arbitrary: fc.record({ type: anyValue, text: anyValue }, { requiredKeys: [] }), weight: 1 },
  // Text parts whose text is not in `text`: an assistant's refusal, a reasoning model's thinking.
  {
    arbitrary: fc.record(
      { type: fc.constant('refusal'), refusal: mostly(fc.string({ maxLength: 40 })), text: anyValue },
      { requiredKeys: ['type'] },
    ),
    weight: 1,
  },
  {
    arbitrary: fc.record(
      { type: fc.constant('thinking'), thinking: mostly(fc.string({ maxLength: 40 })), text: anyValue },
      { requiredKeys: ['type'] },
    ),
    weight: 1,
  },
);
const message = mostly(
  fc.record(
    {
      role,
      content: mostly(
        fc.oneof(fc.string({ maxLength: 200 }), fc.array(part, { maxLength: 3 }), fc.constant(null)),
      ),
      name: mostly(fc.string({ maxLength: 5 })),
      // An assistant turn's calls (chat's and the legacy form), rendered after the content.
      tool_calls: mostly(
        fc.array(
          fc.oneof(
            fc.record({
              id: fc.string({ maxLength: 4 }),
              type: fc.constant('function'),
              function: fc.record(
                {
                  name: mostly(fc.string({ maxLength: 6 })),
                  arguments: mostly(fc.string({ maxLength: 30 })),
                },
                { requiredKeys: [] },
              ),
            }),
            anyValue,
          ),
          { maxLength: 2 },
        ),
      ),
      function_call: mostly(
        fc.record(
          { name: mostly(fc.string({ maxLength: 6 })), arguments: mostly(fc.string({ maxLength: 30 })) },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: ['role'] },
  ),
);

const common = {
  model: fc.oneof(
    { arbitrary: fc.constant('m'), weight: 12 },
    { arbitrary: fc.constant(''), weight: 1 },
    { arbitrary: anyValue, weight: 1 },
  ),
  stream: mostly(fc.boolean()),
  stream_options: mostly(fc.record({ include_usage: mostly(fc.boolean()) }, { requiredKeys: [] })),
  max_tokens: mostly(fc.integer({ min: 1, max: 64 })),
  temperature: mostly(fc.double({ min: 0, max: 2, noNaN: true })),
  top_p: mostly(fc.double({ min: 0, max: 1, noNaN: true, minExcluded: true })),
  n: mostly(fc.constantFrom(1, null)),
  stop: mostly(
    fc.oneof(fc.string({ maxLength: 4 }), fc.array(fc.string({ maxLength: 2 }), { maxLength: 20 })),
  ),
  // Past 2^53 too: int64 seeds (as a Python client sends them) up to vLLM's bounds, and past them.
  seed: mostly(
    fc.oneof(fc.integer(), fc.constantFrom(2 ** 53 + 2, 2 ** 63, -(2 ** 63), 2 ** 64, -(2 ** 64), 0.5)),
  ),
  user: mostly(fc.string({ maxLength: 8 })),
  priority: mostly(fc.integer({ min: -5, max: 5 })),
  // vLLM's: a non-empty string salts the prefix chain; anything else but null is a 400.
  cache_salt: mostly(
    fc.oneof({ arbitrary: fc.string({ maxLength: 3 }), weight: 4 }, { arbitrary: anyValue, weight: 1 }),
  ),
  extension: anyValue,
};

const chatBody = fc.record(
  {
    ...common,
    messages: mostly(fc.array(message, { minLength: 0, maxLength: 4 })),
    max_completion_tokens: mostly(fc.integer({ min: 1, max: 64 })),
  },
  { requiredKeys: ['model', 'messages'] },
);

const completionBody = fc.record(
  {
    ...common,
    prompt: mostly(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.array(fc.string({ maxLength: 100 }), { minLength: 0, maxLength: 2 }),
        fc.array(fc.integer({ min: -1, max: 50_000 }), { minLength: 0, maxLength: 80 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 50_000 }), { minLength: 0, maxLength: 40 }), {
          maxLength: 2,
        }),
      ),
    ),
    echo: mostly(fc.boolean()),
  },
  { requiredKeys: ['model', 'prompt'] },
);

/** Checks agreement over generated bodies; returns how many parsed successfully. */
function agree(kind: 'chat' | 'completion', bodies: fc.Arbitrary<unknown>): number {
  let accepted = 0;
  fc.assert(
    fc.property(bodies, (body) => {
      const fast = outcome(() => parseBody(kind, body));
      assert.deepEqual(
        fast,
        outcome(() => parseCompletionBody(kind, body)),
      );
      assert.deepEqual(
        outcome(() => parseRouting(kind, body)),
        outcome(() => routingOf(parseCompletionBody(kind, body))),
      );
      if ((fast as { ok?: unknown }).ok !== undefined) accepted++;
    }),
    { numRuns: 4000 },
  );
  return accepted;
}

describe('parseBody (the gateway fast path)', () => {
  it('agrees with parseCompletionBody on generated chat bodies, valid or not', () => {
    // Valid-only fields make sure the success path's output is compared too, not only errors.
    const valid = fc.record({
      model: fc.constant('m'),
      messages: fc.array(
        fc.record({
          role: fc.constantFrom('system', 'user', 'assistant'),
          content: fc.string({ maxLength: 200 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      stream: fc.boolean(),
      max_tokens: fc.option(fc.integer({ min: 1, max: 64 })),
      stop: fc.option(fc.string({ maxLength: 3 })),
    });
    assert.equal(agree('chat', valid), 4000);
    const accepted = agree('chat', chatBody);
    assert.ok(accepted > 200 && accepted < 3800, `accepted ${accepted} of 4000`);
  });

  it('agrees with parseCompletionBody on generated completion bodies, valid or not', () => {
    const valid = fc.record({
      model: fc.constant('m'),
      prompt: fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.array(fc.nat(50_000), { minLength: 1, maxLength: 80 }),
      ),
      temperature: fc.option(fc.double({ min: 0, max: 2, noNaN: true })),
    });
    assert.equal(agree('completion', valid), 4000);
    const accepted = agree('completion', completionBody);
    assert.ok(accepted > 200 && accepted < 3800, `accepted ${accepted} of 4000`);
  });

  it('agrees on typical valid bodies and on non-objects', () => {
    const bodies: [kind: 'chat' | 'completion', body: unknown][] = [
      [
        'chat',
        {
          model: 'm',
          messages: [
            { role: 'system', content: 'S'.repeat(500) },
            { role: 'user', content: 'hi' },
          ],
          stream: true,
          stream_options: { include_usage: true },
          max_completion_tokens: 9,
          stop: ['a', 'b'],
          priority: 3,
          user: 'u',
        },
      ],
      ['completion', { model: 'm', prompt: [[1, 2, 3, 4]], max_tokens: 2, seed: 4, temperature: 0 }],
      ['completion', { model: 'm', prompt: ['only one'] }],
      ['chat', null],
      ['chat', []],
      ['completion', 'text'],
    ];
    for (const [kind, body] of bodies) {
      assert.deepEqual(
        outcome(() => parseBody(kind, body)),
        outcome(() => parseCompletionBody(kind, body)),
      );
      assert.deepEqual(
        outcome(() => parseRouting(kind, body)),
        outcome(() => routingOf(parseCompletionBody(kind, body))),
      );
    }
  });

  it('joins a message\'s text parts by "\\n" as the schema path does (vLLM), in the prefix chain and the estimate', () => {
    const a = 'a'.repeat(TEXT_BLOCK_CHARS * 2 + 3);
    const b = 'b'.repeat(TEXT_BLOCK_CHARS);
    const body = {
      model: 'm',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: a },
            { type: 'text', text: '' },
            { type: 'text', text: b },
          ],
        },
      ],
    };
    const text = `<|user|>\n${a}\n${b}\n`;
    for (const r of [parseBody('chat', body), parseRouting('chat', body)]) {
      assert.deepEqual(r.prefix.hashes, textPrefixChain(text).hashes);
      assert.equal(r.promptTokens, Math.ceil(text.length / CHARS_PER_TOKEN));
    }
  });

  it("renders a tool conversation's calls after the assistant's content, the same on both paths (prefix and estimate)", () => {
    const long = 'w'.repeat(TEXT_BLOCK_CHARS * 2);
    const body = {
      model: 'm',
      messages: [
        { role: 'user', content: `weather in Paris? ${long}` },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'c2', type: 'function', function: { name: 'get_time', arguments: { tz: 'CET' } } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: `sunny ${long}` },
        { role: 'assistant', content: 'Checking.', function_call: { name: 'f', arguments: '{}' } },
        { role: 'function', name: 'f', content: 'ok' },
      ],
    };
    const text =
      `<|user|>\nweather in Paris? ${long}\n` +
      '<|assistant|>\n<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>\n' +
      '<tool_call>{"name":"get_time","arguments":{"tz":"CET"}}</tool_call>\n' +
      `<|tool|>\nsunny ${long}\n` +
      '<|assistant|>\nChecking.\n<tool_call>{"name":"f","arguments":{}}</tool_call>\n' +
      '<|function|>\nok\n';
    const slow = parseCompletionBody('chat', body);
    assert.equal(slow.promptText, text);
    assert.equal(parseBody('chat', body).promptText, text);
    for (const r of [slow, parseBody('chat', body), parseRouting('chat', body)]) {
      assert.deepEqual(r.prefix.hashes, textPrefixChain(text).hashes);
      assert.equal(r.promptTokens, Math.ceil(text.length / CHARS_PER_TOKEN));
    }
    // Without the calls the text is what it was before tool calls rendered: byte for byte.
    const plain = {
      model: 'm',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'yo' },
      ],
    };
    assert.equal(parseBody('chat', plain).promptText, '<|user|>\nhi\n<|assistant|>\nyo\n');
  });

  it('cuts the routing prefix chain of a huge prompt at ROUTING_PREFIX_BLOCKS_MAX, a prefix of the full chain', () => {
    const text = 'abcdefghij'.repeat(ROUTING_PREFIX_BLOCKS_MAX * 8);
    const bodies: ['chat' | 'completion', unknown][] = [
      ['chat', { model: 'm', messages: [{ role: 'user', content: text }] }],
      ['completion', { model: 'm', prompt: text }],
      [
        'completion',
        { model: 'm', prompt: Array.from({ length: ROUTING_PREFIX_BLOCKS_MAX * 20 }, (_, i) => i) },
      ],
    ];
    for (const [kind, body] of bodies) {
      const full = routingOf(parseCompletionBody(kind, body));
      const cut = parseRouting(kind, body);
      assert.ok(full.prefix.hashes.length > ROUTING_PREFIX_BLOCKS_MAX);
      assert.deepEqual(cut.prefix.hashes, full.prefix.hashes.slice(0, ROUTING_PREFIX_BLOCKS_MAX));
      assert.deepEqual({ ...cut, prefix: undefined }, { ...full, prefix: undefined });
    }
  });
});
