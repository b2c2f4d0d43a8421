/**
 * End-to-end: OpenAI's Responses API (`POST /v1/responses`) through the gateway. The official
 * `openai` client calls `client.responses.create`, streaming and not, against a gateway in front of
 * two real sim engines; the gateway counts the requests, takes a stream's first text delta as its
 * first token (TTFT) and its usage from `response.completed` or `response.incomplete`; a bad body
 * gets the OpenAI-style 400 with a stable code and the field named. A response cut at
 * `max_output_tokens` is `incomplete` as OpenAI reports it, and its stream carries OpenAI's whole
 * event sequence, so the SDK's `responses.stream()` helper can build the response from it. A hand-held upstream (data lines only, as a server that
 * sends no `event:` lines would) pins when TTFT is taken: at the first text delta, not at
 * `response.created`.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  assertErrorBody,
  engineTag,
  type GatewayStatsJson,
  getJson,
  MODEL,
  metricSum,
  post,
  type SimCluster,
  scrape,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

const teardown = new Teardown();
let gw: TestGateway;
let client: OpenAI;
let sims: SimCluster;
let tags: string[];

/** Which engine answered: the engine tag follows `resp_` in the response id. */
function servedByResponse(id: string): number {
  assert.match(id, /^resp_/);
  return tags.indexOf(id.slice('resp_'.length, 'resp_'.length + 8));
}

before(async () => {
  sims = await startSims(2, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  tags = await Promise.all(sims.engines.map((e) => engineTag(e.url)));
  gw = await startTestGateway(
    {
      backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e, false)),
      routing: { policy: 'round-robin' },
    },
    teardown,
  );
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
});

after(() => teardown.run());

describe('the Responses API through the gateway', { timeout: 60_000 }, () => {
  it('responses.create without streaming: text and usage, from both engines', async () => {
    const served = new Set<number>();
    for (let i = 0; i < 2; i++) {
      const response = await client.responses.create({
        model: MODEL,
        instructions: 'You are terse.',
        input: [
          { role: 'user', content: [{ type: 'input_text', text: `Question ${i}: what is a switchyard?` }] },
        ],
        max_output_tokens: 6,
      });
      assert.equal(response.object, 'response');
      // Cut at max_output_tokens (the sim never ends on its own): incomplete, as OpenAI reports it.
      assert.equal(response.status, 'incomplete');
      assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
      assert.equal(response.output[0]?.type === 'message' && response.output[0].status, 'incomplete');
      assert.ok(response.output_text.length > 0, 'output_text');
      assert.equal(response.usage?.output_tokens, 6);
      assert.ok((response.usage?.input_tokens ?? 0) > 0);
      // Omitted fields echo what the engine used: OpenAI's defaults (tool_choice auto, sampling 1).
      assert.equal(response.tool_choice, 'auto');
      assert.equal(response.temperature, 1);
      assert.equal(response.top_p, 1);
      served.add(servedByResponse(response.id));
    }
    assert.deepEqual([...served].sort(), [0, 1], 'round robin uses both engines');
  });

  it('responses.create with streaming: created, one delta per step, incomplete with usage; TTFT observed', async () => {
    const before = await scrape(gw.url);
    const ttftBefore = metricSum(before, 'switchyard_gateway_ttft_seconds_count');
    const stream = await client.responses.create({
      model: MODEL,
      input: 'Tell me about rail yards.',
      max_output_tokens: 5,
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    let outputTokens = -1;
    let completedText = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.incomplete') {
        outputTokens = event.response.usage?.output_tokens ?? -1;
        // The SDK adds `output_text` to a create() answer only; a streamed response holds its parts.
        const item = event.response.output[0];
        const part = item?.type === 'message' ? item.content[0] : undefined;
        completedText = part?.type === 'output_text' ? part.text : '';
      }
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.incomplete');
    assert.equal(types.filter((t) => t === 'response.output_text.delta').length, 5, types.join(','));
    assert.equal(outputTokens, 5);
    assert.ok(text.length > 0);
    assert.equal(completedText, text, 'the completed response holds the streamed text');
    const afterText = await scrape(gw.url);
    assert.equal(metricSum(afterText, 'switchyard_gateway_ttft_seconds_count') - ttftBefore, 1, 'one TTFT');
    const stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    assert.equal(stats.completed, 3, JSON.stringify(stats));
    assert.equal(stats.failedTotal, 0, JSON.stringify(stats));
  });

  it("the SDK's responses.stream() helper builds the response from OpenAI's event sequence", async () => {
    const completedBefore = (await getJson<GatewayStatsJson>(`${gw.url}/stats`)).completed;
    const stream = client.responses.stream({
      model: MODEL,
      instructions: 'Answer briefly.',
      input: 'What does a hump yard do?',
      max_output_tokens: 4,
      metadata: { run: 'conformance' },
      user: 'client-7',
    });
    const types: string[] = [];
    let deltas = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas += event.delta;
    }
    const response = await stream.finalResponse();
    assert.deepEqual(
      types,
      [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        ...Array<string>(4).fill('response.output_text.delta'),
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.incomplete',
      ],
      types.join(','),
    );
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.ok(deltas.length > 0);
    assert.equal(response.output_text, deltas, 'the final response holds the streamed text');
    assert.equal(response.usage?.output_tokens, 4);
    assert.deepEqual(response.metadata, { run: 'conformance' });
    assert.equal(response.instructions, 'Answer briefly.');
    assert.equal(response.user, 'client-7');
    const stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    assert.equal(stats.completed - completedBefore, 1, 'an incomplete response is a completed request');
    assert.equal(stats.failedTotal, 0, JSON.stringify(stats));
  });

  it('refuses what the sim would otherwise ignore: an unenforceable schema, tools, logprobs', async () => {
    const cases: { body: Record<string, unknown>; param: string }[] = [
      // json_object and json_schema are served (engine-structured-output.test.ts); a keyword no
      // grammar enforces is not.
      {
        body: {
          text: { format: { type: 'json_schema', name: 'x', schema: { type: 'string', pattern: '^a' } } },
        },
        param: 'text.format.schema',
      },
      // Function tools are served, forced and auto (engine-responses-tool-calls.test.ts); auto was
      // refused here to stop 34. A tool that is no function is 400 (the test below).
      { body: { top_logprobs: 2 }, param: 'top_logprobs' },
      { body: { include: ['message.output_text.logprobs'] }, param: 'include' },
      {
        // A reasoning item sent back, which the sim cannot read (a tool call and its output it
        // reads since stop 35: engine-responses-tool-round-trip.test.ts).
        body: {
          input: [
            { role: 'user', content: 'Weather?' },
            { type: 'reasoning', id: 'rs_1', summary: [] },
          ],
        },
        param: 'input[1]',
      },
    ];
    for (const { body, param } of cases) {
      await assert.rejects(
        client.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2, ...body }),
        (error: unknown) =>
          error instanceof OpenAI.APIError &&
          error.status === 400 &&
          error.code === 'SY_ERR_UNSUPPORTED_PARAMETER' &&
          error.param === param,
        JSON.stringify(body),
      );
    }
    const bad = await post(gw.url, '/v1/responses', { model: MODEL, input: 'hi', metadata: { n: 1 } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(assertErrorBody(bad.text, 400).error.param, 'metadata');
    // The values that mean "off" are served.
    const off = await client.responses.create({
      model: MODEL,
      input: 'hi',
      max_output_tokens: 2,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      top_logprobs: 0,
    });
    assert.equal(off.usage?.output_tokens, 2);
    assert.equal(off.tool_choice, 'auto');
    // What the request sent is echoed.
    const sent = await client.responses.create({
      model: MODEL,
      input: 'hi',
      max_output_tokens: 2,
      tool_choice: 'none',
      temperature: 0.5,
      top_p: 0.25,
    });
    assert.deepEqual([sent.tool_choice, sent.temperature, sent.top_p], ['none', 0.5, 0.25]);
  });

  it('refuses bad bodies with 400, a stable code and the field named', async () => {
    const cases: { body: Record<string, unknown>; param: string }[] = [
      { body: { model: MODEL }, param: 'input' },
      { body: { model: MODEL, input: 5 }, param: 'input' },
      {
        body: { model: MODEL, input: 'hi', previous_response_id: 5 },
        param: 'previous_response_id',
      },
      { body: { model: MODEL, input: [{ role: 'robot', content: 'x' }] }, param: 'input[0].role' },
      { body: { input: 'hi' }, param: 'model' },
    ];
    for (const { body, param } of cases) {
      const reply = await post(gw.url, '/v1/responses', body);
      assert.equal(reply.status, 400, reply.text);
      const e = assertErrorBody(reply.text, 400, JSON.stringify(body)).error;
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.equal(e.param, param);
    }
    // A response the gateway never stored: OpenAI's 400 previous_response_not_found, as a typed error.
    await assert.rejects(
      client.responses.create({ model: MODEL, input: 'hi', previous_response_id: 'resp_123' }),
      (error: unknown) =>
        error instanceof OpenAI.APIError &&
        error.status === 400 &&
        error.code === 'SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND' &&
        error.param === 'previous_response_id',
    );
  });

  it('passes fields it does not read through to the engine, which judges them', async () => {
    // Tools the gateway does not read: a hosted tool (valid for OpenAI), which the engine cannot
    // serve: unsupported, naming the tool; a tool that is no object is malformed.
    const reply = await post(gw.url, '/v1/responses', {
      model: MODEL,
      input: 'hi',
      tools: [{ type: 'function', name: 'f' }, { type: 'web_search' }],
    });
    assert.equal(reply.status, 400, reply.text);
    const e = assertErrorBody(reply.text, 400).error;
    assert.equal(e.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(e.param, 'tools[1]');
    assert.match(e.message, /"web_search"/);
    const junk = await post(gw.url, '/v1/responses', { model: MODEL, input: 'hi', tools: ['x'] });
    assert.equal(junk.status, 400, junk.text);
    const j = assertErrorBody(junk.text, 400).error;
    assert.equal(j.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(j.param, 'tools[0]');
  });
  it('a Responses stream the client abandons is a client abort, and the engine lets the sequence go', async () => {
    const stats0 = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    const engineAborts = async () => {
      let n = 0;
      for (const e of sims.engines)
        n += metricSum(await scrape(e.url), 'vllm:request_success_total', 'finished_reason="abort"');
      return n;
    };
    const aborted0 = await engineAborts();
    const stream = await client.responses.create({
      model: MODEL,
      input: 'A long answer, please.',
      max_output_tokens: 5000,
      stream: true,
    });
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta' && ++deltas === 3) break; // aborts the request
    }
    await until('the gateway counts the abort and the engine aborts the sequence', async () => {
      const stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
      let running = 0;
      for (const e of sims.engines) running += metricSum(await scrape(e.url), 'vllm:num_requests_running');
      return (
        stats.inFlight === 0 &&
        (stats.failed['client_abort'] ?? 0) === (stats0.failed['client_abort'] ?? 0) + 1 &&
        running === 0 &&
        (await engineAborts()) === aborted0 + 1
      );
    });
    const stats = await getJson<GatewayStatsJson>(`${gw.url}/stats`);
    assert.equal(stats.accepted, stats.completed + stats.failedTotal, JSON.stringify(stats));
  });
});

describe('TTFT of a Responses stream', { timeout: 30_000 }, () => {
  it('is observed at the first text delta, not at response.created (an upstream sending data lines only)', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    let held: ServerResponse | undefined;
    const upstream = createServer((req, res) => {
      req.resume();
      if (req.method === 'POST' && req.url === '/v1/responses') {
        held = res;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(
          'data: {"type":"response.created","sequence_number":0,"response":{"status":"in_progress"}}\n\n',
        );
        void released.then(() => {
          res.write('data: {"type":"response.output_text.delta","sequence_number":1,"delta":" hi"}\n\n');
          res.end(
            'data: {"type":"response.completed","sequence_number":2,"response":{"status":"completed","usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}}}\n\n',
          );
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url === '/v1/models' ? JSON.stringify({ object: 'list', data: [{ id: MODEL }] }) : '');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    teardown.add(() => new Promise<void>((r) => upstream.close(() => r())));
    const port = (upstream.address() as AddressInfo).port;
    const held1 = await startTestGateway(
      { backends: [{ id: 'held', type: 'vllm', url: `http://127.0.0.1:${port}`, models: [MODEL] }] },
      teardown,
    );
    const res = await fetch(`${held1.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: 'hi', stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('response.created')) text += decoder.decode((await reader.read()).value);
    assert.ok(held !== undefined);
    const ttft = () => scrape(held1.url).then((m) => metricSum(m, 'switchyard_gateway_ttft_seconds_count'));
    assert.equal(await ttft(), 0, 'response.created reached the client, yet no token did');
    release();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    assert.equal(await ttft(), 1, 'the first delta is the first token');
    assert.ok(text.includes('response.completed') && !text.includes('"error"'), text);
    const stats = await getJson<GatewayStatsJson>(`${held1.url}/stats`);
    assert.equal(stats.completed, 1, JSON.stringify(stats));
  });
});
