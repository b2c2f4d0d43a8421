/**
 * End-to-end: limits.connectionsMax bounds the client connections of all addresses together. With
 * it at 4 (and the per-address bound left at its default), two connections from 127.0.0.1 and two
 * from 127.0.0.2 fill it: the next one from either address is answered 429
 * SY_ERR_TOO_MANY_CONNECTIONS naming limits.connectionsMax and closed unread, and once the four close
 * the gateway answers again. Before, only the per-address bound existed: three loopback addresses
 * held 12,000 idle sockets (R1). Raw sockets against a real gateway on 127.0.0.1; the waits are
 * hang guards only.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, it } from 'node:test';
import {
  assertErrorBody,
  type GatewayStatsJson,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import { readUntilClose } from './support/raw-http.ts';

const CONNECTIONS_MAX = 4;
const HANG_GUARD_MS = 15_000;
const teardown = new Teardown();
let gw: TestGateway;
let port: number;

before(async () => {
  gw = await startTestGateway({ backends: [], limits: { connectionsMax: CONNECTIONS_MAX } }, teardown);
  port = Number(new URL(gw.url).port);
});
after(() => teardown.run());

/** A connection from `localAddress`, once connected. */
async function open(localAddress: string): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Opens a connection from `localAddress` and reads what the gateway says before it closes it. */
async function refusedFrom(localAddress: string): Promise<void> {
  const socket = await open(localAddress);
  const text = await readUntilClose(socket, HANG_GUARD_MS);
  assert.match(text, /^HTTP\/1\.1 429 /, `${localAddress}: ${text.slice(0, 200)}`);
  assert.match(text, /\r\nretry-after: 1\r\n/i);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  const e = assertErrorBody(body, 429, localAddress);
  assert.equal(e.error.code, 'SY_ERR_TOO_MANY_CONNECTIONS');
  assert.match(e.error.message, /limits\.connectionsMax/);
}

/** GET /stats on a fresh connection from `localAddress`: the status and the body. */
async function statsFrom(localAddress: string): Promise<{ status: number; body: string }> {
  const socket = await open(localAddress);
  const all = readUntilClose(socket, HANG_GUARD_MS);
  socket.write('GET /stats HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n');
  const text = await all;
  return { status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}

it('refuses connections past connectionsMax from any address, and serves again once they close', async () => {
  const held = [
    await open('127.0.0.1'),
    await open('127.0.0.2'),
    await open('127.0.0.1'),
    await open('127.0.0.2'),
  ];
  await refusedFrom('127.0.0.1');
  await refusedFrom('127.0.0.2');
  for (const socket of held) socket.destroy();
  // The gateway counts a closed connection out when its 'close' arrives: retry until it has.
  const start = Date.now();
  for (;;) {
    const reply = await statsFrom('127.0.0.1');
    if (reply.status === 200) {
      const stats = JSON.parse(reply.body) as GatewayStatsJson;
      assert.ok((stats.rejected['SY_ERR_TOO_MANY_CONNECTIONS'] ?? 0) >= 2, reply.body);
      break;
    }
    assert.equal(reply.status, 429, reply.body);
    assert.ok(Date.now() - start < HANG_GUARD_MS, 'the gateway never let a connection in again');
  }
  // And from the other address, with room for several at once.
  const again = await Promise.all([statsFrom('127.0.0.2'), statsFrom('127.0.0.1')]);
  for (const reply of again) assert.equal(reply.status, 200, reply.body);
});
