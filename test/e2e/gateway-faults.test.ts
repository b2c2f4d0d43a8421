/**
 * End-to-end faults: real sim engines behind an in-process gateway.
 *
 * 1. One of three engines is SIGKILLed in the middle of 200 requests (streaming and not). No request
 *    is lost: each ends with a complete 200, or a clean error (a JSON 5xx before the first byte; for
 *    a stream that had started, an SSE error event, then [DONE], then the end of the body), and none
 *    hangs (each has a client deadline). Requests that had not started on the dead engine are retried
 *    elsewhere; the gateway's counters balance with nothing in flight; the dead engine is ejected and
 *    re-admitted once an engine answers on its port again.
 * 2. A backend that refuses connections from the start is ejected by health checks (traffic stops
 *    going there, no retries are spent on it) and re-admitted when an engine comes up on its port.
 * 3. An engine frozen with SIGSTOP: requests sent to it are retried elsewhere at the first-byte
 *    timeout, a stream that had started on it ends at limits.streamIdleTimeoutMs with an SSE error
 *    and [DONE], health checks eject it, and it is re-admitted after SIGCONT.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  engineTag,
  freePort,
  type GatewayStatsJson,
  getJson,
  MODEL,
  metricSum,
  NoReply,
  post,
  type Reply,
  type SimCluster,
  scrape,
  servedBy,
  simBackend,
  spawnSim,
  sseData,
  startSims,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';

const ADMIN_KEY = 'e2e-faults-admin';
const ADMIN = { authorization: `Bearer ${ADMIN_KEY}` };
const REQUESTS = 200;
/** Requests start this far apart (open loop): about 2 s of arrivals. */
const ARRIVAL_GAP_MS = 10;
/** The engine is killed when this many requests have been sent. */
const KILL_AT = 100;
const DEADLINE_MS = 30_000;
/** limits.streamIdleTimeoutMs of the SIGSTOP test's gateway (its request deadline is far longer). */
const STREAM_IDLE_TIMEOUT_MS = 1000;

const teardown = new Teardown();
let sims: SimCluster;
let tags: string[];
before(async () => {
  sims = await startSims(3, ['--time-scale', '1'], teardown);
  tags = await Promise.all(sims.engines.map((e) => engineTag(e.url)));
});
after(() => teardown.run());

interface InstanceJson {
  id: string;
  healthy: boolean;
  inFlight: number;
}

async function instances(url: string): Promise<InstanceJson[]> {
  return (await getJson<{ instances: InstanceJson[] }>(`${url}/admin/instances`, ADMIN)).instances;
}

async function healthyOf(url: string, id: string): Promise<boolean> {
  return (await instances(url)).find((i) => i.id === id)?.healthy === true;
}

type Outcome =
  | { kind: 'ok'; servedBy: string }
  | { kind: 'error-before'; code: string; status: number }
  | { kind: 'error-stream'; code: string; tokensBefore: number }
  | { kind: 'lost'; why: string };

/** Classifies one reply under the no-lost-request contract. */
function classify(reply: Reply, stream: boolean, maxTokens: number): Outcome {
  if (reply.status !== 200) {
    if (reply.status < 500)
      return { kind: 'lost', why: `status ${reply.status}: ${reply.text.slice(0, 200)}` };
    try {
      const body = assertErrorBody(reply.text, reply.status, 'error before the first byte');
      return { kind: 'error-before', code: body.error.code, status: reply.status };
    } catch (error) {
      return { kind: 'lost', why: (error as Error).message };
    }
  }
  if (!stream) {
    try {
      const body = JSON.parse(reply.text) as { id: string; usage: { completion_tokens: number } };
      if (body.usage.completion_tokens !== maxTokens)
        return { kind: 'lost', why: `completion_tokens ${body.usage.completion_tokens}, asked ${maxTokens}` };
      return { kind: 'ok', servedBy: body.id };
    } catch {
      return { kind: 'lost', why: `incomplete JSON body: ${reply.text.slice(0, 200)}` };
    }
  }
  const data = sseData(reply.text);
  if (!reply.text.endsWith('data: [DONE]\n\n'))
    return { kind: 'lost', why: `stream cut: ...${reply.text.slice(-200)}` };
  const last = data.at(-2) ?? '';
  if (last.startsWith('{"error"')) {
    try {
      const body = assertErrorBody(last, undefined, 'SSE error event');
      if (data.slice(0, -2).some((d) => d.startsWith('{"error"')))
        return { kind: 'lost', why: 'two error events' };
      return { kind: 'error-stream', code: body.error.code, tokensBefore: data.length - 2 };
    } catch (error) {
      return { kind: 'lost', why: (error as Error).message };
    }
  }
  let usage: { completion_tokens: number } | undefined;
  let id = '';
  try {
    const chunk = JSON.parse(last) as { id: string; usage?: { completion_tokens: number } };
    usage = chunk.usage;
    id = chunk.id;
  } catch {
    return { kind: 'lost', why: `last event is not JSON: ${last.slice(0, 200)}` };
  }
  if (usage?.completion_tokens !== maxTokens)
    return { kind: 'lost', why: `stream usage ${JSON.stringify(usage)}, asked ${maxTokens}` };
  if (data.some((d) => d.startsWith('{"error"')))
    return { kind: 'lost', why: 'error event inside a complete stream' };
  return { kind: 'ok', servedBy: id };
}

describe('gateway faults', { timeout: 120_000 }, () => {
  it('loses no request when an engine is SIGKILLed under load, then re-admits it when it is back', async () => {
    const { url } = await startTestGateway(
      {
        backends: sims.engines.map((e, i) => simBackend(`e${i}`, e)),
        routing: { policy: 'round-robin' },
        adminKey: ADMIN_KEY,
        healthCheck: { intervalMs: 200, timeoutMs: 500, failuresToEject: 2, successesToReadmit: 2 },
        limits: { retries: 2, retryBackoffBaseMs: 5, retryBackoffMaxMs: 50, requestTimeoutMs: DEADLINE_MS },
      },
      teardown,
    );
    const victim = sims.engines[1];
    assert.ok(victim !== undefined);

    let killedAt = Number.NaN;
    let inFlightOnVictim = -1;
    const requests: { stream: boolean; sentAt: number; outcome: Promise<Outcome> }[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      if (i === KILL_AT) {
        inFlightOnVictim = (await instances(url)).find((x) => x.id === 'e1')?.inFlight ?? -1;
        await victim.kill('SIGKILL');
        killedAt = performance.now();
      }
      const stream = i % 2 === 1;
      const maxTokens = 30 + (i % 71);
      const path = i % 3 === 0 ? '/v1/completions' : '/v1/chat/completions';
      const body =
        path === '/v1/completions'
          ? { model: MODEL, prompt: `request ${i}: tell a story about a railway yard`, max_tokens: maxTokens }
          : {
              model: MODEL,
              messages: [{ role: 'user', content: `request ${i}: how are trains sorted?` }],
              max_tokens: maxTokens,
            };
      const sentAt = performance.now();
      const outcome = post(
        url,
        path,
        { ...body, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) },
        { deadlineMs: DEADLINE_MS },
      ).then(
        (reply) => classify(reply, stream, maxTokens),
        (error: unknown): Outcome => ({
          kind: 'lost',
          why: error instanceof NoReply ? `${error.kind}: ${error.message}` : String(error),
        }),
      );
      requests.push({ stream, sentAt, outcome });
      await new Promise((r) => setTimeout(r, ARRIVAL_GAP_MS));
    }
    const outcomes = await Promise.all(requests.map((r) => r.outcome));

    const lost = outcomes.flatMap((o, i) => (o.kind === 'lost' ? [`#${i}: ${o.why}`] : []));
    assert.deepEqual(lost, [], 'every request ends with a complete answer or a clean error');
    const ok = outcomes.filter((o) => o.kind === 'ok').length;
    const errors = outcomes.filter((o) => o.kind !== 'ok');
    process.stderr.write(
      `faults: ${ok} ok, ${errors.length} clean errors (${JSON.stringify(errors)}), ${inFlightOnVictim} in flight on the victim at the kill\n`,
    );
    assert.ok(inFlightOnVictim > 0, 'the victim had work when it was killed');
    // Only what was already streaming from the victim may fail; everything else is retried elsewhere.
    assert.ok(
      errors.length <= inFlightOnVictim,
      `${errors.length} failures, ${inFlightOnVictim} in flight on the victim`,
    );
    for (const [i, o] of outcomes.entries()) {
      if (o.kind === 'ok') continue;
      const r = requests[i] as (typeof requests)[number];
      assert.ok(
        r.sentAt < killedAt,
        `request #${i} was sent after the kill and failed: ${JSON.stringify(o)}`,
      );
      assert.equal(
        o.kind,
        'error-stream',
        `request #${i} failed without having started: ${JSON.stringify(o)}`,
      );
      assert.ok(r.stream);
    }
    // Requests served by the victim finished before it died; later ones went to the others.
    const victimTag = tags[1] as string;
    for (const [i, o] of outcomes.entries()) {
      const r = requests[i] as (typeof requests)[number];
      if (o.kind === 'ok' && r.sentAt > killedAt)
        assert.notEqual(
          servedBy(o.servedBy, tags),
          1,
          `request #${i} sent after the kill served by ${victimTag}`,
        );
    }

    // Counters: everything accepted is completed or failed, nothing in flight.
    const stats = await getJson<GatewayStatsJson>(`${url}/stats`);
    const rejected = Object.values(stats.rejected).reduce((a, b) => a + b, 0);
    assert.equal(stats.accepted + rejected, REQUESTS, JSON.stringify(stats));
    assert.equal(stats.inFlight, 0, JSON.stringify(stats));
    assert.equal(stats.queued, 0);
    assert.equal(stats.accepted, stats.completed + stats.failedTotal);
    assert.equal(stats.completed, ok, JSON.stringify(stats));
    assert.equal(stats.failedTotal, errors.length, JSON.stringify(stats));
    assert.equal(
      Object.values(stats.failed).reduce((a, b) => a + b, 0),
      stats.failedTotal,
    );
    assert.ok(stats.retries > 0, 'requests on the dead engine were retried');
    const metrics = await scrape(url);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_accepted_total'), stats.accepted);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_completed_total'), stats.completed);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_failed_total'), stats.failedTotal);
    assert.equal(metricSum(metrics, 'switchyard_gateway_requests_in_flight'), 0);
    for (const id of ['e0', 'e1', 'e2'])
      assert.equal(metricSum(metrics, 'switchyard_gateway_instance_in_flight', `instance="${id}"`), 0, id);

    // The dead engine is ejected, then re-admitted once something answers on its port again.
    await until('the killed engine is ejected', async () => !(await healthyOf(url, 'e1')), 10_000);
    const revived = await spawnSim(['--time-scale', '1', '--kv-events', 'none'], victim.port, teardown);
    const revivedTag = await engineTag(revived.url);
    await until('the revived engine is re-admitted', () => healthyOf(url, 'e1'), 10_000);
    const served = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await post(url, '/v1/completions', { model: MODEL, prompt: `after ${i}`, max_tokens: 2 });
      assert.equal(r.status, 200, r.text);
      served.add((JSON.parse(r.text) as { id: string }).id.slice(5, 13));
    }
    assert.ok(served.has(revivedTag), `no request reached the revived engine (${[...served].join(', ')})`);
  });

  it('ejects a backend that refuses connections from the start and re-admits it when it comes up', async () => {
    // Engine 0 of the first test (alive), now behind a gateway of its own.
    const live = sims.engines[0];
    assert.ok(live !== undefined);
    const port = await freePort();
    const { url } = await startTestGateway(
      {
        backends: [
          simBackend('live', live),
          simBackend('late', { url: `http://127.0.0.1:${port}`, kvEvents: null }),
        ],
        routing: { policy: 'round-robin' },
        adminKey: ADMIN_KEY,
        healthCheck: { intervalMs: 100, timeoutMs: 500, failuresToEject: 2, successesToReadmit: 2 },
        limits: { retries: 2, retryBackoffBaseMs: 1, retryBackoffMaxMs: 5 },
      },
      teardown,
    );
    await until('the refusing backend is ejected', async () => !(await healthyOf(url, 'late')), 10_000);
    assert.equal((await fetch(`${url}/ready`)).status, 200, 'the model is still served');
    const metrics = await scrape(url);
    assert.equal(metricSum(metrics, 'switchyard_gateway_instance_healthy', 'instance="late"'), 0);
    assert.equal(metricSum(metrics, 'switchyard_gateway_instance_healthy', 'instance="live"'), 1);

    // Ejected: round robin skips it, so no request costs a retry.
    const before = await getJson<GatewayStatsJson>(`${url}/stats`);
    for (let i = 0; i < 6; i++) {
      const r = await post(url, '/v1/chat/completions', {
        model: MODEL,
        messages: [{ role: 'user', content: `while ejected ${i}` }],
        max_tokens: 2,
        stream: i % 2 === 0,
      });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.text.length > 0);
    }
    const during = await getJson<GatewayStatsJson>(`${url}/stats`);
    assert.equal(during.retries, before.retries, 'no retries are spent on an ejected backend');
    assert.equal(during.completed, before.completed + 6);

    // It comes up: health checks re-admit it and it gets its share.
    const late = await spawnSim(['--time-scale', '0.1', '--kv-events', 'none'], port, teardown);
    const lateTag = await engineTag(late.url);
    await until('the late backend is re-admitted', () => healthyOf(url, 'late'), 10_000);
    let toLate = 0;
    for (let i = 0; i < 6; i++) {
      const r = await post(url, '/v1/completions', { model: MODEL, prompt: `after ${i}`, max_tokens: 2 });
      assert.equal(r.status, 200, r.text);
      if ((JSON.parse(r.text) as { id: string }).id.slice(5, 13) === lateTag) toLate++;
    }
    assert.equal(toLate, 3, 'round robin gives the re-admitted backend every other request');

    // Nothing left to serve the model (both drained): fail fast with 503, Retry-After and a code.
    for (const id of ['live', 'late'])
      assert.equal(
        (await fetch(`${url}/admin/instances/${id}/drain`, { method: 'POST', headers: ADMIN })).status,
        200,
      );
    const none = await post(url, '/v1/completions', { model: MODEL, prompt: 'anyone?', max_tokens: 2 });
    assert.equal(none.status, 503, none.text);
    assert.equal(assertErrorBody(none.text, 503, 'no instance').error.code, 'SY_ERR_NO_INSTANCE');
    assert.match(none.headers.get('retry-after') ?? '', /^\d+$/);
    assert.equal((await fetch(`${url}/ready`)).status, 503);
    assert.equal(
      (await fetch(`${url}/admin/instances/late/undrain`, { method: 'POST', headers: ADMIN })).status,
      200,
    );
    const back = await post(url, '/v1/completions', { model: MODEL, prompt: 'anyone now?', max_tokens: 2 });
    assert.equal(back.status, 200, back.text);
    assert.equal((JSON.parse(back.text) as { id: string }).id.slice(5, 13), lateTag);
    const end = await getJson<GatewayStatsJson>(`${url}/stats`);
    assert.equal(end.inFlight, 0);
    assert.equal(end.accepted, end.completed + end.failedTotal);
  });

  // Stall detection (limits.stallAfterMs) is left at its default here: this is the first-byte timeout
  // and health-check path; test/e2e/gateway-stalls.test.ts is the stall-detection one.
  it('routes around an engine that stops answering (SIGSTOP): first-byte timeout, retry, idle bound, ejection, re-admission', async () => {
    const frozen = sims.engines[2];
    const live = sims.engines[0];
    assert.ok(frozen !== undefined && live !== undefined);
    const firstByteTimeoutMs = 800;
    const { url } = await startTestGateway(
      {
        backends: [simBackend('live', live), simBackend('frozen', frozen)],
        routing: { policy: 'round-robin' },
        adminKey: ADMIN_KEY,
        healthCheck: { intervalMs: 150, timeoutMs: 300, failuresToEject: 2, successesToReadmit: 2 },
        limits: {
          retries: 2,
          retryBackoffBaseMs: 1,
          retryBackoffMaxMs: 5,
          firstByteTimeoutMs,
          streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
          requestTimeoutMs: 20_000,
        },
      },
      teardown,
    );
    // A long stream on the engine about to freeze (the other one drained while it is routed).
    const drain = (action: string) =>
      fetch(`${url}/admin/instances/live/${action}`, { method: 'POST', headers: ADMIN });
    assert.equal((await drain('drain')).status, 200);
    const stuck = post(
      url,
      '/v1/completions',
      { model: MODEL, prompt: 'a long story', max_tokens: 5000, stream: true },
      { deadlineMs: DEADLINE_MS },
    );
    await until('the long stream runs on the frozen engine', async () => {
      return (await instances(url)).find((i) => i.id === 'frozen')?.inFlight === 1;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await drain('undrain')).status, 200);
    // The kernel still accepts connections for a stopped process; nothing answers them.
    process.kill(frozen.pid, 'SIGSTOP');
    teardown.add(() => {
      if (frozen.alive()) process.kill(frozen.pid, 'SIGCONT');
    });
    let thawed = false;
    try {
      const replies = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          post(
            url,
            '/v1/chat/completions',
            {
              model: MODEL,
              messages: [{ role: 'user', content: `frozen ${i}` }],
              max_tokens: 4,
              stream: i % 2 === 0,
              ...(i % 2 === 0 ? { stream_options: { include_usage: true } } : {}),
            },
            { deadlineMs: DEADLINE_MS },
          ),
        ),
      );
      for (const [i, r] of replies.entries()) {
        const o = classify(r, i % 2 === 0, 4);
        assert.equal(o.kind, 'ok', `#${i}: ${JSON.stringify(o)}`);
      }
      const slow = replies.filter((r) => r.totalMs >= firstByteTimeoutMs).length;
      assert.ok(slow >= 1, 'no request waited for the first-byte timeout: none went to the frozen engine');
      const stats = await getJson<GatewayStatsJson>(`${url}/stats`);
      assert.ok(stats.retries >= slow, JSON.stringify(stats));
      // The stream that had started on it ends at the idle bound (not the request deadline) with an
      // SSE error event and [DONE].
      const cut = await stuck;
      const o = classify(cut, true, 5000);
      assert.equal(o.kind, 'error-stream', JSON.stringify(o));
      assert.equal(o.kind === 'error-stream' ? o.code : '', 'SY_ERR_TIMEOUT');
      assert.match(sseData(cut.text).at(-2) ?? '', /limits\.streamIdleTimeoutMs/);
      await until('the frozen engine is ejected', async () => !(await healthyOf(url, 'frozen')), 10_000);
      // Ejected: requests no longer go there (no attempt times out, so no retry is spent).
      const ejected = await getJson<GatewayStatsJson>(`${url}/stats`);
      for (let i = 0; i < 4; i++) {
        const r = await post(url, '/v1/completions', { model: MODEL, prompt: `ejected ${i}`, max_tokens: 2 });
        assert.equal(r.status, 200, r.text);
      }
      assert.equal((await getJson<GatewayStatsJson>(`${url}/stats`)).retries, ejected.retries);
      process.kill(frozen.pid, 'SIGCONT');
      thawed = true;
      await until('the thawed engine is re-admitted', () => healthyOf(url, 'frozen'), 10_000);
      const tag = tags[2] as string;
      let toThawed = 0;
      for (let i = 0; i < 4; i++) {
        const r = await post(url, '/v1/completions', { model: MODEL, prompt: `thawed ${i}`, max_tokens: 2 });
        assert.equal(r.status, 200, r.text);
        if ((JSON.parse(r.text) as { id: string }).id.slice(5, 13) === tag) toThawed++;
      }
      assert.equal(toThawed, 2, 'round robin gives the thawed engine every other request');
      const end = await getJson<GatewayStatsJson>(`${url}/stats`);
      assert.equal(end.inFlight, 0);
      assert.equal(end.accepted, end.completed + end.failedTotal);
      assert.deepEqual(end.failed, { timeout: 1 }, JSON.stringify(end));
    } finally {
      if (!thawed && frozen.alive()) process.kill(frozen.pid, 'SIGCONT');
    }
  });
});
