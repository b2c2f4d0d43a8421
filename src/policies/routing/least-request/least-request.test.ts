import { runRoutingConformance } from '../conformance.ts';
import { createLeastRequest } from './least-request.ts';

runRoutingConformance('least-request', createLeastRequest);

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { testCluster } from '../conformance.ts';

test('least-request: picks the instance with the fewest in-flight requests', () => {
  const view = testCluster(5, (i) => ({ inFlight: [4, 2, 9, 1, 1][i] ?? 0 }));
  const d = createLeastRequest().decide(
    view,
    makeRequest({ id: 'a', inputTokens: 8, maxTokens: 1, arrivalMs: 0 }),
    new Rng(1),
  );
  assert.deepEqual(d, { kind: 'route', instanceId: 'i3' });
});
