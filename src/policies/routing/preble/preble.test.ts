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

/** i3 caches family 1 (16 blocks, 8,192 tokens) and carries 20 more requests of load, in flight. */
function loadedHolder(params: Record<string, unknown> = {}): RoutingPolicy {
  const policy = create(params);
  policy.onRouted?.(prompt('doc', 1, 16), 'i3', 0);
  for (let k = 0; k < 20; k++) policy.onRouted?.(prompt(`busy${k}`, 100 + k, 8), 'i3', 0);
  return policy;
}

test('preble: exploits a long cached prefix when its holder is not overloaded', () => {
  const policy = create();
  // Every instance has one 8,192-token request in flight; i3's shares the new request's prefix.
  for (const [k, id] of ['i0', 'i1', 'i2', 'i3'].entries())
    policy.onRouted?.(prompt(id, 1 + k * 10, 16), id, 0);
  policy.onRouted?.(prompt('doc', 31, 16), 'i3', 0);
  // 8,192 of 8,704 tokens cached on i3 (cached > missed): exploit, though i3 carries more.
  for (let seed = 0; seed < 10; seed++)
    assert.equal(routed(policy, at(1000), prompt('q', 31, 16, 1), seed), 'i3');
  // A higher exploit ratio (cached must exceed 20x missed) turns it into exploration.
  const strict = create({ exploitRatio: 20 });
  for (const [k, id] of ['i0', 'i1', 'i2', 'i3'].entries())
    strict.onRouted?.(prompt(id, 1 + k * 10, 16), id, 0);
  strict.onRouted?.(prompt('doc', 31, 16), 'i3', 0);
  assert.notEqual(routed(strict, at(1000), prompt('q', 31, 16, 1)), 'i3');
});

test('preble: explores to the least loaded instance for a short shared prefix', () => {
  const policy = loadedHolder();
  // 1,024 of 9,216 tokens cached on i3 (cached < missed): explore; i3's load outweighs its saving.
  for (let seed = 0; seed < 10; seed++)
    assert.notEqual(routed(policy, at(1000), prompt('q', 1, 2, 16), seed), 'i3');
});

test('preble: rebalances a hot prefix off an overloaded holder, which replicates it', () => {
  const policy = loadedHolder();
  // i3 holds the prefix but carries 20 requests in flight: more than twice an idle instance's
  // cost even with the prefill there, so the request goes elsewhere ...
  const first = routed(policy, at(1000), prompt('q1', 1, 16, 1));
  assert.notEqual(first, 'i3');
  policy.onRouted?.(prompt('q1', 1, 16, 1), first, 1000);
  policy.onCompleted?.(prompt('q1', 1, 16, 1), first, 1100, 128);
  // ... where the prefix now has a replica: the next request of it exploits that replica.
  for (let seed = 0; seed < 10; seed++)
    assert.equal(routed(policy, at(1100), prompt('q2', 1, 16, 1), seed), first);
  // Without rebalancing (an unreachable ratio) it stays on the holder.
  assert.equal(routed(loadedHolder({ rebalanceRatio: 1e9 }), at(1000), prompt('q1', 1, 16, 1)), 'i3');
});

test('preble: among instances with the longest match, exploits the least loaded', () => {
  const policy = loadedHolder({ rebalanceRatio: 1e9 });
  policy.onRouted?.(prompt('doc', 1, 16), 'i1', 0);
  assert.equal(routed(policy, at(1000), prompt('q', 1, 16, 1)), 'i1');
});

test('preble: a finished request leaves the decode load', () => {
  const policy = loadedHolder();
  const short = prompt('q', 1, 2, 16);
  assert.notEqual(routed(policy, at(1000), short), 'i3');
  // The 20 requests finish: what is left of i3's load is their prefill, still in the window ...
  for (let k = 0; k < 20; k++) policy.onCompleted?.(prompt(`busy${k}`, 100 + k, 8), 'i3', 2000, 128);
  policy.onCompleted?.(prompt('doc', 1, 16), 'i3', 2000, 128);
  assert.notEqual(routed(policy, at(2000), short), 'i3');
  // ... and with the in-flight decode and the window both gone, the 1,024 cached tokens win.
  assert.equal(routed(policy, at(200_000), short), 'i3');
});

test('preble: the load counts only the recent window', () => {
  const policy = loadedHolder({ windowMs: 60_000, decodeLoad: 'window' });
  const short = prompt('q', 1, 2, 16);
  assert.notEqual(routed(policy, at(1000), short), 'i3');
  // A minute later i3's history has left the window: its cached 1,024 tokens make it the cheapest.
  assert.equal(routed(policy, at(61_000), short), 'i3');
});

test('preble: the per-instance window is bounded', () => {
  // With room for one request, i3's window holds only its last routed one, a 512-token prompt with
  // one output token: less than the prefill its cached 1,024 tokens save.
  const policy = loadedHolder({ windowRequestsMax: 1, decodeLoad: 'window' });
  policy.onRouted?.({ ...prompt('tiny', 77, 1), maxTokens: 1 }, 'i3', 0);
  assert.equal(routed(policy, at(1000), prompt('q', 1, 2, 16)), 'i3');
});

test('preble: without shared prefixes the shares stay balanced', () => {
  const policy = create();
  const rng = new Rng(7);
  const shares = new Map<string, number>();
  const open: { request: Request; instance: string }[] = [];
  for (let k = 0; k < 800; k++) {
    // Unique prompts of 1-24 blocks; a request finishes about 8 arrivals later.
    const request = prompt(`u${k}`, 10_000 + k, 0, 1 + rng.int(24));
    const instance = routed(policy, at(k * 100), request, k);
    policy.onRouted?.(request, instance, k * 100);
    shares.set(instance, (shares.get(instance) ?? 0) + 1);
    open.push({ request, instance });
    if (open.length > 8) {
      const done = open.shift() as { request: Request; instance: string };
      policy.onCompleted?.(done.request, done.instance, k * 100, 128);
    }
  }
  assert.equal(shares.size, 4);
  for (const [id, n] of shares) assert.ok(n >= 160 && n <= 240, `${id} got ${n} of 800`);
});

test('preble: a hot shared prefix is exploited, then replicated as its load grows', () => {
  const policy = create();
  const order: string[] = [];
  const holders = new Set<string>();
  let replications = 0;
  for (let k = 0; k < 200; k++) {
    const request = prompt(`h${k}`, 1, 16, 1); // 8,192 shared tokens, 512 of its own
    const id = routed(policy, at(k * 100), request, k);
    if (k > 0 && !holders.has(id)) replications++;
    holders.add(id);
    order.push(id);
    policy.onRouted?.(request, id, k * 100);
    policy.onCompleted?.(request, id, k * 100 + 50, 128); // finishes before the next arrives
  }
  // The first requests all exploit the one holder ...
  assert.equal(new Set(order.slice(0, 5)).size, 1);
  // ... whose windowed prefill load grows until rebalancing replicates the prefix onto every instance,
  assert.equal(holders.size, 4);
  // and every other request goes to an instance that holds it.
  assert.equal(replications, 3);
});

test('preble: the catalogue builds it and rejects an unknown parameter by name', () => {
  assert.equal(createRoutingPolicy('preble').name, 'preble');
  assert.throws(() => createRoutingPolicy('preble', { window: 1 }), /window/);
});
