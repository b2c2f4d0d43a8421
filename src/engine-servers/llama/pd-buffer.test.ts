/**
 * A llama decode on the buffer state API (the KV-state addon) fetches a state larger than a Buffer
 * may be (Node's buffer.constants.MAX_LENGTH, 4 GiB: a long prompt's KV on an 8B model) into a file,
 * as an engine without the addon does, instead of failing the transfer (twice) and prefilling the
 * request locally. A fake KV server announces such a state at META on the first connection; the
 * state it then serves on the next connection is small. The addon itself is not needed: the decode
 * is told it has one (its buffer callback is all the fetch uses).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { controlFrame, FrameType, frameHeader } from '../../adapters/kv-transfer/framing.ts';
import { closeIdleKvConnections } from '../../adapters/kv-transfer/kv-transfer.ts';
import { LlamaPd, STATE_BUFFER_BYTES_MAX } from './pd.ts';

describe('llama P/D decode, buffer state API: a state larger than a Buffer', () => {
  let server: Server;
  let port: number;
  const sockets: Socket[] = [];
  let connections = 0;
  const small = Buffer.from('state');

  before(async () => {
    server = createServer((socket) => {
      sockets.push(socket);
      const n = ++connections;
      socket.on('error', () => undefined);
      socket.once('data', () => {
        // HELLO came: the first connection announces a state no Buffer can hold (and sends nothing
        // more), the others serve a small one.
        if (n === 1) {
          socket.write(controlFrame(FrameType.meta, { bytes: STATE_BUFFER_BYTES_MAX + 16, tokens: 9 }));
          return;
        }
        socket.write(controlFrame(FrameType.meta, { bytes: small.length, tokens: 1 }));
        socket.write(frameHeader(FrameType.data, small.length));
        socket.write(small);
        socket.write(frameHeader(FrameType.end, 0));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    closeIdleKvConnections();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is fetched into a file, without a retry', async () => {
    const pd = new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0, log: () => undefined });
    // As if the addon loaded (the fetch only asks whether it did).
    (pd as unknown as { nativeApi: { api: object } }).nativeApi = { api: {} };
    try {
      const state = await pd.fetchRemote({ host: '127.0.0.1', port, transferId: 'big' });
      assert.ok('path' in state, 'the state came into a file');
      assert.deepEqual(readFileSync(state.path), small);
      assert.equal(connections, 2);
      assert.equal(pd.stats.transferRetries, 0);
      assert.equal(pd.stats.imported, 1);
      assert.equal(pd.stats.importedBytes, small.length);
      assert.equal(pd.statsJson().kvStateApi, 'buffer');
    } finally {
      await pd.close();
    }
  });
});
