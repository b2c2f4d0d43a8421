import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView } from '../../../core/view.ts';
import { perfModelFor } from '../../../model/perf.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createRoutingPolicy } from '../registry.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';
import { createPreble, prebleParams } from './preble.ts';

const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
const context: PolicyContext = { perfModel: () => perf };
const create = (params: Record<string, unknown> = {}): RoutingPolicy =>
  createPreble(prebleParams.parse(params), context);

runRoutingConformance('preble', () => create());

/** `shared` 512-token chain blocks from `family`, then `own` blocks unique to `id`. */
function prompt(id: string, family: number, shared: number, own = 0): Request {
  const hashes: number[] = [];
  for (let i = 0; i < shared; i++) hashes.push(family * 1000 + i);
  for (let i = 0; i < own; i++) hashes.push(500_000 + id.length * 997 + id.charCodeAt(0) * 31 + i);
  return makeRequest({
    id,
    inputTokens: (shared + own) * 512,
    maxTokens: 128,
    arrivalMs: 0,
    prefix: { blockTokens: 512, hashes },
  });
}

const at = (nowMs: number): ClusterView => ({
  nowMs,
  instances: testCluster(4, () => ({
    pendingPrefillTokens: 0,
    running: 0,
    kvUsage: 0,
    inFlight: 0,
    waiting: 0,
  })).instances,
});

function routed(policy: RoutingPolicy, view: ClusterView, request: Request, seed = 1): string {
  const d = policy.decide(view, request, new Rng(seed));
  assert.equal(d.kind, 'route');
  return d.kind === 'route' ? d.instanceId : '';
}

/** i3 caches family 1 (16 blocks, 8,192 tokens) and carries 20 more requests of load. */
function loadedHolder(params: Record<string, unknown> = {}): RoutingPolicy {
  const policy = create(params);
  policy.onRouted?.(prompt('doc', 1, 16), 'i3', 0);
  for (let k = 0; k < 20; k++) policy.onRouted?.(prompt(`busy${k}`, 100 + k, 8), 'i3', 0);
  return policy;
}

test('preble: exploits a long shared prefix even on a loaded instance', () => {
  const policy = loadedHolder();
  // 8,192 of 8,704 tokens cached on i3 (94% > 50%): exploit.
  for (let seed = 0; seed < 10; seed++)
    assert.equal(routed(policy, at(1000), prompt('q', 1, 16, 1), seed), 'i3');
});

test('preble: explores to the least loaded instance for a short shared prefix', () => {
  const policy = loadedHolder();
  // 1,024 of 9,216 tokens cached on i3 (11%): explore; i3's window load outweighs its saving.
  for (let seed = 0; seed < 10; seed++)
    assert.notEqual(routed(policy, at(1000), prompt('q', 1, 2, 16), seed), 'i3');
  // A higher threshold turns the long-prefix case into exploration too.
  const strict = loadedHolder({ exploreThreshold: 0.99 });
  assert.notEqual(routed(strict, at(1000), prompt('q', 1, 16, 1)), 'i3');
});

test('preble: among instances with the longest match, exploits the least loaded', () => {
  const policy = loadedHolder();
  policy.onRouted?.(prompt('doc', 1, 16), 'i1', 0);
  assert.equal(routed(policy, at(1000), prompt('q', 1, 16, 1)), 'i1');
});

test('preble: the load counts only the recent window', () => {
  const policy = loadedHolder({ windowMs: 60_000 });
  const short = prompt('q', 1, 2, 16);
  assert.notEqual(routed(policy, at(1000), short), 'i3');
  // A minute later i3's history has left the window: its cached 1,024 tokens make it the cheapest.
  assert.equal(routed(policy, at(61_000), short), 'i3');
  // Routing there again at 61 s (hooks expire old entries as they go) keeps the decision consistent.
  policy.onRouted?.(prompt('doc', 1, 16), 'i3', 61_000);
  assert.equal(routed(policy, at(61_500), prompt('q', 1, 16, 1)), 'i3');
});

test('preble: the per-instance window is bounded', () => {
  // With room for one request, i3 remembers only its last routed one, a 512-token prompt with one
  // output token (~14 ms): less than the ~30 ms its cached 1,024 tokens save.
  const policy = loadedHolder({ windowRequestsMax: 1 });
  policy.onRouted?.({ ...prompt('tiny', 77, 1), maxTokens: 1 }, 'i3', 0);
  assert.equal(routed(policy, at(1000), prompt('q', 1, 2, 16)), 'i3');
});

test('preble: the catalogue builds it and rejects an unknown parameter by name', () => {
  assert.equal(createRoutingPolicy('preble').name, 'preble');
  assert.throws(() => createRoutingPolicy('preble', { window: 1 }), /window/);
});
