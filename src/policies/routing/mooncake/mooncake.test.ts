import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request, type Slo } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../../core/view.ts';
import { perfModelFor } from '../../../model/perf.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createRoutingPolicy } from '../registry.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';
import { createMooncake, mooncakeParams } from './mooncake.ts';

// The test cluster names its model 'default'; price every instance as Llama 3.1 8B on one H100.
const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
const context: PolicyContext = { perfModel: () => perf };
const create = (params: Record<string, unknown> = {}): RoutingPolicy =>
  createMooncake(mooncakeParams.parse(params), context);

// The suite's 100,000-token prompt cannot meet a 2 s TTFT on any GPU, so with rejection on it is
// rightly refused; the suite runs once without rejection and once with SLOs nothing misses.
runRoutingConformance('mooncake', () => create({ rejectEarly: false }));
runRoutingConformance('mooncake (rejecting)', () => create({ ttftSloMs: 1e9, tpotSloMs: 1e9 }));

/** A prompt of `chainBlocks` 512-token chain blocks from `family`, plus `extra` unshared tokens. */
function prompt(id: string, family: number, chainBlocks: number, extra = 0, slo?: Slo): Request {
  const hashes = Array.from({ length: chainBlocks + (extra > 0 ? 1 : 0) }, (_, i) =>
    i < chainBlocks ? family * 1000 + i : 999_999,
  );
  return makeRequest({
    id,
    inputTokens: chainBlocks * 512 + extra,
    maxTokens: 64,
    arrivalMs: 0,
    prefix: { blockTokens: 512, hashes },
    slo,
  });
}

const quiet = (fields: (i: number) => Partial<InstanceView> = () => ({})): ClusterView =>
  testCluster(4, (i) => ({
    pendingPrefillTokens: 0,
    running: 0,
    kvUsage: 0,
    inFlight: 0,
    waiting: 0,
    ...fields(i),
  }));

function decide(policy: RoutingPolicy, view: ClusterView, request: Request, seed = 1) {
  return policy.decide(view, request, new Rng(seed));
}

test('mooncake: rejects when no instance can meet the TTFT SLO, with a Retry-After estimate', () => {
  // 400,000 queued prompt tokens everywhere: about 5.5 s of prefill before this request starts.
  const busy = quiet(() => ({ pendingPrefillTokens: 400_000 }));
  const d = decide(create(), busy, prompt('r', 1, 2));
  assert.equal(d.kind, 'reject');
  if (d.kind !== 'reject') return;
  assert.equal(d.code, 'SY_ERR_SLO_UNREACHABLE');
  assert.match(d.reason, /TTFT/);
  // Retry-After is how far the best estimate overshoots the budget: the queue must drain that long.
  const m = /estimated TTFT (\d+) ms .* TTFT budget (\d+) ms/.exec(d.reason);
  assert.ok(m !== null, d.reason);
  const overshootMs = Number(m[1]) - Number(m[2]);
  assert.ok(d.retryAfterMs !== undefined && Math.abs(d.retryAfterMs - overshootMs) <= 1, `${d.retryAfterMs}`);
  assert.ok(d.retryAfterMs > 3000 && d.retryAfterMs < 15_000, `${d.retryAfterMs}`);
  // The same load with one idle instance: routed there.
  const oneFree = quiet((i) => ({ pendingPrefillTokens: i === 3 ? 0 : 400_000 }));
  assert.deepEqual(decide(create(), oneFree, prompt('r', 1, 2)), { kind: 'route', instanceId: 'i3' });
  // Without early rejection, the least bad instance is taken; a request's own SLO overrides the default.
  assert.equal(decide(create({ rejectEarly: false }), busy, prompt('r', 1, 2)).kind, 'route');
  const lenient = prompt('r', 1, 2, 0, { ttftMs: 10_000, tpotMs: 100 });
  assert.equal(decide(create(), busy, lenient).kind, 'route');
});

test('mooncake: routes to the cache holder when its TTFT estimate is lowest', () => {
  const policy = create();
  policy.onRouted?.(prompt('warm', 2, 64), 'i2', 0); // 32,768 tokens now cached on i2
  const r = prompt('r', 2, 64, 100);
  // Idle pool: i2 prefills 100 tokens; the others fetch 32k tokens over RDMA (~190 ms) first.
  for (let seed = 0; seed < 10; seed++) assert.deepEqual(decide(policy, quiet(), r, seed), routeTo('i2'));
  // i2 with 16k tokens queued (~0.5 s): fetching the prefix to an idle instance is now quicker.
  const i2Busy = quiet((i) => ({ pendingPrefillTokens: i === 2 ? 16_384 : 0 }));
  const d = decide(policy, i2Busy, r);
  assert.equal(d.kind, 'route');
  assert.notEqual(d.kind === 'route' ? d.instanceId : '', 'i2');
  // Over kernel TCP on 100 GbE (~5 GB/s) the fetch takes ~0.8 s, longer than i2's queue: back to the holder.
  const slowLink = create({ link: 'tcp-100' });
  slowLink.onRouted?.(prompt('warm', 2, 64), 'i2', 0);
  assert.deepEqual(decide(slowLink, i2Busy, r), routeTo('i2'));
});

test('mooncake: the TTFT estimate counts a remote prefix fetch, so fetching can meet an SLO', () => {
  const policy = create({ ttftSloMs: 1000 });
  policy.onRouted?.(prompt('warm', 3, 64), 'i0', 0);
  // The holder is swamped; recomputing 32k tokens takes ~1.8 s, fetching them ~0.2 s.
  const view = quiet((i) => ({ pendingPrefillTokens: i === 0 ? 100_000 : 0 }));
  const d = decide(policy, view, prompt('r', 3, 64, 10));
  assert.equal(d.kind, 'route');
  // A prompt nobody holds cannot be fetched: 1.8 s of prefill misses the 1 s SLO everywhere.
  const cold = decide(policy, view, prompt('c', 4, 64, 10));
  assert.equal(cold.kind, 'reject');
});

test('mooncake: meets the TPOT SLO by skipping an instance whose batch is too heavy', () => {
  const slo = { ttftMs: 5000, tpotMs: 10 };
  // i0: nothing queued (best TTFT) but 200 sequences decoding over 144k tokens of KV (~13.6 ms/token).
  // i1: 8k tokens queued but almost no decode load. i2, i3: like i0.
  const view = quiet((i) =>
    i === 1
      ? { pendingPrefillTokens: 8192, running: 1, kvUsage: 0.001 }
      : { running: 200, kvUsage: 0.9, kvBlocksTotal: 10_000, blockSize: 16 },
  );
  assert.deepEqual(decide(create(), view, prompt('r', 5, 2, 0, slo)), routeTo('i1'));
  const allHeavy = quiet(() => ({ running: 200, kvUsage: 0.9 }));
  const d = decide(create(), allHeavy, prompt('r', 5, 2, 0, slo));
  assert.equal(d.kind, 'reject');
  if (d.kind === 'reject') {
    assert.equal(d.code, 'SY_ERR_SLO_UNREACHABLE');
    assert.match(d.reason, /TPOT/);
    assert.ok(d.retryAfterMs !== undefined && d.retryAfterMs >= 1);
  }
  // Slack above 1 tolerates it.
  assert.equal(decide(create({ sloSlack: 1.5 }), allHeavy, prompt('r', 5, 2, 0, slo)).kind, 'route');
});

test('mooncake: running decodes slow the queue (interference)', () => {
  // Equal queues; i1 reads 144k tokens of KV every step, i0 none: i0 is faster.
  const view = quiet((i) => ({
    pendingPrefillTokens: 30_000,
    running: i === 1 ? 200 : 0,
    kvUsage: i === 1 ? 0.9 : 0,
  }));
  const two: ClusterView = { nowMs: view.nowMs, instances: view.instances.slice(0, 2) };
  assert.deepEqual(decide(create({ rejectEarly: false }), two, prompt('r', 6, 2)), routeTo('i0'));
  const flipped: ClusterView = {
    nowMs: view.nowMs,
    instances: [two.instances[1], two.instances[0]] as InstanceView[],
  };
  assert.deepEqual(decide(create({ rejectEarly: false }), flipped, prompt('r', 6, 2)), routeTo('i0'));
});

function routeTo(instanceId: string) {
  return { kind: 'route', instanceId };
}

test('mooncake: the catalogue builds it and rejects an unknown parameter by name', () => {
  assert.equal(createRoutingPolicy('mooncake').name, 'mooncake');
  assert.throws(() => createRoutingPolicy('mooncake', { ttftSlo: 1 }), /ttftSlo/);
});
