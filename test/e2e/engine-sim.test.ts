/** End-to-end: `switchyard engine sim` as a real child process, driven over HTTP and ZMQ. */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { KvEventSubscriber } from '../../src/adapters/kv-events/subscriber.ts';
import type { KvEvent } from '../../src/core/kv-events.ts';
import { parseCompletionBody } from '../../src/core/openai-api.ts';
import { engineBlockHashes } from '../../src/engine-core/prefix.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));

interface Engine {
  child: ChildProcess;
  url: string;
  model: string;
  kvEvents: string | null;
  stderr: string[];
  exited: Promise<number | null>;
}

async function startEngine(args: string[]): Promise<Engine> {
  const child = spawn(process.execPath, [BIN, 'engine', 'sim', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    void exited.then((code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  const ready = JSON.parse(line) as Record<string, unknown>;
  assert.equal(ready['event'], 'ready');
  assert.equal(ready['engine'], 'sim');
  return {
    child,
    url: ready['url'] as string,
    model: ready['model'] as string,
    kvEvents: ready['kvEvents'] as string | null,
    stderr,
    exited,
  };
}

/** One metric's value (the first series whose name and labels start with `series`). */
async function metric(engine: Engine, series: string): Promise<number> {
  const text = await (await fetch(`${engine.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series) && !l.startsWith('#'));
  assert.ok(line !== undefined, `no ${series} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

function post(engine: Engine, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${engine.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
}

/** Polls `check` until it holds; the timeout only guards a hang (the ZMQ subscription can take seconds to join on a loaded machine). */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Fast engine with KV events; a one-sequence engine at model speed with a waiting bound. */
let fast: Engine;
let narrow: Engine;
let openai: OpenAI;

before(async () => {
  [fast, narrow] = await Promise.all([
    startEngine(['--served-model-name', 'sim-e2e', '--time-scale', '0.05']),
    startEngine(['--max-num-seqs', '1', '--max-waiting', '1', '--kv-events', 'none']),
  ]);
  openai = new OpenAI({ baseURL: `${fast.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  for (const engine of [fast, narrow]) {
    if (engine !== undefined && engine.child.exitCode === null) engine.child.kill('SIGKILL');
  }
});

test('the ready line names the served model and a KV-event endpoint', () => {
  assert.equal(fast.model, 'sim-e2e');
  assert.match(fast.kvEvents ?? '', /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(narrow.kvEvents, null);
  assert.equal(narrow.model, 'llama-3.1-8b');
});

test('chat and completions through the OpenAI client, streaming and not, with usage', async () => {
  const chat = await openai.chat.completions.create({
    model: 'sim-e2e',
    messages: [{ role: 'user', content: 'Say something.' }],
    max_tokens: 7,
  });
  assert.equal(chat.choices[0]!.finish_reason, 'length');
  assert.equal(chat.usage?.completion_tokens, 7);
  assert.equal(chat.choices[0]!.message.content?.split(' ').length, 8);
  assert.equal(chat.usage?.prompt_tokens_details?.cached_tokens, 0);

  const stream = await openai.chat.completions.create({
    model: 'sim-e2e',
    messages: [{ role: 'user', content: 'Stream something.' }],
    max_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = '';
  let chunks = 0;
  const finishes: (string | null | undefined)[] = [];
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    chunks++;
    content += chunk.choices[0]?.delta.content ?? '';
    if (chunk.choices.length > 0) finishes.push(chunk.choices[0]?.finish_reason);
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(content.split(' ').length, 6);
  // As vLLM's: the finish_reason rides on the last token's chunk.
  assert.equal(chunks, 1 + 5 + 1, 'role, five tokens (the last with the finish), usage');
  assert.deepEqual(finishes, [null, null, null, null, null, 'length']);
  assert.equal(usage?.completion_tokens, 5);

  const completion = await openai.completions.create({
    model: 'sim-e2e',
    prompt: 'Once upon a time',
    max_tokens: 4,
  });
  assert.equal(completion.object, 'text_completion');
  assert.equal(completion.usage?.completion_tokens, 4);
  assert.equal(completion.usage?.prompt_tokens, 4);
  const streamed = await openai.completions.create({
    model: 'sim-e2e',
    prompt: 'Once upon a time',
    max_tokens: 3,
    stream: true,
  });
  let text = '';
  for await (const chunk of streamed) text += chunk.choices[0]?.text ?? '';
  assert.equal(text.split(' ').length, 4);
});

test('metrics carry the vLLM names and move under load', async () => {
  const labels = '{model_name="sim-e2e",engine="0"}';
  const before = await metric(fast, `vllm:generation_tokens_total${labels}`);
  const successBefore = await fetch(`${fast.url}/metrics`).then((r) => r.text());
  assert.match(successBefore, /vllm:cache_config_info\{block_size="16",num_gpu_blocks="\d+",/);
  for (const name of [
    'vllm:num_requests_running',
    'vllm:num_requests_waiting',
    'vllm:kv_cache_usage_perc',
    'vllm:gpu_cache_usage_perc',
    'vllm:prefix_cache_queries_total',
    'vllm:prefix_cache_hits_total',
    'vllm:prompt_tokens_total',
    'vllm:num_preemptions_total',
    'vllm:time_to_first_token_seconds_bucket',
    'vllm:e2e_request_latency_seconds_count',
  ]) {
    assert.ok(successBefore.includes(`${name}{`), `missing ${name}`);
  }
  const load = Array.from({ length: 16 }, (_, i) =>
    post(fast, '/v1/completions', {
      model: 'sim-e2e',
      prompt: `load ${i} `.repeat(50),
      max_tokens: 200,
    }).then((r) => r.json()),
  );
  let runningSeen = 0;
  let kvSeen = 0;
  await until('running requests in /metrics', async () => {
    runningSeen = await metric(fast, `vllm:num_requests_running${labels}`);
    kvSeen = await metric(fast, `vllm:kv_cache_usage_perc${labels}`);
    return runningSeen > 0;
  });
  assert.ok(kvSeen > 0, 'KV in use while requests run');
  await Promise.all(load);
  assert.equal(await metric(fast, `vllm:num_requests_running${labels}`), 0);
  assert.equal(await metric(fast, `vllm:generation_tokens_total${labels}`), before + 16 * 200);
  assert.ok((await metric(fast, `vllm:request_success_total{finished_reason="length"`)) >= 16);
});

test('a shared prefix shows up as prefix-cache hits and as KV events matching the text chain', async () => {
  const events: KvEvent[] = [];
  const subscriber = new KvEventSubscriber({ onEvents: (_id, batch) => events.push(...batch) });
  subscriber.connect('fast', fast.kvEvents!);
  try {
    // ZMQ's slow joiner: the subscription reaches the publisher some time after connect (seconds on a
    // loaded machine), and what the engine publishes before is lost. Probe prompts, which share no
    // block with the ones below, until the subscriber hears one.
    let probes = 0;
    await until('the subscription to reach the engine', async () => {
      const prompt = `subscription probe ${probes++} `.repeat(20);
      assert.equal(
        (await post(fast, '/v1/completions', { model: 'sim-e2e', prompt, max_tokens: 1 })).status,
        200,
      );
      return events.length > 0;
    });
    const system = 'You are a careful assistant. Answer in one short sentence please. '.repeat(20);
    const body = (question: string) => ({
      model: 'sim-e2e',
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ],
      max_tokens: 3,
    });
    const hitsBefore = await metric(fast, 'vllm:prefix_cache_hits_total{');
    const first = (await (await post(fast, '/v1/chat/completions', body('What is a yard?'))).json()) as {
      usage: { prompt_tokens_details: { cached_tokens: number } };
    };
    const second = (await (await post(fast, '/v1/chat/completions', body('What is a switch?'))).json()) as {
      usage: { prompt_tokens_details: { cached_tokens: number } };
    };
    assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
    const cached = second.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= 300, `cached ${cached}`);
    assert.equal((await metric(fast, 'vllm:prefix_cache_hits_total{')) - hitsBefore, cached);
    // What the gateway derives from the text is what the engine announced.
    const parsed = parseCompletionBody('chat', body('What is a yard?'));
    const expected = engineBlockHashes(parsed.prefix, parsed.promptTokens, 16);
    await until('BlockStored events', async () => events.some((e) => e.type === 'BlockStored'));
    const stored = new Set(events.flatMap((e) => (e.type === 'BlockStored' ? e.hashes : [])));
    assert.ok(expected.length >= 20);
    for (const hash of expected) assert.ok(stored.has(hash), `block ${hash} not announced`);
  } finally {
    await subscriber.close();
  }
});

test("vLLM's cache_salt: no prefix-cache block is shared across salts; a bad salt is 400 naming it", async () => {
  const system = 'You are a salted assistant. Keep the answers short and plain. '.repeat(20);
  const cachedOf = async (question: string, salt: unknown, path = '/v1/chat/completions') => {
    const body =
      path === '/v1/responses'
        ? { model: 'sim-e2e', instructions: system, input: question, max_output_tokens: 3, cache_salt: salt }
        : {
            model: 'sim-e2e',
            messages: [
              { role: 'system', content: system },
              { role: 'user', content: question },
            ],
            max_tokens: 3,
            cache_salt: salt,
          };
    const res = await post(fast, path, body);
    assert.equal(res.status, 200);
    const usage = ((await res.json()) as { usage: Record<string, { cached_tokens: number }> }).usage;
    return (usage['prompt_tokens_details'] ?? usage['input_tokens_details'])!.cached_tokens;
  };
  assert.equal(await cachedOf('First question?', 'tenant-a'), 0);
  // The same salt shares the system prompt's blocks; another salt, or none, shares nothing.
  assert.ok((await cachedOf('Second question?', 'tenant-a')) >= 300);
  assert.equal(await cachedOf('Third question?', 'tenant-b'), 0);
  assert.equal(await cachedOf('Fourth question?', null), 0);
  // A Responses body is salted the same way (chat renders the same conversation).
  assert.ok((await cachedOf('Fifth question?', 'tenant-b', '/v1/responses')) >= 300);
  assert.equal(await cachedOf('Sixth question?', 'tenant-c', '/v1/responses'), 0);
  for (const salt of ['', 7, ['x']]) {
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/responses']) {
      const body =
        path === '/v1/completions'
          ? { model: 'sim-e2e', prompt: 'x', cache_salt: salt }
          : path === '/v1/responses'
            ? { model: 'sim-e2e', input: 'x', cache_salt: salt }
            : { model: 'sim-e2e', messages: [{ role: 'user', content: 'x' }], cache_salt: salt };
      const res = await post(fast, path, body);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(salt)}`);
      const error = ((await res.json()) as { error: { param: string; message: string } }).error;
      assert.equal(error.param, 'cache_salt');
      assert.match(error.message, /cache_salt' must be a non-empty string/);
    }
  }
});

test("/v1/models lists vLLM's max_model_len: the context length its 400 enforces", async () => {
  for (const engine of [fast, narrow]) {
    const list = (await (await fetch(`${engine.url}/v1/models`)).json()) as {
      data: Record<string, unknown>[];
    };
    const card = list.data[0]!;
    const one = (await (await fetch(`${engine.url}/v1/models/${card['id']}`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(one['max_model_len'], card['max_model_len']);
    const len = card['max_model_len'] as number;
    assert.ok(Number.isSafeInteger(len) && len > 0, `max_model_len ${len}`);
    // The prompt plus max_model_len output tokens is one past the limit; the 400 names that limit.
    const over = await post(engine, '/v1/completions', { model: card['id'], prompt: 'Hi', max_tokens: len });
    assert.equal(over.status, 400);
    const error = ((await over.json()) as { error: { message: string; param: string } }).error;
    assert.equal(error.param, 'max_tokens');
    assert.match(error.message, new RegExp(`maximum context length is ${len} tokens`));
  }
});

test('a wrong model is 404 and a bad body 400', async () => {
  const wrong = await post(fast, '/v1/chat/completions', {
    model: 'gpt-4',
    messages: [{ role: 'user', content: 'x' }],
  });
  assert.equal(wrong.status, 404);
  assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'SY_ERR_NOT_FOUND');
  const bad = await post(fast, '/v1/chat/completions', { model: 'sim-e2e', messages: 'not a list' });
  assert.equal(bad.status, 400);
  const body = (await bad.json()) as { error: { code: string; param: string } };
  assert.equal(body.error.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.equal(body.error.param, 'messages');
});

test('over maxWaiting the engine answers 429; a client that disconnects frees its sequence', async () => {
  const running = new AbortController();
  const waiting = new AbortController();
  const long = { model: 'llama-3.1-8b', prompt: 'hold the line', max_tokens: 20_000, stream: true };
  const first = await post(narrow, '/v1/completions', long, running.signal);
  const reader = first.body!.getReader();
  await reader.read();
  assert.equal(await metric(narrow, 'vllm:num_requests_running{'), 1);
  const second = post(narrow, '/v1/completions', long, waiting.signal).catch(() => undefined);
  await until('a waiting request', async () => (await metric(narrow, 'vllm:num_requests_waiting{')) === 1);
  const refused = await post(narrow, '/v1/completions', { ...long, stream: false });
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get('retry-after'), '1');
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'SY_ERR_OVERLOADED');
  // Disconnect both: the running sequence and the waiting one leave the engine.
  waiting.abort();
  running.abort();
  await reader.cancel().catch(() => {});
  await second;
  await until('an idle engine', async () => {
    const r = await metric(narrow, 'vllm:num_requests_running{');
    const w = await metric(narrow, 'vllm:num_requests_waiting{');
    return r === 0 && w === 0;
  });
  assert.equal(await metric(narrow, 'vllm:kv_cache_usage_perc{'), 0);
  assert.equal(await metric(narrow, 'vllm:request_success_total{finished_reason="abort"'), 2);
});

test('SIGTERM lets the in-flight request finish, then the engine exits 0', async () => {
  const res = await post(narrow, '/v1/completions', {
    model: 'llama-3.1-8b',
    prompt: 'drain me',
    max_tokens: 60,
    stream: true,
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value);
  narrow.child.kill('SIGTERM');
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  const tokens = text.split('\n\n').filter((e) => e.startsWith('data: {"id"'));
  assert.equal(tokens.length, 60);
  assert.equal(await narrow.exited, 0);
  assert.ok(
    narrow.stderr.some((l) => l.includes('SIGTERM, draining 1 in-flight')),
    narrow.stderr.join('\n'),
  );
});
