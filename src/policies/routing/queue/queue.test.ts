import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createQueue } from './queue.ts';

runRoutingConformance('queue', createQueue);

const request = makeRequest({ id: 'a', inputTokens: 8, maxTokens: 1, arrivalMs: 0 });

test('queue: picks the fewest waiting, whatever the in-flight count', () => {
  const view = testCluster(4, (i) => ({ waiting: [3, 1, 4, 2][i] ?? 0, inFlight: [0, 9, 0, 0][i] ?? 0 }));
  assert.deepEqual(createQueue().decide(view, request, new Rng(1)), { kind: 'route', instanceId: 'i1' });
});

test('queue: ties go to fewer in-flight, then to the lowest index', () => {
  const view = testCluster(4, (i) => ({ waiting: 2, inFlight: [4, 1, 1, 3][i] ?? 0 }));
  assert.deepEqual(createQueue().decide(view, request, new Rng(1)), { kind: 'route', instanceId: 'i1' });
});
