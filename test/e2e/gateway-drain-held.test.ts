/**
 * End-to-end: what a graceful shutdown does with requests held for a model at zero engines (the
 * scale-from-zero buffer). A gateway in this process, whose `wake` starts a real `switchyard engine
 * sim` child and adds it as a backend once it is ready (as serve's autoscaler does):
 *
 * - the model's engine is starting when the drain begins: the held request waits for it and is
 *   served (before the fix it got 503 `SY_ERR_DRAINING` at once);
 * - no engine is starting: 503 `SY_ERR_DRAINING` at once, the drain not waiting;
 * - the engine is still starting when the drain's bound (drainTimeoutMs) runs out: 503
 *   `SY_ERR_DRAINING` then.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type Gateway, startGateway } from '../../src/gateway/index.ts';
import { MODEL, type SimEngine, simBackend, spawnSim, Teardown } from './support/cluster.ts';
import { openSocket, readUntilClose } from './support/raw-http.ts';
import { until } from './support/wait.ts';

const teardown = new Teardown();
after(() => teardown.run());

/** Hang guard on a request being held: not a performance bound. */
const GUARD_MS = 15_000;
/**
 * The drain's bound while a sim engine starts, and (longer) the client's deadline on a held request:
 * hang guards. On a loaded machine (load 13 on 2 cores) the held request was still waiting for
 * its engine's start at the shared 20 s request deadline, and the client gave up first.
 */
const START_DRAIN_MS = 60_000;
const HELD_DEADLINE_MS = 90_000;

/** How each test's `wake` answers: start a sim engine, pretend one is starting, or do nothing. */
type Wake = 'engine' | 'forever' | 'none';

/** A gateway serving MODEL from zero engines; `wake` as named. */
async function gatewayFromZero(
  wake: Wake,
  drainTimeoutMs: number,
): Promise<{ gw: Gateway; engine: () => Promise<SimEngine> | undefined }> {
  let started: Promise<SimEngine> | undefined;
  let starting = false;
  let gw: Gateway | undefined;
  gw = await startGateway(
    { port: 0, backends: [], drainTimeoutMs, healthCheck: { intervalMs: 100 } },
    {
      log: () => {},
      scaleFromZero: {
        models: [MODEL],
        wake: () => {
          if (wake === 'none' || starting) return;
          starting = true;
          if (wake === 'forever') return;
          started = spawnSim(['--time-scale', '0.05', '--kv-events', 'none'], 0, teardown).then((e) => {
            gw?.addBackend(simBackend('e0', e, false));
            starting = false;
            return e;
          });
        },
        starting: () => starting,
      },
    },
  );
  teardown.add(() => gw.close());
  return { gw, engine: () => started };
}

/** A chat completion through `gw`: its status and error code, if any. */
async function chat(gw: Gateway): Promise<{ status: number; code: string | undefined }> {
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    signal: AbortSignal.timeout(HELD_DEADLINE_MS),
  });
  const body = (await r.json()) as { error?: { code: string } };
  return { status: r.status, code: body.error?.code };
}

const held = (gw: Gateway): number => gw.modelBuffer?.waiting(MODEL) ?? 0;

describe('drain with requests held for a model at zero', { timeout: 4 * HELD_DEADLINE_MS }, () => {
  it('serves a held request whose engine is starting', async () => {
    const { gw, engine } = await gatewayFromZero('engine', START_DRAIN_MS);
    const answer = chat(gw);
    await until('the request held', () => held(gw) === 1, GUARD_MS);
    assert.ok(engine() !== undefined, 'its engine is starting');
    const closed = gw.close();
    assert.deepEqual(await answer, { status: 200, code: undefined });
    await closed;
    assert.equal(gw.stats.completed, 1);
  });

  it('fails at once a held request with no engine starting', async () => {
    const { gw } = await gatewayFromZero('none', 30_000);
    const answer = chat(gw);
    await until('the request held', () => held(gw) === 1, GUARD_MS);
    const closed = gw.close();
    assert.deepEqual(await answer, { status: 503, code: 'SY_ERR_DRAINING' });
    await closed;
  });

  it('fails a held request whose engine is not ready when the drain ends', async () => {
    const { gw } = await gatewayFromZero('forever', 300);
    const answer = chat(gw);
    await until('the request held', () => held(gw) === 1, GUARD_MS);
    const closed = gw.close();
    assert.deepEqual(await answer, { status: 503, code: 'SY_ERR_DRAINING' });
    await closed;
    assert.equal(held(gw), 0);
    assert.equal(gw.stats.inFlight, 0);
  });
});

describe('drain with a request body still arriving', { timeout: 60_000 }, () => {
  it('answers it 503 SY_ERR_DRAINING when the drain ends, instead of cutting it', async () => {
    const e = await spawnSim(['--time-scale', '0.05', '--kv-events', 'none'], 0, teardown);
    const gw = await startGateway(
      { port: 0, backends: [simBackend('e0', e, false)], drainTimeoutMs: 500 },
      { log: () => {} },
    );
    const socket = await openSocket(gw.url);
    const answer = readUntilClose(socket, GUARD_MS);
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    // The head and part of the body: the rest never comes.
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    await gw.close();
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 503 /, text);
    assert.match(text, /"code":"SY_ERR_DRAINING"/);
  });
});
