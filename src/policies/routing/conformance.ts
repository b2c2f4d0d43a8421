/**
 * The shared conformance suite every routing policy runs. A policy's own test file calls
 * `runRoutingConformance(name, create)` and adds only what is particular to it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import type { Filter, RoutingPolicy } from './types.ts';

/** An instance view with sane defaults, for tests. */
export function testInstance(index: number, fields: Partial<InstanceView> = {}): InstanceView {
  return {
    id: `i${index}`,
    models: ['default'],
    gpu: 'h100',
    tp: 1,
    role: 'both',
    healthy: true,
    draining: false,
    inFlight: (index * 7) % 5,
    running: (index * 3) % 4,
    waiting: index % 3,
    kvUsage: ((index * 13) % 10) / 10,
    kvBlocksTotal: 10_000,
    blockSize: 16,
    pendingPrefillTokens: (index * 101) % 3000,
    prefixHitRate: 0,
    updatedAtMs: 0,
    ...fields,
  };
}

/** A cluster view of `n` test instances. */
export function testCluster(
  n: number,
  override: (i: number) => Partial<InstanceView> = () => ({}),
): ClusterView {
  return { nowMs: 1000, instances: Array.from({ length: n }, (_, i) => testInstance(i, override(i))) };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

function requestWithPrefix(id: number, tokens: number): Request {
  const hashes: number[] = [];
  for (let i = 0; i < Math.floor(tokens / 16); i++) hashes.push((i * 2654435761) >>> 0);
  return makeRequest({
    id: `r${id}`,
    inputTokens: tokens,
    maxTokens: 16,
    arrivalMs: 1000,
    prefix: { blockTokens: 16, hashes },
  });
}

/** Registers the conformance tests for one policy. `create` must return a fresh instance each call. */
export function runRoutingConformance(name: string, create: () => RoutingPolicy): void {
  test(`${name}: never picks an unhealthy or draining instance`, () => {
    const policy = create();
    const view = testCluster(12, (i) => ({ healthy: i % 3 !== 0, draining: i % 4 === 1 }));
    const rng = new Rng(7);
    for (let r = 0; r < 200; r++) {
      const request = requestWithPrefix(r, 64 + (r % 7) * 16);
      const d = policy.decide(view, request, rng);
      assert.equal(d.kind, 'route');
      if (d.kind !== 'route') continue;
      const picked = view.instances.find((x) => x.id === d.instanceId);
      assert.ok(picked, `picked unknown instance ${d.instanceId}`);
      assert.ok(picked.healthy && !picked.draining, `picked ${picked.id}, which is not eligible`);
      policy.onRouted?.(request, d.instanceId, view.nowMs);
    }
  });

  test(`${name}: rejects with SY_ERR_NO_INSTANCE when nothing is eligible`, () => {
    const view = testCluster(4, () => ({ healthy: false }));
    const d = create().decide(view, requestWithPrefix(1, 64), new Rng(1));
    assert.equal(d.kind, 'reject');
    if (d.kind === 'reject') assert.equal(d.code, 'SY_ERR_NO_INSTANCE');
  });

  test(`${name}: the same view, request and seed give the same decision`, () => {
    const view = testCluster(16);
    for (let r = 0; r < 50; r++) {
      const request = requestWithPrefix(r, 256);
      const a = create().decide(view, request, new Rng(r));
      const b = create().decide(view, request, new Rng(r));
      assert.deepEqual(a, b);
    }
  });

  test(`${name}: decide() leaves the policy's state alone (same instance, same input, same decision)`, () => {
    // Two fresh policies cannot see a decide() that changes the policy's own state; one instance
    // can. State may change only in the hooks (onRouted and the like), which this test never calls
    // after the warm-up.
    const view = testCluster(16);
    const policy = create();
    const warm = new Rng(11);
    for (let r = 0; r < 32; r++) {
      const request = requestWithPrefix(1000 + r, 64 + (r % 5) * 64);
      const d = policy.decide(view, request, warm);
      if (d.kind === 'route') policy.onRouted?.(request, d.instanceId, view.nowMs);
    }
    for (let r = 0; r < 20; r++) {
      const request = requestWithPrefix(r, 256 + (r % 3) * 128);
      const first = policy.decide(view, request, new Rng(r));
      const again = policy.decide(view, request, new Rng(r));
      assert.deepEqual(again, first, `a second decide() on request ${r} differs`);
      // Other decisions in between must not change it either.
      for (let k = 1; k <= 3; k++)
        policy.decide(view, requestWithPrefix(500 + r * 3 + k, 64 * k), new Rng(k));
      const later = policy.decide(view, request, new Rng(r));
      assert.deepEqual(later, first, `decide() on request ${r} changed after other decisions`);
    }
  });

  test(`${name}: does not mutate the view`, () => {
    const view = deepFreeze(testCluster(8));
    const snapshot = JSON.stringify(view);
    const policy = create();
    const rng = new Rng(3);
    for (let r = 0; r < 20; r++) {
      const request = deepFreeze(requestWithPrefix(r, 128));
      const d = policy.decide(view, request, rng);
      if (d.kind === 'route') policy.onRouted?.(request, d.instanceId, view.nowMs);
    }
    assert.equal(JSON.stringify(view), snapshot);
  });

  test(`${name}: a 100,000-token prompt over 1,000 instances completes`, () => {
    const view = testCluster(1000);
    const policy = create();
    const d = policy.decide(view, requestWithPrefix(1, 100_000), new Rng(5));
    assert.equal(d.kind, 'route');
  });
}

/**
 * Registers the tests particular to profile policies: their filters are respected. `build(extra)`
 * must return a fresh policy whose profile runs the `extra` filters (after its own).
 */
export function runProfileConformance(
  name: string,
  build: (extraFilters: readonly Filter[]) => RoutingPolicy,
): void {
  test(`${name}: never picks an instance its filters removed`, () => {
    const oddOnly: Filter = {
      name: 'odd-only',
      filter: (_v, _r, c) => c.filter((x) => Number(x.id.slice(1)) % 2 === 1),
    };
    const policy = build([oddOnly]);
    const view = testCluster(12);
    const rng = new Rng(9);
    for (let r = 0; r < 200; r++) {
      const request = requestWithPrefix(r, 64 + (r % 5) * 16);
      const d = policy.decide(view, request, rng);
      assert.equal(d.kind, 'route');
      if (d.kind !== 'route') continue;
      assert.equal(Number(d.instanceId.slice(1)) % 2, 1, `picked ${d.instanceId}, which the filter removed`);
      policy.onRouted?.(request, d.instanceId, view.nowMs);
    }
  });

  test(`${name}: a filter that removes every instance rejects, naming the filter`, () => {
    const none: Filter = { name: 'none-left', filter: () => [] };
    const d = build([none]).decide(testCluster(4), requestWithPrefix(1, 64), new Rng(1));
    assert.equal(d.kind, 'reject');
    if (d.kind === 'reject') {
      assert.equal(d.code, 'SY_ERR_NO_INSTANCE');
      assert.match(d.reason, /none-left/);
    }
  });
}
