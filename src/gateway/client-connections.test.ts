import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ErrorCode } from '../core/errors.ts';
import { admitConnection, ClientConnections, clientAddressOf } from './client-connections.ts';

/** A loopback server that counts its connections as the gateway does, with a per-client bound of 2. */
describe('ClientConnections on a real loopback server', () => {
  const connections = new ClientConnections(2);
  const rejected: ErrorCode[] = [];
  const host = {
    readingFor: () => undefined,
    countRejection: (code: ErrorCode) => rejected.push(code),
    countIdleTimeout: () => {},
  };
  let server: Server;
  let port = 0;
  const admitted: Socket[] = [];

  before(async () => {
    server = createServer((socket) => {
      if (admitConnection(connections, host, socket)) admitted.push(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    for (const s of admitted) s.destroy();
    server.close();
  });

  /** Opens a connection from `localAddress` and resolves when it is connected. */
  async function open(localAddress: string): Promise<Socket> {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    await once(s, 'connect');
    return s;
  }

  /** Everything the server sends before it closes the connection. */
  async function readAll(s: Socket): Promise<string> {
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      text += chunk;
    });
    await once(s, 'close');
    return text;
  }

  it('answers the connection past the bound 429 JSON and counts per address', async () => {
    const a1 = await open('127.0.0.2');
    const a2 = await open('127.0.0.2');
    const b1 = await open('127.0.0.3');
    const a3 = await open('127.0.0.2');
    const answer = await readAll(a3);
    assert.match(answer, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(answer, /\r\nretry-after: 1\r\n/);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
    assert.equal(body.error.code, 'SY_ERR_TOO_MANY_CONNECTIONS');
    assert.deepEqual(rejected, ['SY_ERR_TOO_MANY_CONNECTIONS']);
    assert.equal(connections.count('127.0.0.2'), 2);
    assert.equal(connections.count('127.0.0.3'), 1);
    // A closed connection gives its place back.
    a1.destroy();
    while (connections.count('127.0.0.2') !== 1) await new Promise((r) => setImmediate(r));
    const a4 = await open('127.0.0.2');
    while (connections.count('127.0.0.2') !== 2) await new Promise((r) => setImmediate(r));
    for (const s of [a2, b1, a4]) s.destroy();
    while (connections.clients !== 0) await new Promise((r) => setImmediate(r));
    assert.deepEqual(rejected, ['SY_ERR_TOO_MANY_CONNECTIONS']);
  });

  it('counts an IPv4-mapped IPv6 address as the IPv4 one', () => {
    assert.equal(clientAddressOf({ remoteAddress: '::ffff:10.0.0.1' }), '10.0.0.1');
    assert.equal(clientAddressOf({ remoteAddress: '::1' }), '::1');
    assert.equal(clientAddressOf({ remoteAddress: undefined }), undefined);
  });
});
