import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from './errors.ts';
import {
  builtinEngineRefusal,
  DEFAULT_MAX_TOKENS,
  N_MAX,
  parseCompletionBody,
  SSE_DONE,
  sseEvent,
} from './openai-api.ts';
import { responsesMessages } from './responses-api.ts';
import { TEXT_BLOCK_CHARS } from './text-prefix.ts';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    assert.equal(error.status, 400);
    return `${error.code}:${String(error.toJSON().error.param)}`;
  }
  assert.fail('expected a SwitchyardError');
}

describe('parseCompletionBody', () => {
  it('normalises a chat body', () => {
    const long = 'system prompt '.repeat(40);
    const r = parseCompletionBody('chat', {
      model: 'm',
      messages: [
        { role: 'system', content: long },
        { role: 'user', content: [{ type: 'text', text: 'hi' }] },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 7,
      stop: 'END',
      vendor_extension: { anything: 1 },
    });
    assert.equal(r.kind, 'chat');
    assert.equal(r.stream, true);
    assert.equal(r.includeUsage, true);
    assert.equal(r.maxTokens, 7);
    assert.equal(r.maxTokensGiven, true);
    assert.deepEqual(r.stop, ['END']);
    assert.ok(r.promptText.includes('hi'));
    assert.equal(r.prefix.hashes.length, Math.floor(r.promptText.length / TEXT_BLOCK_CHARS));
    assert.ok(r.promptTokens >= r.promptText.length / 4);
  });

  it('accepts completion prompts as text or token ids', () => {
    const t = parseCompletionBody('completion', { model: 'm', prompt: 'hello' });
    assert.equal(t.promptText, 'hello');
    assert.equal(t.maxTokens, DEFAULT_MAX_TOKENS);
    assert.equal(t.maxTokensGiven, false);
    const ids = Array.from({ length: 33 }, (_, i) => i);
    const k = parseCompletionBody('completion', { model: 'm', prompt: [ids], max_tokens: 3 });
    assert.deepEqual(k.promptTokenIds, ids);
    assert.equal(k.promptTokens, 33);
    assert.equal(k.prefix.hashes.length, 2);
  });

  it('names the bad field', () => {
    assert.equal(
      codeOf(() => parseCompletionBody('chat', { model: 'm' })),
      'SY_ERR_INVALID_ARGUMENT:messages',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('chat', { model: 'm', messages: [], max_tokens: 1 })),
      'SY_ERR_INVALID_ARGUMENT:messages',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('completion', { model: 'm', prompt: 'x', max_tokens: 0 })),
      'SY_ERR_INVALID_ARGUMENT:max_tokens',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('completion', { model: 'm', prompt: 'x', stream: 'yes' })),
      'SY_ERR_INVALID_ARGUMENT:stream',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('chat', [1, 2])),
      'SY_ERR_INVALID_ARGUMENT:null',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('completion', null)),
      'SY_ERR_INVALID_ARGUMENT:null',
    );
  });

  it("reads completions' max_tokens 0 with echo as vLLM's echo without generation (1 for its own use)", () => {
    const r = parseCompletionBody('completion', {
      model: 'm',
      prompt: 'x',
      max_tokens: 0,
      echo: true,
      logprobs: 1,
    });
    assert.equal(r.maxTokens, 1);
    assert.equal(r.maxTokensGiven, true);
    for (const echo of [undefined, null, false])
      assert.equal(
        codeOf(() => parseCompletionBody('completion', { model: 'm', prompt: 'x', max_tokens: 0, echo })),
        'SY_ERR_INVALID_ARGUMENT:max_tokens',
      );
    assert.throws(
      () => parseCompletionBody('completion', { model: 'm', prompt: 'x', max_tokens: 0 }),
      /0 only with "echo": true/,
    );
    assert.equal(
      codeOf(() =>
        parseCompletionBody('chat', {
          model: 'm',
          messages: [{ role: 'user', content: 'x' }],
          max_tokens: 0,
          echo: true,
        }),
      ),
      'SY_ERR_INVALID_ARGUMENT:max_tokens',
    );
  });

  it('takes any integer priority (vLLM: int) and clamps it to +-1,000,000 for its own use', () => {
    const messages = [{ role: 'user', content: 'x' }];
    // As the wire carries them: int64's ends arrive as JSON numbers (rounded past 2^53).
    const cases: [string, number][] = [
      ['7', 7],
      ['-1000000', -1_000_000],
      ['5000000', 1_000_000],
      ['-9223372036854775808', -1_000_000],
      ['9223372036854775807', 1_000_000],
    ];
    for (const [given, used] of cases) {
      const body: unknown = JSON.parse(
        `{"model": "m", "messages": [{"role": "user", "content": "x"}], "priority": ${given}}`,
      );
      assert.equal(parseCompletionBody('chat', body).priority, used, given);
    }
    assert.equal(parseCompletionBody('chat', { model: 'm', messages }).priority, undefined);
    for (const bad of [1.5, '3', null, Number.NaN])
      assert.equal(
        codeOf(() => parseCompletionBody('chat', { model: 'm', messages, priority: bad })),
        'SY_ERR_INVALID_ARGUMENT:priority',
      );
  });

  it('frames SSE events', () => {
    assert.equal(sseEvent({ a: 1 }), 'data: {"a":1}\n\n');
    assert.equal(SSE_DONE, 'data: [DONE]\n\n');
  });
});

describe('lists of prompts and n', () => {
  it('accepts a list of prompts (cost: the sum; prefix: the first) and n up to N_MAX', () => {
    const one = parseCompletionBody('completion', { model: 'm', prompt: 'aaaa bbbb' });
    const three = parseCompletionBody('completion', {
      model: 'm',
      prompt: ['aaaa bbbb', 'cccc dddd eeee', 'ff'],
      n: 4,
    });
    assert.equal(three.promptText, 'aaaa bbbb');
    assert.deepEqual(three.prefix, one.prefix);
    assert.equal(three.promptTokens, 3 + 4 + 1);
    const ids = parseCompletionBody('completion', {
      model: 'm',
      prompt: [
        [1, 2, 3],
        [4, 5],
      ],
    });
    assert.deepEqual(ids.promptTokenIds, [1, 2, 3]);
    assert.equal(ids.promptTokens, 5);
    assert.equal(
      codeOf(() => parseCompletionBody('chat', { model: 'm', messages: [{ role: 'user' }], n: 0 })),
      'SY_ERR_INVALID_ARGUMENT:n',
    );
    assert.equal(
      codeOf(() => parseCompletionBody('chat', { model: 'm', messages: [{ role: 'user' }], n: N_MAX + 1 })),
      'SY_ERR_INVALID_ARGUMENT:n',
    );
  });
});

describe('builtinEngineRefusal', () => {
  const chat = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
  const refusal = (kind: 'chat' | 'completion', body: unknown) => {
    const e = builtinEngineRefusal(kind, body);
    return e === undefined ? undefined : `${e.code}:${String(e.toJSON().error.param)}`;
  };

  it('names each parameter the built-in engines do not implement', () => {
    const cases: [string, unknown][] = [
      ['logprobs', true],
      ['logprobs', 0],
      ['top_logprobs', 1],
      ['logit_bias', { '5': 1 }],
      ['echo', true],
      ['suffix', 'tail'],
      ['best_of', 2],
    ];
    for (const [param, value] of cases) {
      assert.equal(
        refusal('chat', { ...chat, [param]: value }),
        `SY_ERR_UNSUPPORTED_PARAMETER:${param}`,
        param,
      );
    }
    // A chat's tools the engine reads itself (src/engine-servers/tool-calls.ts); completions refuse them.
    const tools = [{ type: 'function', function: { name: 'f' } }];
    assert.equal(refusal('chat', { ...chat, tools, tool_choice: 'required' }), undefined);
    // So are the legacy functions (mapped to tools there); completions refuse them.
    assert.equal(refusal('chat', { ...chat, functions: [{ name: 'f' }], function_call: 'auto' }), undefined);
    assert.equal(
      refusal('chat', { ...chat, functions: [{ name: 'f' }], function_call: { name: 'f' } }),
      undefined,
    );
    assert.equal(
      refusal('completion', { model: 'm', prompt: 'x', functions: [{ name: 'f' }] }),
      'SY_ERR_UNSUPPORTED_PARAMETER:functions',
    );
    assert.equal(
      refusal('completion', { model: 'm', prompt: 'x', tools }),
      'SY_ERR_UNSUPPORTED_PARAMETER:tools',
    );
    assert.equal(
      refusal('completion', { model: 'm', prompt: 'x', tool_choice: 'required' }),
      'SY_ERR_UNSUPPORTED_PARAMETER:tool_choice',
    );
    // Structured output is served (src/engine-servers/structured-output.ts reads it).
    assert.equal(refusal('chat', { ...chat, response_format: { type: 'json_object' } }), undefined);
    assert.equal(refusal('chat', { ...chat, n: 2 }), 'SY_ERR_UNSUPPORTED_PARAMETER:n');
    assert.equal(
      refusal('completion', { model: 'm', prompt: ['a', 'b'] }),
      'SY_ERR_UNSUPPORTED_PARAMETER:prompt',
    );
  });

  it('accepts the values that mean off, and token-id prompts', () => {
    const off = {
      ...chat,
      tools: [],
      tool_choice: 'none',
      response_format: { type: 'text' },
      logprobs: false,
      top_logprobs: 0,
      logit_bias: {},
      echo: false,
      suffix: '',
      best_of: 1,
      n: 1,
      functions: null,
    };
    assert.equal(refusal('chat', off), undefined);
    assert.equal(refusal('completion', { model: 'm', prompt: ['one'] }), undefined);
    assert.equal(refusal('completion', { model: 'm', prompt: [1, 2, 3] }), undefined);
    assert.equal(refusal('completion', 'not an object'), undefined);
  });
});

describe('stream_options without a stream (vLLM refuses it before any field check)', () => {
  const chat = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
  it('is refused naming stream_options, for chat and completions', () => {
    assert.equal(
      codeOf(() => parseCompletionBody('chat', { ...chat, stream_options: { include_usage: true } })),
      'SY_ERR_INVALID_ARGUMENT:stream_options',
    );
    assert.equal(
      codeOf(() =>
        parseCompletionBody('completion', {
          model: 'm',
          prompt: 'x',
          stream: false,
          stream_options: { a: 1 },
        }),
      ),
      'SY_ERR_INVALID_ARGUMENT:stream_options',
    );
  });
  it('passes empty or null options, and any options with stream true', () => {
    assert.equal(parseCompletionBody('chat', { ...chat, stream_options: {} }).stream, false);
    assert.equal(parseCompletionBody('chat', { ...chat, stream_options: null }).stream, false);
    const streamed = parseCompletionBody('chat', {
      ...chat,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(streamed.includeUsage, true);
  });
});

describe("a message's content parts (vLLM's chat_utils, 'string' content format)", () => {
  it('joins the text parts by "\\n", leaving out parts without text or with empty text', () => {
    const r = parseCompletionBody('chat', {
      model: 'm',
      messages: [
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'why' },
            { type: 'text', text: '' },
            { type: 'text', text: 'one' },
            { type: 'refusal', refusal: 'no' },
          ],
        },
        { role: 'user', content: [{ type: 'text', text: 'two' }] },
      ],
    });
    assert.equal(r.promptText, '<|assistant|>\nwhy\none\nno\n<|user|>\ntwo\n');
  });

  it('reads a Responses input message the same way (vLLM parses it with the chat parser)', () => {
    const messages = responsesMessages('sys', [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'a' },
          { type: 'input_text', text: '' },
          { type: 'input_text', text: 'b' },
        ],
      },
      {
        type: 'message',
        role: 'assistant',
        content: [
          { type: 'output_text', text: 'c' },
          { type: 'refusal', refusal: 'd' },
        ],
      },
    ]);
    assert.deepEqual(messages, [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'a\nb' },
      { role: 'assistant', content: 'c\nd' },
    ]);
  });
});

describe("vLLM's cache_salt", () => {
  const system = 'A shared system prompt that spans a few text blocks of the chain. '.repeat(4);
  const chat = (salt: unknown, question = 'q?') => ({
    model: 'm',
    messages: [
      { role: 'system', content: system },
      { role: 'user', content: question },
    ],
    cache_salt: salt,
  });

  it('keeps prompts under different salts from sharing any prefix block; one salt shares as before', () => {
    const plain = parseCompletionBody('chat', chat(undefined)).prefix.hashes;
    const a = parseCompletionBody('chat', chat('a')).prefix.hashes;
    const a2 = parseCompletionBody('chat', chat('a', 'another question?')).prefix.hashes;
    const b = parseCompletionBody('chat', chat('b')).prefix.hashes;
    assert.ok(plain.length >= 4);
    assert.deepEqual(parseCompletionBody('chat', chat(null)).prefix.hashes, plain);
    assert.equal(a.length, plain.length);
    for (let i = 0; i < a.length; i++) {
      assert.notEqual(a[i], plain[i]);
      assert.notEqual(a[i], b[i]);
    }
    // The system prompt's blocks are shared under one salt (a prefix of each other's chain).
    const shared = Math.floor(system.length / TEXT_BLOCK_CHARS);
    assert.deepEqual(a2.slice(0, shared), a.slice(0, shared));
    // Token-id prompts too.
    const ids = Array.from({ length: 64 }, (_, i) => i);
    assert.notDeepEqual(
      parseCompletionBody('completion', { model: 'm', prompt: ids, cache_salt: 'a' }).prefix.hashes,
      parseCompletionBody('completion', { model: 'm', prompt: ids }).prefix.hashes,
    );
  });

  it('refuses a salt that is not a non-empty string, naming cache_salt (as vLLM)', () => {
    for (const salt of ['', 0, true, ['a'], { a: 1 }]) {
      assert.equal(
        codeOf(() => parseCompletionBody('chat', chat(salt))),
        'SY_ERR_INVALID_ARGUMENT:cache_salt',
      );
      assert.equal(
        codeOf(() => parseCompletionBody('completion', { model: 'm', prompt: 'x', cache_salt: salt })),
        'SY_ERR_INVALID_ARGUMENT:cache_salt',
      );
    }
  });
});
