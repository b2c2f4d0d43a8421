/**
 * End-to-end: in SGLang's flow a failed prefill leg aborts its decode attempt at once. The gateway
 * sends the prefill leg and the decode attempt together; the decode engine asks the prefill's
 * bootstrap server for the room and would wait for KV that never comes until its own KV wait
 * bound (here 10 s). Checked on the decode engine's own counters, not on the clock: its wait was
 * cut short by the gateway's cancellation (`kvWaitsAborted`), never timed out (`kvLoadFailures`),
 * and none is left (`kvWaiting`).
 *
 * The failing prefill instance `p0` is an HTTP front whose completions fail while its bootstrap
 * server still answers (SGLang runs the two on separate ports, `bootstrapPort`): its completions go
 * to a small server here that answers 500 once the decode engine waits for the room (so the
 * order is fixed), everything else (health, metrics) to a real sim prefill engine `boot`, which is
 * also its bootstrap server and never runs a prefill. In the second gateway `p0` is a closed port
 * (connection refused), with the same bootstrap server.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, MODEL, type SimEngine, startSims, Teardown } from './support/cluster.ts';
import { balancedStats, chat, json, pdStats, untilInService } from './support/pd.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

/** The decode engine's (and the bootstrap's) wait for a room: far longer than the tests take. */
const KV_WAIT_MS = 10_000;
/** Guard on polls (a hang guard, not a performance bound). */
const GUARD_MS = 15_000;

const teardown = new Teardown();
const children: ChildProcess[] = [];
let boot: SimEngine;
let p1: SimEngine;
let d0: SimEngine;
/** Completions the failing front received, and the status it answers them with. */
let frontCompletions = 0;
let frontStatus = 500;
let front: Server;
let failover: ServeProcess;
let alone: ServeProcess;

/** A completion: answered `frontStatus` once the decode engine waits for its room. Else: `boot`'s. */
async function frontHandler(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  if (req.method === 'POST' && req.url?.startsWith('/v1/') === true && req.url !== '/v1/models') {
    frontCompletions++;
    await until('the decode engine waiting for the room', async () => waiting(await decodeStats()), GUARD_MS);
    res.writeHead(frontStatus, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'prefill failed on purpose', code: 'test' } }));
    return;
  }
  const r = await fetch(`${boot.url}${req.url ?? '/'}`, {
    method: req.method ?? 'GET',
    ...(body.length > 0 ? { body, headers: { 'content-type': 'application/json' } } : {}),
  });
  res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
  res.end(Buffer.from(await r.arrayBuffer()));
}

const decodeStats = (): Promise<Record<string, unknown>> => pdStats(d0.url);
const waiting = (s: Record<string, unknown>): boolean => (s['kvWaiting'] as number) > 0;

/** Writes a serve config over `prefills` (SGLang prefill backends) and `d0`; its path. */
function config(dir: string, name: string, prefills: Record<string, unknown>[], extra = {}): string {
  const path = join(dir, `${name}.yaml`);
  const common = { type: 'sim', models: [MODEL], pdProtocol: 'sglang' };
  const backends = [
    ...prefills.map((p) => ({ ...common, role: 'prefill', ...p })),
    { ...common, id: 'd0', url: d0.url, role: 'decode' },
  ];
  writeFileSync(path, JSON.stringify({ backends, routing: { policy: 'round-robin' }, ...extra }));
  return path;
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-pd-sglang-failover-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const engine = ['--time-scale', '0.05', '--kv-events', 'none', '--pd-protocol', 'sglang'];
  const wait = ['--kv-wait-timeout-ms', String(KV_WAIT_MS)];
  const [prefills, decodes] = await Promise.all([
    startSims(2, [...engine, ...wait, '--pd-role', 'prefill'], teardown),
    startSims(1, [...engine, ...wait, '--pd-role', 'decode', '--kv-link-gbps', '400'], teardown),
  ]);
  [boot, p1] = prefills.engines as [SimEngine, SimEngine];
  d0 = decodes.engines[0] as SimEngine;
  front = createServer((req, res) => {
    frontHandler(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  teardown.add(() => new Promise<void>((resolve) => front.close(() => resolve())));
  teardown.add(() => front.closeAllConnections());
  const frontUrl = `http://127.0.0.1:${(front.address() as { port: number }).port}`;
  const closed = `http://127.0.0.1:${await freePort()}`;
  // Round robin picks the first prefill backend first: the failing one.
  const pair = [
    { id: 'p0', url: frontUrl, bootstrapPort: boot.port },
    { id: 'p1', url: p1.url },
  ];
  // Type vllm: an engine that reports no P/D role, so the gateway goes by the configured one (a
  // sim backend stays out of service until its engine confirms its role, which a closed port never does).
  const lone = [{ id: 'p0', type: 'vllm', url: closed, bootstrapPort: boot.port }];
  // Health checks of the closed port would eject p0 before the test runs (then no prefill leg is
  // sent at all: 503 SY_ERR_NO_INSTANCE); kept eligible, each attempt's prefill leg is refused.
  const loneExtra = { limits: { retries: 1 }, healthCheck: { failuresToEject: 1000 } };
  [failover, alone] = await Promise.all([
    startServe(['--config', config(dir, 'failover', pair)], children),
    startServe(['--config', config(dir, 'alone', lone, loneExtra)], children),
  ]);
  // The first test counts on round robin's first pair going to p0: every side in service first (on
  // a loaded machine p0's role check, through the front, may miss serve's first health round).
  await untilInService(failover.url, ['p0', 'p1', 'd0']);
  await untilInService(alone.url, ['p0', 'd0']);
});

after(async () => {
  await killAll(children);
  await teardown.run();
});

describe('SGLang P/D: a failed prefill leg aborts its decode attempt', { timeout: 60_000 }, () => {
  it('retries on the healthy prefill at once: the decode wait was cancelled, not timed out', async () => {
    const r = await json(`${failover.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((r.body['usage'] as { completion_tokens: number }).completion_tokens, 12);
    assert.equal(frontCompletions, 1, 'the first pair went to the failing prefill');
    await until('no decode waiting', async () => !waiting(await decodeStats()), GUARD_MS);
    const d = await decodeStats();
    assert.equal(d['requests'], 2, 'two decode attempts');
    assert.equal(d['kvWaitsAborted'], 1, 'the first wait ended because the gateway cancelled it');
    assert.equal(d['kvLoadFailures'], 0, 'no wait ran out (a timed-out room would count here)');
    assert.ok((d['transferredBytes'] as number) > 0, 'the retry got its KV');
    const p = await pdStats(p1.url);
    assert.equal(p['requests'], 1, 'the retry prefilled on p1');
    assert.equal(p['releasedCollected'], 1);
    assert.equal(p['heldTransfers'], 0);
    assert.equal((await pdStats(boot.url))['requests'], 0, 'the bootstrap-only engine ran no prefill');
    const stats = await balancedStats(failover.url);
    assert.equal(stats['completed'], 1);
    assert.equal(stats['retries'], 1, 'counted as one retry');
    assert.deepEqual(stats['pd'], { prefills: 2, prefillFailures: 1, prefillRetries: 1, kvParamsMissing: 0 });
  });

  it("ends with the prefill's 4xx verdict at once, cancelling the decode wait", async () => {
    const before = await decodeStats();
    frontStatus = 400;
    // Round robin's next prefill turn is p0 again (p0, then p1 with p0 avoided).
    const r = await json(`${failover.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.deepEqual(
      r.body['error'],
      { message: 'prefill failed on purpose', code: 'test' },
      "the prefill engine's own error, relayed",
    );
    assert.equal(frontCompletions, 2);
    await until('no decode waiting', async () => !waiting(await decodeStats()), GUARD_MS);
    const d = await decodeStats();
    assert.equal(d['kvWaitsAborted'], (before['kvWaitsAborted'] as number) + 1);
    assert.equal(d['kvLoadFailures'], before['kvLoadFailures']);
    const stats = await balancedStats(failover.url);
    assert.equal(stats['retries'], 1, 'no retry: another prefill would refuse it too');
  });

  it('ends with SY_ERR_PD_PREFILL_FAILED when no prefill instance answers; no decode wait is left', async () => {
    const before = await decodeStats();
    const r = await json(`${alone.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 502, JSON.stringify(r.body));
    const error = r.body['error'] as { code: string; message: string };
    assert.equal(error.code, 'SY_ERR_PD_PREFILL_FAILED', error.message);
    assert.match(error.message, /prefill leg failed on p0/);
    await until('no decode waiting', async () => !waiting(await decodeStats()), GUARD_MS);
    const d = await decodeStats();
    assert.equal(d['kvLoadFailures'], before['kvLoadFailures'], 'no decode wait ran out');
    const arrived = (d['requests'] as number) - (before['requests'] as number);
    const aborted = (d['kvWaitsAborted'] as number) - (before['kvWaitsAborted'] as number);
    assert.equal(aborted, arrived, 'every decode attempt that reached the engine was cancelled');
    const stats = await balancedStats(alone.url);
    assert.equal(stats['failedTotal'], 1);
    assert.equal(stats['retries'], 1, 'limits.retries 1: two pairs');
    assert.deepEqual(stats['pd'], { prefills: 2, prefillFailures: 2, prefillRetries: 1, kvParamsMissing: 0 });
  });
});
