/**
 * End-to-end: vLLM's `POST /tokenize` and `POST /detokenize` (task T of stop 32). lm-evaluation-harness's
 * default `tokenizer_backend=auto` probes /tokenize and, on a 404, falls back to a Hugging Face
 * tokenizer it must download (it fails offline).
 *
 * - The built-in engines serve them with vLLM's fields: the llama engine with its GGUF's tokenizer,
 *   the sim with its 4-characters-a-token pieces (ids are hashes: /detokenize is refused). The count
 *   equals a completion's usage.prompt_tokens for the same prompt (or chat messages).
 * - The gateway routes both by the body's model to an instance of it, bytes unchanged, and passes
 *   the answer back (it answered 404 before); a body without a model goes to the one model served,
 *   and is 400 naming `model` when several are.
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

  it('a wrong method is 405 naming POST', async () => {
    const r = await fetch(`${set.gw.url}/tokenize`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'POST');
    await r.arrayBuffer();
  });
});
