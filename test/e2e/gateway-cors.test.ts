/**
 * End-to-end: CORS as vLLM's OpenAI server answers it (Starlette's CORSMiddleware with vLLM's
 * `--allowed-origins` and siblings), so a browser page can call the gateway. A gateway with the
 * defaults (every origin, method and header) runs in this process in front of a real sim engine; a
 * `switchyard serve` child in front of the same engine runs with the flags restricting it. Requests
 * go over node:http, which sends `Origin` as a browser would.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  getJson,
  MODEL,
  REQUEST_DEADLINE_MS,
  simBackend,
  sseData,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll } from './support/wait.ts';

const teardown = new Teardown();
const children: ChildProcess[] = [];
let open: TestGateway;
let restricted: ServeProcess;

const APP = 'https://app.example';

before(async () => {
  const sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  const engine = sims.engines[0] as never;
  open = await startTestGateway({ backends: [simBackend('sim0', engine, false)] }, teardown);
  const dir = mkdtempSync(join(tmpdir(), 'sy-cors-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'gateway.json');
  writeFileSync(config, JSON.stringify({ backends: [simBackend('sim0', engine, false)] }));
  restricted = await startServe(
    [
      '--config',
      config,
      '--allowed-origins',
      JSON.stringify([APP]),
      '--allowed-methods',
      'GET,POST',
      '--allowed-headers',
      'authorization, content-type',
      '--allow-credentials',
    ],
    children,
  );
});

after(async () => {
  await killAll(children);
  await teardown.run();
});

/** One HTTP exchange: status, headers (lower-case names) and body. */
interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function call(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Answer> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method,
        headers: text === undefined ? headers : { 'content-type': 'application/json', ...headers },
        timeout: REQUEST_DEADLINE_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in time`)));
    req.on('error', reject);
    req.end(text);
  });
}

const preflight = (base: string, origin: string, method: string, headers?: string): Promise<Answer> =>
  call(base, 'OPTIONS', '/v1/chat/completions', {
    origin,
    'access-control-request-method': method,
    ...(headers === undefined ? {} : { 'access-control-request-headers': headers }),
  });

/**
 * One request written as `head` on a raw socket (no body: the gateway answers before one is sent),
 * read to the connection's close: its status and headers. node:http's client would wait for a 100
 * or send a body; these answers come instead of either.
 */
function rawHead(base: string, head: string): Promise<{ status: number; headers: Map<string, string> }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let text = '';
    socket.setEncoding('latin1');
    socket.setTimeout(REQUEST_DEADLINE_MS, () => socket.destroy(new Error('no answer in time')));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const [statusLine = '', ...lines] = (text.split('\r\n\r\n')[0] ?? '').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers });
    });
    socket.write(`${head.replaceAll('\n', '\r\n')}\r\n\r\n`);
  });
}

const streamed = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true };

describe("CORS with vLLM's defaults (every origin, method and header)", { timeout: 30_000 }, () => {
  it('answers a preflight 200 for any origin, echoing the requested headers', async () => {
    const a = await preflight(
      open.url,
      'https://playground.example',
      'POST',
      'authorization, content-type, x-stainless-os',
    );
    assert.equal(a.status, 200, a.body);
    assert.equal(a.body, 'OK');
    assert.equal(a.headers['access-control-allow-origin'], '*');
    assert.match(String(a.headers['access-control-allow-methods']), /\bPOST\b/);
    assert.equal(a.headers['access-control-allow-headers'], 'authorization, content-type, x-stainless-os');
    assert.equal(a.headers['access-control-max-age'], '600');
    assert.equal(a.headers['access-control-allow-credentials'], undefined);
  });

  it('puts Access-Control-Allow-Origin on a streamed answer and on an error, not without Origin', async () => {
    const s = await call(
      open.url,
      'POST',
      '/v1/chat/completions',
      { origin: 'https://playground.example' },
      streamed,
    );
    assert.equal(s.status, 200, s.body);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    assert.equal(s.headers['access-control-allow-origin'], '*');
    assert.equal(sseData(s.body).at(-1), '[DONE]');
    const e = await call(
      open.url,
      'POST',
      '/v1/chat/completions',
      { origin: 'https://playground.example' },
      { ...streamed, model: 'no-such-model' },
    );
    assert.equal(e.status, 404, e.body);
    assert.equal(e.headers['access-control-allow-origin'], '*');
    const m = await call(open.url, 'GET', '/v1/models', { origin: 'https://playground.example' });
    assert.equal(m.status, 200);
    assert.equal(m.headers['access-control-allow-origin'], '*');
    const plain = await call(open.url, 'POST', '/v1/chat/completions', {}, { ...streamed, stream: false });
    assert.equal(plain.status, 200, plain.body);
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
  });

  it('answers a preflight and the Expect refusals (answered before any body) with X-Request-Id and CORS', async () => {
    const a = await preflight(open.url, 'https://playground.example', 'POST');
    assert.equal(a.status, 200, a.body);
    assert.match(String(a.headers['x-request-id']), /^[0-9a-f]{32}$/);
    const head = (expect: string, length: number) =>
      [
        'POST /v1/chat/completions HTTP/1.1',
        'Host: gateway.test',
        'Origin: https://playground.example',
        'X-Request-Id: expect-1',
        'Content-Type: application/json',
        `Expect: ${expect}`,
        `Content-Length: ${length}`,
        'Connection: close',
      ].join('\n');
    // A declared body over limits.bodyBytesMax is refused 413 instead of a 100; an Expect other than
    // 100-continue is refused 400. Both are answered from the server's Expect events, not the router.
    for (const [expect, length, status] of [
      ['100-continue', 1 << 30, 413],
      ['200-ok', 2, 400],
    ] as const) {
      const r = await rawHead(open.url, head(expect, length));
      assert.equal(r.status, status, `Expect: ${expect}`);
      assert.equal(r.headers.get('x-request-id'), 'expect-1', `Expect: ${expect}`);
      assert.equal(r.headers.get('access-control-allow-origin'), '*', `Expect: ${expect}`);
    }
  });

  it('leaves an OPTIONS that is not a preflight to the routes (405 with Allow)', async () => {
    const a = await call(open.url, 'OPTIONS', '/v1/chat/completions', {});
    assert.equal(a.status, 405, a.body);
    assert.equal(a.headers['allow'], 'POST');
  });
});

describe('CORS restricted by serve --allowed-origins and its siblings', { timeout: 30_000 }, () => {
  it('answers a listed origin with itself, Vary and credentials', async () => {
    const a = await preflight(restricted.url, APP, 'POST', 'Content-Type, Authorization');
    assert.equal(a.status, 200, a.body);
    assert.equal(a.headers['access-control-allow-origin'], APP);
    assert.equal(a.headers['vary'], 'Origin');
    assert.equal(a.headers['access-control-allow-credentials'], 'true');
    assert.equal(a.headers['access-control-allow-methods'], 'GET, POST');
    assert.equal(
      a.headers['access-control-allow-headers'],
      'accept, accept-language, authorization, content-language, content-type',
    );
    const s = await call(restricted.url, 'POST', '/v1/chat/completions', { origin: APP }, streamed);
    assert.equal(s.status, 200, s.body);
    assert.equal(s.headers['access-control-allow-origin'], APP);
    assert.equal(s.headers['access-control-allow-credentials'], 'true');
    assert.equal(sseData(s.body).at(-1), '[DONE]');
  });

  it('refuses a preflight from another origin, or asking for another method or header, naming what', async () => {
    const cases: [string, string, string | undefined, string][] = [
      ['https://evil.example', 'POST', undefined, 'origin'],
      [APP, 'DELETE', undefined, 'access-control-request-method'],
      [APP, 'POST', 'content-type, x-custom', 'access-control-request-headers'],
    ];
    const rejected = async () =>
      (await getJson<{ rejected: Record<string, number> }>(`${restricted.url}/stats`)).rejected[
        'SY_ERR_INVALID_ARGUMENT'
      ] ?? 0;
    const before = await rejected();
    for (const [origin, method, headers, param] of cases) {
      const a = await preflight(restricted.url, origin, method, headers);
      assert.equal(a.status, 400, `${origin} ${method} ${headers}: ${a.body}`);
      const error = (JSON.parse(a.body) as { error: { code: string; param: string } }).error;
      assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.equal(error.param, param);
      if (param === 'origin') assert.equal(a.headers['access-control-allow-origin'], undefined);
    }
    assert.equal((await rejected()) - before, cases.length, 'each refusal counts in /stats rejected');
  });

  it('serves a request from an unlisted origin without the allow header (the browser hides it)', async () => {
    const s = await call(
      restricted.url,
      'POST',
      '/v1/chat/completions',
      { origin: 'https://evil.example' },
      streamed,
    );
    assert.equal(s.status, 200, s.body);
    assert.equal(s.headers['access-control-allow-origin'], undefined);
  });
});
