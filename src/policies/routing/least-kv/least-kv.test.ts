import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createLeastKv } from './least-kv.ts';

runRoutingConformance('least-kv', createLeastKv);

const request = makeRequest({ id: 'a', inputTokens: 8, maxTokens: 1, arrivalMs: 0 });

test('least-kv: picks the lowest KV usage', () => {
  const view = testCluster(4, (i) => ({ kvUsage: [0.5, 0.2, 0.9, 0.3][i] ?? 0, inFlight: 0 }));
  assert.deepEqual(createLeastKv().decide(view, request, new Rng(1)), { kind: 'route', instanceId: 'i1' });
});

test('least-kv: ties go to fewer in-flight, then to the lowest index', () => {
  const view = testCluster(4, (i) => ({ kvUsage: 0.4, inFlight: [3, 2, 2, 5][i] ?? 0 }));
  assert.deepEqual(createLeastKv().decide(view, request, new Rng(1)), { kind: 'route', instanceId: 'i1' });
});

test('least-kv: skips an emptier instance that is draining', () => {
  const view = testCluster(3, (i) => ({ kvUsage: [0.5, 0.0, 0.6][i] ?? 0, draining: i === 1 }));
  assert.deepEqual(createLeastKv().decide(view, request, new Rng(1)), { kind: 'route', instanceId: 'i0' });
});
