/**
 * End-to-end: the official `openai` npm client against the gateway in front of two real sim
 * engines. Every call the client makes must work unmodified through the gateway, and the gateway's
 * errors must reach the client as typed APIErrors carrying our status and SY_ERR_* code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  engineTag,
  type GatewayStatsJson,
  getJson,
  MODEL,
  metricSum,
  type SimCluster,
  scrape,
  servedBy,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

const TENANT_KEY = 'sk-e2e-openai-tenant';

const teardown = new Teardown();
let gw: TestGateway;
let client: OpenAI;
let tags: string[];
let sims: SimCluster;
/** An engine of its own behind a gateway of its own, to be killed mid-stream. */
let doomed: SimCluster;
let doomedGw: TestGateway;

before(async () => {
  [sims, doomed] = await Promise.all([
    startSims(2, ['--time-scale', '0.05'], teardown),
    startSims(1, ['--time-scale', '1', '--kv-events', 'none'], teardown),
  ]);
  doomedGw = await startTestGateway({ backends: [simBackend('doomed', doomed.engines[0]!)] }, teardown);
  tags = await Promise.all(sims.engines.map((e) => engineTag(e.url)));
  gw = await startTestGateway(
    {
      backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
      routing: { policy: 'round-robin' },
      tenants: [{ key: TENANT_KEY, name: 'e2e' }],
    },
    teardown,
  );
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(() => teardown.run());

describe('the openai client through the gateway', { timeout: 60_000 }, () => {
  it('chat.completions.create without streaming, spread over both engines', async () => {
    const served = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const chat = await client.chat.completions.create({
        model: MODEL,
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: `Question number ${i}: what is a switchyard?` },
        ],
        max_tokens: 7,
      });
      assert.equal(chat.object, 'chat.completion');
      assert.equal(chat.model, MODEL);
      assert.equal(chat.choices.length, 1);
      assert.equal(chat.choices[0]?.finish_reason, 'length');
      assert.equal(chat.choices[0]?.message.role, 'assistant');
      assert.ok((chat.choices[0]?.message.content ?? '').length > 0);
      assert.equal(chat.usage?.completion_tokens, 7);
      assert.ok((chat.usage?.prompt_tokens ?? 0) > 0);
      served.add(servedBy(chat.id, tags));
    }
    assert.deepEqual([...served].sort(), [0, 1], 'round robin uses both engines');
  });

  it('chat.completions.create streaming with include_usage: deltas, a finish reason, then usage', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Stream five tokens.' }],
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    let usageIndex = -1;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      content += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) {
        usage = chunk.usage;
        usageIndex = chunks;
      }
      chunks++;
    }
    assert.equal(finish, 'length');
    assert.ok(content.length > 0);
    assert.equal(usage?.completion_tokens, 5, 'usage arrives at the end of the stream');
    assert.equal(usageIndex, chunks - 1, 'usage is the last chunk');
  });

  it('completions.create with and without streaming', async () => {
    const completion = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 4,
    });
    assert.equal(completion.object, 'text_completion');
    assert.equal(completion.choices[0]?.finish_reason, 'length');
    assert.ok((completion.choices[0]?.text ?? '').length > 0);
    assert.equal(completion.usage?.completion_tokens, 4);

    const stream = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(text.length > 0);
    assert.equal(usage?.completion_tokens, 3);
  });

  it('models.list names the served model', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) {
      assert.equal(model.object, 'model');
      ids.push(model.id);
    }
    assert.deepEqual(ids, [MODEL]);
  });

  it('embeddings.create passes through (the client asks for base64 and decodes it)', async () => {
    const one = await client.embeddings.create({ model: MODEL, input: 'a switchyard sorts railway cars' });
    assert.equal(one.object, 'list');
    assert.equal(one.data.length, 1);
    const v = one.data[0]?.embedding ?? [];
    assert.ok(v.length > 0);
    assert.ok(v.every((x) => Number.isFinite(x)));
    const again = await client.embeddings.create({ model: MODEL, input: 'a switchyard sorts railway cars' });
    assert.deepEqual(again.data[0]?.embedding, v, 'deterministic pseudo-embeddings');

    const many = await client.embeddings.create({
      model: MODEL,
      input: ['first', 'second', 'third'],
      encoding_format: 'float',
      dimensions: 8,
    });
    assert.deepEqual(
      many.data.map((d) => d.index),
      [0, 1, 2],
    );
    for (const d of many.data) assert.equal(d.embedding.length, 8);
    assert.ok(many.usage.prompt_tokens >= 3);
  });

  it('maps bad input to BadRequestError 400 with our code and param', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL,
        messages: 'not a list' as unknown as OpenAI.ChatCompletionMessageParam[],
        max_tokens: 2,
      }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError, `got ${String(error)}`);
        assert.equal(error.status, 400);
        assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.equal(error.param, 'messages');
        assert.equal(error.type, 'invalid_request_error');
        return true;
      },
    );
    await assert.rejects(
      client.completions.create({ model: MODEL, prompt: 'x', max_tokens: -3 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.equal(error.param, 'max_tokens');
        return true;
      },
    );
    // Streaming requests are refused before the stream starts: the client throws, no iterator.
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'x' }],
        temperature: 7,
        stream: true,
      }),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'temperature',
    );
    await assert.rejects(
      client.embeddings.create({ model: MODEL } as OpenAI.EmbeddingCreateParams),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.equal(error.param, 'input');
        return true;
      },
    );
  });

  it('maps an unknown model to NotFoundError 404 with SY_ERR_NOT_FOUND', async () => {
    for (const call of [
      () => client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] }),
      () => client.completions.create({ model: 'gpt-9', prompt: 'x', stream: true }),
      () => client.embeddings.create({ model: 'gpt-9', input: 'x' }),
    ]) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError, `got ${String(error)}`);
        assert.equal(error.status, 404);
        assert.equal(error.code, 'SY_ERR_NOT_FOUND');
        assert.equal(error.param, 'model');
        assert.match(error.message, /gpt-9/);
        return true;
      });
    }
  });

  it('maps a wrong API key to AuthenticationError 401 with SY_ERR_UNAUTHORIZED', async () => {
    const stranger = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'sk-wrong',
      maxRetries: 0,
      timeout: 20_000,
    });
    await assert.rejects(
      stranger.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.AuthenticationError, `got ${String(error)}`);
        assert.equal(error.code, 'SY_ERR_UNAUTHORIZED');
        return true;
      },
    );
  });

  it('a stream the client abandons is counted as a client abort and frees the engine', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'A long answer, please.' }],
      max_tokens: 5000,
      stream: true,
    });
    let seen = 0;
    for await (const _chunk of stream) {
      if (++seen === 3) break; // breaking out of the loop aborts the request
    }
    const deadline = Date.now() + 10_000;
    let stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    while ((stats.inFlight > 0 || (stats.failed['client_abort'] ?? 0) < 1) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    }
    assert.equal(stats.failed['client_abort'], 1, JSON.stringify(stats));
    assert.equal(stats.inFlight, 0);
    assert.equal(stats.accepted, stats.completed + stats.failedTotal);
    const metrics = await scrape(gw.url);
    assert.match(metrics, /switchyard_gateway_requests_failed_total\{reason="client_abort"\} 1/);
    // The gateway let go of the upstream request: the engine aborted the sequence and runs nothing.
    await until('the engine aborts the abandoned sequence', async () => {
      let running = 0;
      let aborted = 0;
      for (const e of sims.engines) {
        const text = await scrape(e.url);
        running += metricSum(text, 'vllm:num_requests_running');
        aborted += metricSum(text, 'vllm:request_success_total', 'finished_reason="abort"');
      }
      return running === 0 && aborted === 1;
    });
  });

  it('a stream cut by an engine failure surfaces in the client as an APIError with SY_ERR_UPSTREAM', async () => {
    const doomedClient = new OpenAI({
      baseURL: `${doomedGw.url}/v1`,
      apiKey: 'unused',
      maxRetries: 0,
      timeout: 20_000,
    });
    const stream = await doomedClient.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Talk for a long time.' }],
      max_tokens: 2000,
      stream: true,
    });
    let chunks = 0;
    await assert.rejects(
      (async () => {
        for await (const _chunk of stream) {
          if (++chunks === 3) await doomed.engines[0]!.kill('SIGKILL');
        }
      })(),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.APIError, `got ${String(error)}`);
        assert.equal(error.code, 'SY_ERR_UPSTREAM');
        assert.equal(error.type, 'server_error');
        return true;
      },
    );
    assert.ok(chunks >= 3);
    const stats = await getJson<GatewayStatsJson>(`${doomedGw.url}/stats`);
    assert.equal(stats.failed['upstream'], 1, JSON.stringify(stats));
    assert.equal(stats.inFlight, 0);
  });
});
