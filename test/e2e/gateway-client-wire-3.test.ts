/**
 * End-to-end: clients first run against `switchyard serve` in stop 32 (notes of task B), each
 * request here as the client sent it (bytes captured by a logging proxy in front of the gateway).
 *
 * - `vllm bench serve` without `--model` asks the server for its model: `get_first_model_from_server`
 *   (vllm/benchmarks/serve.py) GETs /v1/models over aiohttp and returns `data[0]["id"]` and
 *   `data[0]["root"]`, the latter the tokenizer it then loads. vLLM's ModelCard has `root` (and
 *   `parent`); the built-in engines' /v1/models had them, the gateway's had not, so the benchmark
 *   died with KeyError: 'root' before sending a request. Every entry now has `root` (its id) and
 *   `parent: null`, in the list and by id.
 * - EleutherAI's lm-evaluation-harness 0.4.13 (`local-completions`, `local-chat-completions`):
 *   `generate_until` sends a list of prompts in one completions request (`batch_size`), a `stop`
 *   list, `seed: 1234`, `temperature: 0`, and `Authorization: Bearer` with no key when
 *   OPENAI_API_KEY is unset; `loglikelihood` sends token-id prompts with `echo: true`, `logprobs: 1`
 *   and `max_tokens: 1`. Served (the last: passed unchanged to a vLLM backend, 400 naming the field
 *   on a built-in engine, which computes no log probabilities).
 * - lm-eval's default `tokenizer_backend="auto"` probes vLLM's `GET /tokenizer_info` and `POST
 *   /tokenize` and falls back to a local tokenizer on an error. The gateway routes /tokenize and
 *   /detokenize by the body's model, and /tokenizer_info by its `?model=` query or the one model
 *   served (gateway-tokenize.test.ts); /version answers the gateway's own version (it was a 404;
 *   gateway-version-models.test.ts).
 * - litellm's `hosted_vllm/` provider sends an assistant message's `thinking_blocks` (a reasoning
 *   model's earlier turn) as content parts `{"type": "thinking", "thinking": ...}` before its text
 *   (HostedVLLMChatConfig._transform_messages). vLLM reads a `thinking` part as text
 *   (chat_utils' `_parse_chat_message_content_part`); the built-in engines refused it as media (400
 *   naming the part). They serve it now, its thinking in the prompt; a `redacted_thinking` part,
 *   which vLLM cannot parse either, is still refused. The gateway's fast body parse read neither a
 *   thinking part's nor a refusal part's text (the schema path read the refusal), so its prefix and
 *   token estimate missed them; both now read the same text (src/gateway/fast-parse.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post, REQUEST_DEADLINE_MS, simAndRecorder } from './support/cluster.ts';

/** The model the recorder serves (a `vllm` backend: bodies go to it unchanged). */
const REAL = 'real-model';
const wire = simAndRecorder(REAL);

/** The headers aiohttp 3.14 sends with a GET (vllm bench serve's model probe) and lm-eval's POSTs. */
const AIOHTTP = {
  accept: '*/*',
  'accept-encoding': 'gzip, deflate',
  'user-agent': 'Python/3.11 aiohttp/3.14.3',
} as const;

/** What `requests` sends (lm-eval's tokenizer probe), with lm-eval's JSON content type. */
const REQUESTS = {
  accept: '*/*',
  'accept-encoding': 'gzip, deflate',
  'user-agent': 'python-requests/2.34.2',
  'content-type': 'application/json',
} as const;

interface ModelCard {
  readonly id: string;
  readonly root?: unknown;
  readonly parent?: unknown;
}

async function get(path: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const res = await fetch(wire.gw.url + path, { headers, signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
  return { status: res.status, text: await res.text() };
}

describe('vllm bench serve without --model', { timeout: 60_000 }, () => {
  it('reads data[0].id and data[0].root from /v1/models: every entry has root (its id) and parent null', async () => {
    const r = await get('/v1/models', AIOHTTP);
    assert.equal(r.status, 200, r.text);
    const data = (JSON.parse(r.text) as { data: ModelCard[] }).data;
    assert.deepEqual(
      data.map((m) => m.id),
      [MODEL, REAL],
    );
    // get_first_model_from_server: `return data["data"][0]["id"], data["data"][0]["root"]`.
    const first = data[0] as ModelCard;
    assert.ok(Object.hasOwn(first, 'root'), `no root (vllm bench serve: KeyError 'root'): ${r.text}`);
    for (const m of data) {
      assert.equal(m.root, m.id, r.text);
      assert.ok(Object.hasOwn(m, 'parent') && m.parent === null, r.text);
    }
  });

  it('GET /v1/models/{id} has them too', async () => {
    for (const id of [MODEL, REAL]) {
      const r = await get(`/v1/models/${encodeURIComponent(id)}`, AIOHTTP);
      assert.equal(r.status, 200, r.text);
      const m = JSON.parse(r.text) as ModelCard;
      assert.equal(m.root, id, r.text);
      assert.equal(m.parent, null, r.text);
    }
  });
});

/** lm-eval's `local-completions` generate_until body for a batch of two (batch_size=2), as captured. */
const LM_EVAL_GENERATE = (model: string): string =>
  `{"prompt": ["Question 0: what?", "Question 1: what?"], "model": "${model}", "max_tokens": 8, ` +
  '"temperature": 0, "stop": ["\\n\\n", "Question:"], "seed": 1234}';

/** lm-eval's `local-chat-completions` body, as captured. */
const LM_EVAL_CHAT = (model: string): string =>
  `{"messages": [{"role": "user", "content": "Q0"}], "model": "${model}", "max_tokens": 8, ` +
  '"temperature": 0, "stop": ["\\n\\n"], "seed": 1234}';

/** lm-eval's loglikelihood body (tokenized_requests=True): context + continuation token ids. */
const LM_EVAL_LOGLIKELIHOOD = (model: string): string =>
  `{"model": "${model}", "prompt": [[791, 8415, 7731], [791, 5679, 10837]], "temperature": 0, ` +
  '"max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": true}';

/** lm-eval with OPENAI_API_KEY unset: "Bearer" and no key. */
const LM_EVAL_HEADERS = { ...AIOHTTP, authorization: 'Bearer', 'content-type': 'application/json' };

interface CompletionBody {
  readonly choices: { index: number; text: string; finish_reason: string }[];
  readonly usage: { prompt_tokens: number; completion_tokens: number };
}

describe('lm-evaluation-harness', { timeout: 60_000 }, () => {
  it('generate_until: a list of prompts with a stop list is one choice per prompt, in order', async () => {
    const r = await post(wire.gw.url, '/v1/completions', LM_EVAL_GENERATE(MODEL), {
      headers: LM_EVAL_HEADERS,
    });
    assert.equal(r.status, 200, r.text);
    const body = JSON.parse(r.text) as CompletionBody;
    assert.deepEqual(
      body.choices.map((c) => c.index),
      [0, 1],
    );
    for (const c of body.choices) assert.ok(c.text.length > 0, r.text);
    assert.ok(body.usage.completion_tokens > 0 && body.usage.completion_tokens <= 16, r.text);
  });

  it('local-chat-completions is served', async () => {
    const r = await post(wire.gw.url, '/v1/chat/completions', LM_EVAL_CHAT(MODEL), {
      headers: LM_EVAL_HEADERS,
    });
    assert.equal(r.status, 200, r.text);
    const body = JSON.parse(r.text) as { choices: { message: { content: string } }[] };
    assert.equal(body.choices.length, 1, r.text);
  });

  it('loglikelihood reaches a vLLM backend unchanged; a built-in engine answers 400 naming logprobs', async () => {
    const before = wire.upstream.received.length;
    const body = LM_EVAL_LOGLIKELIHOOD(REAL);
    const real = await post(wire.gw.url, '/v1/completions', body, { headers: LM_EVAL_HEADERS });
    assert.equal(real.status, 200, real.text);
    assert.equal(wire.upstream.received.length, before + 1);
    assert.equal(wire.upstream.received.at(-1)?.body, body);
    const sim = await post(wire.gw.url, '/v1/completions', LM_EVAL_LOGLIKELIHOOD(MODEL), {
      headers: LM_EVAL_HEADERS,
    });
    assert.equal(sim.status, 400, sim.text);
    const e = assertErrorBody(sim.text, 400, 'loglikelihood on sim');
    assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(e.error.param, 'logprobs');
  });

  it("the tokenizer probe: /tokenizer_info and /tokenize are routed, /version answers vLLM's shape", async () => {
    // The gateway's own version (gateway-version-models.test.ts); stop 32 answered a 404 here.
    const version = await get('/version', REQUESTS);
    assert.equal(version.status, 200, version.text);
    assert.deepEqual(Object.keys(JSON.parse(version.text) as object), ['version']);
    // lm-eval's RemoteTokenizer GETs /tokenizer_info, naming no model: with two served, 400 naming model.
    const info = await get('/tokenizer_info', REQUESTS);
    assert.equal(info.status, 400, info.text);
    assert.equal(assertErrorBody(info.text, 400).error.param, 'model');
    // With ?model= the vLLM backend's own answer (here its 404: a vLLM started without
    // --enable-tokenizer-info-endpoint) comes back as it sent it.
    const named = await get(`/tokenizer_info?model=${REAL}`, REQUESTS);
    assert.equal(named.status, 404, named.text);
    assert.match(named.text, /no route GET \/tokenizer_info/);
    // lm-eval's probe names no model: with two models served it is 400 naming `model`.
    const probe = await post(wire.gw.url, '/tokenize', '{"prompt": "test", "add_special_tokens": false}', {
      headers: REQUESTS,
    });
    assert.equal(probe.status, 400, probe.text);
    assert.equal(assertErrorBody(probe.text, 400).error.param, 'model');
    // Naming the vLLM backend's model: the bytes reach it unchanged, its answer comes back.
    const body = `{"prompt": "test", "model": "${REAL}",  "add_special_tokens": false}`;
    const before = wire.upstream.received.length;
    const routed = await post(wire.gw.url, '/tokenize', body, { headers: REQUESTS });
    assert.equal(routed.status, 200, routed.text);
    const got = wire.upstream.received.slice(before);
    assert.deepEqual(
      got.map((r) => [r.path, r.body]),
      [['/tokenize', body]],
    );
  });
});

/** A chat body as litellm (hosted_vllm) sends a conversation whose assistant turn had thinking blocks. */
const LITELLM_THINKING = (model: string, assistantContent: string): string =>
  `{"messages":[{"role":"user","content":"What is the weather in Paris?"},{"role":"assistant","content":${assistantContent}},` +
  `{"role":"user","content":"And tomorrow?"}],"model":"${model}","max_tokens":3}`;

const THINKING = 'The user asks about the weather in Paris, so I should answer with a short forecast';
const ANSWER = 'Sunny and mild.';

describe("litellm's hosted_vllm thinking blocks", { timeout: 60_000 }, () => {
  it('a thinking part is text to a built-in engine: served, its thinking in the prompt', async () => {
    const parts = JSON.stringify([
      { type: 'thinking', thinking: THINKING },
      { type: 'text', text: ANSWER },
    ]);
    const r = await post(wire.gw.url, '/v1/chat/completions', LITELLM_THINKING(MODEL, parts));
    assert.equal(r.status, 200, r.text);
    const asString = await post(
      wire.gw.url,
      '/v1/chat/completions',
      LITELLM_THINKING(MODEL, JSON.stringify(THINKING + ANSWER)),
    );
    const answerOnly = await post(
      wire.gw.url,
      '/v1/chat/completions',
      LITELLM_THINKING(MODEL, JSON.stringify(ANSWER)),
    );
    const promptTokens = (t: string): number => (JSON.parse(t) as CompletionBody).usage.prompt_tokens;
    assert.equal(promptTokens(r.text), promptTokens(asString.text), 'the parts read as their texts in order');
    assert.ok(promptTokens(r.text) > promptTokens(answerOnly.text), 'the thinking is in the prompt');
  });

  it('a vLLM backend gets the bytes unchanged; a redacted_thinking part is still refused by a built-in engine', async () => {
    const parts = JSON.stringify([
      { type: 'thinking', thinking: THINKING },
      { type: 'redacted_thinking', data: 'opaque' },
      { type: 'text', text: ANSWER },
    ]);
    const before = wire.upstream.received.length;
    const body = LITELLM_THINKING(REAL, parts);
    const real = await post(wire.gw.url, '/v1/chat/completions', body);
    assert.equal(real.status, 200, real.text);
    assert.equal(wire.upstream.received.length, before + 1);
    assert.equal(wire.upstream.received.at(-1)?.body, body);
    const sim = await post(wire.gw.url, '/v1/chat/completions', LITELLM_THINKING(MODEL, parts));
    const e = assertErrorBody(sim.text, sim.status, 'redacted_thinking on sim');
    assert.equal(sim.status, 400);
    assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(e.error.param, 'messages[1].content[1]');
  });
});

describe("vLLM's cache_salt (litellm's hosted_vllm Responses config always sets one)", {
  timeout: 60_000,
}, () => {
  it('a salted body reaches a vLLM backend unchanged; a bad salt is 400 naming cache_salt, as vLLM answers', async () => {
    const before = wire.upstream.received.length;
    const body = JSON.stringify({ model: REAL, input: 'Hello there.', cache_salt: 'litellm-salt-1' });
    const real = await post(wire.gw.url, '/v1/responses', body);
    assert.equal(real.status, 200, real.text);
    assert.equal(wire.upstream.received.length, before + 1);
    assert.equal(wire.upstream.received.at(-1)?.body, body);
    const sim = await post(wire.gw.url, '/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there.' }],
      max_tokens: 2,
      cache_salt: 'litellm-salt-1',
    });
    assert.equal(sim.status, 200, sim.text);
    for (const [path, model] of [
      ['/v1/responses', REAL],
      ['/v1/chat/completions', REAL],
      ['/v1/completions', MODEL],
    ] as const) {
      const bad =
        path === '/v1/responses'
          ? { model, input: 'x', cache_salt: '' }
          : path === '/v1/completions'
            ? { model, prompt: 'x', cache_salt: 42 }
            : { model, messages: [{ role: 'user', content: 'x' }], cache_salt: null, extra: 1 };
      const res = await post(wire.gw.url, path, bad);
      if (path === '/v1/chat/completions') {
        // null is no salt (vLLM's Optional), served.
        assert.equal(res.status, 200, res.text);
        continue;
      }
      const e = assertErrorBody(res.text, res.status, `bad salt on ${path}`);
      assert.equal(res.status, 400);
      assert.equal(e.error.param, 'cache_salt');
    }
    assert.equal(wire.upstream.received.length, before + 2, 'the bad salts never reached the backend');
  });
});
