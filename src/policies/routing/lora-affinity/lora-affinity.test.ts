import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView } from '../../../core/view.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createLoraAffinity, LORA_AFFINITY_DEFAULTS, parseModelAdapter } from './lora-affinity.ts';

runRoutingConformance('lora-affinity', () => createLoraAffinity());

const forModel = (model: string, id = 'r'): Request =>
  makeRequest({ id, model, inputTokens: 64, maxTokens: 8, arrivalMs: 0 });

const llamas = (inFlight: readonly number[]): ClusterView =>
  testCluster(inFlight.length, (i) => ({ inFlight: inFlight[i] ?? 0, models: ['llama'] }));

function route(policy: ReturnType<typeof createLoraAffinity>, view: ClusterView, request: Request): string {
  const d = policy.decide(view, request, new Rng(1));
  assert.equal(d.kind, 'route');
  if (d.kind !== 'route') return '';
  policy.onRouted?.(request, d.instanceId, 0);
  return d.instanceId;
}

test('lora-affinity: model names split at the first colon', () => {
  assert.deepEqual(parseModelAdapter('llama:sql-expert'), { base: 'llama', adapter: 'sql-expert' });
  assert.deepEqual(parseModelAdapter('llama:a:b'), { base: 'llama', adapter: 'a:b' });
  assert.deepEqual(parseModelAdapter('llama'), { base: 'llama', adapter: undefined });
});

test('lora-affinity: an adapter stays on the instance that loaded it while it is not overloaded', () => {
  const policy = createLoraAffinity();
  assert.equal(route(policy, llamas([2, 0, 1, 3]), forModel('llama:sql')), 'i1');
  // i1 is now busier than i0 and i2 (mean 2.25, 1.5 x mean = 3.375): the adapter stays put.
  assert.equal(route(policy, llamas([2, 3, 1, 3]), forModel('llama:sql')), 'i1');
  // A request without an adapter, and one for another adapter, go to the least loaded.
  assert.equal(route(policy, llamas([2, 3, 1, 3]), forModel('llama')), 'i2');
  assert.equal(route(policy, llamas([2, 3, 1, 3]), forModel('llama:chat')), 'i2');
});

test('lora-affinity: overloaded holders give way to the least loaded instance', () => {
  const policy = createLoraAffinity();
  route(policy, llamas([0, 0, 0, 0]), forModel('llama:sql')); // i0 holds sql
  // mean 3, 1.5 x 3 = 4.5 < 9: overloaded.
  assert.equal(route(policy, llamas([9, 1, 2, 0]), forModel('llama:sql')), 'i3');
  // Now i0 and i3 hold it; the least loaded holder is chosen.
  assert.equal(route(policy, llamas([4, 1, 2, 3]), forModel('llama:sql')), 'i3');
  // Below a mean of 1 the floor applies: 1 in flight is not overload.
  const fresh = createLoraAffinity();
  route(fresh, llamas([0, 0, 0, 0]), forModel('llama:x'));
  assert.equal(route(fresh, llamas([1, 0, 0, 0]), forModel('llama:x')), 'i0');
  const strict = createLoraAffinity({ ...LORA_AFFINITY_DEFAULTS, overloadFactor: 0.5 });
  route(strict, llamas([0, 0, 0, 0]), forModel('llama:x'));
  assert.equal(route(strict, llamas([1, 0, 0, 0]), forModel('llama:x')), 'i1');
});

test('lora-affinity: each instance remembers at most maxAdaptersPerInstance adapters (LRU)', () => {
  const policy = createLoraAffinity({ ...LORA_AFFINITY_DEFAULTS, maxAdaptersPerInstance: 3 });
  const view = llamas([0, 1]);
  for (const a of ['a', 'b', 'c']) route(policy, view, forModel(`llama:${a}`)); // all to i0
  route(policy, view, forModel('llama:a')); // touch a: order a, c, b
  route(policy, view, forModel('llama:d')); // evicts b
  const busy = llamas([1, 0]);
  assert.equal(route(policy, busy, forModel('llama:a')), 'i0');
  assert.equal(route(policy, busy, forModel('llama:b')), 'i1');
});

test('lora-affinity: an instance serves base:adapter when it lists the base model or the full name', () => {
  const view = testCluster(3, (i) => ({
    inFlight: [0, 5, 9][i] ?? 0,
    models: [['mistral'], ['llama'], ['llama:sql']][i] ?? [],
  }));
  assert.equal(route(createLoraAffinity(), view, forModel('llama:chat')), 'i1');
  assert.equal(route(createLoraAffinity(), view, forModel('llama:sql')), 'i1');
  const d = createLoraAffinity().decide(view, forModel('qwen:sql'), new Rng(1));
  assert.equal(d.kind, 'reject');
});
