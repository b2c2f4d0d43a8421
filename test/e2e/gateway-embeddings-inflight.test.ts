/**
 * End-to-end: embeddings waiting in the gateway's admission queue count as requests the gateway
 * holds, as queued completions do: in /stats `inFlight`, the `requests_in_flight` gauge and the
 * drain's count, beside `queued`. A real gateway in front of a real sim engine whose one admission
 * slot a long chat holds while a flood of embeddings queues behind it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type GatewayStatsJson,
  getJson,
  MODEL,
  metricSum,
  scrape,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

const EMBEDDINGS = 12;

describe('queued embeddings in the gateway inFlight', { timeout: 60_000 }, () => {
  const teardown = new Teardown();
  let gw: TestGateway;

  before(async () => {
    const sims = await startSims(1, ['--time-scale', '1', '--kv-events', 'none'], teardown);
    const engine = sims.engines[0];
    assert.ok(engine !== undefined);
    gw = await startTestGateway(
      {
        backends: [simBackend('e0', engine, false)],
        // One request at a time on the engine: the rest wait in the gateway, where they can be seen.
        admission: { gate: { inFlightMax: 1, waitingMax: 1 }, shedding: { shedOnEstimatedWait: false } },
      },
      teardown,
    );
  });
  after(() => teardown.run());

  it('counts each queued embeddings request in inFlight, the gauge and the drain count', async () => {
    const stats = (): Promise<GatewayStatsJson> => getJson<GatewayStatsJson>(`${gw.url}/stats`);
    // A long streamed chat takes the one slot; it is cut once the queue has been looked at.
    const holder = new AbortController();
    const chat = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: 'a long answer please' }],
        max_tokens: 4000,
        ignore_eos: true,
        stream: true,
      }),
      signal: holder.signal,
    })
      .then((res) => res.arrayBuffer())
      // Cut on purpose below.
      .catch(() => {});
    await until('the chat holds the slot', async () => (await stats()).inFlight === 1);
    const replies = Array.from({ length: EMBEDDINGS }, (_, i) =>
      fetch(`${gw.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, input: [`doc ${i}`, `more ${i}`], dimensions: 8 }),
      }).then((res) => res.status),
    );
    await until('every embeddings request queued', async () => (await stats()).queued === EMBEDDINGS);

    const held = await stats();
    assert.equal(held.inFlight, EMBEDDINGS + 1, JSON.stringify(held));
    assert.equal(held.accepted, held.completed + held.failedTotal + held.inFlight, JSON.stringify(held));
    const metrics = await scrape(gw.url);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_in_flight'), EMBEDDINGS + 1);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_queued'), EMBEDDINGS);
    const drain = gw.gateway.drainStatus();
    assert.equal(drain.inFlight, EMBEDDINGS + 1);
    assert.equal(drain.queued, EMBEDDINGS);

    holder.abort();
    await chat;
    for (const status of await Promise.all(replies)) assert.equal(status, 200);
    await until('every request ended', async () => (await stats()).inFlight === 0);
    const end = await stats();
    assert.equal(end.queued, 0);
    assert.equal(end.accepted, end.completed + end.failedTotal, JSON.stringify(end));
  });
});
