/**
 * End-to-end admission faults (issue 11, "Faults" items 1, 2, 7 and 8), against real sim engines:
 *
 * 1. Queued requests' bytes are bounded in total and per tenant: past a bound a request is refused
 *    (429 SY_ERR_TENANT_QUEUE_BYTES_FULL / 503 SY_ERR_QUEUE_BYTES_FULL, Retry-After) instead of queued,
 *    the gateway's own gauge never passes the bound, and it returns to 0 when the queue empties.
 * 2. A body's `priority` cannot jump the queue or reach the batch band (completion order shows the band).
 * 3. With engine signals stale (metrics off), the gate bounds each engine by the gateway's own
 *    accounting: a flood waits in the fair queue, not in the engine, and a victim tenant goes ahead.
 * 4. Embeddings obey tenant RPM/TPM.
 * 5. A queued request that cannot make its deadline is refused before it, with a Retry-After.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  type GatewayStatsJson,
  getJson,
  MODEL,
  NoReply,
  post,
  type Reply,
  type SimCluster,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';

const teardown = new Teardown();
/** e0: a default sim engine; e1: a sim engine with a 32-sequence batch (its own FCFS queue past it). */
let sims: SimCluster;

before(async () => {
  const [plain, narrow] = await Promise.all([
    startSims(1, ['--time-scale', '1', '--kv-events', 'none'], teardown),
    startSims(1, ['--time-scale', '1', '--kv-events', 'none', '--max-num-seqs', '32'], teardown),
  ]);
  sims = { ...plain, engines: [...plain.engines, ...narrow.engines] };
});

after(() => teardown.run());

interface QueuedBytesJson {
  bytes: number;
  bytesPeak: number;
  bytesMax: number;
  tenantBytesMax: number;
  tenantBytesPeak: number;
  tenants: number;
  refused: number;
}
type Stats = GatewayStatsJson & { queuedBytes: QueuedBytesJson };

/** A gateway whose gate passes one request per engine and queues the rest (no shedding on estimates). */
const ONE_AT_A_TIME = {
  gate: { inFlightMax: 1, waitingMax: 1 },
  shedding: { shedOnEstimatedWait: false },
} as const;

function engine(i: number) {
  return sims.engines[i] as SimCluster['engines'][number];
}

/** Posts and settles to a Reply or the kind of NoReply (a client that gave up). */
async function settle(
  url: string,
  path: string,
  body: unknown,
  key: string | undefined,
  deadlineMs: number,
): Promise<Reply | 'gave-up'> {
  try {
    return await post(url, path, body, {
      deadlineMs,
      ...(key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } }),
    });
  } catch (error) {
    if (error instanceof NoReply && error.kind === 'deadline') return 'gave-up';
    throw error;
  }
}

/** A request the test ends itself: `abort()` is the client leaving. */
interface Held {
  readonly reply: Promise<Reply | 'aborted'>;
  abort(): void;
}

/** Posts a request that runs (or waits) until the test aborts it; resolves 'aborted' then. */
function hold(url: string, path: string, body: unknown, key: string | undefined): Held {
  const controller = new AbortController();
  const reply = (async (): Promise<Reply | 'aborted'> => {
    try {
      const res = await fetch(url + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
        },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const text = await res.text();
      return {
        status: res.status,
        headers: res.headers,
        text,
        firstChunkMs: Number.NaN,
        totalMs: Number.NaN,
      };
    } catch (error) {
      if (controller.signal.aborted) return 'aborted';
      throw error;
    }
  })();
  return { reply, abort: () => controller.abort() };
}

/** The first of `held`'s reply or 'waiting' after `ms` (a queued request answers nothing). */
function replyWithin(held: Held, ms: number): Promise<Reply | 'aborted' | 'waiting'> {
  return Promise.race([held.reply, new Promise<'waiting'>((ok) => setTimeout(() => ok('waiting'), ms))]);
}

function assertRefused(r: Reply | 'gave-up' | 'aborted' | 'waiting', status: number, code: string): void {
  assert.ok(typeof r === 'object', `expected ${code}, got ${String(r)}`);
  const reply = r as Reply;
  assert.equal(reply.status, status, reply.text);
  assert.equal(assertErrorBody(reply.text, status).error.code, code);
  const retryAfter = reply.headers.get('retry-after');
  assert.ok(
    retryAfter !== null && /^\d+$/.test(retryAfter) && Number(retryAfter) >= 1,
    `Retry-After ${retryAfter}`,
  );
}

async function stats(url: string): Promise<Stats> {
  return getJson<Stats>(`${url}/stats`);
}

describe('gateway admission faults', { timeout: 90_000 }, () => {
  it('bounds the bytes of queued requests in total and per tenant (item 1)', async () => {
    const { url } = await startTestGateway(
      {
        backends: [simBackend('e0', engine(0), false)],
        admission: ONE_AT_A_TIME,
        tenants: [
          { key: 'sk-a', name: 'a' },
          { key: 'sk-b', name: 'b' },
          { key: 'sk-c', name: 'c' },
        ],
        limits: { queuedBytesMax: 1_500_000, tenantQueuedBytesMax: 1_000_000 },
      },
      teardown,
    );
    // A long request holds the one slot, so everything after it queues.
    const blocker = hold(url, '/v1/completions', { model: MODEL, prompt: 'hold', max_tokens: 5000 }, 'sk-c');
    await until('the blocker is in flight', async () => (await stats(url)).inFlight === 1);
    // About 225 KB each (a 200,000-character prompt and its prefix chain): 4 fit under 1,000,000.
    const large = (i: number) => ({
      model: MODEL,
      prompt: `${i} ${'large body '.repeat(18_182)}`,
      max_tokens: 4,
    });
    const answered = async (n: number) => {
      const s = await stats(url);
      return s.queued + Object.values(s.rejected).reduce((a, b) => a + b, 0) === n;
    };
    const fromA = Array.from({ length: 8 }, (_, i) => hold(url, '/v1/completions', large(i), 'sk-a'));
    await until('tenant a answered or queued', () => answered(8));
    const firstA = await Promise.all(fromA.map((h) => replyWithin(h, 100)));
    const refusedA = firstA.filter((r) => r !== 'waiting');
    assert.equal(refusedA.length, 4, 'tenant a: 4 of 8 refused');
    for (const r of refusedA) assertRefused(r, 429, 'SY_ERR_TENANT_QUEUE_BYTES_FULL');
    // b fits its own bound, but the total (1,500,000) takes only 2 more.
    const fromB = Array.from({ length: 4 }, (_, i) => hold(url, '/v1/completions', large(100 + i), 'sk-b'));
    await until('tenant b answered or queued', () => answered(12));
    const firstB = await Promise.all(fromB.map((h) => replyWithin(h, 100)));
    const refusedB = firstB.filter((r) => r !== 'waiting');
    assert.equal(refusedB.length, 2, 'tenant b: 2 of 4 refused');
    for (const r of refusedB) assertRefused(r, 503, 'SY_ERR_QUEUE_BYTES_FULL');

    const held = await stats(url);
    const q = held.queuedBytes;
    process.stderr.write(
      `queued-bytes: ${held.queued} queued hold ${q.bytes} bytes (peak ${q.bytesPeak}, max ${q.bytesMax}); ${q.refused} refused\n`,
    );
    assert.equal(held.queued, 6, JSON.stringify(held));
    assert.ok(q.bytes > 1_300_000 && q.bytes <= q.bytesMax, JSON.stringify(q));
    assert.ok(q.bytesPeak <= q.bytesMax && q.tenantBytesPeak <= q.tenantBytesMax, JSON.stringify(q));
    assert.equal(q.tenants, 2);
    assert.equal(q.refused, 6);
    // Refused requests were never accepted: the blocker and the six queued were.
    assert.equal(held.accepted, 7, JSON.stringify(held));
    assert.equal(held.rejected['SY_ERR_TENANT_QUEUE_BYTES_FULL'], 4, JSON.stringify(held.rejected));
    assert.equal(held.rejected['SY_ERR_QUEUE_BYTES_FULL'], 2, JSON.stringify(held.rejected));

    // The queued clients leave; what they held is released.
    const queued = [...fromA, ...fromB].filter((_, i) => [...firstA, ...firstB][i] === 'waiting');
    for (const h of queued) h.abort();
    for (const h of queued) assert.equal(await h.reply, 'aborted');
    await until('the queue is empty', async () => (await stats(url)).queued === 0);
    const empty = (await stats(url)).queuedBytes;
    assert.equal(empty.bytes, 0, JSON.stringify(empty));
    assert.equal(empty.tenants, 0);
    assert.ok(empty.bytesPeak <= empty.bytesMax);
    blocker.abort();
    assert.equal(await blocker.reply, 'aborted');
  });

  it('a body priority neither jumps the queue nor reaches the batch band (item 1)', async () => {
    const order = async (
      config: Parameters<typeof startTestGateway>[0],
      sends: readonly { id: string; priority: number; key?: string }[],
      blockerKey?: string,
    ): Promise<string[]> => {
      const { url } = await startTestGateway(config, teardown);
      const blocker = settle(
        url,
        '/v1/completions',
        { model: MODEL, prompt: 'hold', max_tokens: 150 },
        blockerKey,
        20_000,
      );
      await until('the blocker is in flight', async () => (await stats(url)).inFlight === 1);
      const done: string[] = [];
      const all: Promise<void>[] = [];
      for (const [i, s] of sends.entries()) {
        const body = { model: MODEL, prompt: `request ${s.id}`, max_tokens: 3, priority: s.priority };
        all.push(
          settle(url, '/v1/completions', body, s.key, 20_000).then((r) => {
            assert.notEqual(r, 'gave-up');
            assert.equal((r as Reply).status, 200, (r as Reply).text);
            done.push(s.id);
          }),
        );
        // Each is queued before the next is sent, so arrival order is known.
        await until(`${s.id} queued`, async () => (await stats(url)).queued === i + 1);
      }
      await Promise.all([blocker, ...all]);
      return done;
    };
    // No tenants: -1 (the batch band) and 5 (the interactive band) both land in the online band.
    const anonymous = await order(
      { backends: [simBackend('e0', engine(0), false)], admission: ONE_AT_A_TIME },
      [
        { id: 'A', priority: 0 },
        { id: 'B', priority: 5 },
        { id: 'C', priority: -1 },
        { id: 'D', priority: 0 },
      ],
    );
    assert.deepEqual(anonymous, ['A', 'B', 'C', 'D']);
    // Tenants: a configured priority wins over the body; an unconfigured tenant cannot raise its own.
    const keyed = await order(
      {
        backends: [simBackend('e0', engine(0), false)],
        admission: ONE_AT_A_TIME,
        tenants: [
          { key: 'sk-gold', name: 'gold', priority: 1 },
          { key: 'sk-plain', name: 'plain' },
        ],
      },
      [
        { id: 'p0', priority: 0, key: 'sk-plain' },
        { id: 'p5', priority: 5, key: 'sk-plain' },
        { id: 'g', priority: -1, key: 'sk-gold' },
      ],
      'sk-plain',
    );
    assert.deepEqual(keyed, ['g', 'p0', 'p5']);
  });

  it('with stale signals the gate bounds engines by its own accounting; a victim goes ahead of a flood (item 7)', async () => {
    const { url } = await startTestGateway(
      {
        // No metrics: every signal is stale, as with a scrape that keeps failing.
        backends: [{ ...simBackend('e1', engine(1), false), metricsPath: null }],
        tenants: [
          { key: 'sk-flood', name: 'flood' },
          { key: 'sk-victim', name: 'victim' },
        ],
      },
      teardown,
    );
    const done: string[] = [];
    const send = (tenant: 'flood' | 'victim', i: number) =>
      settle(
        url,
        '/v1/completions',
        // Waves of 32 long enough (about 1 s each) that the backlog builds even when the client,
        // on a loaded machine, takes a while to send all 120.
        { model: MODEL, prompt: `${tenant} ${i}`, max_tokens: 160 },
        `sk-${tenant}`,
        90_000,
      ).then((r) => {
        assert.notEqual(r, 'gave-up');
        assert.equal((r as Reply).status, 200, (r as Reply).text);
        done.push(tenant);
      });
    const flood = Array.from({ length: 120 }, (_, i) => send('flood', i));
    // The gateway holds the flood's backlog itself (staleInFlightMax 32 go to the engine).
    await until('the flood is queued in the gateway', async () => (await stats(url)).queued >= 60);
    const midway = await stats(url);
    assert.ok(midway.inFlight - midway.queued <= 32, JSON.stringify(midway));
    const victim = Array.from({ length: 4 }, (_, i) => send('victim', i));
    await Promise.all([...flood, ...victim]);
    const lastVictim = done.lastIndexOf('victim');
    const floodAfter = done.slice(lastVictim + 1).length;
    process.stderr.write(
      `stale-signals: ${floodAfter} of 120 flood requests finished after the last victim\n`,
    );
    // Served first come first served inside the engine, the victim would finish with the last wave.
    assert.ok(floodAfter >= 30, `only ${floodAfter} flood requests finished after the victim's`);
  });

  it('embeddings obey tenant RPM and TPM (item 7)', async () => {
    const { url } = await startTestGateway(
      {
        backends: [simBackend('e0', engine(0), false)],
        tenants: [
          { key: 'sk-rpm', name: 'rpm', rpm: 3 },
          { key: 'sk-tpm', name: 'tpm', tpm: 10_000 },
        ],
      },
      teardown,
    );
    const replies = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        settle(url, '/v1/embeddings', { model: MODEL, input: `text ${i}` }, 'sk-rpm', 20_000),
      ),
    );
    const ok = replies.filter((r) => r !== 'gave-up' && r.status === 200).length;
    assert.ok(ok >= 1 && ok <= 4, `${ok} of 8 passed an RPM of 3`);
    for (const r of replies)
      if (r === 'gave-up' || r.status !== 200) assertRefused(r, 429, 'SY_ERR_RATE_LIMITED');
    // 2,048 inputs cost 2,048 blocks of 16 tokens: past a 10,000 TPM at once.
    const many = await settle(
      url,
      '/v1/embeddings',
      { model: MODEL, input: Array.from({ length: 2048 }, () => 'hi') },
      'sk-tpm',
      20_000,
    );
    // More than the whole bucket: no wait admits it, so not a 429 (SY_ERR_REQUEST_OVER_TPM).
    assert.notEqual(many, 'gave-up');
    assert.equal((many as Reply).status, 413, (many as Reply).text);
    assert.equal(assertErrorBody((many as Reply).text, 413).error.code, 'SY_ERR_REQUEST_OVER_TPM');
  });

  it('refuses a queued request that cannot make its deadline before the deadline, with Retry-After (item 8)', async () => {
    const { url } = await startTestGateway(
      {
        backends: [simBackend('e0', engine(0), false)],
        admission: {
          gate: { inFlightMax: 1, waitingMax: 1 },
          bands: [
            { name: 'online', minPriority: 0, deadlineMs: 4000, queueDepthMax: 100 },
            { name: 'batch', minPriority: -1, deadlineMs: 86_400_000, queueDepthMax: 100 },
          ],
          shedding: { drainRateWindowMs: 2000 },
        },
      },
      teardown,
    );
    const blocker = hold(
      url,
      '/v1/completions',
      { model: MODEL, prompt: 'hold', max_tokens: 5000 },
      undefined,
    );
    await until('the blocker is in flight', async () => (await stats(url)).inFlight === 1);
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        settle(
          url,
          '/v1/completions',
          { model: MODEL, prompt: `late ${i}`, max_tokens: 4 },
          undefined,
          20_000,
        ),
      ),
    );
    for (const r of replies) {
      assertRefused(r, 429, 'SY_ERR_SLO_UNREACHABLE');
      // Refused on the wait estimate, which runs before the deadline (expiry says "deadline passed").
      assert.match(assertErrorBody((r as Reply).text, 429).error.message, /estimated queueing wait/);
    }
    blocker.abort();
    assert.equal(await blocker.reply, 'aborted');
  });
});
