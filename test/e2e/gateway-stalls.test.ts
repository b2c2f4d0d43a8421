/**
 * End-to-end stall detection: three real sim engines behind an in-process gateway, one of them
 * frozen with SIGSTOP (the kernel still accepts connections for it; nothing answers them).
 *
 * Health checks here never eject (failuresToEject is at its maximum) and the first-byte timeout is
 * left at its default (120 s), so only stall detection can save the requests sent to the frozen
 * engine: it sees the engine deliver nothing for limits.stallAfterMs while the others answer,
 * ejects it, and re-routes every request on it not yet answered. Every one of N requests ends well
 * within the client deadline, far below the first-byte timeout; a stream that had already started
 * on the frozen engine ends with an SSE error after limits.streamIdleTimeoutMs. After SIGCONT the
 * engine's health checks pass and it is re-admitted and served again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  engineTag,
  type GatewayStatsJson,
  getJson,
  MODEL,
  post,
  type Reply,
  type SimCluster,
  servedBy,
  simBackend,
  sseData,
  startSims,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';

const ADMIN_KEY = 'e2e-stalls-admin';
const ADMIN = { authorization: `Bearer ${ADMIN_KEY}` };
const REQUESTS = 30;
const MAX_TOKENS = 8;
/** Each request's client deadline: far below the default first-byte timeout (120 s). */
const CLIENT_DEADLINE_MS = 15_000;
const STALL_AFTER_MS = 1000;
const STREAM_IDLE_TIMEOUT_MS = 2000;

const teardown = new Teardown();
let sims: SimCluster;
let tags: string[];
before(async () => {
  sims = await startSims(3, ['--time-scale', '1'], teardown);
  tags = await Promise.all(sims.engines.map((e) => engineTag(e.url)));
});
after(() => teardown.run());

/** Whether a reply is a complete, error-free answer of MAX_TOKENS tokens; returns its response id. */
function completeAnswer(reply: Reply, stream: boolean): string {
  assert.equal(reply.status, 200, reply.text.slice(0, 300));
  if (!stream) {
    const body = JSON.parse(reply.text) as { id: string; usage: { completion_tokens: number } };
    assert.equal(body.usage.completion_tokens, MAX_TOKENS);
    return body.id;
  }
  assert.ok(reply.text.endsWith('data: [DONE]\n\n'), reply.text.slice(-200));
  const data = sseData(reply.text);
  assert.ok(!data.some((d) => d.startsWith('{"error"')), reply.text.slice(-300));
  const usage = JSON.parse(data.at(-2) ?? '{}') as { id: string; usage?: { completion_tokens: number } };
  assert.equal(usage.usage?.completion_tokens, MAX_TOKENS);
  return usage.id;
}

describe('a frozen engine (SIGSTOP)', () => {
  it('is detected from the requests: ejected, its unanswered requests re-routed, its stream ended; re-admitted after SIGCONT', async () => {
    const frozen = sims.engines[2];
    assert.ok(frozen !== undefined);
    const { url, gateway, logs } = await startTestGateway(
      {
        backends: sims.engines.map((e, i) => simBackend(`e${i}`, e)),
        routing: { policy: 'round-robin' },
        adminKey: ADMIN_KEY,
        healthCheck: { intervalMs: 200, timeoutMs: 200, failuresToEject: 1000, successesToReadmit: 1 },
        limits: {
          retries: 2,
          retryBackoffBaseMs: 1,
          retryBackoffMaxMs: 5,
          stallAfterMs: STALL_AFTER_MS,
          streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
        },
      },
      teardown,
    );
    const admin = (id: string, action: string) =>
      fetch(`${url}/admin/instances/${id}/${action}`, { method: 'POST', headers: ADMIN });
    // A long stream that has started on the engine about to freeze (the others drained meanwhile).
    assert.equal((await admin('e0', 'drain')).status, 200);
    assert.equal((await admin('e1', 'drain')).status, 200);
    const stuck = post(
      url,
      '/v1/completions',
      { model: MODEL, prompt: 'a long story', max_tokens: 5000, stream: true },
      { deadlineMs: CLIENT_DEADLINE_MS },
    );
    await until('the long stream is answering from e2', () => gateway.drainStatus().streaming === 1);
    assert.equal((await admin('e0', 'undrain')).status, 200);
    assert.equal((await admin('e1', 'undrain')).status, 200);
    process.kill(frozen.pid, 'SIGSTOP');
    let thawed = false;
    teardown.add(() => {
      if (!thawed && frozen.alive()) process.kill(frozen.pid, 'SIGCONT');
    });
    try {
      const replies = await Promise.all(
        Array.from({ length: REQUESTS }, (_, i) =>
          post(
            url,
            '/v1/chat/completions',
            {
              model: MODEL,
              messages: [{ role: 'user', content: `frozen ${i}` }],
              max_tokens: MAX_TOKENS,
              stream: i % 2 === 0,
              ...(i % 2 === 0 ? { stream_options: { include_usage: true } } : {}),
            },
            { deadlineMs: CLIENT_DEADLINE_MS },
          ),
        ),
      );
      const servers = replies.map((r, i) => servedBy(completeAnswer(r, i % 2 === 0), tags));
      assert.ok(!servers.includes(2), 'no answer came from the frozen engine');
      assert.ok(!servers.includes(-1));
      const stats = await getJson<GatewayStatsJson>(`${url}/stats`);
      // Round robin sent about a third of them to e2; each was re-routed once.
      assert.ok(stats.retries >= 1, JSON.stringify(stats));
      assert.ok(stats.retries <= REQUESTS, JSON.stringify(stats));
      const stalled = logs.filter((l) => l.includes('instance e2 ejected: stalled'));
      assert.equal(stalled.length, 1, logs.join('\n'));
      assert.equal(
        (
          await getJson<{ instances: { id: string; healthy: boolean }[] }>(`${url}/admin/instances`, ADMIN)
        ).instances.find((i) => i.id === 'e2')?.healthy,
        false,
      );
      // The stream that had started on it ends at the idle bound, with an error event and [DONE].
      const cut = await stuck;
      assert.equal(cut.status, 200);
      assert.ok(cut.text.endsWith('data: [DONE]\n\n'), cut.text.slice(-200));
      const data = sseData(cut.text);
      const error = assertErrorBody(data.at(-2) ?? '', undefined, 'SSE error event');
      assert.equal(error.error.code, 'SY_ERR_TIMEOUT');
      assert.match(error.error.message, /limits\.streamIdleTimeoutMs/);
      assert.ok(data.length > 2, 'it had streamed tokens before the freeze');
      const end = await getJson<GatewayStatsJson>(`${url}/stats`);
      assert.equal(end.inFlight, 0);
      assert.equal(end.completed, REQUESTS);
      assert.deepEqual(end.failed, { timeout: 1 }, JSON.stringify(end));
      assert.equal(end.accepted, end.completed + end.failedTotal);

      process.kill(frozen.pid, 'SIGCONT');
      thawed = true;
      await until('the thawed engine is re-admitted', () =>
        logs.some((l) => l.includes('instance e2 re-admitted')),
      );
      let toThawed = 0;
      for (let i = 0; i < 6; i++) {
        const r = await post(url, '/v1/completions', { model: MODEL, prompt: `thawed ${i}`, max_tokens: 2 });
        assert.equal(r.status, 200, r.text);
        if (servedBy((JSON.parse(r.text) as { id: string }).id, tags) === 2) toThawed++;
      }
      assert.equal(toThawed, 2, 'round robin gives the thawed engine every third request');
    } finally {
      if (!thawed && frozen.alive()) process.kill(frozen.pid, 'SIGCONT');
    }
  });
});

describe('a healthy engine busy on a long non-streaming answer', () => {
  it('is not declared stalled while the others stream: its health checks pass', async () => {
    const { url, logs } = await startTestGateway(
      {
        backends: sims.engines.map((e, i) => simBackend(`e${i}`, e)),
        routing: { policy: 'round-robin' },
        adminKey: ADMIN_KEY,
        healthCheck: { intervalMs: 200, timeoutMs: 200, failuresToEject: 1000, successesToReadmit: 1 },
        limits: { stallAfterMs: STALL_AFTER_MS },
      },
      teardown,
    );
    const admin = (id: string, action: string) =>
      fetch(`${url}/admin/instances/${id}/${action}`, { method: 'POST', headers: ADMIN });
    assert.equal((await admin('e0', 'drain')).status, 200);
    assert.equal((await admin('e1', 'drain')).status, 200);
    // One answer of a few seconds: not a byte from e2 until it is done.
    const long = post(
      url,
      '/v1/completions',
      { model: MODEL, prompt: 'a long answer in one piece', max_tokens: 600 },
      { deadlineMs: CLIENT_DEADLINE_MS },
    );
    await until('the long answer is in flight on e2', async () => {
      const s = await getJson<GatewayStatsJson>(`${url}/stats`);
      return s.inFlight === 1;
    });
    assert.equal((await admin('e0', 'undrain')).status, 200);
    assert.equal((await admin('e1', 'undrain')).status, 200);
    assert.equal((await admin('e2', 'drain')).status, 200);
    // The others stream meanwhile, for longer than stallAfterMs.
    let streamed = 0;
    let done = false;
    void long.finally(() => {
      done = true;
    });
    while (!done) {
      const r = await post(url, '/v1/completions', {
        model: MODEL,
        prompt: `meanwhile ${streamed}`,
        max_tokens: 40,
        stream: true,
      });
      assert.equal(r.status, 200, r.text.slice(0, 200));
      streamed++;
    }
    const reply = await long;
    assert.equal(reply.status, 200, reply.text.slice(0, 300));
    assert.equal(
      (JSON.parse(reply.text) as { usage: { completion_tokens: number } }).usage.completion_tokens,
      600,
    );
    assert.ok(streamed >= 3, `the others streamed meanwhile (${streamed})`);
    assert.ok(!logs.some((l) => l.includes('stalled')), logs.join('\n'));
    const stats = await getJson<GatewayStatsJson>(`${url}/stats`);
    assert.equal(stats.retries, 0, JSON.stringify(stats));
  });
});
