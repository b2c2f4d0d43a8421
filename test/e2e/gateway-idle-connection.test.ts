/**
 * A connection that never sends a byte is not a request: when the gateway closes it at the head
 * timeout (min(limits.requestTimeoutMs, 60 s), Node's headersTimeout) with a 408, /stats and
 * /metrics count it as an idle connection closed, not as a rejected request. A connection that
 * sent part of a request head and stalled is a request refused (408 SY_ERR_REQUEST_TIMEOUT,
 * counted in `rejected`). Real gateway and sim engine on 127.0.0.1, raw sockets.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { type GatewayStatsJson, getJson } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

/** The head timeout the gateway derives from it: min(requestTimeoutMs, 60 s). */
const REQUEST_TIMEOUT_MS = 1000;

/** Opens a raw connection, sends `bytes` (maybe nothing), and returns what arrives until the gateway closes it. */
async function sendAndWaitClose(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    text += chunk;
  });
  socket.on('error', () => {});
  if (bytes.length > 0) socket.write(bytes);
  await once(socket, 'close');
  return text;
}

/** The value of a label-less Prometheus sample, or undefined when the exposition lacks it. */
function sample(exposition: string, name: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('an idle client connection closed at the head timeout', { timeout: 60_000 }, () => {
  // No request reaches the engine: its time scale does not matter.
  const setUp = simGateway({ limits: { requestTimeoutMs: REQUEST_TIMEOUT_MS } });

  it('is answered 408 and closed, counted apart from rejected requests in /stats and /metrics', async () => {
    const [idleA, idleB] = await Promise.all([
      sendAndWaitClose(setUp.gw.url, ''),
      sendAndWaitClose(setUp.gw.url, ''),
    ]);
    for (const text of [idleA, idleB]) {
      assert.match(text, /^HTTP\/1\.1 408 /, text);
      assert.match(text, /SY_ERR_REQUEST_TIMEOUT/);
    }
    const stats = await getJson<GatewayStatsJson & { idleConnectionsTimedOut?: number }>(
      `${setUp.gw.url}/stats`,
    );
    assert.deepEqual(stats.rejected, {}, 'no request was sent, so none was rejected');
    assert.equal(stats.idleConnectionsTimedOut, 2);
    assert.equal(stats.accepted, 0);
    const metrics = await (await fetch(`${setUp.gw.url}/metrics`)).text();
    assert.doesNotMatch(metrics, /switchyard_gateway_requests_rejected_total\{/);
    assert.equal(sample(metrics, 'switchyard_gateway_idle_connections_timed_out_total'), 2);
  });

  it('a stalled request head is still a rejected request', async () => {
    const text = await sendAndWaitClose(setUp.gw.url, 'POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n');
    assert.match(text, /^HTTP\/1\.1 408 /, text);
    const stats = await getJson<GatewayStatsJson & { idleConnectionsTimedOut?: number }>(
      `${setUp.gw.url}/stats`,
    );
    assert.deepEqual(stats.rejected, { SY_ERR_REQUEST_TIMEOUT: 1 });
    assert.equal(stats.idleConnectionsTimedOut, 2, 'unchanged: this connection sent bytes of a request');
    const metrics = await (await fetch(`${setUp.gw.url}/metrics`)).text();
    assert.match(metrics, /switchyard_gateway_requests_rejected_total\{code="SY_ERR_REQUEST_TIMEOUT"\} 1\n/);
  });
});
