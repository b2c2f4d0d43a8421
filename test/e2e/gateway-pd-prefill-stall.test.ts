/**
 * End-to-end: a vLLM-protocol prefill engine that freezes (SIGSTOP) while prefill legs wait on it.
 * The gateway's stall detection (src/gateway/stall.ts) ejects it and re-routes what it has not
 * answered; a prefill leg is such a request: it goes to the other prefill instance, and with none
 * left the request ends with SY_ERR_PD_PREFILL_FAILED naming the stall, both long before
 * limits.firstByteTimeoutMs. Before, the log said "re-routing requests not yet answered" but a vLLM
 * prefill leg waited the whole first-byte timeout (120 s by default) on the frozen engine.
 * The first-byte timeout here is 10 minutes; each case's own timeout is only a hang guard.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type GatewayStatsJson,
  getJson,
  MODEL,
  post,
  type SimEngine,
  startSims,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';
import { QUICK_SIM_ARGS } from './support/sim-gateway.ts';

/** Far above anything the cases wait: only the stall path can end a leg on a frozen engine in time. */
const FIRST_BYTE_TIMEOUT_MS = 600_000;
const HANG_GUARD_MS = 60_000;

/** Two vLLM-protocol prefill sims and one decode sim behind the gateway. */
const setup = fileSetUp(new Teardown(), ['prefills', 'gw'], async (teardown) => {
  const engine = [...QUICK_SIM_ARGS, '--pd-protocol', 'vllm'];
  const prefills = (await startSims(2, [...engine, '--pd-role', 'prefill'], teardown)).engines;
  const decode = (await startSims(1, [...engine, '--pd-role', 'decode', '--kv-link-gbps', '400'], teardown))
    .engines[0] as SimEngine;
  const backend = (id: string, url: string, role: 'prefill' | 'decode') => ({
    id,
    type: 'sim' as const,
    url,
    models: [MODEL],
    role,
    pdProtocol: 'vllm' as const,
  });
  const gw = await startTestGateway(
    {
      backends: [
        ...prefills.map((p, i) => backend(`p${i}`, p.url, 'prefill')),
        backend('d0', decode.url, 'decode'),
      ],
      routing: { policy: 'round-robin' },
      healthCheck: { intervalMs: 100, timeoutMs: 200 },
      limits: { stallAfterMs: 500, firstByteTimeoutMs: FIRST_BYTE_TIMEOUT_MS },
    },
    teardown,
  );
  // Thaw before the engines are stopped (a stopped process ignores SIGTERM until continued).
  teardown.add(() => {
    for (const p of prefills) if (p.alive()) process.kill(p.pid, 'SIGCONT');
  });
  return { prefills, gw };
});

const chat = () =>
  post(
    setup.gw.url,
    '/v1/chat/completions',
    { model: MODEL, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 4 },
    { deadlineMs: HANG_GUARD_MS },
  );

const stats = (): Promise<GatewayStatsJson> => getJson<GatewayStatsJson>(`${setup.gw.url}/stats`);

describe('a vLLM prefill engine that freezes', () => {
  it('its prefill legs are re-routed to the other prefill instance', { timeout: HANG_GUARD_MS }, async () => {
    await until('both prefill instances healthy', () => setup.gw.gateway.view.get('p0')?.healthy === true);
    assert.equal((await chat()).status, 200);
    process.kill((setup.prefills[0] as SimEngine).pid, 'SIGSTOP');
    // Round-robin: half of these legs go to the frozen p0 first.
    const replies = await Promise.all(Array.from({ length: 4 }, chat));
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200, 200, 200],
      replies.map((r) => r.text.slice(0, 200)).join('\n'),
    );
    const s = await stats();
    assert.equal(s.inFlight, 0);
    assert.equal(s.accepted, s.completed + s.failedTotal);
  });

  it('with no prefill instance left, the request fails naming the stall', {
    timeout: HANG_GUARD_MS,
  }, async () => {
    process.kill((setup.prefills[1] as SimEngine).pid, 'SIGSTOP');
    const r = await chat();
    assert.equal(r.status, 502, r.text);
    const error = (JSON.parse(r.text) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'SY_ERR_PD_PREFILL_FAILED');
    assert.match(error.message, /p1: stalled .*limits\.stallAfterMs/);
    await until('nothing in flight', async () => (await stats()).inFlight === 0);
  });
});
