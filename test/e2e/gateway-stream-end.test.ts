/**
 * How an upstream's answer ends, through the real gateway, against the fake upstream of
 * src/gateway/fake-upstream.ts told to misbehave (a deliberately broken upstream on loopback, not a
 * real engine):
 *
 * 1. A stream whose generated text is `[DONE]` and that closes cleanly without a `[DONE]` event is
 *    not a success: the client gets an SSE error event, then a real `data: [DONE]`, and the gateway
 *    counts a failure. The same text with a real `[DONE]` event is a success.
 * 2. A non-streaming 200 whose JSON is truncated (a clean chunked end, or fewer bytes than its
 *    content-length) is never relayed as a 200: it is retried and, when every attempt is broken,
 *    answered 502 SY_ERR_UPSTREAM (or cut, once part of it went out), counted as a failure.
 * 3. A committed stream whose upstream goes silent ends after limits.streamIdleTimeoutMs with an SSE
 *    error event (SY_ERR_TIMEOUT) and `[DONE]`.
 * 4. Upstream error answers: a final 429 carries the largest upstream Retry-After seen (bounded),
 *    and a 502 never quotes the upstream's body (which may echo the request); the log has it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from '../../src/gateway/fake-upstream.ts';
import { UPSTREAM_RETRY_AFTER_MS_MAX } from '../../src/gateway/proxy.ts';
import {
  assertErrorBody,
  type GatewayStatsJson,
  getJson,
  NoReply,
  post,
  type Reply,
  sseData,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';

const MODEL = 'm';
const teardown = new Teardown();
after(() => teardown.run());

async function fakes(n: number): Promise<FakeUpstream[]> {
  const out: FakeUpstream[] = [];
  for (let i = 0; i < n; i++) {
    const f = await startFakeUpstream(MODEL);
    teardown.add(() => f.close());
    out.push(f);
  }
  return out;
}

async function gatewayFor(
  upstreams: readonly FakeUpstream[],
  limits: Record<string, number> = {},
): Promise<TestGateway> {
  return startTestGateway(
    {
      backends: upstreams.map((u, i) => ({
        id: `e${i}`,
        type: 'vllm',
        url: u.url,
        models: [MODEL],
        metricsPath: null,
      })),
      routing: { policy: 'round-robin' },
      healthCheck: { intervalMs: 60_000 },
      limits: { retries: 2, retryBackoffBaseMs: 1, retryBackoffMaxMs: 5, ...limits },
    },
    teardown,
  );
}

const chat = (stream: boolean, content = 'hi'): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content }],
  max_tokens: 4,
  stream,
});

async function stats(gw: TestGateway): Promise<GatewayStatsJson> {
  return getJson<GatewayStatsJson>(`${gw.url}/stats`);
}

/** Asserts an SSE body ends with one error event of `code`, then `data: [DONE]`, then the end. */
function assertStreamError(reply: Reply, code: string): void {
  assert.equal(reply.status, 200);
  assert.ok(reply.text.endsWith('\n\ndata: [DONE]\n\n'), JSON.stringify(reply.text.slice(-120)));
  const data = sseData(reply.text);
  assert.equal(data.at(-1), '[DONE]');
  assert.equal(data.filter((d) => d === '[DONE]').length, 1, 'one [DONE], the gateway’s');
  const body = assertErrorBody(data.at(-2) ?? '', undefined, 'SSE error event');
  assert.equal(body.error.code, code);
}

describe('end of stream', () => {
  it('a stream whose text is [DONE] and that closes without a [DONE] event ends with an error', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.tokenText = '[DONE]';
    up.behaviour.omitDone = true;
    const gw = await gatewayFor([up]);
    const reply = await post(gw.url, '/v1/chat/completions', chat(true));
    assertStreamError(reply, 'SY_ERR_UPSTREAM');
    // The model's three events came through before the error.
    assert.equal(sseData(reply.text).filter((d) => d.includes('"content":"[DONE]"')).length, 3);
    const s = await stats(gw);
    assert.equal(s.completed, 0, JSON.stringify(s));
    assert.deepEqual(s.failed, { upstream: 1 });
    assert.equal(s.retries, 0, 'nothing is retried once a stream is committed');
  });

  it('the same text with a real [DONE] event is a success', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.tokenText = 'data: [DONE]\n\n';
    const gw = await gatewayFor([up]);
    const reply = await post(gw.url, '/v1/chat/completions', chat(true));
    assert.equal(reply.status, 200);
    assert.ok(reply.text.endsWith('data: [DONE]\n\n'));
    assert.ok(!reply.text.includes('"error"'), reply.text);
    const s = await stats(gw);
    assert.equal(s.completed, 1, JSON.stringify(s));
    assert.equal(s.failedTotal, 0);
  });
});

describe('truncated JSON answers', () => {
  it('a JSON body that ends early with a clean close is retried, then answered 502, never 200', async () => {
    const [a, b] = await fakes(2);
    assert.ok(a !== undefined && b !== undefined);
    a.behaviour.truncateJsonAt = 40;
    b.behaviour.truncateJsonAt = 40;
    const gw = await gatewayFor([a, b]);
    const reply = await post(gw.url, '/v1/chat/completions', chat(false));
    assert.equal(reply.status, 502, reply.text);
    const body = assertErrorBody(reply.text, 502, 'truncated JSON');
    assert.equal(body.error.code, 'SY_ERR_UPSTREAM');
    assert.match(body.error.message, /truncated JSON answer/);
    assert.equal(a.received.length + b.received.length, 3, 'the first try and two retries');
    const s = await stats(gw);
    assert.equal(s.completed, 0);
    assert.deepEqual(s.failed, { upstream: 1 });
  });

  it('a truncated answer on one instance is retried on another that answers whole', async () => {
    const [a, b] = await fakes(2);
    assert.ok(a !== undefined && b !== undefined);
    a.behaviour.truncateJsonAt = 40;
    const gw = await gatewayFor([a, b]);
    const reply = await post(gw.url, '/v1/chat/completions', chat(false));
    assert.equal(reply.status, 200, reply.text);
    assert.equal(
      (JSON.parse(reply.text) as { usage: { completion_tokens: number } }).usage.completion_tokens,
      3,
    );
    assert.equal(a.received.length, 1);
    assert.equal(b.received.length, 1);
    const s = await stats(gw);
    assert.equal(s.completed, 1);
    assert.equal(s.retries, 1);
  });

  it('fewer bytes than the declared content-length is no answer either', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.shortByBytes = 10;
    const gw = await gatewayFor([up], { retries: 0 });
    const reply = await post(gw.url, '/v1/chat/completions', chat(false));
    assert.equal(reply.status, 502, reply.text);
    assert.equal(assertErrorBody(reply.text, 502).error.code, 'SY_ERR_UPSTREAM');
    assert.deepEqual((await stats(gw)).failed, { upstream: 1 });
  });

  it('a large truncated answer, part of it already sent, is cut for the client', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    // About 400 KB: it reaches the gateway in several chunks, so the head is committed before the end.
    up.behaviour.tokens = 100_000;
    up.behaviour.truncateJsonAt = 390_000;
    const gw = await gatewayFor([up], { retries: 0 });
    let outcome: string;
    try {
      const reply = await post(gw.url, '/v1/chat/completions', chat(false));
      // Not committed (it came in one chunk after all): then an error answer, never a 200.
      assert.equal(reply.status, 502, reply.text.slice(0, 200));
      outcome = 'error answer';
    } catch (error) {
      assert.ok(error instanceof NoReply && error.kind === 'network', String(error));
      outcome = 'cut';
    }
    assert.ok(outcome === 'cut' || outcome === 'error answer');
    const s = await stats(gw);
    assert.equal(s.completed, 0, JSON.stringify(s));
    assert.deepEqual(s.failed, { upstream: 1 });
  });
});

describe('idle upstreams', () => {
  it('a started stream whose upstream goes silent ends with SY_ERR_TIMEOUT and [DONE]', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.silentAfterChunks = 2;
    const gw = await gatewayFor([up], { streamIdleTimeoutMs: 300 });
    const reply = await post(gw.url, '/v1/chat/completions', chat(true), { deadlineMs: 10_000 });
    assertStreamError(reply, 'SY_ERR_TIMEOUT');
    assert.equal(sseData(reply.text).length, 4, 'two events, the error, [DONE]');
    assert.match(reply.text, /limits\.streamIdleTimeoutMs/);
    assert.deepEqual((await stats(gw)).failed, { timeout: 1 });
  });

  it('a JSON answer whose first part came and then nothing is retried, then answered 504', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.silentAfterChunks = 1;
    const gw = await gatewayFor([up], { streamIdleTimeoutMs: 200, retries: 1 });
    const reply = await post(gw.url, '/v1/chat/completions', chat(false), { deadlineMs: 10_000 });
    assert.equal(reply.status, 504, reply.text);
    assert.equal(assertErrorBody(reply.text, 504).error.code, 'SY_ERR_TIMEOUT');
    assert.equal(up.received.length, 2);
  });
});

describe('upstream error answers', () => {
  it('a final 429 carries the largest upstream Retry-After, bounded', async () => {
    const [a, b] = await fakes(2);
    assert.ok(a !== undefined && b !== undefined);
    a.behaviour.failStatus = 429;
    b.behaviour.failStatus = 429;
    a.behaviour.failRetryAfter = '7';
    b.behaviour.failRetryAfter = '30';
    const gw = await gatewayFor([a, b], { retries: 1 });
    const r = await post(gw.url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 429, r.text);
    assert.equal(assertErrorBody(r.text, 429).error.code, 'SY_ERR_OVERLOADED');
    assert.equal(r.headers.get('retry-after'), '30');
    // An HTTP date counts too; a huge value is bounded.
    a.behaviour.failRetryAfter = new Date(Date.now() + 45_000).toUTCString();
    b.behaviour.failRetryAfter = '99999';
    const big = await post(gw.url, '/v1/completions', { model: MODEL, prompt: 'y', max_tokens: 2 });
    assert.equal(big.status, 429);
    assert.equal(big.headers.get('retry-after'), String(UPSTREAM_RETRY_AFTER_MS_MAX / 1000));
    delete b.behaviour.failRetryAfter;
    const dated = await post(gw.url, '/v1/completions', { model: MODEL, prompt: 'z', max_tokens: 2 });
    const seconds = Number(dated.headers.get('retry-after'));
    assert.ok(seconds >= 40 && seconds <= 45, `Retry-After ${seconds} from a date 45 s ahead`);
    // With none given, the gateway's own 1 s.
    delete a.behaviour.failRetryAfter;
    const none = await post(gw.url, '/v1/completions', { model: MODEL, prompt: 'w', max_tokens: 2 });
    assert.equal(none.headers.get('retry-after'), '1');
  });

  it('a final 503 passes the upstream Retry-After on with the 502', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.failStatus = 503;
    up.behaviour.failRetryAfter = '12';
    const gw = await gatewayFor([up], { retries: 0 });
    const r = await post(gw.url, '/v1/completions', { model: MODEL, prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 502);
    assert.equal(r.headers.get('retry-after'), '12');
  });

  it('a 502 names the instance and status, not the upstream body; the log has the body', async () => {
    const [up] = await fakes(1);
    assert.ok(up !== undefined);
    up.behaviour.failStatus = 500;
    up.behaviour.failEchoBody = true;
    const gw = await gatewayFor([up], { retries: 0 });
    const secret = 'sk-tenant-secret-0123456789';
    const r = await post(gw.url, '/v1/chat/completions', chat(false, `my key is ${secret}`));
    assert.equal(r.status, 502);
    const body = assertErrorBody(r.text, 502);
    assert.equal(body.error.code, 'SY_ERR_UPSTREAM');
    assert.match(body.error.message, /e0 answered 500/);
    assert.ok(!r.text.includes(secret), r.text);
    assert.ok(!r.text.includes('fake failure'), r.text);
    const logged = gw.logs.filter((l) => l.includes('e0 answered 500'));
    assert.equal(logged.length, 1, gw.logs.join('\n'));
    assert.ok(logged[0]?.includes('fake failure 500'), logged[0]);
    // An engine failing everything does not flood the log: one body per status per window.
    const again = await post(gw.url, '/v1/chat/completions', chat(false, 'again'));
    assert.equal(again.status, 502);
    assert.equal(gw.logs.filter((l) => l.includes('e0 answered 500')).length, 1, gw.logs.join('\n'));
  });
});
