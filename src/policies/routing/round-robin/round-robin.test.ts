import { runRoutingConformance } from '../conformance.ts';
import { createRoundRobin } from './round-robin.ts';

runRoutingConformance('round-robin', createRoundRobin);

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { testCluster } from '../conformance.ts';

test('round-robin: visits every eligible instance in turn', () => {
  const view = testCluster(4, (i) => ({ healthy: i !== 2 }));
  const policy = createRoundRobin();
  const picked: string[] = [];
  for (let r = 0; r < 6; r++) {
    const request = makeRequest({ id: `r${r}`, inputTokens: 8, maxTokens: 1, arrivalMs: 0 });
    const d = policy.decide(view, request, new Rng(1));
    assert.equal(d.kind, 'route');
    if (d.kind === 'route') {
      picked.push(d.instanceId);
      policy.onRouted?.(request, d.instanceId, 0);
    }
  }
  assert.deepEqual(new Set(picked), new Set(['i0', 'i1', 'i3']));
  assert.ok(!picked.includes('i2'));
});
