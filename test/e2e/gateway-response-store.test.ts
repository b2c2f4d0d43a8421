/**
 * End-to-end: the gateway's Responses store (src/gateway/response-store.ts) in front of two real sim
 * engines, round-robin, with two tenants, through the official `openai` client. A stored answer
 * says `store: true`; `previous_response_id` is expanded to the whole conversation before routing,
 * so the next turn is served by the other engine and costs what the same conversation sent whole
 * costs; `responses.retrieve`, `delete` and `inputItems.list` are answered by the gateway; a tenant
 * finds only its own responses; a small `limits.responseStoreMax` evicts the oldest. A hand-held
 * vLLM-kind upstream gets the chained turn as one self-contained body, and a chunked JSON answer
 * larger than the store holds passes through whole, unstored.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  engineTag,
  type GatewayStatsJson,
  getJson,
  MODEL,
  post,
  type SimCluster,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { LLAMA_MODEL, startLlamaGateway } from './support/llama.ts';
import { QUICK_SIM_ARGS } from './support/sim-gateway.ts';

const teardown = new Teardown();
let sims: SimCluster;
let tags: string[];
let gw: TestGateway;
/** A gateway over the same engines storing at most two responses. */
let small: TestGateway;

const SDK_TIMEOUT_MS = 20_000;
const clientOf = (url: string, apiKey: string): OpenAI =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: SDK_TIMEOUT_MS });
let a: OpenAI;
let b: OpenAI;

/** Which engine answered: the engine tag follows `resp_` in the response id. */
function servedBy(id: string): number {
  return tags.indexOf(id.slice('resp_'.length, 'resp_'.length + 8));
}

/** The error a call ends in (it must fail). */
async function failure(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const e = await call.then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(e instanceof OpenAI.APIError, String(e));
  return e;
}

before(async () => {
  sims = await startSims(2, QUICK_SIM_ARGS, teardown);
  tags = await Promise.all(sims.engines.map((e) => engineTag(e.url)));
  const backends = sims.engines.map((e, i) => simBackend(`sim${i}`, e, false));
  gw = await startTestGateway(
    {
      backends,
      routing: { policy: 'round-robin' },
      tenants: [
        { key: 'sk-a', name: 'a' },
        { key: 'sk-b', name: 'b' },
      ],
    },
    teardown,
  );
  small = await startTestGateway({ backends, limits: { responseStoreMax: 2 } }, teardown);
  a = clientOf(gw.url, 'sk-a');
  b = clientOf(gw.url, 'sk-b');
});

after(() => teardown.run());

describe('stored responses through the gateway', { timeout: 60_000 }, () => {
  it('chains a turn by previous_response_id: the whole conversation, on the other engine', async () => {
    const first = await a.responses.create({
      model: MODEL,
      instructions: 'Answer in one word.',
      input: 'My name is Ada.',
      max_output_tokens: 4,
    });
    assert.equal((first as unknown as { store: unknown }).store, true);
    const second = await a.responses.create({
      model: MODEL,
      previous_response_id: first.id,
      input: [{ role: 'user', content: 'What is my name?' }],
      max_output_tokens: 4,
    });
    assert.notEqual(servedBy(second.id), servedBy(first.id), 'round-robin: the other engine answered');
    assert.equal(second.previous_response_id, first.id);
    // The same conversation sent whole (no instructions: they are not carried over) costs the same.
    const whole = await a.responses.create({
      model: MODEL,
      store: false,
      input: [
        { type: 'message', role: 'user', content: 'My name is Ada.' },
        ...(first.output as OpenAI.Responses.ResponseInputItem[]),
        { role: 'user', content: 'What is my name?' },
      ],
      max_output_tokens: 4,
    });
    assert.equal(second.usage?.input_tokens, whole.usage?.input_tokens);
    assert.ok((second.usage?.input_tokens ?? 0) > (first.usage?.input_tokens ?? 0) + 4);
    // Its input items are that conversation, oldest first with order=asc.
    const items = await a.responses.inputItems.list(second.id, { order: 'asc' });
    const roles = items.data.map((item) => (item as { role?: string }).role);
    assert.deepEqual(roles, ['user', 'assistant', 'user']);
    assert.equal(items.data[1]?.id, first.output[0]?.id);
  });

  it('stores a streamed answer from its response.completed / response.incomplete event, then chains it', async () => {
    const stream = await a.responses.create({
      model: MODEL,
      input: 'Count to three.',
      max_output_tokens: 3,
      stream: true,
    });
    let final: OpenAI.Responses.Response | undefined;
    for await (const event of stream)
      if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
    assert.ok(final);
    const stored = await a.responses.retrieve(final.id);
    assert.equal((stored as unknown as { store: unknown }).store, true);
    assert.deepEqual(stored.output, final.output);
    const next = await a.responses.create({
      model: MODEL,
      previous_response_id: final.id,
      input: 'Again.',
      max_output_tokens: 2,
      stream: true,
    });
    let done: OpenAI.Responses.Response | undefined;
    for await (const event of next) if (event.type === 'response.incomplete') done = event.response;
    assert.ok((done?.usage?.input_tokens ?? 0) > (final.usage?.input_tokens ?? 0));
    const items = await a.responses.inputItems.list(done?.id as string);
    assert.equal(items.data.length, 3);
  });

  it('retrieve, input_items pages, delete; then 404 and previous_response_not_found', async () => {
    const created = await a.responses.create({
      model: MODEL,
      input: [
        { role: 'user', content: 'one' },
        { role: 'user', content: 'two' },
        { role: 'user', content: 'three' },
      ],
      max_output_tokens: 2,
    });
    const got = await a.responses.retrieve(created.id);
    assert.deepEqual(got.output, created.output);
    const page1 = await a.responses.inputItems.list(created.id, { limit: 2 });
    const texts = (page: typeof page1) =>
      page.data.map((item) => (item as unknown as { content: string }).content);
    assert.deepEqual(texts(page1), ['three', 'two'], 'newest first by default');
    assert.equal(page1.has_more, true);
    const page2 = await a.responses.inputItems.list(created.id, {
      limit: 2,
      after: page1.data[1]?.id as string,
    });
    assert.deepEqual(texts(page2), ['one']);
    assert.equal(page2.has_more, false);

    const deleted: unknown = await a.responses.delete(created.id);
    assert.deepEqual(deleted, { id: created.id, object: 'response', deleted: true });
    const raw = await fetch(`${gw.url}/v1/responses/${created.id}`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer sk-a' },
    });
    assert.equal(raw.status, 404, 'deleted once');
    const gone = await failure(a.responses.retrieve(created.id));
    assert.equal(gone.status, 404);
    assert.equal(gone.code, 'SY_ERR_RESPONSE_NOT_FOUND');
    assert.equal(gone.message, `404 No response found with id '${created.id}'.`);
    const chained = await failure(
      a.responses.create({
        model: MODEL,
        previous_response_id: created.id,
        input: 'x',
        max_output_tokens: 1,
      }),
    );
    assert.equal(chained.status, 400);
    assert.equal(chained.code, 'SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND');
    assert.equal(chained.param, 'previous_response_id');
    assert.equal(chained.message, `400 Previous response with id '${created.id}' not found.`);
  });

  it('deletes with the shape OpenAI answers', async () => {
    const created = await a.responses.create({ model: MODEL, input: 'x', max_output_tokens: 1 });
    const raw = await fetch(`${gw.url}/v1/responses/${created.id}`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer sk-a' },
    });
    assert.equal(raw.status, 200);
    assert.deepEqual(await raw.json(), { id: created.id, object: 'response', deleted: true });
  });

  it('a tenant finds only its own responses; store: false stores nothing', async () => {
    const mine = await a.responses.create({ model: MODEL, input: 'secret', max_output_tokens: 1 });
    assert.equal((await failure(b.responses.retrieve(mine.id))).status, 404);
    assert.equal((await failure(b.responses.inputItems.list(mine.id))).status, 404);
    assert.equal((await failure(b.responses.delete(mine.id))).status, 404);
    const chained = await failure(
      b.responses.create({ model: MODEL, previous_response_id: mine.id, input: 'x', max_output_tokens: 1 }),
    );
    assert.equal(chained.code, 'SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND');
    assert.equal((await failure(clientOf(gw.url, 'sk-none').responses.retrieve(mine.id))).status, 401);
    assert.equal((await a.responses.retrieve(mine.id)).id, mine.id, 'still there for its tenant');

    const unstored = await a.responses.create({
      model: MODEL,
      input: 'x',
      max_output_tokens: 1,
      store: false,
    });
    assert.equal((unstored as unknown as { store: unknown }).store, false);
    assert.equal((await failure(a.responses.retrieve(unstored.id))).code, 'SY_ERR_RESPONSE_NOT_FOUND');
  });

  it('evicts the least recently used past limits.responseStoreMax', async () => {
    const c = clientOf(small.url, 'unused');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await c.responses.create({ model: MODEL, input: `turn ${i}`, max_output_tokens: 1 })).id);
    assert.equal((await failure(c.responses.retrieve(ids[0] as string))).code, 'SY_ERR_RESPONSE_NOT_FOUND');
    for (const id of ids.slice(1)) assert.equal((await c.responses.retrieve(id)).id, id);
    const stats = (await getJson(`${small.url}/stats`)) as GatewayStatsJson & {
      responseStore: { count: number; evicted: number; stored: number };
    };
    assert.deepEqual(
      [stats.responseStore.count, stats.responseStore.stored, stats.responseStore.evicted],
      [2, 3, 1],
    );
  });

  it('unknown ids and unserved methods', async () => {
    const unknown = await failure(a.responses.retrieve('resp_nope'));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'SY_ERR_RESPONSE_NOT_FOUND');
    const put = await fetch(`${gw.url}/v1/responses/resp_nope`, {
      method: 'PUT',
      headers: { authorization: 'Bearer sk-a' },
    });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, DELETE');
  });
});

/**
 * A vLLM-kind upstream answering `POST /v1/responses` with a chunked JSON answer (no content-length,
 * 500-byte writes) whose text is 100 characters per `max_output_tokens`; it keeps the bodies it got.
 */
async function chunkedUpstream(): Promise<{ url: string; bodies: Record<string, unknown>[] }> {
  const bodies: Record<string, unknown>[] = [];
  const upstream = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/responses') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(req.url === '/v1/models' ? JSON.stringify({ object: 'list', data: [{ id: MODEL }] }) : '{}');
        return;
      }
      const body = JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>;
      bodies.push(body);
      const n = bodies.length;
      const text = 'x'.repeat(100 * Number(body['max_output_tokens'] ?? 1));
      const answer = JSON.stringify({
        id: `resp_up${n}`,
        object: 'response',
        status: 'completed',
        store: false,
        output: [
          {
            type: 'message',
            id: `msg_up${n}`,
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text, annotations: [] }],
          },
        ],
        usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 },
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let at = 0; at < answer.length; at += 500) res.write(answer.slice(at, at + 500));
      res.end();
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  teardown.add(() => new Promise<void>((r) => upstream.close(() => r())));
  return { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, bodies };
}

describe('stored responses over a vLLM-kind upstream', { timeout: 60_000 }, () => {
  it('the chained turn goes upstream self-contained; an answer over the bound passes whole, unstored', async () => {
    const upstream = await chunkedUpstream();
    const vllm = await startTestGateway(
      {
        backends: [{ id: 'up', type: 'vllm', url: upstream.url, models: [MODEL] }],
        limits: { responseStoreBytesMax: 16_384 },
      },
      teardown,
    );
    const c = clientOf(vllm.url, 'unused');
    const first = await c.responses.create({ model: MODEL, input: 'hello', max_output_tokens: 1 });
    assert.equal((first as unknown as { store: unknown }).store, true);
    await c.responses.create({
      model: MODEL,
      previous_response_id: first.id,
      input: 'more',
      max_output_tokens: 1,
    });
    const chained = upstream.bodies[1] as Record<string, unknown>;
    assert.equal('previous_response_id' in chained, false);
    assert.deepEqual(
      (chained['input'] as { id?: string; role: string }[]).map((item) => item.id ?? item.role),
      ['user', 'msg_up1', 'user'],
    );

    // About 20 KB of answer in 500-byte writes: more than the 16,384 bytes a capture holds.
    const big = await c.responses.create({ model: MODEL, input: 'long', max_output_tokens: 200 });
    assert.equal(big.output_text.length, 20_000, 'the answer arrived whole');
    assert.equal((big as unknown as { store: unknown }).store, false);
    assert.equal((await failure(c.responses.retrieve(big.id))).code, 'SY_ERR_RESPONSE_NOT_FOUND');
    const stats = (await getJson(`${vllm.url}/stats`)) as {
      responseStore: { tooLarge: number; count: number };
    };
    assert.deepEqual([stats.responseStore.tooLarge, stats.responseStore.count], [1, 2]);
  });
});

/**
 * The two `/v1/responses` bodies `generateText` with `@ai-sdk/openai` 3.0.141's Responses model (ai
 * 6.0.333) sent for a two-turn conversation, captured by a logging proxy in front of `switchyard
 * serve` (docs/gateway.md "Stored responses"): the second sends the first answer back as an
 * `item_reference` to its output message (`store` is on unless told otherwise).
 */
const AI_SDK_FIRST = {
  model: MODEL,
  input: [{ role: 'user', content: [{ type: 'input_text', text: 'My name is Ada.' }] }],
  max_output_tokens: 8,
};
function aiSdkSecond(messageId: string): Record<string, unknown> {
  return {
    model: MODEL,
    input: [
      { role: 'user', content: [{ type: 'input_text', text: 'My name is Ada.' }] },
      { type: 'item_reference', id: messageId },
      { role: 'user', content: [{ type: 'input_text', text: 'What is my name?' }] },
    ],
    max_output_tokens: 8,
  };
}

/** What these tests read of a `/v1/responses` answer (a response, or an error). */
interface Answer {
  id: string;
  output: { id: string; type: string }[];
  usage: { input_tokens: number };
  error?: { code: string; param: string; message: string };
}

describe('item_reference inputs resolved from the store', { timeout: 60_000 }, () => {
  /** POST /v1/responses under a tenant's key: the status and the parsed answer. */
  async function create(key: string, body: unknown): Promise<{ status: number; json: Answer }> {
    const reply = await post(gw.url, '/v1/responses', body, { headers: { authorization: `Bearer ${key}` } });
    return { status: reply.status, json: JSON.parse(reply.text) as Answer };
  }

  it("the AI SDK's second turn: the reference becomes the stored answer, on the other engine", async () => {
    const first = await create('sk-a', AI_SDK_FIRST);
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const message = first.json.output.find((o) => o.type === 'message');
    assert.ok(message);
    const second = await create('sk-a', aiSdkSecond(message.id));
    assert.equal(second.status, 200, JSON.stringify(second.json));
    assert.notEqual(servedBy(second.json.id), servedBy(first.json.id), 'round-robin: the other engine');
    // The same conversation sent whole costs the same.
    const input = aiSdkSecond(message.id)['input'] as unknown[];
    input[1] = message;
    const whole = await create('sk-a', { ...aiSdkSecond(message.id), input, store: false });
    assert.equal(whole.status, 200, JSON.stringify(whole.json));
    assert.equal(second.json.usage.input_tokens, whole.json.usage.input_tokens);
    assert.ok(second.json.usage.input_tokens > first.json.usage.input_tokens + 4);
    // Stored with the item itself: its input items list the answer, not the reference.
    const items = await a.responses.inputItems.list(second.json.id, { order: 'asc' });
    assert.deepEqual(
      items.data.map((item) => (item as { role?: string }).role),
      ['user', 'assistant', 'user'],
    );
    assert.equal(items.data[1]?.id, message.id);
  });

  it("an unknown, another tenant's or a deleted item is 404 naming input[i]", async () => {
    const first = await create('sk-a', AI_SDK_FIRST);
    const messageId = first.json.output[0]?.id as string;
    const refused = async (key: string, id: string): Promise<unknown[]> => {
      const reply = await create(key, aiSdkSecond(id));
      const error = reply.json.error;
      return [reply.status, error?.code, error?.param, error?.message];
    };
    const notFound = (id: string): unknown[] => [
      404,
      'SY_ERR_ITEM_NOT_FOUND',
      'input[1]',
      `Item with id '${id}' not found.`,
    ];
    assert.deepEqual(await refused('sk-a', 'msg_unknown'), notFound('msg_unknown'));
    assert.deepEqual(await refused('sk-b', messageId), notFound(messageId));
    await a.responses.delete(first.json.id);
    assert.deepEqual(await refused('sk-a', messageId), notFound(messageId));
  });
});

describe('stored responses over the built-in llama engine', { timeout: 120_000 }, () => {
  it('a JSON first turn, then a streamed chained turn on the whole conversation', async () => {
    const { gw: llama } = await startLlamaGateway(teardown);
    const c = clientOf(llama.url, 'unused');
    const first = await c.responses.create({
      model: LLAMA_MODEL,
      input: 'Tell me a story.',
      max_output_tokens: 4,
    });
    assert.equal((first as unknown as { store: unknown }).store, true);
    const stream = await c.responses.create({
      model: LLAMA_MODEL,
      previous_response_id: first.id,
      input: 'Go on.',
      max_output_tokens: 4,
      stream: true,
    });
    let final: OpenAI.Responses.Response | undefined;
    for await (const event of stream)
      if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
    assert.ok(final);
    // The second prompt holds the first turn's input and answer: more tokens than both of them alone.
    assert.ok(
      (final.usage?.input_tokens ?? 0) > (first.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0),
      `${final.usage?.input_tokens} after ${JSON.stringify(first.usage)}`,
    );
    const items = await c.responses.inputItems.list(final.id, { order: 'asc' });
    assert.deepEqual(
      items.data.map((item) => (item as { role?: string }).role),
      ['user', 'assistant', 'user'],
    );
  });
});
