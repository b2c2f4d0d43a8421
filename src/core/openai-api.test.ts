import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from './errors.ts';
import { DEFAULT_MAX_TOKENS, parseCompletionBody, SSE_DONE, sseEvent } from './openai-api.ts';
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

  it('frames SSE events', () => {
    assert.equal(sseEvent({ a: 1 }), 'data: {"a":1}\n\n');
    assert.equal(SSE_DONE, 'data: [DONE]\n\n');
  });
});
