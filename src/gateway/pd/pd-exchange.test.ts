/**
 * The gateway's side of the P/D flows against loopback fake upstreams (which know no protocol): what
 * each pool receives, that each pick stays in its role's pool, the room both legs share, and the
 * failure paths. test/e2e/gateway-pd-*.test.ts run the flows against sim engines that speak them.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type FakeUpstream, startFakeUpstream } from '../fake-upstream.ts';
import { type Gateway, startGateway } from '../gateway.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fakes(n: number): Promise<FakeUpstream[]> {
  const out: FakeUpstream[] = [];
  for (let i = 0; i < n; i++) {
    const f = await startFakeUpstream('m');
    cleanups.push(() => f.close());
    out.push(f);
  }
  return out;
}

/** A gateway over `prefill` and `decode` fakes of `protocol`, plus `both` fakes serving model 'c'. */
async function pdGateway(
  protocol: 'vllm' | 'sglang',
  prefill: readonly FakeUpstream[],
  decode: readonly FakeUpstream[],
  extra: Record<string, unknown> = {},
  backendExtra: Record<string, unknown> = {},
): Promise<Gateway> {
  const gw = await startGateway(
    {
      port: 0,
      backends: [
        ...prefill.map((u, i) => ({
          id: `p${i}`,
          type: 'vllm' as const,
          url: u.url,
          models: ['m'],
          role: 'prefill' as const,
          pdProtocol: protocol,
          ...backendExtra,
        })),
        ...decode.map((u, i) => ({
          id: `d${i}`,
          type: 'vllm' as const,
          url: u.url,
          models: ['m'],
          role: 'decode' as const,
          pdProtocol: protocol,
          ...backendExtra,
        })),
      ],
      routing: { policy: 'round-robin' },
      healthCheck: { intervalMs: 60_000 },
      limits: { retryBackoffBaseMs: 1, retryBackoffMaxMs: 5 },
      ...extra,
    },
    { log: () => {} },
  );
  cleanups.push(() => gw.close());
  return gw;
}

async function chat(
  gw: Gateway,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm',
      messages: [{ role: 'user', content: 'hello there' }],
      max_tokens: 9,
      ...extra,
    }),
  });
  const text = await r.text();
  return {
    status: r.status,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : { text },
  };
}

/** The completions an upstream received: the health round's role probe (a GET, no body) is not one. */
const posted = (u: FakeUpstream) => u.received.filter((r) => r.body !== '');
const bodies = (u: FakeUpstream) => posted(u).map((r) => JSON.parse(r.body) as Record<string, unknown>);

describe('vLLM flow', () => {
  it('prefills with max_tokens 1 on the prefill pool, then decodes the client request on the decode pool', async () => {
    const [p0, p1, d0, d1] = await fakes(4);
    const gw = await pdGateway('vllm', [p0!, p1!], [d0!, d1!]);
    for (let i = 0; i < 4; i++) assert.equal((await chat(gw)).status, 200);
    const prefills = [...bodies(p0!), ...bodies(p1!)];
    const decodes = [...bodies(d0!), ...bodies(d1!)];
    assert.equal(prefills.length, 4);
    assert.equal(decodes.length, 4);
    // Round robin within each pool: both prefill instances and both decode instances were used.
    for (const u of [p0!, p1!, d0!, d1!]) assert.equal(u.received.length, 2);
    for (const b of prefills) {
      assert.equal(b['max_tokens'], 1);
      assert.equal(b['stream'], false);
      assert.equal((b['kv_transfer_params'] as Record<string, unknown>)['do_remote_decode'], true);
    }
    // The fakes answer without kv_transfer_params: as vLLM's proxy, the decode goes without them.
    for (const b of decodes) {
      assert.equal(b['max_tokens'], 9);
      assert.equal(b['kv_transfer_params'], undefined);
    }
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as Record<string, unknown>;
    assert.deepEqual(stats['pd'], { prefills: 4, prefillFailures: 0, prefillRetries: 0, kvParamsMissing: 4 });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /^switchyard_gateway_pd_prefill_legs_total 4$/m);
  });

  it("sends one fresh X-Request-Id per pair on both legs (not the client's), and the backend's key", async () => {
    const [p0, d0, d1] = await fakes(3);
    const gw = await pdGateway('vllm', [p0!], [d0!, d1!], {}, { apiKey: 'k' });
    d0!.behaviour.failStatus = 503;
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'client-1' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
    });
    assert.equal(r.status, 200, await r.text());
    // d0 refused the first pair's decode: the retry is a new pair (p0 again, then d1).
    const legs = [p0!.received[0], d0!.received[0], p0!.received[1], d1!.received[0]];
    const ids = legs.map((l) => l?.headers['x-request-id']);
    assert.equal(ids[0], ids[1], "the first pair's legs carry one id");
    assert.equal(ids[2], ids[3], "the retried pair's legs carry one id");
    assert.notEqual(ids[0], ids[2], 'each pair its own id');
    for (const id of ids)
      assert.match(String(id), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    for (const l of legs) assert.equal(l?.headers['authorization'], 'Bearer k');
  });

  it('a decode attempt is in flight on its instance with no pending prefill tokens', async () => {
    const [p0, d0] = await fakes(2);
    const gw = await pdGateway('vllm', [p0!], [d0!]);
    d0!.behaviour.delayMs = 400;
    const pending = chat(gw);
    for (let i = 0; i < 200 && d0!.received.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    const d = gw.view.get('d0');
    assert.equal(d?.inFlight, 1);
    assert.equal(d?.pendingPrefillTokens, 0, 'the prompt KV came from the prefill instance');
    assert.equal(gw.view.get('p0')?.inFlight, 0, 'the prefill leg ended');
    assert.equal((await pending).status, 200);
  });

  it('retries a failing prefill once elsewhere, then ends with SY_ERR_PD_PREFILL_FAILED', async () => {
    const [p0, p1, d0] = await fakes(3);
    const gw = await pdGateway('vllm', [p0!, p1!], [d0!]);
    p0!.behaviour.failStatus = 500;
    assert.equal((await chat(gw)).status, 200, 'p0 failed, p1 prefilled');
    p1!.behaviour.failStatus = 500;
    const r = await chat(gw);
    assert.equal(r.status, 502);
    assert.equal((r.body['error'] as { code: string }).code, 'SY_ERR_PD_PREFILL_FAILED');
    assert.equal(d0!.received.length, 1, 'no decode without a prefill');
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as Record<string, number>;
    assert.equal(stats['accepted'], (stats['completed'] as number) + (stats['failedTotal'] as number));
  });

  it('relays a prefill 4xx as the request refused, without a retry', async () => {
    const [p0, p1, d0] = await fakes(3);
    const gw = await pdGateway('vllm', [p0!, p1!], [d0!]);
    p0!.behaviour.failStatus = 400;
    p1!.behaviour.failStatus = 400;
    const r = await chat(gw);
    assert.equal(r.status, 400);
    assert.equal(p0!.received.length + p1!.received.length, 1);
  });
});

describe('SGLang flow', () => {
  it('sends both legs the client request with the prefill bootstrap address and one room', async () => {
    const [p0, d0] = await fakes(2);
    const gw = await pdGateway('sglang', [p0!], [d0!]);
    const r = await chat(gw, { stream: true });
    assert.equal(r.status, 200);
    assert.match(String(r.body['text']), /\[DONE\]/);
    await chat(gw);
    const [pa, pb] = bodies(p0!);
    const [da, db] = bodies(d0!);
    assert.equal(pa?.['bootstrap_host'], '127.0.0.1');
    assert.equal(pa?.['bootstrap_port'], p0!.port, 'default: the prefill URL port');
    assert.equal(pa?.['bootstrap_room'], da?.['bootstrap_room']);
    assert.equal(pb?.['bootstrap_room'], db?.['bootstrap_room']);
    assert.notEqual(pa?.['bootstrap_room'], pb?.['bootstrap_room'], 'a fresh room per request');
    assert.equal(da?.['max_tokens'], 9);
    assert.equal(da?.['stream'], true);
  });

  it('uses a configured bootstrapPort, and retries a failed decode as a new pair', async () => {
    const [p0, d0, d1] = await fakes(3);
    const gw = await startGateway(
      {
        port: 0,
        backends: [
          {
            id: 'p0',
            type: 'sglang',
            url: p0!.url,
            models: ['m'],
            role: 'prefill',
            pdProtocol: 'sglang',
            bootstrapPort: 8998,
          },
          { id: 'd0', type: 'sglang', url: d0!.url, models: ['m'], role: 'decode', pdProtocol: 'sglang' },
          { id: 'd1', type: 'sglang', url: d1!.url, models: ['m'], role: 'decode', pdProtocol: 'sglang' },
        ],
        routing: { policy: 'round-robin' },
        healthCheck: { intervalMs: 60_000 },
        limits: { retryBackoffBaseMs: 1, retryBackoffMaxMs: 5 },
      },
      { log: () => {} },
    );
    cleanups.push(() => gw.close());
    d0!.behaviour.failStatus = 503;
    for (let i = 0; i < 2; i++) assert.equal((await chat(gw)).status, 200);
    const rooms = bodies(p0!).map((b) => b['bootstrap_room']);
    assert.equal(bodies(p0!)[0]?.['bootstrap_port'], 8998);
    assert.ok(posted(d0!).length >= 1, 'd0 was tried and failed');
    assert.equal(new Set(rooms).size, rooms.length, 'each pair its own room');
    assert.equal(rooms.length, posted(d0!).length + posted(d1!).length, 'one prefill leg per decode attempt');
  });
});

describe('SGLang prefill failures', () => {
  const pdStats = async (gw: Gateway) =>
    ((await (await fetch(`${gw.url}/stats`)).json()) as { pd: Record<string, number> }).pd;

  it('a prefill 408 is retried as a new pair on another prefill instance', async () => {
    const [p0, p1, d0] = await fakes(3);
    const gw = await pdGateway('sglang', [p0!, p1!], [d0!]);
    p0!.behaviour.failStatus = 408;
    // The decode leg waits for its KV (a fake answers at once otherwise, before the prefill fails).
    d0!.behaviour.delayMs = 300;
    const r = await chat(gw);
    assert.equal(r.status, 200);
    assert.deepEqual([p0!.received.length, p1!.received.length], [1, 1]);
    const pd = await pdStats(gw);
    assert.deepEqual([pd['prefillFailures'], pd['prefillRetries']], [1, 1]);
  });

  it('a prefill 413 is relayed as the engine answered it, without a retry', async () => {
    const [p0, p1, d0] = await fakes(3);
    const gw = await pdGateway('sglang', [p0!, p1!], [d0!]);
    p0!.behaviour.failStatus = 413;
    p1!.behaviour.failStatus = 413;
    d0!.behaviour.delayMs = 300;
    const r = await chat(gw);
    assert.equal(r.status, 413);
    assert.deepEqual(r.body['error'], { message: 'fake failure 413', type: 'server_error' });
    assert.equal(p0!.received.length + p1!.received.length, 1);
    assert.equal((await pdStats(gw))['prefillRetries'], 0);
  });
});

describe('a pair deciding at arrival (mooncake)', () => {
  /** A gateway whose pair policy is mooncake with `params` (its sides need a perf model per backend). */
  const mooncakeGateway = (
    prefill: FakeUpstream[],
    decode: FakeUpstream[],
    params: Record<string, unknown>,
  ) =>
    pdGateway(
      'vllm',
      prefill,
      decode,
      { pd: { pairPolicy: 'mooncake', params: { decodeAt: 'arrival', ...params } } },
      { perfModel: 'llama-3.1-8b' },
    );

  it('picks the decode instance before the prefill leg, counts it in flight meanwhile, and decodes there', async () => {
    const [p0, d0, d1] = await fakes(3);
    const gw = await mooncakeGateway([p0!], [d0!, d1!], { ttftSloMs: 1e9, tpotSloMs: 1e9 });
    p0!.behaviour.delayMs = 300;
    const pending = chat(gw);
    for (let i = 0; i < 200 && p0!.received.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    const held = ['d0', 'd1'].filter((id) => gw.view.get(id)?.inFlight === 1);
    assert.equal(held.length, 1, 'one decode instance counts the request while it prefills');
    assert.equal(d0!.received.length + d1!.received.length, 0, 'no decode attempt before the prefill ends');
    assert.equal((await pending).status, 200);
    assert.deepEqual(
      [d0!.received.length, d1!.received.length],
      held[0] === 'd0' ? [1, 0] : [0, 1],
      'the decode attempt went to the instance picked at arrival',
    );
    for (const id of ['p0', 'd0', 'd1']) assert.equal(gw.view.get(id)?.inFlight, 0, `${id} released`);
  });

  it('a TPOT refusal comes before any prefill leg and leaves nothing in flight', async () => {
    const [p0, d0] = await fakes(2);
    const gw = await mooncakeGateway([p0!], [d0!], { tpotSloMs: 0.01 });
    const r = await chat(gw);
    assert.equal(r.status, 429);
    assert.equal((r.body['error'] as { code: string }).code, 'SY_ERR_SLO_UNREACHABLE');
    assert.equal(p0!.received.length + d0!.received.length, 0, 'nothing was sent');
    assert.equal(gw.view.get('d0')?.inFlight, 0);
    const stats = (await (await fetch(`${gw.url}/stats`)).json()) as Record<string, unknown>;
    assert.equal((stats['pd'] as Record<string, number>)['prefills'], 0);
  });
});
