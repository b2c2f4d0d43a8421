/**
 * End-to-end: what the official `openai` npm SDK (6.x, the devDependency) expects of the gateway in
 * front of real sim engines, where its types or its helpers found the gateway wanting (stop 29,
 * task D: the live gateway as unseen clients use it; docs/gateway.md "Clients checked").
 *
 * - A chat answer's `message.refusal`: the SDK types it `string | null` (required) and OpenAI and
 *   vLLM send `null`; the built-in engines left the key out, so `message.refusal === null` was false.
 * - `files.list({ purpose, order, limit, after })`: the gateway ignored the query, so `purpose:
 *   'batch'` listed the batches' output files too, oldest first, and `limit: 1` got every file.
 * - An AbortController mid-stream (chat, responses) frees the engine's sequence.
 * - A tenant over its RPM gets 429 with a Retry-After the SDK's own retry waits for (it honours up
 *   to 60 s), so a client with the SDK's default retries gets its answer on the retry.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import OpenAI, { RateLimitError, toFile } from 'openai';
import { type GatewayStatsJson, getJson, MODEL, metricSum, scrape, until } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const KEY = 'sk-e2e-openai-sdk-main';
const LIMITED_KEY = 'sk-e2e-openai-sdk-limited';
/** The limited tenant's RPM: a bucket of 60 refilled one a second, so its 429s say Retry-After: 1. */
const LIMITED_RPM = 60;

const dir = mkdtempSync(join(tmpdir(), 'switchyard-openai-sdk-'));
const setUp = simGateway(
  {
    batch: { dir },
    tenants: [
      { key: KEY, name: 'main' },
      { key: LIMITED_KEY, name: 'limited', rpm: LIMITED_RPM },
    ],
  },
  2,
);
// Added first, so run last: after the gateway has closed.
setUp.teardown.add(() => rmSync(dir, { recursive: true, force: true }));

/** An SDK client of the gateway (made per use: the gateway starts in the file's before hook). */
/** A batch's wait, as gateway-batch.test.ts allows it: CI machines run the suite at high load. */
const BATCH_WAIT_MS = 90_000;
/** The SDK's own request timeout: a bound on a hang, not what any test measures. */
const SDK_TIMEOUT_MS = 60_000;
const client = (options: { apiKey?: string; maxRetries?: number; fetch?: typeof fetch } = {}): OpenAI =>
  new OpenAI({
    baseURL: `${setUp.gw.url}/v1`,
    apiKey: KEY,
    maxRetries: 0,
    timeout: SDK_TIMEOUT_MS,
    ...options,
  });

const messages = [{ role: 'user' as const, content: 'Hello there, how are you?' }];

describe('chat answers as the SDK types them', () => {
  it('message.refusal is null, one choice or n, and the message goes back as the next turn', async () => {
    const one = await client().chat.completions.create({ model: MODEL, messages, max_tokens: 4 });
    const two = await client().chat.completions.create({ model: MODEL, messages, max_tokens: 4, n: 2 });
    const choices = [...one.choices, ...two.choices];
    assert.equal(choices.length, 3);
    for (const c of choices) {
      assert.equal(c.message.role, 'assistant');
      assert.equal(typeof c.message.content, 'string');
      assert.equal(c.message.refusal, null, JSON.stringify(c.message));
    }
    // What a chat loop does: the answer's message, as received, is the next request's history.
    const next = await client().chat.completions.create({
      model: MODEL,
      messages: [
        ...messages,
        (one.choices[0] as (typeof one.choices)[0]).message,
        { role: 'user', content: 'more' },
      ],
      max_tokens: 2,
    });
    assert.equal(next.choices[0]?.message.refusal, null);
  });
});

describe('embeddings as the SDKs ask for them', () => {
  it('base64 by default (decoded by the SDK) equals float; null dimensions and user are absent', async () => {
    const input = ['first text', 'second text'];
    const byDefault = await client().embeddings.create({ model: MODEL, input });
    const floats = await client().embeddings.create({ model: MODEL, input, encoding_format: 'float' });
    assert.equal(byDefault.data.length, 2);
    for (const [i, d] of byDefault.data.entries()) {
      const f = floats.data[i]?.embedding ?? [];
      assert.ok(f.length > 0);
      // base64 carries float32: the same vector to float32 precision.
      assert.deepEqual(d.embedding, Array.from(Float32Array.from(f)));
    }
    // The Python SDK sends `dimensions=None` and `user=None` as null; vLLM reads them as absent.
    const nulls = await client().embeddings.create({
      model: MODEL,
      input,
      dimensions: null as unknown as number,
      user: null as unknown as string,
    });
    assert.deepEqual(nulls.data, byDefault.data);
  });
});

describe('files.list with its query', () => {
  it('filters by purpose, lists newest first by default, and pages by limit and after', async () => {
    const line = JSON.stringify({
      custom_id: 'q',
      method: 'POST',
      url: '/v1/completions',
      body: { model: MODEL, prompt: 'x', max_tokens: 1 },
    });
    const uploaded: string[] = [];
    for (let i = 0; i < 3; i++) {
      const f = await client().files.create({
        file: await toFile(Buffer.from(`${line}\n`), `f${i}.jsonl`),
        purpose: 'batch',
      });
      uploaded.push(f.id);
    }
    // A finished batch leaves an output file (purpose batch_output) among them.
    let batch = await client().batches.create({
      input_file_id: uploaded[0] as string,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    await until(
      'the batch to finish',
      async () => {
        batch = await client().batches.retrieve(batch.id);
        return batch.status === 'completed' || batch.status === 'failed';
      },
      BATCH_WAIT_MS,
    );
    assert.equal(batch.status, 'completed');
    const output = batch.output_file_id as string;

    const all = async (query: OpenAI.Files.FileListParams): Promise<string[]> => {
      const ids: string[] = [];
      for await (const f of client().files.list(query)) ids.push(f.id);
      return ids;
    };
    const newestFirst = [...uploaded].reverse();
    assert.deepEqual(await all({ purpose: 'batch' }), newestFirst);
    assert.deepEqual(await all({ purpose: 'batch', order: 'asc' }), uploaded);
    assert.deepEqual(await all({ purpose: 'batch_output' }), [output]);
    assert.deepEqual(await all({}), [output, ...newestFirst]);

    // One file a page: the SDK follows has_more and last_id through all four.
    const page = await client().files.list({ limit: 1 });
    assert.deepEqual(
      page.data.map((f) => f.id),
      [output],
    );
    assert.equal(page.has_more, true);
    assert.deepEqual(await all({ limit: 1 }), [output, ...newestFirst]);
    assert.deepEqual(await all({ after: newestFirst[0] as string, purpose: 'batch' }), newestFirst.slice(1));

    const bad = await client()
      .files.list({ order: 'sideways' as 'asc' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(bad instanceof OpenAI.BadRequestError, String(bad));
    assert.equal(bad.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(bad.param, 'order');
  });
});

describe('batches on every endpoint the gateway serves', () => {
  it('/v1/embeddings and /v1/responses batches run, and their output lines hold the answers', async () => {
    const run = async (url: '/v1/embeddings' | '/v1/responses', bodies: object[]): Promise<unknown[]> => {
      const lines = bodies.map((body, i) =>
        JSON.stringify({ custom_id: `c${i}`, method: 'POST', url, body }),
      );
      const file = await client().files.create({
        file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'in.jsonl'),
        purpose: 'batch',
      });
      let batch = await client().batches.create({
        input_file_id: file.id,
        endpoint: url,
        completion_window: '24h',
      });
      assert.equal(batch.endpoint, url);
      await until(
        `the ${url} batch to finish`,
        async () => {
          batch = await client().batches.retrieve(batch.id);
          return ['completed', 'failed'].includes(batch.status);
        },
        BATCH_WAIT_MS,
      );
      assert.equal(batch.status, 'completed', JSON.stringify(batch));
      assert.deepEqual(batch.request_counts, { total: bodies.length, completed: bodies.length, failed: 0 });
      const text = await (await client().files.content(batch.output_file_id as string)).text();
      const out = text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number; body: unknown } });
      out.sort((a, b) => (a.custom_id < b.custom_id ? -1 : 1));
      for (const o of out) assert.equal(o.response.status_code, 200);
      return out.map((o) => o.response.body);
    };
    const embedded = (await run('/v1/embeddings', [
      { model: MODEL, input: 'one' },
      { model: MODEL, input: ['two', 'three'], dimensions: 8 },
    ])) as OpenAI.CreateEmbeddingResponse[];
    assert.deepEqual(
      embedded.map((e) => e.data.map((d) => d.embedding.length)),
      [[384], [8, 8]],
    );
    const direct = await client().embeddings.create({ model: MODEL, input: 'one', encoding_format: 'float' });
    assert.deepEqual(embedded[0]?.data[0]?.embedding, direct.data[0]?.embedding);
    const responses = (await run('/v1/responses', [
      { model: MODEL, input: 'hello', max_output_tokens: 3 },
    ])) as OpenAI.Responses.Response[];
    assert.equal(responses[0]?.object, 'response');
    assert.equal(responses[0]?.usage?.output_tokens, 3);
  });
});

describe('an AbortController mid-stream', () => {
  it('ends the SDK stream, counts a client abort, and the engine drops the sequence', async () => {
    const stats = () => getJson<GatewayStatsJson>(`${setUp.gw.url}/stats`);
    const engines = async (): Promise<{ running: number; aborted: number }> => {
      let running = 0;
      let aborted = 0;
      for (const e of setUp.sims.engines) {
        const text = await scrape(e.url);
        running += metricSum(text, 'vllm:num_requests_running');
        aborted += metricSum(text, 'vllm:request_success_total', 'finished_reason="abort"');
      }
      return { running, aborted };
    };
    const abortsBefore = (await stats()).failed['client_abort'] ?? 0;
    const engineAbortsBefore = (await engines()).aborted;
    const streams: [string, (signal: AbortSignal) => Promise<AsyncIterable<unknown>>][] = [
      [
        'chat',
        (signal) =>
          client().chat.completions.create(
            { model: MODEL, messages, max_tokens: 5000, stream: true },
            { signal },
          ),
      ],
      [
        'responses',
        (signal) =>
          client().responses.create(
            { model: MODEL, input: 'hi', max_output_tokens: 5000, stream: true },
            { signal },
          ),
      ],
    ];
    for (const [what, open] of streams) {
      const controller = new AbortController();
      const stream = await open(controller.signal);
      let seen = 0;
      // The SDK ends the iteration quietly once aborted (events already received may still come).
      for await (const _ of stream) if (++seen === 2) controller.abort();
      assert.ok(seen >= 2 && seen < 5000, `${what}: ${seen} events`);
    }
    await until('both aborts counted and in flight back to 0', async () => {
      const s = await stats();
      return (s.failed['client_abort'] ?? 0) - abortsBefore === 2 && s.inFlight === 0;
    });
    await until('the engines abort both sequences', async () => {
      const e = await engines();
      return e.running === 0 && e.aborted - engineAbortsBefore === 2;
    });
  });
});

describe('a base URL without /v1', () => {
  it("the SDK's NotFoundError names the route meant and the base URL to write", async () => {
    const missing = new OpenAI({
      baseURL: setUp.gw.url,
      apiKey: KEY,
      maxRetries: 0,
      timeout: SDK_TIMEOUT_MS,
    });
    const doubled = new OpenAI({
      baseURL: `${setUp.gw.url}/v1/v1`,
      apiKey: KEY,
      maxRetries: 0,
      timeout: SDK_TIMEOUT_MS,
    });
    const calls: [string, () => Promise<unknown>][] = [
      [
        '/v1/chat/completions',
        () => missing.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }),
      ],
      ['/v1/models', () => missing.models.list()],
      ['/v1/files', () => missing.files.list()],
      ['/v1/embeddings', () => doubled.embeddings.create({ model: MODEL, input: 'x' })],
    ];
    for (const [meant, call] of calls) {
      const e = await call().then(
        () => undefined,
        (error: unknown) => error,
      );
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
      assert.equal(e.code, 'SY_ERR_NOT_FOUND');
      assert.match(e.message, new RegExp(`did you mean ${meant}\\? An OpenAI client's base URL ends in /v1`));
    }
    // Any other unknown path says only that.
    const other = await fetch(`${setUp.gw.url}/v2/chat`);
    assert.equal(other.status, 404);
    assert.doesNotMatch(await other.text(), /did you mean/);
  });
});

describe("the SDK's retry of a 429", () => {
  it('a tenant over its RPM gets RateLimitError with Retry-After, and the retrying client its answer', async () => {
    // Every attempt the SDK makes, as it made it (its retry count header) and as answered.
    const attempts: { retryCount: string | null; status: number; retryAfter: string | null }[] = [];
    const recording: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const headers = new Headers(init?.headers);
      attempts.push({
        retryCount: headers.get('x-stainless-retry-count'),
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
      });
      return res;
    };
    const once = client({ apiKey: LIMITED_KEY });
    let refused: unknown;
    for (let i = 0; i < 4 * LIMITED_RPM && refused === undefined; i++)
      refused = await once.chat.completions.create({ model: MODEL, messages, max_tokens: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(refused instanceof RateLimitError, String(refused));
    assert.equal(refused.code, 'SY_ERR_RATE_LIMITED');
    assert.equal(refused.type, 'rate_limit_error');
    assert.equal(refused.headers?.get('retry-after'), '1');

    // The bucket is empty now, and refills one request a second: the retrying client's first attempt
    // may be refused, and then its retry waits the Retry-After and is served.
    const retrying = client({ apiKey: LIMITED_KEY, maxRetries: 2, fetch: recording });
    for (let i = 0; i < 4 * LIMITED_RPM && !attempts.some((a) => a.status === 429); i++) {
      const answer = await retrying.chat.completions.create({ model: MODEL, messages, max_tokens: 1 });
      assert.equal(answer.object, 'chat.completion');
    }
    const first429 = attempts.findIndex((a) => a.status === 429);
    assert.ok(first429 >= 0, JSON.stringify(attempts));
    assert.deepEqual(attempts[first429], { retryCount: '0', status: 429, retryAfter: '1' });
    assert.deepEqual(attempts.slice(first429 + 1), [{ retryCount: '1', status: 200, retryAfter: null }]);
  });
});
