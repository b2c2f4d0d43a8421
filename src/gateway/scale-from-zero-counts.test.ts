/**
 * The gateway's counters for requests held in the scale-from-zero buffer, over real HTTP on loopback:
 * a held request (chat, completions, embeddings alike) is accepted, in flight and queued in /stats and
 * in the `requests_in_flight` / `requests_queued` gauges until it leaves the buffer, and every way out
 * (sent on, client gone, timed out, failed start, refused by admission after release, shutdown)
 * brings the counts back, keeping accepted = completed + failedTotal + inFlight.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeUpstream } from './fake-upstream.ts';
import { type Gateway, startGateway } from './gateway.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A gateway with model `z` at zero engines and nothing else. */
async function zeroGateway(extra: Record<string, unknown> = {}): Promise<Gateway> {
  const gw = await startGateway(
    { port: 0, backends: [], healthCheck: { intervalMs: 60_000 }, ...extra },
    { log: () => {}, scaleFromZero: { models: ['z'], wake: () => {} } },
  );
  cleanups.push(() => gw.close());
  return gw;
}

const BODIES: Record<string, Record<string, unknown>> = {
  '/v1/chat/completions': { model: 'z', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
  '/v1/completions': { model: 'z', prompt: 'hi', max_tokens: 3 },
  '/v1/embeddings': { model: 'z', input: 'hi' },
};

function post(gw: Gateway, path: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(BODIES[path]),
    ...(signal !== undefined ? { signal } : {}),
  });
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(5);
}

interface Counts {
  accepted: number;
  completed: number;
  failedTotal: number;
  failed: Record<string, number>;
  rejected: Record<string, number>;
  inFlight: number;
  queued: number;
  scaleFromZero: { waiting: Record<string, number>; held: number };
}

/** /stats, checked against the gauges and the no-request-lost invariant on the way. */
async function counts(gw: Gateway): Promise<Counts> {
  const s = (await (await fetch(`${gw.url}/stats`)).json()) as Counts;
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  // Nothing answers in between when the test holds still: both views must agree.
  assert.equal(gauge('switchyard_gateway_requests_in_flight'), s.inFlight, text);
  assert.equal(gauge('switchyard_gateway_requests_queued'), s.queued, text);
  assert.equal(s.accepted, s.completed + s.failedTotal + s.inFlight, JSON.stringify(s));
  return s;
}

const statusOf = async (res: Response): Promise<[number, string | undefined]> => {
  const body = (await res.json()) as { error?: { code: string } };
  return [res.status, body.error?.code];
};

describe('held requests in the gateway counters', () => {
  it('counts held chat, completions and embeddings as in flight and queued; a leaver and the answers bring them to 0', async () => {
    const gw = await zeroGateway();
    const paths = Object.keys(BODIES);
    const answers = paths.map((p) => post(gw, p));
    const abort = new AbortController();
    const leaver = post(gw, '/v1/chat/completions', abort.signal).catch(() => 'aborted');
    await until(() => gw.modelBuffer?.waiting('z') === 4);

    const held = await counts(gw);
    assert.deepEqual([held.inFlight, held.queued, held.accepted], [4, 4, 4]);
    assert.equal(held.scaleFromZero.waiting['z'], 4);

    abort.abort();
    assert.equal(await leaver, 'aborted');
    await until(() => gw.modelBuffer?.stats.abandoned === 1);
    const left = await counts(gw);
    assert.deepEqual([left.inFlight, left.queued, left.failed['client_abort']], [3, 3, 1]);
    assert.equal(left.scaleFromZero.waiting['z'], 3);

    const u = await startFakeUpstream('z');
    cleanups.push(() => u.close());
    gw.addBackend({ id: 'z0', type: 'vllm', url: u.url, models: ['z'] });
    const done = await Promise.all(answers);
    assert.deepEqual(
      done.map((r) => r.status),
      [200, 200, 200],
    );
    await Promise.all(done.map((r) => r.arrayBuffer()));
    await until(() => gw.stats.inFlight === 0);
    const end = await counts(gw);
    assert.deepEqual([end.inFlight, end.queued, end.completed, end.failedTotal], [0, 0, 3, 1]);
    assert.equal(end.scaleFromZero.waiting['z'], 0);
  });

  it('brings the counts back on a failed start and a shutdown; a refusal at the door is never accepted', async () => {
    const gw = await zeroGateway({ limits: { scaleFromZeroBufferMax: 2 } });
    const pending = [post(gw, '/v1/chat/completions'), post(gw, '/v1/embeddings')];
    await until(() => gw.modelBuffer?.waiting('z') === 2);
    assert.deepEqual(await statusOf(await post(gw, '/v1/completions')), [429, 'SY_ERR_SCALE_BUFFER_FULL']);
    const full = await counts(gw);
    assert.deepEqual([full.inFlight, full.queued, full.accepted], [2, 2, 2]);
    assert.equal(full.rejected['SY_ERR_SCALE_BUFFER_FULL'], 1);

    gw.modelBuffer?.fail('z', 'exit code 2');
    for (const res of pending) assert.deepEqual(await statusOf(await res), [503, 'SY_ERR_COLD_START_FAILED']);
    const failed = await counts(gw);
    assert.deepEqual([failed.inFlight, failed.queued, failed.failed['cold_start_failed']], [0, 0, 2]);

    const last = post(gw, '/v1/completions');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    assert.equal((await counts(gw)).inFlight, 1);
    void gw.drain();
    assert.deepEqual(await statusOf(await last), [503, 'SY_ERR_DRAINING']);
    assert.deepEqual([gw.stats.inFlight, gw.stats.queuedTotal, gw.stats.failed.get('draining')], [0, 0, 1]);
  });

  it('brings the counts back when a held request times out', async () => {
    const gw = await zeroGateway({ limits: { scaleFromZeroWaitMs: 50 } });
    assert.deepEqual(await statusOf(await post(gw, '/v1/embeddings')), [503, 'SY_ERR_COLD_START_TIMEOUT']);
    const s = await counts(gw);
    assert.deepEqual([s.accepted, s.inFlight, s.queued, s.failed['cold_start_timeout']], [1, 0, 0, 1]);
  });

  it('counts a released request that admission refuses as failed, not rejected', async () => {
    const gw = await zeroGateway({
      admission: {
        gate: { inFlightMax: 1, waitingMax: 1 },
        bands: [
          { name: 'online', minPriority: 0, deadlineMs: 60_000, queueDepthMax: 1 },
          { name: 'batch', minPriority: -1, deadlineMs: 60_000, queueDepthMax: 1 },
        ],
        shedding: { shedOnEstimatedWait: false },
      },
    });
    const pending = [0, 1, 2].map(() => post(gw, '/v1/chat/completions'));
    await until(() => gw.modelBuffer?.waiting('z') === 3);
    const u = await startFakeUpstream('z');
    cleanups.push(() => u.close());
    // All three leave the buffer at once: one is sent, one queues, the third finds the queue full.
    gw.addBackend({ id: 'z0', type: 'vllm', url: u.url, models: ['z'] });
    const statuses = (await Promise.all(pending.map(async (p) => (await statusOf(await p))[0]))).sort();
    assert.deepEqual(statuses, [200, 200, 429]);
    await until(() => gw.stats.inFlight === 0);
    const s = await counts(gw);
    assert.deepEqual([s.accepted, s.completed, s.failedTotal, s.queued], [3, 2, 1, 0]);
    assert.deepEqual(s.rejected, {});
  });
  it('fails a released request whose offer throws before admission (500), bringing inFlight back', async () => {
    const gw = await zeroGateway();
    const pending = post(gw, '/v1/chat/completions');
    await until(() => gw.modelBuffer?.waiting('z') === 1);
    // An internal fault injected into this real gateway: admission throws for the released request.
    const driver = (gw as unknown as { driver: { offer: () => never } }).driver;
    driver.offer = () => {
      throw new Error('injected fault');
    };
    const u = await startFakeUpstream('z');
    cleanups.push(() => u.close());
    gw.addBackend({ id: 'z0', type: 'vllm', url: u.url, models: ['z'] });
    assert.deepEqual(await statusOf(await pending), [500, 'SY_ERR_INTERNAL']);
    const s = await counts(gw);
    assert.deepEqual([s.accepted, s.inFlight, s.queued, s.failed['internal']], [1, 0, 0, 1]);
  });
});
