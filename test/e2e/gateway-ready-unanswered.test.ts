/**
 * /ready with a configured backend that has never answered a health check (nothing listens on its
 * port yet: an engine started with `&` a moment before `serve`). Ejection waits for
 * `failuresToEject` strikes, so such a backend stays `healthy` for several rounds; /ready used to
 * say ready all that time while every request to it failed. Now it is 503 naming the model until
 * the backend passes a check, and 200 once a real engine answers on the port.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import {
  freePort,
  MODEL,
  post,
  simBackend,
  spawnSim,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';

const teardown = new Teardown();
after(() => teardown.run());

it('/ready is 503 while the only backend has failed every check, 200 once its engine answers', async () => {
  const port = await freePort();
  const { url } = await startTestGateway(
    {
      backends: [simBackend('late', { url: `http://127.0.0.1:${port}`, kvEvents: null })],
      // Many strikes before ejection: the backend is still `healthy` when /ready is asked.
      healthCheck: { intervalMs: 200, timeoutMs: 500, failuresToEject: 50, successesToReadmit: 2 },
    },
    teardown,
  );
  // startGateway ran one health round before it resolved: the backend failed it.
  const early = await fetch(`${url}/ready`);
  assert.equal(early.status, 503);
  assert.deepEqual(await early.json(), {
    status: 'not ready',
    reason: `no healthy instance serves model '${MODEL}'`,
  });

  await spawnSim(['--time-scale', '0.05', '--kv-events', 'none'], port, teardown);
  await until('the gateway is ready once the engine answers a check', async () => {
    return (await fetch(`${url}/ready`)).status === 200;
  });
  const r = await post(url, '/v1/completions', { model: MODEL, prompt: 'hello', max_tokens: 2 });
  assert.equal(r.status, 200, r.text);
});

it('/ready for a P/D model waits for a live instance on each side, not any one of the pair', async () => {
  const prefill = await spawnSim(
    ['--time-scale', '0.05', '--kv-events', 'none', '--pd-role', 'prefill', '--pd-protocol', 'vllm'],
    0,
    teardown,
  );
  const decodePort = await freePort();
  const { url } = await startTestGateway(
    {
      backends: [
        { ...simBackend('p0', prefill, false), role: 'prefill', pdProtocol: 'vllm' },
        {
          ...simBackend('d0', { url: `http://127.0.0.1:${decodePort}`, kvEvents: null }),
          role: 'decode',
          pdProtocol: 'vllm',
        },
      ],
      healthCheck: { intervalMs: 200, timeoutMs: 500, failuresToEject: 50, successesToReadmit: 2 },
    },
    teardown,
  );
  // Once the prefill side has passed its first check (on a loaded machine that can take a few
  // rounds after start-up), /ready must name the decode side, where nothing listens: completions
  // cannot run. A /ready that said 200 with the prefill side alone never meets the wait and fails.
  let early: { status: number; body: unknown } = { status: 0, body: undefined };
  await until('/ready names the decode side once the prefill side is confirmed', async () => {
    const res = await fetch(`${url}/ready`);
    early = { status: res.status, body: await res.json() };
    return JSON.stringify(early.body).includes('decode');
  });
  assert.equal(early.status, 503);
  assert.deepEqual(early.body, {
    status: 'not ready',
    reason: `no healthy decode instance serves model '${MODEL}'`,
  });

  await spawnSim(
    ['--time-scale', '0.05', '--kv-events', 'none', '--pd-role', 'decode', '--pd-protocol', 'vllm'],
    decodePort,
    teardown,
  );
  await until('the gateway is ready once the decode engine answers', async () => {
    return (await fetch(`${url}/ready`)).status === 200;
  });
  const r = await post(url, '/v1/completions', { model: MODEL, prompt: 'hello', max_tokens: 2 });
  assert.equal(r.status, 200, r.text);
});
