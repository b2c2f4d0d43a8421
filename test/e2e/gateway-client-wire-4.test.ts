/**
 * End-to-end: clients first run against `switchyard serve` in stop 33 (task C), each request here as
 * the client sent it (bytes captured by a logging proxy in front of the gateway), replayed with
 * fetch so the test needs no client installed. All were served; this holds them served, on a sim
 * engine and a llama engine (the tiny GGUF) behind one gateway, with what each client reads of the
 * answer:
 *
 * - LangChain JS `@langchain/openai` 1.5.8: chat with `temperature: 0` and `stream: false` written
 *   out; streamed with `stream_options.include_usage` (its usage_metadata is the last chunk's
 *   usage); `useResponsesApi` with `text: {}`; completions with a one-element prompt list and
 *   `n: 1`; embeddings with `encoding_format: "base64"` and `dimensions` (it decodes float32 bytes).
 * - Vercel AI SDK `ai` 7.0.185 / 6.0.333 with `@ai-sdk/openai-compatible` 3.0.97 / 2.0.92 (same
 *   bytes): a two-part user message; the completion model's `user:`/`assistant:` prompt with a stop
 *   and `stream_options` on /v1/completions; embeddings `encoding_format: "float"`.
 * - OpenAI Agents JS `@openai/agents` 0.20.0: chat history whose assistant turn is a text part with
 *   extra `role` and `refusal` keys; Responses with `include: []`, `tools: []` and an assistant
 *   `message` item with `status` and `output_text` `annotations: []`. The SDK throws on a response
 *   that ends `incomplete`, which is what the built-in engines answer at the token limit (as OpenAI
 *   does): the fields it reads are checked here (docs/gateway.md, clients checked in stop 33).
 * - Python langchain-openai 1.6.6 (read from its source: it cannot run here) sends an earlier
 *   assistant turn as a `message` item with `id` and `phase`.
 * - aiperf and genai-perf (NVIDIA's benchmarks, not installable here; aiperf's ChatEndpoint
 *   `format_payload` read from its source) fix the output length with `--extra-inputs
 *   max_tokens:N --extra-inputs min_tokens:N --extra-inputs ignore_eos:true`, as their docs and
 *   Dynamo's recipes say: `messages`, `model`, `stream`, `max_completion_tokens` (its `--osl`), the
 *   extras, then `stream_options.include_usage`. The llama engine refused `min_tokens` above 0 (it
 *   can end at EOS), so every such request was 400; with `ignore_eos: true`, a max_tokens and no
 *   stop strings it cannot end early, and it now serves them. With a stop string it still refuses.
 * - Fields OpenAI's newer SDKs may add to a chat body (`prompt_cache_key`, `service_tier`,
 *   `verbosity`, `safety_identifier`, `prediction`, ...): accepted, as vLLM ignores what it does not use.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assertErrorBody,
  MODEL,
  post,
  type Reply,
  simBackend,
  sseData,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import { LLAMA_MODEL, startLlamaEngine, stopLlamaEngines, tinyLlamaModel } from './support/llama.ts';

const set = fileSetUp(new Teardown(), ['gw'], async (teardown) => {
  const llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  teardown.add(() => stopLlamaEngines([llama]));
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const gw: TestGateway = await startTestGateway(
    {
      backends: [
        { id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] },
        simBackend('s0', sims.engines[0]!, false),
      ],
    },
    teardown,
  );
  return { gw };
});

/** The two models: the sim's and the llama engine's. */
const MODELS = [MODEL, LLAMA_MODEL] as const;

/** POSTs `body(model)` for each model; returns the replies, each asserted 200. */
async function replay(path: string, body: (model: string) => string): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (const model of MODELS) {
    const r = await post(set.gw.url, path, body(model));
    assert.equal(r.status, 200, `${model} ${path}: ${r.text}`);
    replies.push(r);
  }
  return replies;
}

/** The last `data:` JSON of an SSE body before `[DONE]`, and whether `[DONE]` ended it. */
function lastEvent(text: string): { last: Record<string, unknown>; done: boolean } {
  const data = sseData(text);
  const done = data.at(-1) === '[DONE]';
  const events = data.filter((d) => d !== '[DONE]');
  return { last: JSON.parse(events.at(-1) ?? '{}') as Record<string, unknown>, done };
}

describe('LangChain JS @langchain/openai 1.5.8', () => {
  it('chat, plain and streamed with include_usage (the usage chunk last)', async () => {
    for (const r of await replay(
      '/v1/chat/completions',
      (m) =>
        `{"model":"${m}","temperature":0,"stream":false,"max_tokens":16,"messages":[{"role":"user","content":"Hello there"}]}`,
    )) {
      const body = JSON.parse(r.text) as { choices: { message: { content: string } }[] };
      assert.equal(typeof body.choices[0]?.message.content, 'string');
    }
    for (const r of await replay(
      '/v1/chat/completions',
      (m) =>
        `{"model":"${m}","temperature":0,"stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"messages":[{"role":"user","content":"Hello there"}]}`,
    )) {
      const { last, done } = lastEvent(r.text);
      assert.ok(done);
      assert.deepEqual(last['choices'], []);
      assert.equal((last['usage'] as { completion_tokens: number }).completion_tokens > 0, true);
    }
  });

  it('useResponsesApi with text: {}', async () => {
    for (const r of await replay(
      '/v1/responses',
      (m) =>
        `{"input":[{"type":"message","role":"user","content":"Hello"}],"model":"${m}","stream":false,"text":{},"max_output_tokens":16}`,
    ))
      assert.equal((JSON.parse(r.text) as { object: string }).object, 'response');
  });

  it('completions with a one-element prompt list and n: 1', async () => {
    for (const r of await replay(
      '/v1/completions',
      (m) => `{"model":"${m}","max_tokens":8,"n":1,"stream":false,"prompt":["Once upon"]}`,
    ))
      assert.equal((JSON.parse(r.text) as { choices: unknown[] }).choices.length, 1);
  });

  it('embeddings as base64 with dimensions: float32 bytes of that many values', async () => {
    for (const r of await replay(
      '/v1/embeddings',
      (m) => `{"model":"${m}","input":"hello","dimensions":8,"encoding_format":"base64"}`,
    )) {
      const e = (JSON.parse(r.text) as { data: { embedding: string }[] }).data[0]?.embedding;
      assert.equal(typeof e, 'string');
      assert.equal(Buffer.from(e as string, 'base64').length, 8 * 4);
    }
  });
});

describe('Vercel AI SDK with @ai-sdk/openai-compatible', () => {
  it('a two-part user message after a system message', async () => {
    await replay(
      '/v1/chat/completions',
      (m) =>
        `{"model":"${m}","max_tokens":8,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
    );
  });

  it('the completion model: its prompt, a stop, stream_options on /v1/completions', async () => {
    for (const r of await replay(
      '/v1/completions',
      (m) =>
        `{"model":"${m}","max_tokens":8,"prompt":"user:\\nOnce\\n\\nassistant:\\n","stop":["\\nuser:"],"stream":true,"stream_options":{"include_usage":true}}`,
    )) {
      const { last, done } = lastEvent(r.text);
      assert.ok(done);
      assert.equal(typeof (last['usage'] as { prompt_tokens: number }).prompt_tokens, 'number');
    }
  });

  it('embeddings as floats', async () => {
    for (const r of await replay(
      '/v1/embeddings',
      (m) => `{"model":"${m}","input":["a","b"],"encoding_format":"float"}`,
    )) {
      const data = (JSON.parse(r.text) as { data: { embedding: number[] }[] }).data;
      assert.equal(data.length, 2);
      assert.ok(Array.isArray(data[0]?.embedding));
    }
  });
});

describe('OpenAI Agents JS @openai/agents 0.20.0', () => {
  it('chat history whose assistant text part has role and refusal keys', async () => {
    await replay(
      '/v1/chat/completions',
      (m) =>
        `{"model":"${m}","messages":[{"content":"Be brief.","role":"system"},{"role":"user","content":"Hello"},{"role":"assistant","content":[{"type":"text","text":" into from them","role":"assistant","refusal":null}]},{"role":"user","content":"again"}],"max_tokens":12,"stream":false}`,
    );
  });

  it('Responses with include: [], tools: [] and an earlier assistant item: incomplete at the limit, as OpenAI', async () => {
    for (const r of await replay(
      '/v1/responses',
      (m) =>
        `{"model":"${m}","instructions":"Be brief.","input":[{"role":"user","content":"Hello"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi there","annotations":[]}],"status":"completed"},{"role":"user","content":"again"}],"include":[],"tools":[],"temperature":0.2,"top_p":0.9,"max_output_tokens":12,"stream":false}`,
    )) {
      const body = JSON.parse(r.text) as {
        status: string;
        incomplete_details: { reason: string } | null;
        usage: { output_tokens: number };
      };
      // The llama engine may end on its own (completed); the sim never does.
      if (body.status === 'incomplete') assert.equal(body.incomplete_details?.reason, 'max_output_tokens');
      else assert.equal(body.status, 'completed');
      assert.ok(body.usage.output_tokens <= 12);
    }
  });
});

describe('what other clients add', () => {
  it("Python langchain-openai's second Responses turn: an assistant message item with id and phase", async () => {
    await replay(
      '/v1/responses',
      (m) =>
        `{"model":"${m}","max_output_tokens":4,"input":[{"role":"user","content":"Hello"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}],"id":"msg_abc","phase":"final_answer"},{"role":"user","content":[{"type":"input_text","text":"again"}]}],"stream":false}`,
    );
  });

  it("chat fields OpenAI's newer SDKs send: accepted", async () => {
    const extra =
      '"prompt_cache_key":"abc","prompt_cache_retention":"24h","service_tier":"auto","verbosity":"low",' +
      '"reasoning_effort":"low","store":false,"metadata":{"a":"b"},"safety_identifier":"u1",' +
      '"parallel_tool_calls":false,"modalities":["text"],"prediction":{"type":"content","content":"x"},' +
      '"logit_bias":{},"user":"u","top_logprobs":0,"web_search_options":{},"audio":null,"function_call":"none"';
    await replay(
      '/v1/chat/completions',
      (m) =>
        `{"model":"${m}","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":4,${extra}}`,
    );
  });
});

describe("aiperf's and genai-perf's fixed output length (min_tokens = max_tokens, ignore_eos)", () => {
  /** aiperf's chat body with `--osl 24 --extra-inputs max_tokens:24 min_tokens:24 ignore_eos:true --streaming`. */
  const AIPERF = (m: string, extra = ''): string =>
    `{"messages":[{"role":"user","content":"Tell me about the weather in a short paragraph."}],"model":"${m}","stream":true,"max_completion_tokens":24,"max_tokens":24,"min_tokens":24,"ignore_eos":true${extra},"stream_options":{"include_usage":true}}`;

  it('served on both engines, every answer exactly 24 tokens', async () => {
    for (const r of await replay('/v1/chat/completions', (m) => AIPERF(m))) {
      const { last, done } = lastEvent(r.text);
      assert.ok(done);
      assert.equal((last['usage'] as { completion_tokens: number }).completion_tokens, 24);
    }
    // genai-perf's completions endpoint with the same extras, and Dynamo's `nvext` next to them.
    for (const r of await replay(
      '/v1/completions',
      (m) =>
        `{"prompt":"Tell me a story.","model":"${m}","stream":false,"max_tokens":16,"min_tokens":16,"ignore_eos":true,"nvext":{"ignore_eos":true}}`,
    ))
      assert.equal(
        (JSON.parse(r.text) as { usage: { completion_tokens: number } }).usage.completion_tokens,
        16,
      );
  });

  it('the llama engine still refuses min_tokens that a stop string or EOS could cut short', async () => {
    for (const body of [
      AIPERF(LLAMA_MODEL, ',"stop":["."]'),
      AIPERF(LLAMA_MODEL).replace('"ignore_eos":true', '"ignore_eos":false'),
    ]) {
      const r = await post(set.gw.url, '/v1/chat/completions', body);
      assert.equal(r.status, 400, r.text);
      const e = assertErrorBody(r.text, 400).error;
      assert.deepEqual([e.code, e.param], ['SY_ERR_UNSUPPORTED_PARAMETER', 'min_tokens']);
    }
  });
});
