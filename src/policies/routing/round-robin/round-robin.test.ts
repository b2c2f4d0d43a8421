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

test('round-robin: with one of four down, the other three share the traffic evenly', () => {
  // Before the fix the down instance's turn went to its successor, which took half the traffic.
  const view = testCluster(4, (i) => ({ healthy: i !== 1 }));
  const policy = createRoundRobin();
  const share = new Map<string, number>();
  for (let r = 0; r < 300; r++) {
    const request = makeRequest({ id: `r${r}`, inputTokens: 8, maxTokens: 1, arrivalMs: 0 });
    const d = policy.decide(view, request, new Rng(1));
    assert.equal(d.kind, 'route');
    if (d.kind !== 'route') continue;
    share.set(d.instanceId, (share.get(d.instanceId) ?? 0) + 1);
    policy.onRouted?.(request, d.instanceId, 0);
  }
  assert.deepEqual(Object.fromEntries([...share].sort()), { i0: 100, i2: 100, i3: 100 });
});

test('round-robin: with all four up, each gets a quarter in index order', () => {
  const view = testCluster(4);
  const policy = createRoundRobin();
  const picked: string[] = [];
  for (let r = 0; r < 8; r++) {
    const request = makeRequest({ id: `r${r}`, inputTokens: 8, maxTokens: 1, arrivalMs: 0 });
    const d = policy.decide(view, request, new Rng(1));
    if (d.kind !== 'route') assert.fail('rejected');
    picked.push(d.instanceId);
    policy.onRouted?.(request, d.instanceId, 0);
  }
  assert.deepEqual(picked, ['i0', 'i1', 'i2', 'i3', 'i0', 'i1', 'i2', 'i3']);
});
