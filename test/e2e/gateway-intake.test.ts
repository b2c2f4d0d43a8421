/**
 * How requests come in, end to end against a gateway in front of a real sim engine: slow bodies
 * (limits.bodyReadTimeoutMs), many connections from one client (limits.connectionsPerClientMax),
 * deep and large bodies (limits.jsonDepthMax, limits.readingBytesMax, an oversized body answered
 * 413 to an ordinary client), and what never reaches a handler: requests without Host, a valid
 * request pipelined behind a malformed one, CONNECT, a bad percent-encoding in an admin path, and
 * new connections during a drain. Exact bytes go over raw sockets; clients bind 127.0.0.2 or
 * 127.0.0.3 to be other client addresses on loopback.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  type GatewayStatsJson,
  getJson,
  MODEL,
  post,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

const BODY_READ_TIMEOUT_MS = 1500;
const CONNECTIONS_PER_CLIENT_MAX = 8;
const BODY_BYTES_MAX = 1024 * 1024;
const READING_BYTES_MAX = 2 * BODY_BYTES_MAX;
const ADMIN_KEY = 'intake-admin';
/** Client-side bound on any one raw exchange (catches a gateway that never answers). */
const RAW_DEADLINE_MS = 15_000;

const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'hello there' }],
  max_tokens: 4,
  ...extra,
});
const chatText = JSON.stringify(chat());

/** One HTTP answer read off a raw socket. */
interface RawAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
}

/** Splits what a connection received into its HTTP answers (each framed by Content-Length). */
function answersOf(text: string): RawAnswer[] {
  const out: RawAnswer[] = [];
  let rest = text;
  while (rest.length > 0) {
    const headEnd = rest.indexOf('\r\n\r\n');
    assert.ok(headEnd > 0, `not an HTTP answer: ${rest.slice(0, 200)}`);
    const head = rest.slice(0, headEnd);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? Number.NaN);
    assert.ok(Number.isFinite(length), `answer without content-length: ${head}`);
    const body = rest.slice(headEnd + 4, headEnd + 4 + length);
    out.push({ status: Number(head.slice(9, 12)), head, body });
    rest = rest.slice(headEnd + 4 + length);
  }
  return out;
}

/** Opens a raw connection to the gateway from `localAddress` (default 127.0.0.1). */
async function open(url: string, localAddress = '127.0.0.1'): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), localAddress });
  await once(socket, 'connect');
  return socket;
}

/** Everything `socket` receives until the gateway closes it (fails past RAW_DEADLINE_MS). */
function readUntilClose(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${RAW_DEADLINE_MS} ms; got: ${text.slice(0, 300)}`));
    }, RAW_DEADLINE_MS);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** Sends `bytes` on a new connection and returns every answer until the gateway closes it. */
async function rawExchange(url: string, bytes: string, localAddress?: string): Promise<RawAnswer[]> {
  const socket = await open(url, localAddress);
  const all = readUntilClose(socket);
  socket.write(bytes);
  return answersOf(await all);
}

function postHead(length: number, extra = ''): string {
  return `POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n${extra}\r\n`;
}

function codeOf(answer: RawAnswer | undefined): string {
  assert.ok(answer !== undefined, 'no answer');
  return assertErrorBody(answer.body, answer.status).error.code;
}

/** POSTs `total` bytes with Node's http client (declared or chunked) as an ordinary client does: all of it, then the answer. */
function sendLarge(
  url: string,
  total: number,
  chunked: boolean,
  headers: Record<string, string> = {},
  path = '/v1/chat/completions',
  method = 'POST',
): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url);
  const chunk = Buffer.alloc(64 * 1024, 'a');
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: hostname,
        port: Number(port),
        method,
        path,
        headers: {
          'content-type': 'application/json',
          ...(chunked ? {} : { 'content-length': total }),
          ...headers,
        },
        timeout: RAW_DEADLINE_MS,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    let sent = 0;
    const write = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}

const stats = (g: TestGateway): Promise<GatewayStatsJson> => getJson<GatewayStatsJson>(`${g.url}/stats`);
const rejected = async (g: TestGateway, code: string): Promise<number> =>
  ((await stats(g)).rejected as Record<string, number>)[code] ?? 0;

describe('gateway request intake', { timeout: 60_000 }, () => {
  const teardown = new Teardown();
  let gw: TestGateway;
  let engineUrl = '';

  before(async () => {
    const sims = await startSims(1, ['--time-scale', '1', '--kv-events', 'none'], teardown);
    const engine = sims.engines[0];
    assert.ok(engine !== undefined);
    engineUrl = engine.url;
    gw = await startTestGateway(
      {
        backends: [simBackend('e0', engine, false)],
        adminKey: ADMIN_KEY,
        limits: {
          bodyReadTimeoutMs: BODY_READ_TIMEOUT_MS,
          connectionsPerClientMax: CONNECTIONS_PER_CLIENT_MAX,
          bodyBytesMax: BODY_BYTES_MAX,
          readingBytesMax: READING_BYTES_MAX,
        },
      },
      teardown,
    );
  });
  after(() => teardown.run());

  it('ends slow bodies at bodyReadTimeoutMs and answers one client past its connection bound 429, while others are served', async () => {
    const before = await stats(gw);
    // A slow client fills its connection bound: each sends a head and a trickle of its body.
    const slow = await Promise.all(
      Array.from({ length: CONNECTIONS_PER_CLIENT_MAX }, () => open(gw.url, '127.0.0.2')),
    );
    const slowAnswers = slow.map((s) => {
      const all = readUntilClose(s);
      s.write(`${postHead(chatText.length)}${chatText.slice(0, 10)}`);
      return all;
    });
    // Past the bound: answered 429 on the raw socket and closed, the request never read.
    const excess = await Promise.all(
      Array.from({ length: 4 }, () =>
        rawExchange(gw.url, `${postHead(chatText.length)}${chatText}`, '127.0.0.2'),
      ),
    );
    for (const answers of excess) {
      assert.equal(answers.length, 1);
      assert.equal(codeOf(answers[0]), 'SY_ERR_TOO_MANY_CONNECTIONS');
      assert.match(answers[0]?.head ?? '', /\r\nretry-after: 1/i);
    }
    // Other clients are served meanwhile.
    const legit = await post(gw.url, '/v1/chat/completions', chat());
    assert.equal(legit.status, 200, legit.text);
    const other = await rawExchange(
      gw.url,
      `${postHead(chatText.length, 'connection: close\r\n')}${chatText}`,
      '127.0.0.3',
    );
    assert.equal(other[0]?.status, 200);
    // Each slow body ends with 408 naming the limit, and its connection closes.
    for (const text of await Promise.all(slowAnswers)) {
      const answers = answersOf(text);
      assert.equal(answers.length, 1);
      assert.equal(codeOf(answers[0]), 'SY_ERR_REQUEST_TIMEOUT');
      assert.match(answers[0]?.body ?? '', /limits\.bodyReadTimeoutMs/);
    }
    // Their places are free again.
    const again = await rawExchange(
      gw.url,
      `${postHead(chatText.length, 'connection: close\r\n')}${chatText}`,
      '127.0.0.2',
    );
    assert.equal(again[0]?.status, 200);
    const now = await stats(gw);
    const delta = (code: string): number =>
      ((now.rejected as Record<string, number>)[code] ?? 0) -
      ((before.rejected as Record<string, number>)[code] ?? 0);
    assert.equal(delta('SY_ERR_TOO_MANY_CONNECTIONS'), 4);
    assert.equal(delta('SY_ERR_REQUEST_TIMEOUT'), CONNECTIONS_PER_CLIENT_MAX);
  });

  it('refuses a body nested past jsonDepthMax with 400 naming the limit', async () => {
    const depth = 200_000;
    const bomb = `{"model":"${MODEL}","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const r = await post(gw.url, '/v1/chat/completions', bomb);
    assert.equal(assertErrorBody(r.text, r.status).error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(r.status, 400);
    assert.match(r.text, /limits\.jsonDepthMax/);
  });

  it('refuses a body that would pass readingBytesMax with 503 and Retry-After after reading it, then serves again', async () => {
    // Two bodies of bodyBytesMax declared and half sent hold the whole reading budget.
    const filler = JSON.stringify(chat({ user: 'x'.repeat(200) }));
    const big = `${filler.slice(0, -1)},"pad":"${'y'.repeat(BODY_BYTES_MAX - filler.length - 10)}"}`;
    assert.ok(big.length <= BODY_BYTES_MAX);
    const holders = await Promise.all([open(gw.url), open(gw.url)]);
    const holderAnswers = holders.map((s) => {
      const all = readUntilClose(s);
      s.write(`${postHead(big.length, 'connection: close\r\n')}${big.slice(0, big.length / 2)}`);
      return all;
    });
    const budget = (gw.gateway as unknown as { readingBudget: { bytes: number } }).readingBudget;
    await until('both large bodies being read', () => budget.bytes === 2 * big.length);
    const third = await rawExchange(
      gw.url,
      `${postHead(chatText.length, 'connection: close\r\n')}${chatText}`,
    );
    assert.equal(third.length, 1);
    assert.equal(third[0]?.status, 503);
    assert.equal(codeOf(third[0]), 'SY_ERR_READING_BYTES_FULL');
    assert.match(third[0]?.head ?? '', /\r\nretry-after: 1/i);
    for (const s of holders) s.write(big.slice(big.length / 2));
    for (const text of await Promise.all(holderAnswers)) {
      // The extra field makes the body the engine's to judge; the read itself was whole.
      const answer = answersOf(text)[0];
      assert.ok(answer !== undefined && answer.status !== 503 && answer.status !== 408, text.slice(0, 300));
    }
    const after = await post(gw.url, '/v1/chat/completions', chat());
    assert.equal(after.status, 200, after.text);
  });

  for (const chunked of [false, true])
    it(`answers an oversized ${chunked ? 'chunked' : 'declared'} body 413 to Node's http client, not a broken pipe`, async () => {
      const answer = await sendLarge(gw.url, 10 * 1024 * 1024, chunked);
      assert.equal(answer.status, 413);
      assert.equal(assertErrorBody(answer.text, answer.status).error.code, 'SY_ERR_REQUEST_TOO_LARGE');
    });

  it('refuses an oversized body announced with Expect: 100-continue before it is sent; a small one gets its 100', async () => {
    const refused = await rawExchange(gw.url, postHead(10 * 1024 * 1024, 'expect: 100-continue\r\n'));
    assert.equal(refused.length, 1);
    assert.equal(refused[0]?.status, 413);
    assert.equal(codeOf(refused[0]), 'SY_ERR_REQUEST_TOO_LARGE');
    const socket = await open(gw.url);
    const all = readUntilClose(socket);
    socket.write(postHead(chatText.length, 'expect: 100-continue\r\nconnection: close\r\n'));
    socket.once('data', () => socket.write(chatText));
    const text = await all;
    assert.ok(text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), text.slice(0, 100));
    const answers = answersOf(text.slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
    assert.equal(answers[0]?.status, 200);
  });

  it('answers a bad percent-encoding in an admin path 400 JSON, an oversized admin body 413', async () => {
    const res = await fetch(`${gw.url}/admin/instances/%E0%A4%A/drain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    const text = await res.text();
    assert.equal(assertErrorBody(text, res.status).error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(res.status, 400);
    // An oversized admin body is read and dropped, then answered 413.
    const big = await sendLarge(
      gw.url,
      1024 * 1024,
      false,
      { authorization: `Bearer ${ADMIN_KEY}` },
      '/admin/policy',
      'PUT',
    );
    assert.equal(big.status, 413);
    assert.equal(assertErrorBody(big.text, big.status).error.code, 'SY_ERR_REQUEST_TOO_LARGE');
    const good = await fetch(`${gw.url}/admin/instances/e0/undrain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    assert.equal(good.status, 200);
  });

  it('answers an HTTP/1.1 request without Host 400 JSON (HTTP/1.0 needs none)', async () => {
    const noHost = await rawExchange(gw.url, 'GET /health HTTP/1.1\r\n\r\n');
    assert.equal(noHost.length, 1);
    assert.equal(noHost[0]?.status, 400);
    assert.equal(codeOf(noHost[0]), 'SY_ERR_INVALID_ARGUMENT');
    assert.match(noHost[0]?.body ?? '', /"param":"host"/);
    const post11 = await rawExchange(
      gw.url,
      `POST /v1/chat/completions HTTP/1.1\r\ncontent-length: ${chatText.length}\r\n\r\n${chatText}`,
    );
    assert.equal(codeOf(post11[0]), 'SY_ERR_INVALID_ARGUMENT');
    const http10 = await rawExchange(gw.url, 'GET /health HTTP/1.0\r\n\r\n');
    assert.equal(http10[0]?.status, 200);
  });

  it('answers a malformed request 400 and closes: a request pipelined behind it is not read, the refusal is counted', async () => {
    const before = await rejected(gw, 'SY_ERR_INVALID_ARGUMENT');
    const behind = await rawExchange(
      gw.url,
      `GARBAGE\x01 / HTTP/1.1\r\nhost: gw\r\n\r\n${postHead(chatText.length)}${chatText}`,
    );
    assert.equal(behind.length, 1);
    assert.equal(behind[0]?.status, 400);
    assert.equal(codeOf(behind[0]), 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(await rejected(gw, 'SY_ERR_INVALID_ARGUMENT'), before + 1);
    // A valid request ahead of a malformed one is answered first, then the refusal.
    const completed = (await stats(gw)).completed;
    const ahead = await rawExchange(
      gw.url,
      `${postHead(chatText.length)}${chatText}GARBAGE\x01 / HTTP/1.1\r\n\r\n`,
    );
    assert.deepEqual(
      ahead.map((a) => a.status),
      [200, 400],
    );
    assert.equal(codeOf(ahead[1]), 'SY_ERR_INVALID_ARGUMENT');
    assert.equal(await rejected(gw, 'SY_ERR_INVALID_ARGUMENT'), before + 2);
    assert.equal((await stats(gw)).completed, completed + 1);
  });

  it('answers CONNECT 405 JSON instead of closing silently', async () => {
    const answers = await rawExchange(
      gw.url,
      'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n',
    );
    assert.equal(answers.length, 1);
    assert.equal(answers[0]?.status, 405);
    assert.equal(codeOf(answers[0]), 'SY_ERR_METHOD_NOT_ALLOWED');
  });

  it('answers a large unauthorized body 401 after reading it, and new connections 503 SY_ERR_DRAINING with Retry-After while a drain waits on a stream', async () => {
    const local = new Teardown();
    try {
      const g = await startTestGateway(
        {
          backends: [simBackend('e0', { url: engineUrl, kvEvents: null }, false)],
          tenants: [{ key: 'tenant-key', name: 't' }],
        },
        local,
      );
      // A refused body is read first, so an ordinary client sending a large one sees the 401.
      const unauthorized = await sendLarge(g.url, 4 * 1024 * 1024, false, { authorization: 'Bearer wrong' });
      assert.equal(unauthorized.status, 401);
      const res = await fetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer tenant-key' },
        body: JSON.stringify(chat({ stream: true, max_tokens: 2000 })),
      });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      assert.equal((await reader.read()).done, false);
      const drained = g.gateway.drain();
      const answers = await rawExchange(
        g.url,
        `${postHead(chatText.length, 'authorization: Bearer tenant-key\r\n')}${chatText}`,
      );
      assert.equal(answers[0]?.status, 503);
      assert.equal(codeOf(answers[0]), 'SY_ERR_DRAINING');
      assert.match(answers[0]?.head ?? '', /\r\nretry-after: 1/i);
      const ready = await rawExchange(g.url, 'GET /ready HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n');
      assert.equal(ready[0]?.status, 503);
      assert.deepEqual(g.gateway.drainStatus(), { inFlight: 1, streaming: 1, queued: 0 });
      g.gateway.stopDraining();
      await drained;
      await reader.cancel();
    } finally {
      await local.run();
    }
  });
});
