import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { Agent } from 'undici';
import { roleCheckOf } from './engine-role.ts';
import { HealthChecker, HealthState, type HealthTarget } from './health.ts';

/** A sim-like engine on loopback: /health answers 200, /metrics names `role` (none: no P/D series). */
let role: 'prefill' | 'decode' | undefined = 'prefill';
let metricsAsked = 0;
/** The status /metrics answers (200: the role page). */
let metricsStatus = 200;
const server = createServer((req, res) => {
  if (req.url === '/metrics') {
    metricsAsked++;
    if (metricsStatus !== 200) return void res.writeHead(metricsStatus).end();
    res.end(role === undefined ? '' : `switchyard_pd_requests_total{role="${role}",protocol="vllm"} 0\n`);
  } else res.writeHead(200, { 'content-length': 0 }).end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const agent = new Agent();
after(async () => {
  server.closeAllConnections();
  server.close();
  await agent.close();
});

test('a role mismatch ejects at once, stays out quietly, and a matching role re-admits', async () => {
  const config = { intervalMs: 1000, timeoutMs: 2000, failuresToEject: 3, successesToReadmit: 2 };
  const target: HealthTarget = {
    id: 'd0',
    url: `${base}/health`,
    headers: {},
    state: new HealthState(config),
    role: roleCheckOf({ id: 'd0', type: 'sim', url: base, role: 'decode' }),
  };
  const changes: string[] = [];
  const checker = new HealthChecker([target], config, agent, (id, healthy, reason) =>
    changes.push(`${id} ${healthy ? 'in' : 'out'}: ${reason}`),
  );
  await checker.checkAll();
  assert.equal(changes.length, 1, 'one round, not failuresToEject rounds');
  assert.match(
    changes[0] as string,
    /^d0 out: role mismatch: configured role decode, but the engine runs as prefill/,
  );
  assert.equal(target.state.healthy, false);
  await checker.checkAll();
  assert.equal(changes.length, 1, 'no second line while it stays out');
  role = 'decode';
  await checker.checkAll();
  assert.deepEqual(changes.slice(1), ['d0 in: health checks pass; role decode confirmed (its /metrics)']);
  const asked = metricsAsked;
  await checker.checkAll();
  assert.equal(metricsAsked, asked, 'a matched role is not asked again');
  assert.equal(target.state.healthy, true);
  checker.stop();
});

test('an engine with no P/D role under a both backend passes', async () => {
  role = undefined;
  const config = { intervalMs: 1000, timeoutMs: 2000, failuresToEject: 1, successesToReadmit: 1 };
  const target: HealthTarget = {
    id: 'b0',
    url: `${base}/health`,
    headers: {},
    state: new HealthState(config),
    role: roleCheckOf({ id: 'b0', type: 'sim', url: base, role: 'both' }),
  };
  const changes: string[] = [];
  const checker = new HealthChecker([target], config, agent, (id) => changes.push(id));
  await checker.checkAll();
  assert.deepEqual(changes, []);
  assert.equal(target.role?.matched, true);
  checker.stop();
});

test('a P/D side registered out stays out while its role cannot be asked, saying why once', async () => {
  role = 'prefill';
  metricsStatus = 503;
  const config = { intervalMs: 1000, timeoutMs: 2000, failuresToEject: 3, successesToReadmit: 2 };
  const target: HealthTarget = {
    id: 'p0',
    url: `${base}/health`,
    headers: {},
    state: new HealthState(config),
    role: roleCheckOf({ id: 'p0', type: 'sim', url: base, role: 'prefill' }),
  };
  // As the gateway registers a P/D side: out until its engine confirmed the role.
  target.state.healthy = false;
  const changes: string[] = [];
  const checker = new HealthChecker([target], config, agent, (id, healthy, reason) =>
    changes.push(`${id} ${healthy ? 'in' : 'out'}: ${reason}`),
  );
  await checker.checkAll();
  await checker.checkAll();
  assert.deepEqual(changes, [
    'p0 out: role prefill not yet confirmed (its /metrics): GET /metrics answered 503',
  ]);
  assert.equal(target.state.healthy, false, 'a passed health check does not admit it');
  metricsStatus = 200;
  await checker.checkNow(target);
  assert.equal(changes[1], 'p0 in: health checks pass; role prefill confirmed (its /metrics)');
  assert.equal(target.state.healthy, true);
  checker.stop();
});
