/**
 * A llama decode engine's `/pd/stats` shows its KV client connections: two fetches from one KV
 * server over a real loopback connection (src/adapters/kv-transfer/) count one fresh open and one
 * kept-alive reuse, with one connection kept idle after, read through the vLLM front's HTTP route.
 * A prefill engine's stats carry no such block (it opens no client connection).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeIdleKvConnections, KvStateServer } from '../../adapters/kv-transfer/kv-transfer.ts';
import { LlamaPd, LlamaPdFront } from './pd.ts';

describe('llama /pd/stats: KV client connections', () => {
  let dir: string;
  let server: KvStateServer;
  let port: number;
  const state = randomBytes(300_000);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'llama-pd-stats-'));
    server = new KvStateServer({});
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
    return server.offer(path, state.length, 7);
  };

  it('counts a fresh open, then a kept-alive reuse, and the idle connection kept', async () => {
    closeIdleKvConnections();
    const pd = new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0, stateDir: dir });
    const front = new LlamaPdFront(pd, 1);
    const frontPort = await front.listen('127.0.0.1', 0);
    const stats = async () =>
      (await (await fetch(`http://127.0.0.1:${frontPort}/pd/stats`)).json()) as {
        imported: number;
        connections: { opened: number; reused: number; reopened: number; idle: number };
      };
    try {
      const before = await stats();
      assert.equal(before.connections.idle, 0);
      for (const tag of ['t1', 't2']) {
        pd.expectImport(tag, { host: '127.0.0.1', port, transferId: offer(`${tag}.state`) });
        const path = await pd.fetchState(`chatcmpl-${tag}`);
        assert.ok(path !== undefined, `the ${tag} state was fetched`);
        pd.doneWith(path);
      }
      const got = await stats();
      assert.equal(got.imported, 2);
      assert.equal(got.connections.opened - before.connections.opened, 1, 'one fresh connection');
      assert.equal(got.connections.reused - before.connections.reused, 1, 'the second fetch reused it');
      assert.equal(got.connections.reopened - before.connections.reopened, 0);
      assert.equal(got.connections.idle, 1, 'kept alive for the next fetch');
    } finally {
      await front.close();
      await pd.close();
    }
  });

  it('a prefill engine shows none', async () => {
    const pd = new LlamaPd({ role: 'prefill', kvHost: '127.0.0.1', kvPort: 0, stateDir: dir });
    try {
      assert.equal(pd.statsJson().connections, undefined);
      assert.ok(pd.statsJson().server !== undefined);
    } finally {
      await pd.close();
    }
  });
});
