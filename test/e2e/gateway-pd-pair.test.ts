/**
 * End-to-end: P/D pair policies (config `pd.pairPolicy`) through `switchyard serve` over real `sim`
 * engines speaking vLLM's P/D protocol (two prefill, two decode). Checked: with `round-robin` each
 * pool alternates on its own although the active routing policy (least-request) would send every
 * sequential request to the same pair; with `mooncake` and an SLO nobody can meet, the prefill side
 * refuses before any prefill leg and so does the decode side (with `decodeAt: 'arrival'` mooncake picks the pair at arrival,
 * decode first), each with a clean 429, Retry-After and SY_ERR_SLO_UNREACHABLE, and the gateway's
 * counters stay balanced.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorBody, MODEL, REQUEST_DEADLINE_MS } from './support/cluster.ts';
import {
  balancedStats,
  chat,
  json,
  type PdBackend,
  pdStats,
  simPdCluster,
  writePdConfig,
} from './support/pd.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll } from './support/wait.ts';

const cluster = simPdCluster({
  protocol: 'vllm',
  prefills: 2,
  decodes: 2,
  releaseMs: 1500,
  extra: { routing: { policy: 'least-request' }, pd: { pairPolicy: 'round-robin' } },
});

/** Two more serves over the same engines, each with a mooncake pair whose one SLO is unreachable. */
const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'sy-pd-pair-'));
let ttftRefusing: ServeProcess;
let tpotRefusing: ServeProcess;
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

/** Requests each engine of `engines` received, by its P/D stats. */
async function requestsOf(engines: readonly { url: string }[]): Promise<number[]> {
  return Promise.all(engines.map(async (e) => (await pdStats(e.url))['requests'] as number));
}

/** A chat completion through `url`, with its Retry-After header. */
async function post(url: string): Promise<{ status: number; text: string; retryAfter: string | null }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    ...chat(),
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
  });
  return { status: r.status, text: await r.text(), retryAfter: r.headers.get('retry-after') };
}

describe('P/D pair policies through the gateway', { timeout: 60_000 }, () => {
  // In the suite: the root hook of simPdCluster has started the engines by then.
  before(async () => {
    const backends: PdBackend[] = [
      ...cluster.prefill.engines.map((e, i) => ({ id: `p${i}`, url: e.url, role: 'prefill' as const })),
      ...cluster.decode.engines.map((e, i) => ({ id: `d${i}`, url: e.url, role: 'decode' as const })),
    ];
    const serveWith = (name: string, params: Record<string, unknown>): Promise<ServeProcess> => {
      const config = writePdConfig(mkdtempSync(join(dir, `${name}-`)), backends, {
        type: 'sim',
        model: MODEL,
        protocol: 'vllm',
        extra: { routing: { policy: 'least-request' }, pd: { pairPolicy: 'mooncake', params } },
      });
      return startServe(['--config', config], children);
    };
    [ttftRefusing, tpotRefusing] = await Promise.all([
      serveWith('ttft', { ttftSloMs: 0.01 }),
      serveWith('tpot', { tpotSloMs: 0.01, decodeAt: 'arrival' }),
    ]);
  });

  it('round-robin: each pool alternates with its own counter', async () => {
    const prefillBefore = await requestsOf(cluster.prefill.engines);
    const decodeBefore = await requestsOf(cluster.decode.engines);
    // One at a time: least-request (the active policy) would pick p0 and d0 every time.
    for (let i = 0; i < 4; i++) {
      const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const prefill = (await requestsOf(cluster.prefill.engines)).map(
      (n, i) => n - (prefillBefore[i] as number),
    );
    const decode = (await requestsOf(cluster.decode.engines)).map((n, i) => n - (decodeBefore[i] as number));
    assert.deepEqual(prefill, [2, 2], 'each prefill engine prefilled two of the four');
    assert.deepEqual(decode, [2, 2], 'each decode engine decoded two of the four');
    const stats = await balancedStats(cluster.serve.url);
    const pd = stats['pd'] as Record<string, unknown>;
    assert.equal(pd['pairPolicy'], 'round-robin');
    assert.equal(pd['prefills'], 4);
  });

  it('mooncake: a TTFT SLO no prefill instance meets is refused before any prefill leg', async () => {
    const prefillBefore = await requestsOf(cluster.prefill.engines);
    const r = await post(ttftRefusing.url);
    assert.equal(r.status, 429, r.text);
    const body = assertErrorBody(r.text, 429, 'TTFT refusal');
    assert.equal(body.error.code, 'SY_ERR_SLO_UNREACHABLE');
    assert.match(body.error.message, /^prefill pool: estimated TTFT \d+ ms .* TTFT budget 0 ms/);
    assert.ok(Number(r.retryAfter) >= 1, `Retry-After ${r.retryAfter}`);
    assert.deepEqual(await requestsOf(cluster.prefill.engines), prefillBefore, 'no prefill leg was sent');
    await balancedStats(ttftRefusing.url);
  });

  it('mooncake: a TPOT SLO no decode instance meets is refused at arrival, before any prefill leg', async () => {
    const prefillBefore = await requestsOf(cluster.prefill.engines);
    const decodeBefore = await requestsOf(cluster.decode.engines);
    const r = await post(tpotRefusing.url);
    assert.equal(r.status, 429, r.text);
    const body = assertErrorBody(r.text, 429, 'TPOT refusal');
    assert.equal(body.error.code, 'SY_ERR_SLO_UNREACHABLE');
    assert.match(body.error.message, /decode pool: estimated TPOT [\d.]+ ms .* TPOT budget 0\.0 ms/);
    assert.ok(Number(r.retryAfter) >= 1, `Retry-After ${r.retryAfter}`);
    assert.deepEqual(await requestsOf(cluster.decode.engines), decodeBefore, 'no decode attempt was sent');
    assert.deepEqual(await requestsOf(cluster.prefill.engines), prefillBefore, 'no prefill leg was sent');
    const stats = await balancedStats(tpotRefusing.url);
    const pd = stats['pd'] as Record<string, unknown>;
    assert.equal(pd['pairPolicy'], 'mooncake');
    assert.equal(pd['prefills'], 0, 'the gateway sent no prefill leg');
  });
});
