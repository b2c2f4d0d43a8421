import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Agent } from 'undici';
import { HealthChecker, HealthState, type HealthTarget } from './health.ts';

/**
 * A round checks every backend under one deadline signal, one listener per backend: with 11 or more
 * (`serve --engines 16`, three models of four engines) Node printed a MaxListenersExceededWarning,
 * "possible EventTarget memory leak", on the gateway's stderr. Real loopback server, 24 backends.
 */
test('a health round over many backends checks them all without a listener warning', async () => {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-length': 0 }).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
  const agent = new Agent();
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(`${w.name}: ${w.message}`);
  };
  process.on('warning', onWarning);
  try {
    const config = { intervalMs: 1000, timeoutMs: 5000, failuresToEject: 1, successesToReadmit: 1 };
    const targets: HealthTarget[] = Array.from({ length: 24 }, (_, i) => ({
      id: `e${i}`,
      url,
      headers: {},
      state: new HealthState(config),
    }));
    for (const t of targets) t.state.fail();
    const changes: string[] = [];
    const checker = new HealthChecker(targets, config, agent, (id, healthy) =>
      changes.push(`${id} ${healthy}`),
    );
    await checker.checkAll();
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(changes.filter((c) => c.endsWith('true')).length, 24, changes.join(', '));
    assert.deepEqual(
      warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')),
      [],
    );
  } finally {
    process.off('warning', onWarning);
    await agent.close();
    server.close();
  }
});
