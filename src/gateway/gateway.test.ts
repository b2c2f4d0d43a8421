import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from './fake-upstream.ts';
import { type Gateway, type GatewayOptions, startGateway } from './gateway.ts';

const quiet: GatewayOptions = { log: () => {} };
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fakes(n: number, model = 'm'): Promise<FakeUpstream[]> {
  const out: FakeUpstream[] = [];
  for (let i = 0; i < n; i++) {
    const f = await startFakeUpstream(model);
    cleanups.push(() => f.close());
    out.push(f);
  }
  return out;
}

async function gateway(
  upstreams: readonly FakeUpstream[],
  extra: Record<string, unknown> = {},
  options: GatewayOptions = quiet,
): Promise<Gateway> {
  const gw = await startGateway(
    {
      port: 0,
      backends: upstreams.map((u, i) => ({ id: `e${i}`, type: 'vllm', url: u.url, models: ['m'] })),
      routing: { policy: 'round-robin' },
      healthCheck: { intervalMs: 60_000 },
      limits: { retryBackoffBaseMs: 1, retryBackoffMaxMs: 5 },
      ...extra,
    },
    options,
  );
  cleanups.push(() => gw.close());
  return gw;
}

async function post(
  gw: Gateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Headers; json: () => Record<string, unknown> }> {
  const res = await fetch(gw.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    headers: res.headers,
    json: () => JSON.parse(text) as Record<string, unknown>,
  };
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'm',
  messages: [{ role: 'user', content: 'hello there' }],
  ...extra,
});

function errorCode(r: { json: () => Record<string, unknown> }): unknown {
  return (r.json()['error'] as Record<string, unknown>)['code'];
}

/** No accepted request is lost: accepted = completed + failed + in flight. */
function assertConserved(gw: Gateway): void {
  const s = gw.stats;
  assert.equal(s.accepted, s.completed + s.failedTotal + s.inFlight);
  let failed = 0;
  for (const n of s.failed.values()) failed += n;
  assert.equal(failed, s.failedTotal);
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('gateway proxying', () => {
  it('proxies chat and completions, streaming and not, forwarding the body bytes unchanged', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream]);
    const raw = '{"model":"m",  "messages":[{"role":"user","content":"hi"}], "x_ext": 1}';
    const r1 = await post(gw, '/v1/chat/completions', raw);
    assert.equal(r1.status, 200);
    assert.equal((r1.json()['choices'] as unknown[]).length, 1);
    assert.equal(u?.received.at(-1)?.body, raw);
    assert.equal(u?.received.at(-1)?.path, '/v1/chat/completions');

    const r2 = await post(
      gw,
      '/v1/chat/completions',
      chat({ stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(r2.status, 200);
    assert.match(r2.headers.get('content-type') ?? '', /text\/event-stream/);
    const events = r2.text.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.at(-1), 'data: [DONE]');
    assert.match(events.at(-2) ?? '', /"usage":\{"prompt_tokens":5,"completion_tokens":3/);

    const r3 = await post(gw, '/v1/completions', { model: 'm', prompt: 'abc', max_tokens: 4 });
    assert.equal(r3.status, 200);
    assert.equal(r3.json()['object'], 'text_completion');
    const r4 = await post(gw, '/v1/completions', { model: 'm', prompt: [1, 2, 3], stream: true });
    assert.ok(r4.text.endsWith('data: [DONE]\n\n'));
    assert.equal(u?.received.at(-1)?.path, '/v1/completions');

    const e = await post(gw, '/v1/embeddings', { model: 'm', input: 'x' });
    assert.equal(e.status, 200);
    assert.equal(e.json()['object'], 'list');
    assert.equal(gw.stats.completed, 5);
    assertConserved(gw);
  });

  it('serves /v1/models, /health, /ready, /metrics, /stats and 404 JSON for unknown routes', async () => {
    const [a] = await fakes(1);
    const b = await startFakeUpstream('other');
    cleanups.push(() => b.close());
    const gw = await startGateway(
      {
        port: 0,
        backends: [
          { id: 'a', type: 'vllm', url: a?.url as string, models: ['m'] },
          { id: 'b', type: 'sglang', url: b.url, models: ['other', 'm'] },
        ],
      },
      quiet,
    );
    cleanups.push(() => gw.close());
    const models = (await (await fetch(`${gw.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['m', 'other'],
    );
    assert.equal((await fetch(`${gw.url}/health`)).status, 200);
    assert.equal((await fetch(`${gw.url}/ready`)).status, 200);
    await post(gw, '/v1/chat/completions', chat());
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /switchyard_gateway_requests_accepted_total 1/);
    assert.match(metrics, /switchyard_gateway_requests_completed_total 1/);
    assert.match(metrics, /switchyard_gateway_instance_in_flight\{instance="a"\} 0/);
    assert.match(metrics, /switchyard_gateway_e2e_seconds_count 1/);
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as Record<string, unknown>;
    assert.equal(stats['accepted'], 1);
    assert.equal(stats['completed'], 1);
    const nf = await fetch(`${gw.url}/v2/nothing`);
    assert.equal(nf.status, 404);
    assert.equal(((await nf.json()) as { error: { code: string } }).error.code, 'SY_ERR_NOT_FOUND');
    assert.equal((await fetch(`${gw.url}/v1/chat/completions`)).status, 405); // GET on a POST route
  });

  it('feeds scraped engine metrics into the live view', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], { scrapeIntervalMs: 20 });
    await until(() => gw.view.at(performance.now()).get('e0')?.stale === false);
    const e0 = gw.view.get('e0');
    assert.equal(e0?.running, 1);
    assert.equal(e0?.kvUsage, 0.25);
    await u?.close();
    // The engine is gone: after 3 intervals its signals are stale and host accounting stands in.
    await until(() => gw.view.at(performance.now()).get('e0')?.stale === true);
    assert.equal(e0?.running, e0?.inFlight);
  });

  it('answers 400 / 404 / 413 with stable codes and never crashes on garbage', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], { limits: { bodyBytesMax: 4096 } });
    const bad = await post(gw, '/v1/chat/completions', '{"model":');
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), 'SY_ERR_INVALID_ARGUMENT');
    const field = await post(gw, '/v1/chat/completions', { model: 'm', messages: [] });
    assert.equal(field.status, 400);
    assert.equal((field.json()['error'] as Record<string, unknown>)['param'], 'messages');
    const temp = await post(gw, '/v1/completions', { model: 'm', prompt: 'x', temperature: 'hot' });
    assert.equal((temp.json()['error'] as Record<string, unknown>)['param'], 'temperature');
    const model = await post(gw, '/v1/chat/completions', chat({ model: 'nope' }));
    assert.equal(model.status, 404);
    assert.equal(errorCode(model), 'SY_ERR_NOT_FOUND');
    const big = await post(gw, '/v1/chat/completions', chat({ pad: 'x'.repeat(10_000) }));
    assert.equal(big.status, 413);
    assert.equal(errorCode(big), 'SY_ERR_REQUEST_TOO_LARGE');
    for (const body of [
      'null',
      '[]',
      '"s"',
      '42',
      '\u0000\u00ff',
      '{"model":"m","messages":[{"role":"robot"}]}',
    ])
      assert.equal((await post(gw, '/v1/chat/completions', body)).status, 400, body);
    assert.equal(u?.received.length, 0);
    assert.equal(gw.stats.accepted, 0);
    assert.equal(gw.stats.rejected.get('SY_ERR_INVALID_ARGUMENT'), 9);
    // Still serving.
    assert.equal((await post(gw, '/v1/chat/completions', chat())).status, 200);
  });

  it('answers garbage request lines with a JSON 400, and a stalled body with a JSON 408', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], { limits: { requestTimeoutMs: 300 } });
    const raw = (text: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(gw.port, '127.0.0.1', () => socket.write(text));
        let out = '';
        socket.on('data', (d) => {
          out += d.toString();
        });
        socket.on('close', () => resolve(out));
        socket.on('error', reject);
        socket.setTimeout(5000, () => socket.destroy());
      });
    const garbage = await raw('BLAH /x\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.match(garbage, /"code":"SY_ERR_INVALID_ARGUMENT"/);
    const stalled = await raw(
      'POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"mo',
    );
    assert.match(stalled, /^HTTP\/1\.1 408 /);
    assert.match(stalled, /"code":"SY_ERR_REQUEST_TIMEOUT"/);
    assert.equal(gw.stats.rejected.get('SY_ERR_REQUEST_TIMEOUT'), 1);
  });

  it('answers 413 for a chunked body that grows past the limit', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], { limits: { bodyBytesMax: 2048 } });
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${gw.url}/v1/completions`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('x'.repeat(1000));
      req.end();
    });
    assert.equal(status, 413);
  });
});

/**
 * A first-byte or request bound the tests wait out: far above what a healthy exchange with an
 * in-process fake takes on a loaded machine, far below the test's own timeout.
 */
const SLOW_BOUND_MS = 1500;

describe('gateway retries and failures', () => {
  it('retries another instance on 5xx, 429 and refused connections, before the first byte', async () => {
    const [good, bad] = await fakes(2);
    (bad as FakeUpstream).behaviour.failStatus = 503;
    const gw = await startGateway(
      {
        port: 0,
        backends: [
          { id: 'dead', type: 'vllm', url: 'http://127.0.0.1:1', models: ['m'] },
          { id: 'bad', type: 'vllm', url: (bad as FakeUpstream).url, models: ['m'] },
          { id: 'good', type: 'vllm', url: (good as FakeUpstream).url, models: ['m'] },
        ],
        routing: { policy: 'round-robin' },
        healthCheck: { intervalMs: 60_000, failuresToEject: 100 },
        limits: { retries: 2, retryBackoffBaseMs: 1, retryBackoffMaxMs: 2 },
      },
      { ...quiet, awaitFirstHealthCheck: false },
    );
    cleanups.push(() => gw.close());
    for (let i = 0; i < 6; i++) {
      const r = await post(gw, '/v1/chat/completions', chat({ stream: i % 2 === 0 }));
      assert.equal(r.status, 200, r.text);
    }
    assert.equal(gw.stats.completed, 6);
    assert.ok(gw.stats.retries >= 4, `retries ${gw.stats.retries}`);
    assert.equal((good as FakeUpstream).received.length, 6);
    (bad as FakeUpstream).behaviour.failStatus = 429;
    gw.setDraining('good', true);
    gw.setDraining('dead', true);
    const r = await post(gw, '/v1/chat/completions', chat());
    assert.equal(r.status, 429);
    assert.equal(errorCode(r), 'SY_ERR_OVERLOADED');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    (bad as FakeUpstream).behaviour.failStatus = 500;
    const r5 = await post(gw, '/v1/chat/completions', chat());
    assert.equal(r5.status, 502);
    assert.equal(errorCode(r5), 'SY_ERR_UPSTREAM');
    assert.match((r5.json()['error'] as { message: string }).message, /answered 500/);
    assert.equal(gw.stats.failed.get('upstream'), 1);
    assertConserved(gw);
  });

  it('relays an engine 4xx as is, without retrying', async () => {
    const [a, b] = await fakes(2);
    (a as FakeUpstream).behaviour.failStatus = 400;
    (b as FakeUpstream).behaviour.failStatus = 400;
    const gw = await gateway([a as FakeUpstream, b as FakeUpstream]);
    const r = await post(gw, '/v1/chat/completions', chat());
    assert.equal(r.status, 400);
    assert.match(r.text, /fake failure 400/);
    assert.equal(gw.stats.retries, 0);
    assert.equal(gw.stats.failed.get('upstream_4xx'), 1);
  });

  it('ends a stream cut by the engine with an SSE error event and [DONE]', async () => {
    const [u] = await fakes(1);
    (u as FakeUpstream).behaviour.cutAfterChunks = 2;
    (u as FakeUpstream).behaviour.tokens = 5;
    const gw = await gateway([u as FakeUpstream]);
    const r = await post(gw, '/v1/chat/completions', chat({ stream: true }));
    assert.equal(r.status, 200);
    const events = r.text.split('\n\n').filter((e) => e.length > 0);
    assert.equal(events.at(-1), 'data: [DONE]');
    const err = JSON.parse((events.at(-2) ?? '').slice('data: '.length)) as { error: { code: string } };
    assert.equal(err.error.code, 'SY_ERR_UPSTREAM');
    assert.equal(events.length, 4);
    assert.equal(gw.stats.failed.get('upstream'), 1);
    assertConserved(gw);
  });

  it('retries after a first-byte timeout, and answers 504 past the request timeout', async () => {
    // The bounds are wide, not what is tested: a loaded machine can hold this process (gateway and
    // fakes alike) for hundreds of ms, and a 100 ms first-byte bound then timed out the fast
    // engine too (504), a 150 ms request bound the request body (408). Each slow fake answers
    // three times its bound after it: the deadline sweep comes first whatever the load.
    const [slow, fast] = await fakes(2);
    (slow as FakeUpstream).behaviour.delayMs = 3 * SLOW_BOUND_MS;
    const gw = await gateway([slow as FakeUpstream, fast as FakeUpstream], {
      limits: { firstByteTimeoutMs: SLOW_BOUND_MS, retryBackoffBaseMs: 1, retryBackoffMaxMs: 2 },
    });
    const r = await post(gw, '/v1/chat/completions', chat());
    assert.equal(r.status, 200);
    assert.equal((fast as FakeUpstream).received.length, 1);
    assert.equal(gw.stats.retries, 1);

    const [slow2] = await fakes(1);
    (slow2 as FakeUpstream).behaviour.delayMs = 3 * SLOW_BOUND_MS;
    const gw2 = await gateway([slow2 as FakeUpstream], { limits: { requestTimeoutMs: SLOW_BOUND_MS } });
    const r2 = await post(gw2, '/v1/chat/completions', chat());
    assert.equal(r2.status, 504);
    assert.equal(errorCode(r2), 'SY_ERR_TIMEOUT');
    assert.equal(gw2.stats.failed.get('timeout'), 1);
    assert.equal(gw2.view.get('e0')?.inFlight, 0);
  });

  it('aborts the upstream request when the client goes away', async () => {
    const [u] = await fakes(1);
    (u as FakeUpstream).behaviour.tokens = 1000;
    (u as FakeUpstream).behaviour.chunkGapMs = 5;
    const gw = await gateway([u as FakeUpstream]);
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ stream: true })),
      signal: controller.signal,
    });
    const reader = res.body?.getReader();
    await reader?.read();
    controller.abort();
    await until(() => gw.stats.failed.get('client_abort') === 1);
    await until(() => gw.view.get('e0')?.inFlight === 0);
    assert.equal(gw.stats.inFlight, 0);
    assertConserved(gw);
  });
});

describe('gateway tenants, admission and admin', () => {
  it('needs a valid key when tenants are configured, applies their priority and rate limits', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], {
      tenants: [
        { key: 'key-gold', name: 'gold', priority: 1 },
        { key: 'key-slow', name: 'slow', rpm: 2 },
      ],
    });
    const none = await post(gw, '/v1/chat/completions', chat());
    assert.equal(none.status, 401);
    assert.equal(errorCode(none), 'SY_ERR_UNAUTHORIZED');
    const wrong = await post(gw, '/v1/chat/completions', chat(), { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    const ok = await post(gw, '/v1/chat/completions', chat(), { authorization: 'Bearer key-gold' });
    assert.equal(ok.status, 200);
    for (let i = 0; i < 2; i++)
      assert.equal(
        (await post(gw, '/v1/chat/completions', chat(), { authorization: 'Bearer key-slow' })).status,
        200,
      );
    const limited = await post(gw, '/v1/chat/completions', chat(), { authorization: 'Bearer key-slow' });
    assert.equal(limited.status, 429);
    assert.equal(errorCode(limited), 'SY_ERR_RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal(gw.stats.rejected.get('SY_ERR_UNAUTHORIZED'), 2);
    assert.equal(gw.stats.accepted, 3);
  });

  it('queues past the capacity gate and releases as requests finish', async () => {
    const [u] = await fakes(1);
    (u as FakeUpstream).behaviour.delayMs = 50;
    const gw = await gateway([u as FakeUpstream], { admission: { gate: { inFlightMax: 1 } } });
    const all = await Promise.all(Array.from({ length: 4 }, () => post(gw, '/v1/chat/completions', chat())));
    for (const r of all) assert.equal(r.status, 200);
    assert.equal(gw.stats.completed, 4);
    assert.equal(gw.stats.queued, 0);
    assertConserved(gw);
  });

  it('keeps the admin API closed without a key, and serves it with one', async () => {
    const [a, b] = await fakes(2);
    const closed = await gateway([a as FakeUpstream]);
    assert.equal((await fetch(`${closed.url}/admin/instances`)).status, 404);
    const gw = await gateway([a as FakeUpstream, b as FakeUpstream], { adminKey: 'admin-secret' });
    const auth = { authorization: 'Bearer admin-secret' };
    assert.equal((await fetch(`${gw.url}/admin/instances`)).status, 401);
    assert.equal(
      (await fetch(`${gw.url}/admin/instances`, { headers: { authorization: 'Bearer x' } })).status,
      401,
    );
    const list = (await (await fetch(`${gw.url}/admin/instances`, { headers: auth })).json()) as {
      instances: { id: string; healthy: boolean; signalsStale: boolean }[];
    };
    assert.deepEqual(
      list.instances.map((i) => i.id),
      ['e0', 'e1'],
    );
    assert.equal(list.instances[0]?.healthy, true);
    const drain = await fetch(`${gw.url}/admin/instances/e0/drain`, { method: 'POST', headers: auth });
    assert.equal(drain.status, 200);
    for (let i = 0; i < 4; i++) await post(gw, '/v1/chat/completions', chat());
    assert.equal((a as FakeUpstream).received.length, 0);
    assert.equal((b as FakeUpstream).received.length, 4);
    await fetch(`${gw.url}/admin/instances/e0/undrain`, { method: 'POST', headers: auth });
    for (let i = 0; i < 4; i++) await post(gw, '/v1/chat/completions', chat());
    assert.ok((a as FakeUpstream).received.length > 0);
    const missing = await fetch(`${gw.url}/admin/instances/zz/drain`, { method: 'POST', headers: auth });
    assert.equal(missing.status, 404);

    const policy = (await (await fetch(`${gw.url}/admin/policy`, { headers: auth })).json()) as {
      policy: string;
      available: string[];
    };
    assert.equal(policy.policy, 'round-robin');
    assert.ok(policy.available.includes('least-request'));
    const put = await fetch(`${gw.url}/admin/policy`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ policy: 'least-request' }),
    });
    assert.equal(put.status, 200);
    assert.equal(gw.policyName, 'least-request');
    const unknown = await fetch(`${gw.url}/admin/policy`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ policy: 'fastest' }),
    });
    assert.equal(unknown.status, 400);
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'SY_ERR_UNKNOWN_NAME');
    const stats = (await (await fetch(`${gw.url}/admin/stats`, { headers: auth })).json()) as Record<
      string,
      number
    >;
    assert.equal(stats['completed'], 8);
  });

  it('ejects an instance whose health checks fail, re-admits it, and reports readiness', async () => {
    const [u] = await fakes(1);
    const gw = await gateway([u as FakeUpstream], {
      healthCheck: { intervalMs: 20, failuresToEject: 2, successesToReadmit: 2 },
    });
    assert.equal((await fetch(`${gw.url}/ready`)).status, 200);
    (u as FakeUpstream).healthy = false;
    await until(() => gw.view.get('e0')?.healthy === false);
    assert.equal((await fetch(`${gw.url}/ready`)).status, 503);
    const r = await post(gw, '/v1/chat/completions', chat());
    assert.equal(r.status, 503);
    assert.equal(errorCode(r), 'SY_ERR_NO_INSTANCE');
    (u as FakeUpstream).healthy = true;
    await until(() => gw.view.get('e0')?.healthy === true);
    assert.equal((await fetch(`${gw.url}/ready`)).status, 200);
    assertConserved(gw);
  });

  it('drains: in-flight requests finish, new ones get 503, /ready says 503', async () => {
    const [u] = await fakes(1);
    (u as FakeUpstream).behaviour.delayMs = 200;
    const gw = await gateway([u as FakeUpstream]);
    const inflight = post(gw, '/v1/chat/completions', chat());
    await until(() => gw.stats.inFlight === 1);
    const drained = gw.drain();
    const late = await post(gw, '/v1/chat/completions', chat());
    assert.equal(late.status, 503);
    assert.equal(errorCode(late), 'SY_ERR_DRAINING');
    assert.equal((await fetch(`${gw.url}/ready`)).status, 503);
    assert.equal((await inflight).status, 200);
    await drained;
    assert.equal(gw.stats.completed, 1);
    await gw.close();
  });
});

describe('the Responses API with prefill/decode backends', () => {
  it('goes to a whole (both) instance of a model that also has P/D pools; refused 404 without one', async () => {
    const [whole, prefill, decode] = await fakes(3);
    const pd = (f: FakeUpstream, id: string, role: 'prefill' | 'decode') => ({
      id,
      type: 'vllm',
      url: f.url,
      models: ['m'],
      role,
      pdProtocol: 'vllm',
    });
    const ups = [whole, prefill, decode] as FakeUpstream[];
    const mixed = await gateway([], {
      backends: [
        { id: 'w', type: 'vllm', url: whole?.url, models: ['m'] },
        pd(prefill as FakeUpstream, 'p', 'prefill'),
        pd(decode as FakeUpstream, 'd', 'decode'),
      ],
    });
    const body = { model: 'm', input: 'Which track?', max_output_tokens: 3 };
    const served = await post(mixed, '/v1/responses', body);
    assert.equal(served.status, 200, served.text);
    assert.deepEqual(
      ups.map((u) => u.received.filter((r) => r.path === '/v1/responses').length),
      [1, 0, 0],
    );
    const pdOnly = await gateway([], {
      backends: [pd(prefill as FakeUpstream, 'p', 'prefill'), pd(decode as FakeUpstream, 'd', 'decode')],
    });
    const refused = await post(pdOnly, '/v1/responses', body);
    assert.equal(refused.status, 404, refused.text);
    assert.equal((refused.json()['error'] as { code: string }).code, 'SY_ERR_UNSUPPORTED_ENDPOINT');
    assert.deepEqual(
      ups.map((u) => u.received.length),
      [1, 0, 0],
      'no engine saw the refused one',
    );
  });
});
