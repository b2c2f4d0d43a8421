/**
 * End-to-end: a client that resets its connection (TCP RST: it closed with the answer unread, as a
 * fetch aborted mid-stream does) while its accepted request is being answered. The request ends as
 * `failed{client_abort}` and nothing else: Node reports the reset as a 'clientError' (ECONNRESET),
 * which is not a malformed request, so `rejected` must not count it again. Before, every such reset
 * added `rejected{SY_ERR_INVALID_ARGUMENT}` ("malformed HTTP request (ECONNRESET)") on top of the
 * client_abort: a request counted twice, and a false alarm on the refusal counters.
 * A reset while the body is still arriving (never accepted) counts once, as a refusal.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { type GatewayStatsJson, getJson, MODEL, until } from './support/cluster.ts';
import { openSocket } from './support/raw-http.ts';
import { simGateway } from './support/sim-gateway.ts';

const setup = simGateway();

const stats = (): Promise<GatewayStatsJson> => getJson<GatewayStatsJson>(`${setup.gw.url}/stats`);

function head(bodyBytes: number): string {
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bodyBytes}\r\n\r\n`;
}

const sum = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

describe('a client that resets its connection', () => {
  it('mid-stream: counted once, as failed client_abort, never as a rejected request', async () => {
    const before = await stats();
    const body = JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 20_000,
      stream: true,
    });
    const socket = await openSocket(setup.gw.url);
    socket.on('error', () => {});
    socket.write(head(Buffer.byteLength(body)) + body);
    await once(socket, 'data');
    socket.resetAndDestroy();
    await until('the aborted stream to end', async () => (await stats()).inFlight === 0);
    // The 'clientError' and the response's close come in the same turn or the next: give a late
    // count time to show.
    await new Promise((r) => setTimeout(r, 300));
    const now = await stats();
    assert.equal(now.accepted - before.accepted, 1);
    assert.equal((now.failed.client_abort ?? 0) - (before.failed.client_abort ?? 0), 1);
    assert.deepEqual(now.rejected, before.rejected, 'a reset is not a refused request');
    assert.equal(now.accepted, now.completed + now.failedTotal + now.inFlight);
  });

  it('mid-body (never accepted): counted once, as a refusal', async () => {
    const before = await stats();
    const socket = await openSocket(setup.gw.url);
    socket.on('error', () => {});
    socket.write(`${head(1000)}{"model":`);
    await new Promise((r) => setTimeout(r, 200));
    socket.resetAndDestroy();
    await until(
      'the broken body to be counted',
      async () => sum((await stats()).rejected) > sum(before.rejected),
    );
    await new Promise((r) => setTimeout(r, 300));
    const now = await stats();
    assert.equal(now.accepted, before.accepted);
    assert.equal(sum(now.rejected) - sum(before.rejected), 1);
  });
});
