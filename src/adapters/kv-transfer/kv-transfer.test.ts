import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { controlFrame, FrameDecoder, FrameType, frameHeader } from './framing.ts';
import {
  BufferStore,
  CLIENT_CONNECTIONS_PER_PEER_MAX,
  closeIdleKvConnections,
  fetchKvState,
  KvFetchAbortedError,
  KvStateServer,
  kvConnectionStats,
  kvIdleConnections,
} from './kv-transfer.ts';
import { droppingProxy } from './test-support.ts';

describe('FrameDecoder', () => {
  test('decodes frames fed one byte at a time, DATA in pieces that add up', () => {
    const data = randomBytes(1000);
    const wire = Buffer.concat([
      controlFrame(FrameType.meta, { bytes: 1000, tokens: 7 }),
      frameHeader(FrameType.data, 600),
      data.subarray(0, 600),
      frameHeader(FrameType.data, 400),
      data.subarray(600),
      frameHeader(FrameType.end, 0),
    ]);
    const pieces: Buffer[] = [];
    const controls: [number, string][] = [];
    const decoder = new FrameDecoder({
      onData: (p) => pieces.push(Buffer.from(p)),
      onControl: (t, p) => controls.push([t, p.toString('utf8')]),
    });
    for (let i = 0; i < wire.length; i++) decoder.push(wire.subarray(i, i + 1));
    assert.deepEqual(Buffer.concat(pieces), data);
    assert.deepEqual(controls, [
      [FrameType.meta, '{"bytes":1000,"tokens":7}'],
      [FrameType.end, ''],
    ]);
    assert.equal(decoder.idle, true);
  });

  test('a control frame split across two reads survives the reader reusing its buffer', () => {
    const wire = controlFrame(FrameType.meta, { bytes: 123456, tokens: 9 });
    const controls: string[] = [];
    const decoder = new FrameDecoder({ onData: () => {}, onControl: (_t, p) => controls.push(p.toString()) });
    const reused = Buffer.alloc(wire.length);
    const cut = 9;
    wire.copy(reused, 0, 0, cut);
    decoder.push(reused.subarray(0, cut));
    reused.fill(0x7a); // the next socket read lands in the same memory
    wire.copy(reused, 0, cut);
    decoder.push(reused.subarray(0, wire.length - cut));
    assert.deepEqual(controls, ['{"bytes":123456,"tokens":9}']);
  });

  test('refuses an unknown type and an oversized control frame', () => {
    const d = new FrameDecoder({ onData: () => {}, onControl: () => {} });
    assert.throws(() => d.push(frameHeader(9 as FrameType, 0)), /unknown frame type 9/);
    const e = new FrameDecoder({ onData: () => {}, onControl: () => {} });
    assert.throws(() => e.push(frameHeader(FrameType.meta, 1 << 20)), /over its bound/);
  });
});

describe('KV state transfer over loopback', () => {
  let dir: string;
  let server: KvStateServer;
  let port: number;
  const state = randomBytes(5 * (1 << 20) + 123);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kv-transfer-'));
    server = new KvStateServer({ chunkBytes: 256 << 10 });
    port = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    closeIdleKvConnections();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const offer = (name: string): string => {
    const path = join(dir, name);
    writeFileSync(path, state);
    return server.offer(path, state.length, 42);
  };

  test('moves a state byte for byte and releases it once the client said DONE', async () => {
    const id = offer('a.state');
    const out = join(dir, 'a.out');
    const got = await fetchKvState({ host: '127.0.0.1', port, transferId: id, path: out });
    assert.equal(got.bytes, state.length);
    assert.equal(got.tokens, 42);
    assert.equal(got.attempts, 1);
    assert.deepEqual(readFileSync(out), state);
    while (server.held > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(existsSync(join(dir, 'a.state')), false);
    assert.ok(server.stats.releasedCollected >= 1);
  });

  test('honours the in-flight bound when the sink is slower than the network', async () => {
    const id = offer('b.state');
    const inFlightBytesMax = 128 << 10;
    const received: Buffer[] = [];
    const slowSink = () =>
      new Writable({
        highWaterMark: 1,
        write(chunk: Buffer, _enc, done) {
          received.push(Buffer.from(chunk));
          setTimeout(done, 1);
        },
      });
    const got = await fetchKvState({
      host: '127.0.0.1',
      port,
      transferId: id,
      sink: slowSink,
      inFlightBytesMax,
    });
    assert.deepEqual(Buffer.concat(received), state);
    // Without the bound the whole 5 MB would queue in the sink; with it, at most the receive
    // buffers' total (reads land in them, and a buffer is read into again only once it is free).
    assert.ok(
      got.peakInFlightBytes <= inFlightBytesMax,
      `peak ${got.peakInFlightBytes} bytes over the bound ${inFlightBytesMax}`,
    );
    assert.ok(got.peakInFlightBytes > 0);
  });

  test('a dropped connection is retried once and the state still arrives whole', async () => {
    const id = offer('c.state');
    const proxy = await droppingProxy(port, 1 << 20, 1);
    const out = join(dir, 'c.out');
    const retries: string[] = [];
    const got = await fetchKvState({
      host: '127.0.0.1',
      port: proxy.port,
      transferId: id,
      path: out,
      onRetry: (e) => retries.push(e.message),
    });
    proxy.server.close();
    assert.equal(got.attempts, 2);
    assert.equal(retries.length, 1);
    assert.deepEqual(readFileSync(out), state);
  });

  test('every attempt dropped: SY_ERR_KV_TRANSFER_FAILED, and the state stays on offer', async () => {
    const id = offer('d.state');
    const proxy = await droppingProxy(port, 4096, 10);
    await assert.rejects(
      fetchKvState({ host: '127.0.0.1', port: proxy.port, transferId: id, path: join(dir, 'd.out') }),
      (e: Error & { code?: string }) => e.code === 'SY_ERR_KV_TRANSFER_FAILED' && /2 attempt/.test(e.message),
    );
    proxy.server.close();
    assert.equal(existsSync(join(dir, 'd.state')), true);
  });

  test('a kept file is overwritten in place and cut to a smaller state', async () => {
    const out = join(dir, 'kept.out');
    writeFileSync(out, randomBytes(state.length + 4096));
    const small = randomBytes(300_000);
    const path = join(dir, 'small.state');
    writeFileSync(path, small);
    const id = server.offer(path, small.length, 3);
    const got = await fetchKvState({ host: '127.0.0.1', port, transferId: id, path: out });
    assert.equal(got.bytes, small.length);
    assert.deepEqual(readFileSync(out), small);
  });

  test('a state file shorter than offered fails cleanly, with no partial success', async () => {
    const path = join(dir, 'short.state');
    writeFileSync(path, randomBytes(1000));
    const id = server.offer(path, 5000, 1);
    await assert.rejects(
      fetchKvState({ host: '127.0.0.1', port, transferId: id, path: join(dir, 'short.out'), retriesMax: 0 }),
      (e: Error & { code?: string }) =>
        e.code === 'SY_ERR_KV_TRANSFER_FAILED' && /ended after 1000 of 5000 bytes/.test(e.message),
    );
  });

  test('a second fetch from the same server reuses the kept-alive connection', async () => {
    closeIdleKvConnections();
    const before = { ...kvConnectionStats };
    const out = join(dir, 'reuse.out');
    await fetchKvState({ host: '127.0.0.1', port, transferId: offer('r1.state'), path: out });
    const got = await fetchKvState({ host: '127.0.0.1', port, transferId: offer('r2.state'), path: out });
    assert.equal(got.attempts, 1);
    assert.deepEqual(readFileSync(out), state);
    assert.equal(kvConnectionStats.opened - before.opened, 1);
    assert.equal(kvConnectionStats.reused - before.reused, 1);
    assert.equal(kvIdleConnections('127.0.0.1', port), 1);
  });

  test('a kept connection carries transfer after transfer (its receive buffers are not used up)', async () => {
    closeIdleKvConnections();
    const before = { ...kvConnectionStats };
    const out = join(dir, 'many.out');
    const dropped: number[] = [];
    const dropSink = () =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          dropped.push(chunk.length);
          done();
        },
      });
    for (let i = 0; i < 6; i++) {
      const transferId = offer(`m${i}.state`);
      const inFlightBytesMax = 256 << 10;
      const got =
        i % 2 === 0
          ? await fetchKvState({
              host: '127.0.0.1',
              port,
              transferId,
              path: out,
              inFlightBytesMax,
              retriesMax: 0,
            })
          : await fetchKvState({
              host: '127.0.0.1',
              port,
              transferId,
              sink: dropSink,
              inFlightBytesMax,
              retriesMax: 0,
            });
      assert.equal(got.bytes, state.length);
    }
    assert.deepEqual(readFileSync(out), state);
    assert.equal(
      dropped.reduce((a, b) => a + b, 0),
      3 * state.length,
    );
    assert.equal(kvConnectionStats.opened - before.opened, 1);
  });

  test('a kept connection the server closed is reopened, not counted as a failed attempt', async () => {
    closeIdleKvConnections();
    const out = join(dir, 'stale.out');
    await fetchKvState({ host: '127.0.0.1', port, transferId: offer('s1.state'), path: out });
    assert.equal(kvIdleConnections('127.0.0.1', port), 1);
    const before = { ...kvConnectionStats };
    const retries: string[] = [];
    // Closed on the server side, and fetched from before this side has seen the close.
    server.dropConnections();
    const got = await fetchKvState({
      host: '127.0.0.1',
      port,
      transferId: offer('s2.state'),
      path: out,
      retriesMax: 0,
      onRetry: (e) => retries.push(e.message),
    });
    assert.equal(got.attempts, 1);
    assert.deepEqual(retries, []);
    assert.deepEqual(readFileSync(out), state);
    // The kept connection never answered: reopened, not reused; the fresh one opened.
    assert.equal(kvConnectionStats.reused - before.reused, 0);
    assert.equal(kvConnectionStats.reopened - before.reopened, 1);
    assert.equal(kvConnectionStats.opened - before.opened, 1);
  });

  test('the pool keeps at most CLIENT_CONNECTIONS_PER_PEER_MAX idle connections to a server', async () => {
    closeIdleKvConnections();
    const fetches = CLIENT_CONNECTIONS_PER_PEER_MAX + 3;
    const ids = Array.from({ length: fetches }, (_, i) => offer(`p${i}.state`));
    const results = await Promise.all(
      ids.map((transferId, i) =>
        fetchKvState({ host: '127.0.0.1', port, transferId, path: join(dir, `p${i}.out`) }),
      ),
    );
    assert.ok(results.every((r) => r.bytes === state.length));
    assert.equal(kvIdleConnections('127.0.0.1', port), CLIENT_CONNECTIONS_PER_PEER_MAX);
  });

  test('an idle connection the server timed out leaves the pool', async () => {
    const short = new KvStateServer({ keepAliveMs: 20 });
    const shortPort = await short.listen('127.0.0.1', 0);
    const path = join(dir, 'k.state');
    writeFileSync(path, state);
    await fetchKvState({
      host: '127.0.0.1',
      port: shortPort,
      transferId: short.offer(path, state.length, 1),
      path: join(dir, 'k.out'),
    });
    assert.equal(kvIdleConnections('127.0.0.1', shortPort), 1);
    while (kvIdleConnections('127.0.0.1', shortPort) > 0) await new Promise((r) => setTimeout(r, 5));
    await short.close();
  });

  test('an unknown transfer id fails cleanly', async () => {
    await assert.rejects(
      fetchKvState({ host: '127.0.0.1', port, transferId: 'nope', path: join(dir, 'e.out'), retriesMax: 0 }),
      /no KV state 'nope'/,
    );
  });

  test('a state nobody collects is deleted after the release timeout', async () => {
    const short = new KvStateServer({ releaseTimeoutMs: 20 });
    const path = join(dir, 'f.state');
    writeFileSync(path, 'x');
    short.offer(path, 1, 1);
    assert.equal(short.held, 1);
    while (short.held > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(existsSync(path), false);
    assert.equal(short.stats.releasedTimeout, 1);
    await short.close();
  });

  test('a state in memory arrives into memory byte for byte; its buffer comes back once collected', async () => {
    const source = Buffer.concat([state, randomBytes(100)]); // longer than the state: only `bytes` go
    const released: Buffer[] = [];
    const id = server.offerBuffer(source, state.length, 42, (b) => released.push(b));
    const asked: number[] = [];
    const got = await fetchKvState({
      host: '127.0.0.1',
      port,
      transferId: id,
      buffer: (bytes) => {
        asked.push(bytes);
        return Buffer.alloc(bytes + 7);
      },
    });
    assert.deepEqual(asked, [state.length]);
    assert.equal(got.bytes, state.length);
    assert.equal(got.tokens, 42);
    assert.deepEqual(got.buffer?.subarray(0, got.bytes), state);
    while (released.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(released[0], source, 'the same buffer, given back once');
    assert.equal(released.length, 1);
  });

  test('memory and files mix: a state in memory fetched into a file, a file fetched into memory', async () => {
    const id = server.offerBuffer(Buffer.from(state), state.length, 3);
    const out = join(dir, 'm.out');
    await fetchKvState({ host: '127.0.0.1', port, transferId: id, path: out });
    assert.deepEqual(readFileSync(out), state);
    const got = await fetchKvState({
      host: '127.0.0.1',
      port,
      transferId: offer('m.state'),
      buffer: (bytes) => Buffer.allocUnsafe(bytes),
    });
    assert.deepEqual(got.buffer, state);
  });

  test('a state in memory: a dropped connection is retried and the state arrives whole', async () => {
    const id = server.offerBuffer(Buffer.from(state), state.length, 5);
    const proxy = await droppingProxy(port, 1 << 20, 1);
    const got = await fetchKvState({
      host: '127.0.0.1',
      port: proxy.port,
      transferId: id,
      buffer: (bytes) => Buffer.alloc(bytes),
    });
    proxy.server.close();
    assert.equal(got.attempts, 2);
    assert.deepEqual(got.buffer, state);
  });

  test('a buffer released by timeout while a socket still sends from it comes back only after the send', async () => {
    const short = new KvStateServer({ releaseTimeoutMs: 300 });
    const shortPort = await short.listen('127.0.0.1', 0);
    const big = randomBytes(32 << 20);
    const released: Buffer[] = [];
    const id = short.offerBuffer(big, big.length, 1, (b) => released.push(b));
    // A client that asks, then reads nothing: 32 MiB do not fit the socket buffers, so the server's
    // writes (views of `big`) stay queued past the release timeout.
    const socket = createConnection({ host: '127.0.0.1', port: shortPort });
    await once(socket, 'connect');
    socket.pause();
    socket.write(controlFrame(FrameType.hello, { transferId: id }));
    while (short.held > 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(short.stats.releasedTimeout, 1);
    assert.equal(released.length, 0, 'not given back while the socket still holds views of it');
    // Once given back the buffer may be reused at once: what the client reads after that must still
    // be the state (the socket took copies, not views, by then).
    const expected = Buffer.from(big);
    const pieces: Buffer[] = [];
    let ended = false;
    const decoder = new FrameDecoder({
      onData: (p) => pieces.push(Buffer.from(p)),
      onControl: (type) => {
        if (type === FrameType.end) ended = true;
      },
    });
    socket.on('data', (c: Buffer) => decoder.push(c));
    socket.resume();
    while (released.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(released[0], big);
    big.fill(0);
    while (!ended) await new Promise((r) => setTimeout(r, 5));
    assert.ok(Buffer.concat(pieces).equals(expected), 'the state arrived intact');
    socket.destroy();
    await short.close();
  });

  test('offersMax refuses one more state with SY_ERR_OVERLOADED', async () => {
    const small = new KvStateServer({ offersMax: 1 });
    writeFileSync(join(dir, 'g1'), 'x');
    writeFileSync(join(dir, 'g2'), 'x');
    small.offer(join(dir, 'g1'), 1, 1);
    assert.throws(
      () => small.offer(join(dir, 'g2'), 1, 1),
      (e: Error & { code?: string }) => e.code === 'SY_ERR_OVERLOADED',
    );
    await small.close();
  });
});

describe('a fetch with an AbortSignal', () => {
  test('an abort mid-transfer ends it with the abort error, closes the connection, retries nothing', async () => {
    // A KV server that sends META and one DATA frame of a larger state, then stalls: only the
    // abort (or the idle timeout, then a retry) can end the fetch.
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      socket.once('data', () => {
        socket.write(controlFrame(FrameType.meta, { bytes: 1 << 20, tokens: 3 }));
        socket.write(Buffer.concat([frameHeader(FrameType.data, 4096), Buffer.alloc(4096, 7)]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const left = new AbortController();
    const retries: string[] = [];
    let written = 0;
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _enc, done) {
          written += chunk.length;
          left.abort(new Error('the client left'));
          done();
        },
      });
    // Closed however the test ends: a server left open would keep the test process alive.
    try {
      const fetching = fetchKvState({
        host: '127.0.0.1',
        port,
        transferId: 'stalls',
        sink,
        retriesMax: 1,
        idleTimeoutMs: 2_000,
        onRetry: (e) => retries.push(e.message),
        signal: left.signal,
      });
      await assert.rejects(
        fetching,
        (e: unknown) =>
          e instanceof KvFetchAbortedError &&
          e.name === 'AbortError' &&
          /'stalls' fetch from 127\.0\.0\.1:\d+ was aborted \(the client left\)/.test(e.message),
      );
      assert.ok(written > 0, 'the abort came mid-transfer');
      assert.equal(sockets.length, 1, 'one connection: no retry');
      const [first] = sockets;
      if (first !== undefined && !first.destroyed) await once(first, 'close');
      assert.deepEqual(retries, []);
      await assert.rejects(
        fetchKvState({ host: '127.0.0.1', port, transferId: 'x', sink, signal: left.signal }),
        KvFetchAbortedError,
        'an aborted signal fetches nothing',
      );
      assert.equal(sockets.length, 1);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});

describe('BufferStore', () => {
  test('keeps at most keptMax buffers, and only of its size', () => {
    const store = new BufferStore(1024, 2);
    const taken = [store.take(), store.take(), store.take()];
    assert.ok(taken.every((b) => b.length === 1024));
    for (const b of taken) store.give(b);
    store.give(Buffer.alloc(512));
    assert.equal(store.size, 2);
    assert.equal(store.take(), taken[1]);
  });
});
