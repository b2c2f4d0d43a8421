/**
 * Backends added and removed while the gateway runs (the local actuator's engines), and the request
 * tap: real HTTP on loopback against fake upstreams.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Request } from '../core/request.ts';
import { type FakeUpstream, startFakeUpstream } from './fake-upstream.ts';
import { type Gateway, startGateway } from './gateway.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fake(): Promise<FakeUpstream> {
  const f = await startFakeUpstream('m');
  cleanups.push(() => f.close());
  return f;
}

async function gateway(first: FakeUpstream): Promise<Gateway> {
  const gw = await startGateway(
    {
      port: 0,
      backends: [{ id: 'e0', type: 'vllm', url: first.url, models: ['m'], metricsPath: null }],
      routing: { policy: 'round-robin' },
      healthCheck: { intervalMs: 60_000 },
    },
    { log: () => {} },
  );
  cleanups.push(() => gw.close());
  return gw;
}

function complete(gw: Gateway): Promise<Response> {
  return fetch(`${gw.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: 'hi', max_tokens: 3 }),
  });
}

describe('run-time backends', () => {
  it('routes to an added backend, refuses to remove it while a request is on it, then removes it', async () => {
    const a = await fake();
    const b = await fake();
    const gw = await gateway(a);
    gw.addBackend({ id: 'e1', type: 'vllm', url: b.url, models: ['m'], metricsPath: null });
    assert.deepEqual(
      gw.view.instances.map((i) => i.id),
      ['e0', 'e1'],
    );
    for (let k = 0; k < 4; k++) assert.equal((await complete(gw)).status, 200);
    assert.equal(b.received.length, 2, 'round-robin reached the added backend');

    b.behaviour.delayMs = 300;
    gw.setDraining('e0', true);
    const slow = complete(gw);
    while ((gw.view.get('e1')?.inFlight ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
    gw.setDraining('e1', true);
    assert.throws(() => gw.removeBackend('e1'), /in flight; drain it first/);
    assert.equal((await slow).status, 200, 'the request on the draining backend finished there');
    assert.equal(gw.removeBackend('e1'), true);
    assert.equal(gw.removeBackend('e1'), false);
    gw.setDraining('e0', false);
    assert.deepEqual(
      gw.view.instances.map((i) => i.id),
      ['e0'],
    );
    const before = b.received.length;
    assert.equal((await complete(gw)).status, 200);
    assert.equal(b.received.length, before, 'nothing goes to a removed backend');
  });

  it('refuses a duplicate id and a model the gateway did not start with', async () => {
    const a = await fake();
    const gw = await gateway(a);
    assert.throws(
      () => gw.addBackend({ id: 'e0', type: 'vllm', url: a.url, models: ['m'] }),
      /duplicate backend id 'e0'/,
    );
    assert.throws(
      () => gw.addBackend({ id: 'e9', type: 'vllm', url: a.url, models: ['other'] }),
      /did not start with/,
    );
    assert.throws(() => gw.addBackend({ id: 'bad id', type: 'vllm', url: a.url, models: ['m'] }));
  });

  it('tells the request tap of each arrival, first byte and end', async () => {
    const a = await fake();
    const gw = await gateway(a);
    const events: string[] = [];
    gw.requestTap = {
      arrived: (r: Request) => events.push(`arrived ${r.model}`),
      firstByte: () => events.push('first byte'),
      ended: (_r: Request, ok: boolean, outputTokens: number) => events.push(`ended ${ok} ${outputTokens}`),
    };
    assert.equal((await complete(gw)).status, 200);
    a.behaviour.failStatus = 500;
    await complete(gw);
    assert.deepEqual(events.slice(0, 3), ['arrived m', 'first byte', 'ended true 3']);
    assert.equal(events.at(-1), 'ended false 0');
  });
});
