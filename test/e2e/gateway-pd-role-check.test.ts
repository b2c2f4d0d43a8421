/**
 * End-to-end: a backend's configured P/D role is checked against the role its engine reports (a sim
 * engine's /metrics), at its first successful health check. Prefill and decode swapped in the config
 * eject both instances with a log line and a `/stats` reason naming the mismatch, and requests for the
 * model get an error instead of being served by the wrong legs; a plain engine configured as a P/D
 * side is ejected too; the same engines under their real roles serve and nothing is ejected.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MODEL, type SimEngine, startSims, Teardown } from './support/cluster.ts';
import { chat, json, type PdBackend, writePdConfig } from './support/pd.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

/** Hang guard on the ejections (health checks every 100 ms): not a performance bound. */
const EJECT_GUARD_MS = 15_000;

const teardown = new Teardown();
const children: ChildProcess[] = [];
let prefill: SimEngine;
let decode: SimEngine;
let plain: SimEngine;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sy-pd-role-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const engine = ['--time-scale', '0.05', '--kv-events', 'none'];
  const pd = [...engine, '--pd-protocol', 'vllm'];
  const [p, d, s] = await Promise.all([
    startSims(1, [...pd, '--pd-role', 'prefill'], teardown),
    startSims(1, [...pd, '--pd-role', 'decode'], teardown),
    startSims(1, engine, teardown),
  ]);
  prefill = p.engines[0] as SimEngine;
  decode = d.engines[0] as SimEngine;
  plain = s.engines[0] as SimEngine;
});

after(async () => {
  await killAll(children);
  await teardown.run();
});

/** A serve over `backends` (vLLM's P/D protocol, health checks every 100 ms). */
async function serveOver(name: string, backends: readonly PdBackend[]): Promise<ServeProcess> {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const config = writePdConfig(sub, backends, {
    type: 'sim',
    model: MODEL,
    protocol: 'vllm',
    extra: { healthCheck: { intervalMs: 100 } },
  });
  return startServe(['--config', config], children);
}

async function stats(serve: ServeProcess): Promise<Record<string, unknown>> {
  return (await (await fetch(`${serve.url}/stats`)).json()) as Record<string, unknown>;
}

describe('P/D role check', { timeout: 60_000 }, () => {
  it('ejects prefill and decode swapped in the config, with a log line and a /stats reason', async () => {
    const serve = await serveOver('swapped', [
      { id: 'p0', url: decode.url, role: 'prefill' },
      { id: 'd0', url: prefill.url, role: 'decode' },
    ]);
    await until(
      'both ejections',
      () => serve.stderr.filter((l) => /instance (p0|d0) ejected: role mismatch/.test(l)).length === 2,
      EJECT_GUARD_MS,
    );
    const p0 = serve.stderr.find((l) => l.includes('instance p0 ejected')) as string;
    assert.match(p0, /configured role prefill, but the engine runs as decode \(its \/metrics\)/);
    const ejected = (await stats(serve))['ejected'] as Record<string, string>;
    assert.deepEqual(Object.keys(ejected).sort(), ['d0', 'p0']);
    assert.match(ejected['d0'] as string, /configured role decode, but the engine runs as prefill/);
    const r = await json(`${serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal((r.body['error'] as { code: string }).code, 'SY_ERR_NO_INSTANCE');
    const prefillServed = (await (await fetch(`${prefill.url}/metrics`)).text()).match(
      /^switchyard_pd_requests_total\{[^}]*\} (\d+)/m,
    )?.[1];
    assert.equal(prefillServed, '0', 'no request reached the wrongly configured engines');
    assert.equal(await serve.stop(), 0);
  });

  it('ejects an engine with no P/D role configured as a P/D side', async () => {
    const serve = await serveOver('plain', [
      { id: 'p0', url: prefill.url, role: 'prefill' },
      { id: 'd0', url: plain.url, role: 'decode' },
    ]);
    await until(
      'the ejection',
      () => serve.stderr.some((l) => l.includes('instance d0 ejected')),
      EJECT_GUARD_MS,
    );
    const line = serve.stderr.find((l) => l.includes('instance d0 ejected')) as string;
    assert.match(line, /configured role decode, but the engine serves whole requests \(no P\/D role\)/);
    assert.ok(!serve.stderr.some((l) => l.includes('instance p0 ejected')), serve.stderr.join('\n'));
    assert.equal(await serve.stop(), 0);
  });

  it('serves with the roles the engines run, ejecting none', async () => {
    const serve = await serveOver('right', [
      { id: 'p0', url: prefill.url, role: 'prefill' },
      { id: 'd0', url: decode.url, role: 'decode' },
    ]);
    const r = await json(`${serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // Several rounds of checks after the first: the role was asked and matched.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual((await stats(serve))['ejected'], {});
    assert.ok(!serve.stderr.some((l) => l.includes('ejected')), serve.stderr.join('\n'));
    assert.equal(await serve.stop(), 0);
  });
});
