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
const server = createServer((req, res) => {
  if (req.url === '/metrics') {
    metricsAsked++;
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
  assert.deepEqual(changes.slice(1), ['d0 in: health checks pass']);
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
