/** The client against real servers on loopback: the fake OpenAI server and raw node:http ones. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { type CompletionCall, completionBody, OpenAiClient, parseBaseUrl } from './client.ts';
import { type FakeServer, startFakeServer } from './test-server.ts';

const servers: { close(): Promise<void> }[] = [];
const clients: OpenAiClient[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
});

async function fake(options: Parameters<typeof startFakeServer>[0] = {}): Promise<FakeServer> {
  const s = await startFakeServer(options);
  servers.push(s);
  return s;
}

/** A raw server for behaviour the fake one does not have. */
async function raw(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push({
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function client(url: string, timeoutMs = 10_000): OpenAiClient {
  const c = new OpenAiClient({ baseUrl: parseBaseUrl(url), apiKey: 'k', connections: 8, timeoutMs });
  clients.push(c);
  return c;
}

const CALL: CompletionCall = {
  endpoint: 'completions',
  model: 'fake-model',
  prompt: 'hello there',
  maxTokens: 6,
  stream: true,
  ignoreEos: true,
};

test('bodies: completions and chat as vLLM benchmark sends them', () => {
  assert.deepEqual(completionBody(CALL), {
    model: 'fake-model',
    prompt: 'hello there',
    max_tokens: 6,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ignore_eos: true,
  });
  assert.deepEqual(completionBody({ ...CALL, endpoint: 'chat', stream: false, ignoreEos: false }), {
    model: 'fake-model',
    messages: [{ role: 'user', content: 'hello there' }],
    max_completion_tokens: 6,
    temperature: 0,
    stream: false,
  });
});

test('a streamed completion: TTFT, one ITL per later token, usage tokens', async () => {
  const s = await fake({ firstTokenMs: 60, tokenMs: 15, splitWrites: true });
  const a = await client(s.url).send(CALL);
  assert.equal(a.ok, true, a.error);
  assert.equal(a.outputTokens, 6);
  assert.equal(a.outputTokensFrom, 'usage');
  assert.equal(a.promptTokens, 3);
  assert.ok(a.ttftMs !== undefined && a.ttftMs >= 55, `ttft ${a.ttftMs}`);
  assert.equal(a.itlMs.length, 5);
  for (const gap of a.itlMs) assert.ok(gap >= 10, `itl ${gap}`);
  assert.ok(a.e2eMs >= a.ttftMs + 5 * 12, `e2e ${a.e2eMs}`);
  assert.equal(s.received[0]?.path, '/v1/completions');
  assert.equal(s.received[0]?.body['ignore_eos'], true);
});

test('chat streaming without usage counts content chunks', async () => {
  const s = await fake({ noUsage: true });
  const a = await client(`${s.url}/v1`).send({ ...CALL, endpoint: 'chat', maxTokens: 4 });
  assert.equal(a.ok, true, a.error);
  assert.equal(s.received[0]?.path, '/v1/chat/completions');
  assert.equal(a.outputTokens, 4);
  assert.equal(a.outputTokensFrom, 'chunks');
  assert.equal(a.itlMs.length, 3, 'the empty role delta is not a token');
});

test('a whole JSON answer: TTFT is the E2E, usage tokens', async () => {
  const s = await fake({ firstTokenMs: 20 });
  const a = await client(s.url).send({ ...CALL, stream: false });
  assert.equal(a.ok, true, a.error);
  assert.equal(a.ttftMs, a.e2eMs);
  assert.equal(a.outputTokens, 6);
  assert.deepEqual(a.itlMs, []);
});

test('an error status is counted by status and the body code', async () => {
  const s = await fake({ failWith: () => 429 });
  const a = await client(s.url).send(CALL);
  assert.equal(a.ok, false);
  assert.equal(a.status, 429);
  assert.equal(a.reason, 'http_429:FAKE_REFUSED');
  assert.match(a.error ?? '', /refused request 0/);
  const url = await raw((_req, res) => {
    res.writeHead(500);
    res.end('oops');
  });
  const b = await client(url).send(CALL);
  assert.equal(b.reason, 'http_500');
  assert.equal(b.error, 'oops');
});

test('an error event in the middle of a stream, a stream with no output, a connection cut midway', async () => {
  const url = await raw((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (req.url === '/v1/completions') {
      res.write('data: {"choices":[{"text":"a"}]}\n\n');
      res.end('data: {"error":{"message":"engine died","code":"SY_ERR_INTERNAL"}}\n\n');
    } else res.end('data: [DONE]\n\n');
  });
  const c = client(url);
  const a = await c.send(CALL);
  assert.equal(a.reason, 'stream_error:SY_ERR_INTERNAL');
  assert.equal(a.error, 'engine died');
  const b = await c.send({ ...CALL, endpoint: 'chat' });
  assert.equal(b.reason, 'no_output');
  const cut = await raw((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"choices":[{"text":"a"}]}\n\n');
    setTimeout(() => res.socket?.destroy(), 20);
  });
  const d = await client(cut).send(CALL);
  assert.equal(d.reason, 'connection_reset');
});

test('timeouts, refused connections and cancellation are failures with a reason, not throws', async () => {
  const slow = await fake({ firstTokenMs: 2000 });
  const t = await client(slow.url, 150).send(CALL);
  assert.equal(t.reason, 'timeout');
  // Not before its 150 ms; no upper bound in wall time (a loaded machine runs timers late): the
  // reason already says the timer ended it, not the server's answer (its first token at 2000 ms).
  assert.ok(t.e2eMs >= 140, `timed out after ${t.e2eMs}`);

  const closed = await raw(() => {});
  const port = new URL(closed).port;
  await servers.pop()?.close();
  const r = await client(`http://127.0.0.1:${port}`).send(CALL);
  assert.equal(r.reason, 'connection_refused');

  const cancel = new AbortController();
  setTimeout(() => cancel.abort(), 100);
  const x = await client(slow.url).send(CALL, cancel.signal);
  assert.equal(x.reason, 'cancelled');
});

test('listModels: the ids, none, an error status, SY_ERR_UPSTREAM when unreachable', async () => {
  const s = await fake({ model: 'm-1' });
  assert.deepEqual(await client(s.url).listModels(), {
    status: 200,
    ids: ['m-1'],
    owners: new Map(),
    error: undefined,
  });
  const empty = await fake({ noModels: true });
  assert.deepEqual((await client(empty.url).listModels()).ids, []);
  const locked = await raw((_req, res) => {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"bad key","code":"invalid_api_key"}}');
  });
  assert.deepEqual(await client(locked).listModels(), {
    status: 401,
    ids: [],
    owners: new Map(),
    error: 'bad key',
  });
  const closed = await raw(() => {});
  const port = new URL(closed).port;
  await servers.pop()?.close();
  await assert.rejects(client(`http://127.0.0.1:${port}`).listModels(), (e: unknown) => {
    assert.ok(e instanceof SwitchyardError);
    assert.equal(e.code, 'SY_ERR_UPSTREAM');
    assert.match(e.message, new RegExp(`cannot reach http://127.0.0.1:${port}.*connection_refused`));
    // The refusal says what to do, not only the errno.
    assert.match(e.message, /nothing listens there: check the URL and port.*ready line/);
    return true;
  });
});
