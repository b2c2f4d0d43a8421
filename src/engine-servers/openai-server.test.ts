import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, test } from 'node:test';
import type { BackendSignals, EngineBackend, GenerationInput, GenerationSink } from './backend.ts';
import { type OpenAiServer, pseudoEmbedding, startOpenAiServer } from './openai-server.ts';
import { SimBackend } from './sim/sim-backend.ts';

/** A decoded JSON body, read by assertions that fail on any wrong shape. */
// biome-ignore lint/suspicious/noExplicitAny: assertions check the shape
type Json = any;

/** A backend the test drives by hand: it records each generation and its sink. */
class FakeBackend implements EngineBackend {
  readonly modelId = 'fake-model';
  waiting = 0;
  closed = false;
  readonly calls: { input: GenerationInput; sink: GenerationSink }[] = [];
  onGenerate: ((input: GenerationInput, sink: GenerationSink) => void) | undefined;

  generate(input: GenerationInput, sink: GenerationSink): void {
    this.calls.push({ input, sink });
    this.onGenerate?.(input, sink);
  }

  signals(): BackendSignals {
    return {
      running: 3,
      waiting: this.waiting,
      kvUsage: 0.25,
      kvBlocksTotal: 1234,
      blockSize: 16,
      prefixQueriesTokens: 100,
      prefixHitsTokens: 40,
      promptTokensTotal: 100,
      generationTokensTotal: 7,
      preemptionsTotal: 2,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Answers every generation at once with `tokens` chunks of ' tok' and a finish. */
function instant(tokens: number, cachedTokens = 0): (input: GenerationInput, sink: GenerationSink) => void {
  return (input, sink) => {
    setImmediate(() => {
      for (let i = 0; i < tokens; i++) sink.onText(' tok', 1);
      sink.onFinish('length', {
        promptTokens: input.request.promptTokens,
        completionTokens: tokens,
        cachedTokens,
      });
    });
  };
}

const servers: OpenAiServer[] = [];
after(async () => {
  for (const s of servers) await s.close(100);
});

async function serve(backend: EngineBackend, options = {}): Promise<OpenAiServer> {
  const server = await startOpenAiServer(backend, options);
  servers.push(server);
  return server;
}

function post(url: string, body: unknown, raw?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ?? JSON.stringify(body),
  });
}

/** The JSON payloads of an SSE body, and whether it ended with [DONE]. */
function sseEvents(text: string): { events: Record<string, unknown>[]; done: boolean } {
  const parts = text.split('\n\n').filter((p) => p !== '');
  const done = parts.at(-1) === 'data: [DONE]';
  const events = parts.filter((p) => p !== 'data: [DONE]').map((p) => JSON.parse(p.slice('data: '.length)));
  return { events, done };
}

test('non-streaming chat and completion answers have OpenAI shapes and usage with cached tokens', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(3, 16);
  const server = await serve(backend);
  const chat = await post(`${server.url}/v1/chat/completions`, {
    model: 'fake-model',
    messages: [{ role: 'user', content: 'hello there' }],
    max_tokens: 3,
  });
  assert.equal(chat.status, 200);
  const body = (await chat.json()) as Json;
  assert.equal(body.object, 'chat.completion');
  assert.match(body.id, /^chatcmpl-/);
  assert.equal(body.model, 'fake-model');
  assert.deepEqual(body.choices, [
    {
      index: 0,
      message: { role: 'assistant', content: ' tok tok tok', refusal: null },
      logprobs: null,
      finish_reason: 'length',
      // vLLM's ChatCompletionResponseChoice: null unless a stop string or stop token ended it.
      stop_reason: null,
    },
  ]);
  const promptTokens = backend.calls[0]!.input.request.promptTokens;
  assert.deepEqual(body.usage, {
    prompt_tokens: promptTokens,
    completion_tokens: 3,
    total_tokens: promptTokens + 3,
    prompt_tokens_details: { cached_tokens: 16 },
  });
  const completion = await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'abc' });
  const c = (await completion.json()) as Json;
  assert.equal(c.object, 'text_completion');
  assert.match(c.id, /^cmpl-/);
  assert.equal(c.choices[0].text, ' tok tok tok');
  assert.equal(c.choices[0].finish_reason, 'length');
  // A completions request without max_tokens gets 16, OpenAI's and vLLM's default.
  assert.equal(backend.calls[1]!.input.request.maxTokens, 16, 'default max_tokens');
});

test('streaming chat sends the role, one chunk per token (the last with the finish), the usage chunk, then [DONE]', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(2);
  const server = await serve(backend);
  const res = await post(`${server.url}/v1/chat/completions`, {
    model: 'fake-model',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const { events, done } = sseEvents(await res.text());
  assert.ok(done);
  const choices = events.map((e) => (e['choices'] as Json[])[0]);
  assert.deepEqual(choices[0].delta, { role: 'assistant', content: '' });
  assert.deepEqual(choices[1].delta, { content: ' tok' });
  assert.equal(choices[1].finish_reason, null);
  // vLLM's finishing chunk: the last token's delta, its finish_reason and stop_reason.
  assert.deepEqual(choices[2], {
    index: 0,
    delta: { content: ' tok' },
    logprobs: null,
    finish_reason: 'length',
    stop_reason: null,
  });
  assert.equal(events.length, 4);
  assert.deepEqual(events[3]!['choices'], []);
  assert.equal((events[3]!['usage'] as Json).completion_tokens, 2);
  for (const e of events) {
    assert.equal(e['object'], 'chat.completion.chunk');
    assert.equal(e['id'], events[0]!['id']);
  }
  // vLLM's chat chunks leave `usage` out until the usage chunk (serving_chat.py, exclude_unset).
  for (const e of events.slice(0, 3)) assert.equal('usage' in e, false, JSON.stringify(e));
});

test('a finish with no token in its turn (an EOS after the last text) gets its own chunk with empty text', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = (input, sink) => {
    setImmediate(() => {
      sink.onText(' tok', 1);
      setImmediate(() =>
        sink.onFinish('stop', {
          promptTokens: input.request.promptTokens,
          completionTokens: 2,
          cachedTokens: 0,
        }),
      );
    });
  };
  const server = await serve(backend);
  for (const path of ['chat/completions', 'completions']) {
    const chat = path === 'chat/completions';
    const body = chat
      ? { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], stream: true }
      : { model: 'fake-model', prompt: 'x', stream: true };
    const { events, done } = sseEvents(await (await post(`${server.url}/v1/${path}`, body)).text());
    assert.ok(done);
    const choices = events.map((e) => (e['choices'] as Json[])[0]).slice(chat ? 1 : 0);
    assert.equal(choices.length, 2, path);
    assert.equal(choices[0].finish_reason, null);
    assert.equal(chat ? choices[0].delta.content : choices[0].text, ' tok');
    assert.equal(choices[1].finish_reason, 'stop');
    assert.equal(chat ? choices[1].delta.content : choices[1].text, '');
  }
});

test('continuous usage: each chunk counts the tokens up to it, the finishing one all of them', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(3);
  const server = await serve(backend);
  const res = await post(`${server.url}/v1/completions`, {
    model: 'fake-model',
    prompt: 'x',
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
  });
  const { events } = sseEvents(await res.text());
  assert.equal(events.length, 4);
  assert.deepEqual(
    events.map((e) => (e['usage'] as Json).completion_tokens),
    [1, 2, 3, 3],
  );
  assert.equal((events[2]!['choices'] as Json[])[0].finish_reason, 'length');
  assert.equal((events[2]!['choices'] as Json[])[0].text, ' tok');
});

test('streaming completions send text_completion chunks and no usage chunk unless asked', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(3);
  const server = await serve(backend);
  const res = await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x', stream: true });
  const { events, done } = sseEvents(await res.text());
  assert.ok(done);
  assert.equal(events.length, 3);
  for (const e of events) {
    assert.equal(e['object'], 'text_completion');
    // vLLM's completions chunks always carry "usage": null (serving_completion.py, exclude_unset=False).
    assert.equal(e['usage'], null);
  }
  assert.equal((events[0]!['choices'] as Json[])[0].text, ' tok');
  assert.equal((events[1]!['choices'] as Json[])[0].finish_reason, null);
  assert.deepEqual((events[2]!['choices'] as Json[])[0], {
    index: 0,
    text: ' tok',
    logprobs: null,
    finish_reason: 'length',
    stop_reason: null,
  });
});

test("usage in stream chunks as vLLM's: chat's leave the key out, completions' carry null, with or without include_usage", async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(2);
  const server = await serve(backend);
  for (const includeUsage of [true, false]) {
    const chat = sseEvents(
      await (
        await post(`${server.url}/v1/chat/completions`, {
          model: 'fake-model',
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
          ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
        })
      ).text(),
    );
    // The role chunk, two token chunks (the last with the finish), then the usage chunk if asked.
    assert.equal(chat.events.length, includeUsage ? 4 : 3);
    for (const e of chat.events.slice(0, 3)) assert.equal('usage' in e, false, JSON.stringify(e));
    if (includeUsage) assert.equal((chat.events[3]!['usage'] as Json).completion_tokens, 2);
    const completion = sseEvents(
      await (
        await post(`${server.url}/v1/completions`, {
          model: 'fake-model',
          prompt: 'x',
          stream: true,
          ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
        })
      ).text(),
    );
    assert.equal(completion.events.length, includeUsage ? 3 : 2);
    for (const e of completion.events.slice(0, 2)) assert.equal(e['usage'], null, JSON.stringify(e));
    if (includeUsage) assert.equal((completion.events[2]!['usage'] as Json).completion_tokens, 2);
  }
});

test('stop_reason names the stop string that ended a sim generation (JSON and streams), null otherwise', async () => {
  const backend = new SimBackend({
    modelId: 'sim',
    gpu: 'h100',
    model: 'llama-3.1-8b',
    tp: 1,
    timeScale: 0.01,
  });
  const server = await serve(backend);
  const bodies = {
    chat: { model: 'sim', messages: [{ role: 'user', content: 'Which track?' }], seed: 5 },
    completions: { model: 'sim', prompt: 'Which track?', seed: 5 },
  };
  for (const [kind, base] of Object.entries(bodies)) {
    const path = kind === 'chat' ? 'chat/completions' : 'completions';
    const choice = async (extra: Record<string, unknown>): Promise<Json> =>
      ((await (await post(`${server.url}/v1/${path}`, { ...base, max_tokens: 24, ...extra })).json()) as Json)
        .choices[0];
    const textOf = (c: Json): string => (kind === 'chat' ? c.message.content : c.text);
    // The same seed gives the same filler text: a word from its middle is a stop string it meets.
    const free = await choice({});
    assert.equal(free.finish_reason, 'length');
    assert.equal(free.stop_reason, null, `${kind}: no stop string, stop_reason null`);
    const word = textOf(free)
      .split(' ')
      .filter((w: string) => w.length > 0)[8] as string;
    const stopped = await choice({ stop: ['no such words here', word] });
    assert.equal(stopped.finish_reason, 'stop');
    assert.equal(stopped.stop_reason, word, `${kind}: stop_reason names the string matched`);
    assert.ok(!textOf(stopped).includes(word));
    const stream = sseEvents(
      await (
        await post(`${server.url}/v1/${path}`, {
          ...base,
          max_tokens: 24,
          stop: ['no such words here', word],
          stream: true,
        })
      ).text(),
    );
    const last = (stream.events.at(-1)!['choices'] as Json[])[0];
    assert.equal(last.finish_reason, 'stop');
    assert.equal(last.stop_reason, word, `${kind} stream: the finishing chunk names it`);
  }
});

test('stop_token_ids: none, null or [] is served; token ids are refused by name, never ignored', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(1);
  const server = await serve(backend);
  for (const path of ['chat/completions', 'completions']) {
    const base =
      path === 'chat/completions'
        ? { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }
        : { model: 'fake-model', prompt: 'x' };
    for (const ids of [null, []]) {
      const res = await post(`${server.url}/v1/${path}`, { ...base, stop_token_ids: ids });
      assert.equal(res.status, 200, `${path} ${JSON.stringify(ids)}`);
      await res.arrayBuffer();
    }
    const refused = await post(`${server.url}/v1/${path}`, { ...base, stop_token_ids: [128009] });
    assert.equal(refused.status, 400);
    const error = ((await refused.json()) as Json).error;
    assert.equal(error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(error.param, 'stop_token_ids');
    const bad = await post(`${server.url}/v1/${path}`, { ...base, stop_token_ids: ['eos'] });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as Json).error.code, 'SY_ERR_INVALID_ARGUMENT');
  }
  assert.equal(backend.calls.length, 4, 'only the servable ones reached the backend');
});

test('bad requests get OpenAI-style errors with the right status', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(1);
  const server = await serve(backend, { bodyBytesMax: 1000 });
  const cases: [Promise<Response>, number, string, string | null][] = [
    [post(`${server.url}/v1/completions`, { model: 'other', prompt: 'x' }), 404, 'SY_ERR_NOT_FOUND', 'model'],
    [post(`${server.url}/v1/completions`, undefined, '{"model": '), 400, 'SY_ERR_INVALID_ARGUMENT', 'body'],
    [
      post(`${server.url}/v1/chat/completions`, { model: 'fake-model' }),
      400,
      'SY_ERR_INVALID_ARGUMENT',
      'messages',
    ],
    [
      post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x'.repeat(2000) }),
      413,
      'SY_ERR_REQUEST_TOO_LARGE',
      'body',
    ],
    [fetch(`${server.url}/v2/nothing`), 404, 'SY_ERR_NOT_FOUND', 'path'],
  ];
  for (const [pending, status, code, param] of cases) {
    const res = await pending;
    assert.equal(res.status, status, code);
    const body = (await res.json()) as { error: Record<string, unknown> };
    assert.equal(body.error['code'], code);
    assert.equal(body.error['param'], param);
    assert.equal(typeof body.error['message'], 'string');
  }
  assert.equal(backend.calls.length, 0, 'no bad request reached the backend');
});

test('a backend error before the first token keeps its status; after it, it travels as an event', async () => {
  const backend = new FakeBackend();
  const server = await serve(backend);
  backend.onGenerate = (_input, sink) =>
    setImmediate(() =>
      sink.onError(Object.assign(new Error('too long'), { status: 400, code: 'SY_ERR_INVALID_ARGUMENT' })),
    );
  const early = await post(`${server.url}/v1/completions`, {
    model: 'fake-model',
    prompt: 'x',
    stream: true,
  });
  assert.equal(early.status, 400);
  assert.equal(((await early.json()) as Json).error.message, 'too long');
  backend.onGenerate = (_input, sink) =>
    setImmediate(() => {
      sink.onText(' a', 1);
      sink.onError(new Error('broke'));
    });
  const late = await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x', stream: true });
  assert.equal(late.status, 200);
  const { events, done } = sseEvents(await late.text());
  assert.ok(done);
  assert.equal((events.at(-1)!['error'] as Json).code, 'SY_ERR_INTERNAL');
});

test('more than maxWaiting queued requests get 429 with Retry-After', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(1);
  const server = await serve(backend, { maxWaiting: 2, retryAfterS: 3 });
  backend.waiting = 1;
  const ok = await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x' });
  assert.equal(ok.status, 200);
  await ok.text();
  backend.waiting = 2;
  const refused = await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x' });
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get('retry-after'), '3');
  assert.equal(((await refused.json()) as Json).error.code, 'SY_ERR_OVERLOADED');
  assert.equal(backend.calls.length, 1);
  await assert.rejects(startOpenAiServer(backend, { maxWaiting: 0 }), /invalid maxWaiting '0'/);
});

test('a client that disconnects aborts its generation', async () => {
  const backend = new FakeBackend();
  const server = await serve(backend);
  let aborted!: () => void;
  const abortedNow = new Promise<void>((resolve) => {
    aborted = resolve;
  });
  backend.onGenerate = (input, sink) => {
    sink.onText(' first', 1);
    input.signal.addEventListener('abort', () => {
      sink.onFinish('abort', { promptTokens: 1, completionTokens: 1, cachedTokens: 0 });
      aborted();
    });
  };
  const req = httpRequest(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
  });
  req.on('response', (res) => res.once('data', () => req.destroy()));
  req.on('error', () => {});
  req.end(JSON.stringify({ model: 'fake-model', prompt: 'x', stream: true }));
  await abortedNow;
  assert.equal(backend.calls[0]!.input.signal.aborted, true);
  assert.equal(server.inFlight, 0);
});

test('/v1/models, /health and /metrics report the model and vLLM metric names', async () => {
  const backend = new FakeBackend();
  backend.onGenerate = instant(2);
  const server = await serve(backend);
  const models = (await (await fetch(`${server.url}/v1/models`)).json()) as Json;
  assert.equal(models.object, 'list');
  assert.equal(models.data[0].id, 'fake-model');
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  await (await post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x' })).text();
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const labels = 'model_name="fake-model",engine="0"';
  for (const line of [
    `vllm:num_requests_running{${labels}} 3`,
    `vllm:num_requests_waiting{${labels}} 0`,
    `vllm:kv_cache_usage_perc{${labels}} 0.25`,
    `vllm:gpu_cache_usage_perc{${labels}} 0.25`,
    `vllm:cache_config_info{block_size="16",num_gpu_blocks="1234",${labels}} 1`,
    `vllm:prefix_cache_queries_total{${labels}} 100`,
    `vllm:prefix_cache_hits_total{${labels}} 40`,
    `vllm:prompt_tokens_total{${labels}} 100`,
    `vllm:generation_tokens_total{${labels}} 7`,
    `vllm:num_preemptions_total{${labels}} 2`,
    `vllm:time_to_first_token_seconds_count{${labels}} 1`,
    `vllm:e2e_request_latency_seconds_count{${labels}} 1`,
    `vllm:request_success_total{finished_reason="length",${labels}} 1`,
  ]) {
    assert.ok(text.includes(line), `missing ${line}`);
  }
  // Totals stay totals across scrapes (the counters advance by the signals' growth only).
  const again = await (await fetch(`${server.url}/metrics`)).text();
  assert.ok(again.includes(`vllm:prompt_tokens_total{${labels}} 100`));
});

test('embeddings are deterministic unit vectors in OpenAI shape', async () => {
  const backend = new FakeBackend();
  const server = await serve(backend);
  const res = await post(`${server.url}/v1/embeddings`, {
    model: 'fake-model',
    input: ['alpha', 'beta', 'alpha'],
    dimensions: 64,
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as Json;
  assert.equal(body.object, 'list');
  assert.equal(body.data.length, 3);
  const [a, b, c] = body.data.map((d: Json) => d.embedding as number[]);
  assert.equal(a.length, 64);
  assert.deepEqual(a, c);
  assert.notDeepEqual(a, b);
  assert.ok(Math.abs(a.reduce((s: number, v: number) => s + v * v, 0) - 1) < 1e-9);
  assert.deepEqual(a, pseudoEmbedding('alpha', 64));
  // Estimated at four characters a token: alpha 2, beta 1, alpha 2.
  assert.equal(body.usage.prompt_tokens, 5);
  const wrong = await post(`${server.url}/v1/embeddings`, { model: 'nope', input: 'x' });
  assert.equal(wrong.status, 404);
  const bad = await post(`${server.url}/v1/embeddings`, { model: 'fake-model', input: 5 });
  assert.equal(bad.status, 400);
});

test('close waits for in-flight generations, refuses new ones with 503, then closes the backend', async () => {
  const backend = new FakeBackend();
  const server = await startOpenAiServer(backend);
  let finish!: () => void;
  backend.onGenerate = (input, sink) => {
    sink.onText(' one', 1);
    finish = () =>
      sink.onFinish('length', {
        promptTokens: input.request.promptTokens,
        completionTokens: 2,
        cachedTokens: 0,
      });
  };
  const pending = post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x', stream: true });
  const res = await pending;
  const reader = res.body!.getReader();
  await reader.read();
  let closed = false;
  const closing = server.close(10_000).then(() => {
    closed = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(closed, false, 'close waits for the in-flight generation');
  assert.equal(backend.closed, false);
  finish();
  await closing;
  assert.equal(backend.closed, true);
  await assert.rejects(post(`${server.url}/v1/completions`, { model: 'fake-model', prompt: 'x' }));
});

test('over the sim backend, two requests sharing a prefix report cached tokens', async () => {
  const backend = new SimBackend({
    modelId: 'sim',
    gpu: 'h100',
    model: 'llama-3.1-8b',
    tp: 1,
    timeScale: 0.05,
  });
  const server = await serve(backend);
  const system = 'You are a helpful assistant who answers briefly. '.repeat(30);
  const ask = async (question: string) =>
    (await (
      await post(`${server.url}/v1/chat/completions`, {
        model: 'sim',
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: question },
        ],
        max_tokens: 5,
      })
    ).json()) as Json;
  const first = await ask('What is a switchyard?');
  const second = await ask('And a marshalling yard?');
  assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 300, JSON.stringify(second.usage));
  assert.equal(second.usage.completion_tokens, 5);
  assert.equal(second.choices[0].message.content.split(' ').length, 6);
});
