import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHAIN_ROOT, chainHash } from '../../../core/hash.ts';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView } from '../../../core/view.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import {
  createPrefixAffinity,
  PREFIX_AFFINITY_DEFAULTS,
  type PrefixAffinityParams,
} from './prefix-affinity.ts';

runRoutingConformance('prefix-affinity', () => createPrefixAffinity());
runRoutingConformance('prefix-affinity (load waiting)', () =>
  createPrefixAffinity({ ...PREFIX_AFFINITY_DEFAULTS, load: 'waiting' }),
);

/** A prompt of `blocks` 16-token blocks whose first `shared` blocks are the common prefix `family`. */
function prompt(id: string, family: number, shared: number, blocks: number): Request {
  const hashes: number[] = [];
  let h = CHAIN_ROOT;
  for (let i = 0; i < blocks; i++) {
    h = chainHash(h, i < shared ? family * 1_000_003 + i : hashOf(id) + i);
    hashes.push(h);
  }
  return makeRequest({
    id,
    inputTokens: blocks * 16,
    maxTokens: 8,
    arrivalMs: 0,
    prefix: { blockTokens: 16, hashes },
  });
}

function hashOf(s: string): number {
  let h = 7;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

function routed(view: ClusterView, request: Request, params: Partial<PrefixAffinityParams> = {}): string {
  const policy = createPrefixAffinity({ ...PREFIX_AFFINITY_DEFAULTS, ...params });
  // i2 served an earlier prompt of family 1 (100 blocks).
  policy.onRouted?.(prompt('seed', 1, 100, 100), 'i2', 0);
  const d = policy.decide(view, request, new Rng(1));
  assert.equal(d.kind, 'route');
  return d.kind === 'route' ? d.instanceId : '';
}

const loads = (inFlight: readonly number[]) =>
  testCluster(inFlight.length, (i) => ({ inFlight: inFlight[i] ?? 0 }));

test('prefix-affinity: a long shared prefix goes to the instance that served it, though busier', () => {
  assert.equal(routed(loads([0, 0, 40, 0]), prompt('r', 1, 80, 100)), 'i2');
});

test('prefix-affinity: an imbalanced pool routes to the least loaded instance instead', () => {
  // 100 - 5 > 64 and 100 > 1.5 x 5.
  assert.equal(routed(loads([5, 9, 100, 7]), prompt('r', 1, 80, 100)), 'i0');
});

test('prefix-affinity: both thresholds must be crossed for imbalance', () => {
  // 300 - 200 > 64 but 300 is not > 1.5 x 200: balanced, the prefix wins.
  assert.equal(routed(loads([200, 250, 300, 220]), prompt('r', 1, 80, 100)), 'i2');
  // 60 > 1.5 x 0 but 60 - 0 is not > 64: balanced.
  assert.equal(routed(loads([0, 10, 60, 20]), prompt('r', 1, 80, 100)), 'i2');
});

test('prefix-affinity: a match rate at or under the cache threshold goes to the least loaded', () => {
  // 30 of 100 blocks is a rate of 0.3, not above 0.3.
  assert.equal(routed(loads([3, 1, 0, 2]), prompt('r', 1, 30, 100)), 'i2'); // i2 is also least loaded
  assert.equal(routed(loads([3, 1, 2, 2]), prompt('r', 1, 30, 100)), 'i1');
  assert.equal(routed(loads([3, 1, 2, 2]), prompt('r', 1, 31, 100)), 'i2');
  assert.equal(routed(loads([3, 1, 2, 2]), prompt('r', 1, 31, 100), { cacheThreshold: 0.5 }), 'i1');
});

test('prefix-affinity: the longest match wins among several holders', () => {
  const policy = createPrefixAffinity();
  policy.onRouted?.(prompt('a', 1, 40, 40), 'i0', 0);
  policy.onRouted?.(prompt('b', 1, 90, 90), 'i3', 0);
  const d = policy.decide(loads([0, 0, 0, 5]), prompt('r', 1, 95, 100), new Rng(1));
  assert.deepEqual(d, { kind: 'route', instanceId: 'i3' });
});

test('prefix-affinity: decisions follow the routing it learns (a conversation stays put)', () => {
  const policy = createPrefixAffinity();
  const view = loads([0, 0, 0, 0]);
  const first = policy.decide(view, prompt('t1', 9, 50, 50), new Rng(1));
  assert.deepEqual(first, { kind: 'route', instanceId: 'i0' });
  policy.onRouted?.(prompt('t1', 9, 50, 50), 'i0', 0);
  // The next turn extends the conversation; the other instances are idler, the pool balanced.
  const busier = testCluster(4, (i) => ({ inFlight: i === 0 ? 6 : 0 }));
  assert.deepEqual(policy.decide(busier, prompt('t2', 9, 50, 70), new Rng(1)), {
    kind: 'route',
    instanceId: 'i0',
  });
});

test('prefix-affinity: the index respects its LRU capacity and forgets old prefixes', () => {
  const policy = createPrefixAffinity({ ...PREFIX_AFFINITY_DEFAULTS, capacityBlocks: 64 });
  policy.onRouted?.(prompt('old', 1, 40, 40), 'i2', 0);
  const view = loads([1, 0, 1, 1]);
  assert.deepEqual(policy.decide(view, prompt('r', 1, 40, 50), new Rng(1)), {
    kind: 'route',
    instanceId: 'i2',
  });
  for (let k = 0; k < 10; k++) {
    policy.onRouted?.(prompt(`new${k}`, 100 + k, 20, 20), 'i2', 0);
    assert.ok(policy.cachedBlocks('i2') <= 64, `holds ${policy.cachedBlocks('i2')} blocks`);
  }
  assert.equal(policy.cachedBlocks('i2'), 64);
  assert.deepEqual(policy.decide(view, prompt('r', 1, 40, 50), new Rng(1)), {
    kind: 'route',
    instanceId: 'i1',
  });
});

test('prefix-affinity: the default capacity follows the instance KV cache', () => {
  const policy = createPrefixAffinity();
  // 50 engine blocks x 16 tokens = 800 tokens = 50 chain blocks of 16 tokens.
  const view = testCluster(2, () => ({ kvBlocksTotal: 50, blockSize: 16, inFlight: 0 }));
  const request = prompt('a', 1, 100, 100);
  const d = policy.decide(view, request, new Rng(1));
  assert.equal(d.kind, 'route');
  if (d.kind === 'route') policy.onRouted?.(request, d.instanceId, 0);
  assert.equal(policy.cachedBlocks('i0'), 50);
});

test('prefix-affinity: a matching instance that is no longer eligible is not chosen', () => {
  const policy = createPrefixAffinity();
  policy.onRouted?.(prompt('a', 1, 100, 100), 'i2', 0);
  const view = testCluster(4, (i) => ({ inFlight: 0, draining: i === 2 }));
  assert.deepEqual(policy.decide(view, prompt('r', 1, 100, 100), new Rng(1)), {
    kind: 'route',
    instanceId: 'i0',
  });
});
