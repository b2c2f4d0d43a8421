/**
 * End-to-end: no request reaches a P/D backend before its engine confirmed the configured role.
 *
 * - Engines that come up after `switchyard serve` (its first health round found nothing listening),
 *   with prefill and decode swapped in the config and health rounds a minute apart: a request right
 *   after they are up gets 503 `SY_ERR_NO_INSTANCE` and reaches neither engine; `/stats` names why
 *   (the role is not yet confirmed). Before the fix the instances were routable from the start and
 *   the request went to the wrong legs.
 * - A backend added at run time (`Gateway.addBackend`) is asked its role at once, not at the next
 *   round: swapped, it is ejected with a role-mismatch line and never served; right, it takes
 *   requests once confirmed.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway } from '../../src/gateway/index.ts';
import { freePort, MODEL, type SimEngine, spawnSim, startSims, Teardown } from './support/cluster.ts';
import { chat, json, writePdConfig } from './support/pd.ts';
import { startServe } from './support/serve.ts';
import { killAll, scrapeMetrics, until } from './support/wait.ts';

/** Hang guard on waits for log lines and admissions: not a performance bound. */
const GUARD_MS = 15_000;

const teardown = new Teardown();
const children: ChildProcess[] = [];
let dir: string;
const engine = ['--time-scale', '0.05', '--kv-events', 'none'];
const pd = [...engine, '--pd-protocol', 'vllm'];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sy-pd-role-first-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
});

after(async () => {
  await killAll(children);
  await teardown.run();
});

/** Completions an engine counted in its P/D series (prefill or decode legs it served). */
async function pdServed(e: SimEngine): Promise<number> {
  let n = 0;
  for (const [name, v] of await scrapeMetrics(e.url))
    if (name.startsWith('switchyard_pd_requests_total{')) n += v;
  return n;
}

describe('P/D role confirmed before traffic', { timeout: 90_000 }, () => {
  it('holds out engines that came up after serve until a round confirms their role', async () => {
    const [portP, portD] = [await freePort(), await freePort()];
    const config = writePdConfig(
      dir,
      [
        // Swapped: the engine on portP runs as decode, the one on portD as prefill.
        { id: 'p0', url: `http://127.0.0.1:${portP}`, role: 'prefill' },
        { id: 'd0', url: `http://127.0.0.1:${portD}`, role: 'decode' },
      ],
      { type: 'sim', model: MODEL, protocol: 'vllm', extra: { healthCheck: { intervalMs: 60_000 } } },
    );
    const serve = await startServe(['--config', config], children);
    const wrongP = await spawnSim([...pd, '--pd-role', 'decode'], portP, teardown);
    const wrongD = await spawnSim([...pd, '--pd-role', 'prefill'], portD, teardown);
    const r = await json(`${serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal((r.body['error'] as { code: string }).code, 'SY_ERR_NO_INSTANCE');
    assert.equal(await pdServed(wrongP), 0, 'no leg reached the engine configured as prefill');
    assert.equal(await pdServed(wrongD), 0, 'no leg reached the engine configured as decode');
    const stats = (await json(`${serve.url}/stats`)).body;
    const ejected = stats['ejected'] as Record<string, string>;
    assert.match(ejected['p0'] as string, /role prefill not yet confirmed/);
    assert.equal(await serve.stop(), 0);
  });

  it('asks a backend added at run time its role at once', async () => {
    const [p, d, wrong] = await Promise.all([
      startSims(1, [...pd, '--pd-role', 'prefill'], teardown),
      startSims(1, [...pd, '--pd-role', 'decode'], teardown),
      startSims(1, [...pd, '--pd-role', 'prefill'], teardown),
    ]);
    const prefill = p.engines[0] as SimEngine;
    const decode = d.engines[0] as SimEngine;
    const swapped = wrong.engines[0] as SimEngine;
    const lines: string[] = [];
    const backend = (id: string, e: SimEngine, role: 'prefill' | 'decode') => ({
      id,
      type: 'sim' as const,
      url: e.url,
      models: [MODEL],
      role,
      pdProtocol: 'vllm' as const,
      metricsPath: null,
    });
    const gw = await startGateway(
      {
        port: 0,
        backends: [backend('p0', prefill, 'prefill'), backend('d0', decode, 'decode')],
        routing: { policy: 'round-robin' },
        healthCheck: { intervalMs: 60_000 },
      },
      { log: (l) => lines.push(l) },
    );
    teardown.add(() => gw.close());
    const before = await json(`${gw.url}/v1/chat/completions`, chat());
    assert.equal(before.status, 200, JSON.stringify(before.body));
    // A prefill engine added as a decode backend, the only decode backend in service: it would take
    // the decode leg of the next request.
    gw.setDraining('d0', true);
    gw.addBackend(backend('d1', swapped, 'decode'));
    const r = await json(`${gw.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(await pdServed(swapped), 0, 'no leg reached the swapped engine');
    await until(
      'the mismatch line',
      () => lines.some((l) => l.includes('instance d1 ejected: role mismatch')),
      GUARD_MS,
    );
    const ejected = (await json(`${gw.url}/stats`)).body['ejected'] as Record<string, string>;
    assert.match(ejected['d1'] ?? JSON.stringify(ejected), /role mismatch/);
    gw.setDraining('d0', false);
    // The right engine added as a second decode backend serves once confirmed.
    const [d2] = (await startSims(1, [...pd, '--pd-role', 'decode'], teardown)).engines as SimEngine[];
    gw.addBackend(backend('d2', d2 as SimEngine, 'decode'));
    await until('d2 admitted', () => gw.view.get('d2')?.healthy === true, GUARD_MS);
    for (let k = 0; k < 4; k++)
      assert.equal((await json(`${gw.url}/v1/chat/completions`, chat())).status, 200);
    assert.ok((await pdServed(d2 as SimEngine)) > 0, 'the confirmed backend took decode legs');
  });
});
