/**
 * The gateway's scale-from-zero path over real HTTP on loopback: a model configured on demand has no
 * backend; its requests are held, the host is woken, and a backend added later answers them. The
 * bounds answer what they must (full, timed out, shut down) and a client that leaves is dropped.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FakeUpstream, startFakeUpstream } from './fake-upstream.ts';
import { type Gateway, startGateway } from './gateway.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A gateway with one always-on model `m` and one model `z` at zero; `wakes` records its wake-ups. */
async function zeroGateway(limits: Record<string, unknown> = {}) {
  const always = await startFakeUpstream('m');
  cleanups.push(() => always.close());
  const wakes: [string, number][] = [];
  const gw = await startGateway(
    {
      port: 0,
      backends: [{ id: 'm0', type: 'vllm', url: always.url, models: ['m'] }],
      healthCheck: { intervalMs: 60_000 },
      limits,
    },
    {
      log: () => {},
      scaleFromZero: { models: ['z'], keepAliveMs: 1234, wake: (model, n) => wakes.push([model, n]) },
    },
  );
  cleanups.push(() => gw.close());
  return { gw, wakes };
}

async function upstreamFor(model: string): Promise<FakeUpstream> {
  const u = await startFakeUpstream(model);
  cleanups.push(() => u.close());
  return u;
}

function chat(gw: Gateway, model: string, extra: Record<string, unknown> = {}, signal?: AbortSignal) {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ...extra }),
    ...(signal !== undefined ? { signal } : {}),
  });
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(5);
}

/**
 * The cold-start wait of the bound tests: the second request must arrive while the first is held,
 * and the test then waits it out. At 50 ms a loaded machine (load 13-16) let the first expire
 * before the second came (503, not 429: 7 of 8 runs failed).
 */
const HELD_WAIT_MS = 2000;

const codeOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

describe('gateway scale from zero', () => {
  it('lists the model at zero, holds its requests, wakes the host and answers once a backend is added', async () => {
    const { gw, wakes } = await zeroGateway();
    const models = (await (await fetch(`${gw.url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['m', 'z'],
    );
    const pending = [chat(gw, 'z', { keep_alive: '7s' }), chat(gw, 'z')];
    await until(() => gw.modelBuffer?.waiting('z') === 2);
    assert.deepEqual(wakes, [
      ['z', 1],
      ['z', 2],
    ]);
    // The latest request set the keep-alive: it had none, so the host's default.
    assert.equal(gw.modelBuffer?.keepAliveMs('z'), 1234);
    assert.equal((await chat(gw, 'm')).status, 200, 'another model is not held up');
    const u = await upstreamFor('z');
    gw.addBackend({ id: 'z0', type: 'vllm', url: u.url, models: ['z'] });
    const answers = await Promise.all(pending);
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 200],
    );
    assert.equal(u.received.length, 2);
    assert.equal(JSON.parse(u.received[0]?.body ?? '{}').keep_alive, '7s', 'the body goes upstream as sent');
    const warm = await chat(gw, 'z', { keep_alive: '7s' });
    assert.equal(warm.status, 200);
    assert.equal(gw.modelBuffer?.keepAliveMs('z'), 7000);
    assert.equal(gw.modelBuffer?.stats.held, 2, 'a warm request is not held');
  });

  it('refuses past the buffer bound with 429 and Retry-After, and times out a wait with 503', async () => {
    const { gw } = await zeroGateway({ scaleFromZeroBufferMax: 1, scaleFromZeroWaitMs: HELD_WAIT_MS });
    const first = chat(gw, 'z');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    const second = await chat(gw, 'z');
    assert.equal(second.status, 429);
    assert.ok(Number(second.headers.get('retry-after')) > 0);
    assert.equal(await codeOf(second), 'SY_ERR_SCALE_BUFFER_FULL');
    const timedOut = await first;
    assert.equal(timedOut.status, 503);
    assert.ok(Number(timedOut.headers.get('retry-after')) > 0);
    assert.equal(await codeOf(timedOut), 'SY_ERR_COLD_START_TIMEOUT');
    const s = gw.modelBuffer?.stats;
    assert.deepEqual([s?.held, s?.overflowed, s?.expired], [1, 1, 1]);
  });

  it('refuses past the bound on all models together (limits.scaleFromZeroHeldMax), naming it', async () => {
    const { gw } = await zeroGateway({ scaleFromZeroHeldMax: 1, scaleFromZeroWaitMs: HELD_WAIT_MS });
    const first = chat(gw, 'z');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    const second = await chat(gw, 'z');
    assert.equal(second.status, 429);
    assert.ok(Number(second.headers.get('retry-after')) > 0);
    const body = (await second.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'SY_ERR_SCALE_BUFFER_FULL');
    assert.match(body.error.message, /limits\.scaleFromZeroHeldMax 1\b/);
    assert.equal((await first).status, 503);
  });

  it('drops a request whose client left, gives its bytes back, and fails what is held at shutdown', async () => {
    const { gw } = await zeroGateway();
    const abort = new AbortController();
    const left = chat(gw, 'z', {}, abort.signal).catch(() => 'aborted');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    abort.abort();
    assert.equal(await left, 'aborted');
    await until(() => gw.modelBuffer?.stats.abandoned === 1);
    assert.equal(gw.modelBuffer?.waiting('z'), 0);
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as { queuedBytes: { bytes: number } };
    assert.equal(stats.queuedBytes.bytes, 0);
    const held = chat(gw, 'z');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    void gw.close();
    const res = await held;
    assert.equal(res.status, 503);
    assert.equal(await codeOf(res), 'SY_ERR_DRAINING');
  });

  it('answers 400 for a bad keep_alive, holding nothing', async () => {
    const { gw, wakes } = await zeroGateway({ keepAliveMsMax: 60_000 });
    const res = await chat(gw, 'z', { keep_alive: '2h' });
    assert.equal(res.status, 400);
    assert.equal(await codeOf(res), 'SY_ERR_INVALID_ARGUMENT');
    assert.deepEqual(wakes, []);
  });
});
