/**
 * End-to-end: vLLM's `POST /tokenize`, `POST /detokenize` (task T of stop 32) and `GET
 * /tokenizer_info` (task U). lm-evaluation-harness's
 * default `tokenizer_backend=auto` probes /tokenize and, on a 404, falls back to a Hugging Face
 * tokenizer it must download (it fails offline).
 *
 * - The built-in engines serve them with vLLM's fields: the llama engine with its GGUF's tokenizer,
 *   the sim with its 4-characters-a-token pieces (ids are hashes: /detokenize is refused). The count
 *   equals a completion's usage.prompt_tokens for the same prompt (or chat messages).
 * - The gateway routes both by the body's model to an instance of it, bytes unchanged, and passes
 *   the answer back (it answered 404 before); a body without a model goes to the one model served,
 *   and is 400 naming `model` when several are.
 * - `GET /tokenizer_info` (the llama engine: its GGUF's tokenizer configuration; the sim, which has
 *   no vocabulary: 404) is routed by its `?model=` query or to the one model served. lm-eval's
 *   RemoteTokenizer reads `eos_token`, `bos_token`, `pad_token`, `chat_template` there and takes the
 *   ids from `/tokenize` of the strings (add_special_tokens false), which must be the special tokens.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assertErrorBody,
  MODEL,
  post,
  type Reply,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
} from './support/llama.ts';

interface Setup {
  readonly llama: LlamaEngine;
  readonly simUrl: string;
  readonly gw: TestGateway;
}

/** A llama engine and a sim engine, each its own model, and a gateway over both. */
const set = fileSetUp<Setup>(new Teardown(), ['llama', 'simUrl', 'gw'], async (teardown) => {
  const llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  teardown.add(() => stopLlamaEngines([llama]));
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const sim = sims.engines[0]!;
  const gw = await startTestGateway(
    {
      backends: [
        { id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] },
        simBackend('s0', sim, false),
      ],
    },
    teardown,
  );
  return { llama, simUrl: sim.url, gw };
});

interface Tokenized {
  count: number;
  max_model_len: number;
  tokens: number[];
  token_strs?: string[];
}

async function ok<T>(reply: Promise<Reply>): Promise<T> {
  const r = await reply;
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as T;
}

/** What `GET /tokenizer_info` answers (vLLM's TokenizerInfoResponse: a tokenizer_config). */
interface TokenizerInfo {
  readonly tokenizer_class: string;
  readonly bos_token: string | null;
  readonly eos_token: string | null;
  readonly pad_token: string | null;
  readonly bos_token_id: number | null;
  readonly eos_token_id: number | null;
  readonly add_bos_token: boolean;
  readonly model_max_length: number;
  readonly chat_template?: string;
}

async function getOk<T>(url: string): Promise<T> {
  const r = await fetch(url);
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text) as T;
}

/**
 * What lm-eval 0.4.13's check_remote_tokenizer_support and RemoteTokenizer do at `base` (bytes as
 * its `requests` session sends them): GET /tokenizer_info (a dict with `eos_token`), POST /tokenize
 * `{"prompt": "test", "add_special_tokens": false}`; then eos_token_id and bos_token_id are the first
 * id of /tokenize of each string. Returns the info and those ids.
 */
async function lmEvalRemoteTokenizer(
  base: string,
): Promise<{ info: TokenizerInfo; eosId: number | undefined; bosId: number | undefined }> {
  const info = await getOk<TokenizerInfo>(`${base}/tokenizer_info`);
  assert.ok('eos_token' in info, 'check_remote_tokenizer_support needs eos_token');
  const probe = await ok<Tokenized>(
    post(base, '/tokenize', '{"prompt": "test", "add_special_tokens": false}'),
  );
  assert.ok(Array.isArray(probe.tokens));
  const first = async (text: string | null): Promise<number | undefined> =>
    text === null
      ? undefined
      : (
          await ok<Tokenized>(
            post(base, '/tokenize', JSON.stringify({ prompt: text, add_special_tokens: false })),
          )
        ).tokens[0];
  return { info, eosId: await first(info.eos_token), bosId: await first(info.bos_token) };
}

/** The llama engine's /tokenizer_info agrees with its /tokenize (the checks lm-eval relies on). */
async function assertLlamaTokenizerInfo(base: string): Promise<TokenizerInfo> {
  const { info, eosId, bosId } = await lmEvalRemoteTokenizer(base);
  assert.equal(info.tokenizer_class, 'CachedGPT2TokenizerFast', 'the tiny GGUF is a GPT-2 style BPE');
  assert.equal(info.bos_token, '<s>');
  assert.equal(info.eos_token, '</s>');
  assert.equal(info.pad_token, null);
  assert.equal(info.add_bos_token, true);
  assert.equal(info.model_max_length, 1024, 'the engine context');
  assert.equal(info.chat_template, undefined, 'the tiny GGUF has no chat template');
  // lm-eval's ids: /tokenize of each string is that one special token.
  assert.equal(eosId, info.eos_token_id);
  assert.equal(bosId, info.bos_token_id);
  const withBos = await ok<Tokenized>(post(base, '/tokenize', { prompt: PROMPT }));
  assert.equal(withBos.tokens[0], info.bos_token_id, 'the BOS a prompt starts with');
  assert.equal(withBos.max_model_len, info.model_max_length);
  const bare = await ok<Tokenized>(post(base, '/tokenize', { prompt: PROMPT, add_special_tokens: false }));
  const eos = await ok<Tokenized>(
    post(base, '/tokenize', { prompt: `${PROMPT}${info.eos_token}`, add_special_tokens: false }),
  );
  assert.deepEqual(eos.tokens, [...bare.tokens, info.eos_token_id], 'an EOS written in the text is the EOS');
  return info;
}

async function refused(reply: Promise<Reply>, status: number, param: string | null): Promise<string> {
  const r = await reply;
  assert.equal(r.status, status, r.text);
  const body = assertErrorBody(r.text, status);
  assert.equal(body.error.param, param, r.text);
  return body.error.code;
}

const PROMPT = 'The quick brown fox jumps over the lazy dog, twice.';
const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Say hello.' },
];

/** usage.prompt_tokens of a one-token completion (or chat completion) of `body` at `url`. */
async function promptTokens(url: string, path: string, body: Record<string, unknown>): Promise<number> {
  const answer = await ok<{ usage: { prompt_tokens: number } }>(post(url, path, { ...body, max_tokens: 1 }));
  return answer.usage.prompt_tokens;
}

/**
 * The cases, sent to `llamaUrl()` for the llama engine's model and to `simUrl()` for the sim's (the
 * engines themselves, or the gateway for both).
 */
function cases(llamaUrl: () => string, simUrl: () => string): void {
  const url = llamaUrl;
  it('llama: a prompt counts the tokens a completion charges; detokenize round-trips', async () => {
    const t = await ok<Tokenized>(post(url(), '/tokenize', { model: LLAMA_MODEL, prompt: PROMPT }));
    assert.equal(t.count, t.tokens.length);
    assert.equal(t.max_model_len, 1024);
    assert.equal(t.token_strs, undefined);
    assert.equal(
      t.count,
      await promptTokens(url(), '/v1/completions', { model: LLAMA_MODEL, prompt: PROMPT }),
    );
    const bare = await ok<Tokenized>(
      post(url(), '/tokenize', { model: LLAMA_MODEL, prompt: PROMPT, add_special_tokens: false }),
    );
    assert.ok(bare.count < t.count, 'add_special_tokens: false leaves the BOS out');
    const back = await ok<{ prompt: string }>(
      post(url(), '/detokenize', { model: LLAMA_MODEL, tokens: bare.tokens }),
    );
    assert.equal(back.prompt, PROMPT);
  });

  it('llama: chat messages count as a chat completion charges; token_strs on request', async () => {
    const t = await ok<Tokenized>(
      post(url(), '/tokenize', { model: LLAMA_MODEL, messages: MESSAGES, return_token_strs: true }),
    );
    assert.equal(
      t.count,
      await promptTokens(url(), '/v1/chat/completions', { model: LLAMA_MODEL, messages: MESSAGES }),
    );
    assert.equal(t.token_strs?.length, t.count);
    const open = await ok<Tokenized>(
      post(url(), '/tokenize', { model: LLAMA_MODEL, messages: MESSAGES, add_generation_prompt: false }),
    );
    assert.ok(open.count < t.count, 'add_generation_prompt: false leaves the assistant cue out');
  });

  it('sim: counts as its completions charge; detokenize refused', async () => {
    const url = simUrl;
    const t = await ok<Tokenized>(
      post(url(), '/tokenize', { model: MODEL, prompt: PROMPT, return_token_strs: true }),
    );
    assert.equal(t.count, await promptTokens(url(), '/v1/completions', { model: MODEL, prompt: PROMPT }));
    assert.equal(t.token_strs?.join(''), PROMPT);
    const chat = await ok<Tokenized>(post(url(), '/tokenize', { model: MODEL, messages: MESSAGES }));
    assert.equal(
      chat.count,
      await promptTokens(url(), '/v1/chat/completions', { model: MODEL, messages: MESSAGES }),
    );
    const code = await refused(post(url(), '/detokenize', { model: MODEL, tokens: t.tokens }), 400, 'tokens');
    assert.equal(code, 'SY_ERR_UNSUPPORTED_PARAMETER');
  });

  it('bad bodies: 400 naming the field; a model not served: 404', async () => {
    await refused(post(url(), '/tokenize', { model: LLAMA_MODEL }), 400, 'prompt');
    await refused(post(url(), '/tokenize', { model: LLAMA_MODEL, prompt: [1, 2] }), 400, 'prompt');
    await refused(
      post(url(), '/tokenize', { model: LLAMA_MODEL, prompt: 'x', add_special_tokens: 'yes' }),
      400,
      'add_special_tokens',
    );
    await refused(post(url(), '/tokenize', { model: LLAMA_MODEL, messages: 'hi' }), 400, 'messages');
    await refused(post(url(), '/detokenize', { model: LLAMA_MODEL, tokens: [1, -2] }), 400, 'tokens');
    await refused(post(url(), '/detokenize', { model: LLAMA_MODEL, tokens: [1e9] }), 400, 'tokens');
    await refused(post(url(), '/detokenize', { model: LLAMA_MODEL }), 400, 'tokens');
    await refused(post(url(), '/tokenize', { model: 'no-such-model', prompt: 'x' }), 404, 'model');
    await refused(post(url(), '/detokenize', { model: 'no-such-model', tokens: [1] }), 404, 'model');
  });
}

describe('the built-in engines serve /tokenize and /detokenize', () => {
  cases(
    () => set.llama.url,
    () => set.simUrl,
  );
  it('a body without model is the engine’s model', async () => {
    const t = await ok<Tokenized>(post(set.llama.url, '/tokenize', { prompt: PROMPT }));
    const named = await ok<Tokenized>(
      post(set.llama.url, '/tokenize', { model: LLAMA_MODEL, prompt: PROMPT }),
    );
    assert.deepEqual(t.tokens, named.tokens);
  });

  it('llama: GET /tokenizer_info from the GGUF, consistent with /tokenize; the sim: 404', async () => {
    await assertLlamaTokenizerInfo(set.llama.url);
    const head = await fetch(`${set.llama.url}/tokenizer_info`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const sim = await fetch(`${set.simUrl}/tokenizer_info`);
    const text = await sim.text();
    assert.equal(sim.status, 404, text);
    const e = assertErrorBody(text, 404);
    assert.equal(e.error.code, 'SY_ERR_NOT_FOUND');
    assert.match(e.error.message, /no tokenizer configuration/);
    const wrong = await post(set.llama.url, '/tokenizer_info', {});
    assert.equal(wrong.status, 405, wrong.text);
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
  });
});

describe('the gateway routes /tokenize and /detokenize by the body’s model', () => {
  cases(
    () => set.gw.url,
    () => set.gw.url,
  );

  it('no model field: 400 naming model when two models are served; the one model when one is', async () => {
    await refused(post(set.gw.url, '/tokenize', { prompt: PROMPT }), 400, 'model');
    await refused(post(set.gw.url, '/detokenize', { tokens: [1] }), 400, 'model');
    await refused(post(set.gw.url, '/tokenize', { model: 7, prompt: PROMPT }), 400, 'model');
    await refused(post(set.gw.url, '/tokenize', '{"prompt":'), 400, 'body');
    const teardown = new Teardown();
    try {
      const one = await startTestGateway(
        { backends: [{ id: 'l0', type: 'llama', url: set.llama.url, models: [LLAMA_MODEL] }] },
        teardown,
      );
      const direct = await ok<Tokenized>(post(set.llama.url, '/tokenize', { prompt: PROMPT }));
      assert.deepEqual(await ok<Tokenized>(post(one.url, '/tokenize', { prompt: PROMPT })), direct);
      const back = await ok<{ prompt: string }>(
        post(one.url, '/detokenize', { tokens: direct.tokens.slice(1) }),
      );
      assert.equal(back.prompt, PROMPT);
    } finally {
      await teardown.run();
    }
  });

  it('GET /tokenizer_info: by ?model=, or the one model served; 400 naming model among several', async () => {
    const direct = await getOk<TokenizerInfo>(`${set.llama.url}/tokenizer_info`);
    assert.deepEqual(await getOk<TokenizerInfo>(`${set.gw.url}/tokenizer_info?model=${LLAMA_MODEL}`), direct);
    const none = await fetch(`${set.gw.url}/tokenizer_info`);
    await refused(Promise.resolve({ status: none.status, text: await none.text() } as Reply), 400, 'model');
    const notServed = await fetch(`${set.gw.url}/tokenizer_info?model=no-such-model`);
    await refused(
      Promise.resolve({ status: notServed.status, text: await notServed.text() } as Reply),
      404,
      'model',
    );
    // The sim's own 404 (no vocabulary) comes back as it sent it.
    const sim = await fetch(`${set.gw.url}/tokenizer_info?model=${MODEL}`);
    const simText = await sim.text();
    assert.equal(sim.status, 404, simText);
    assert.match(simText, /no tokenizer configuration/);
    const wrong = await post(set.gw.url, '/tokenizer_info', {});
    assert.equal(wrong.status, 405, wrong.text);
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
    // lm-eval against a one-model gateway: its remote tokenizer works as against the engine.
    const teardown = new Teardown();
    try {
      const one = await startTestGateway(
        { backends: [{ id: 'l0', type: 'llama', url: set.llama.url, models: [LLAMA_MODEL] }] },
        teardown,
      );
      assert.deepEqual(await assertLlamaTokenizerInfo(one.url), direct);
    } finally {
      await teardown.run();
    }
  });

  it('a wrong method is 405 naming POST', async () => {
    const r = await fetch(`${set.gw.url}/tokenize`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'POST');
    await r.arrayBuffer();
  });
});
