import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routeTo } from '../../../core/decision.ts';
import { makeRequest, type Request, type Slo } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../../core/view.ts';
import { perfModelFor } from '../../../model/perf.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createRoutingPolicy } from '../registry.ts';
import type { PolicyContext, RoutingPolicy } from '../types.ts';
import { createGoodput, goodputParams } from './goodput.ts';

// The test cluster names its model 'default'; price every instance as Llama 3.1 8B on one H100.
const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
const context: PolicyContext = { perfModel: () => perf };
const create = (params: Record<string, unknown> = {}): RoutingPolicy =>
  createGoodput(goodputParams.parse(params), context);

// The suite's 100,000-token prompt cannot meet a 2 s TTFT anywhere, so with rejection on it is
// rightly refused; the suite runs once without rejection and once with SLOs nothing misses.
runRoutingConformance('goodput', () => create({ rejectEarly: false }));
runRoutingConformance('goodput (rejecting)', () => create({ ttftSloMs: 1e9, tpotSloMs: 1e9 }));

const SLO: Slo = { ttftMs: 5000, tpotMs: 100 };

/** A prompt of `chainBlocks` 512-token chain blocks from `family`, plus `extra` unshared tokens. */
function prompt(
  id: string,
  family: number,
  chainBlocks: number,
  extra = 0,
  output = 256,
  slo = SLO,
): Request {
  const hashes = Array.from({ length: chainBlocks + (extra > 0 ? 1 : 0) }, (_, i) =>
    i < chainBlocks ? family * 1000 + i : 900_000 + family,
  );
  return makeRequest({
    id,
    inputTokens: chainBlocks * 512 + extra,
    maxTokens: output,
    arrivalMs: 0,
    prefix: { blockTokens: 512, hashes },
    slo,
  });
}

/**
 * An idle pool of `n` instances whose engine signals say whatever `fields` says: the policy must not
 * care, it prices its own accounting. 28,000 blocks of 16 tokens: an 8B model's KV on one H100.
 */
const pool = (n = 4, fields: (i: number) => Partial<InstanceView> = () => ({})): ClusterView =>
  testCluster(n, (i) => ({
    kvBlocksTotal: 28_000,
    pendingPrefillTokens: 0,
    running: 0,
    waiting: 0,
    inFlight: 0,
    kvUsage: 0,
    ...fields(i),
  }));

/** Decides and, when routed, tells the policy, as a host does. */
function route(policy: RoutingPolicy, view: ClusterView, request: Request, seed = 1) {
  const d = policy.decide(view, request, new Rng(seed));
  if (d.kind === 'route') policy.onRouted?.(request, d.instanceId, view.nowMs);
  return d;
}

test('goodput: prices its own accounting of queued prefill, not the engines (possibly stale) signals', () => {
  const policy = create();
  // Only i0 is open: a 24k-token prompt goes there (about 1.2 s of prefill).
  const onlyI0 = pool(2, (i) => ({ draining: i === 1 }));
  assert.deepEqual(route(policy, onlyI0, prompt('big', 1, 48)), routeTo('i0'));
  // The scrape still says i0 is idle and i1 is swamped; the router knows better.
  const stale = pool(2, (i) =>
    i === 1 ? { pendingPrefillTokens: 500_000, running: 200, kvUsage: 0.95 } : {},
  );
  for (let seed = 0; seed < 10; seed++) {
    assert.deepEqual(stale.instances[0]?.pendingPrefillTokens, 0);
    assert.deepEqual(policy.decide(stale, prompt('next', 2, 8), new Rng(seed)), routeTo('i1'));
  }
  // Once the big prompt's first token is out, i0's queue is empty again; i1 now holds one.
  policy.onFirstToken?.(prompt('big', 1, 48), 'i0', 1200);
  policy.onCompleted?.(prompt('big', 1, 48), 'i0', 5000);
  const later = { ...pool(2, (i) => ({ draining: i === 0 })), nowMs: 5000 };
  assert.deepEqual(route(policy, later, prompt('big2', 4, 48)), routeTo('i1'));
  const now = { ...pool(2), nowMs: 5000 };
  for (let seed = 0; seed < 10; seed++)
    assert.deepEqual(policy.decide(now, prompt('next', 2, 8), new Rng(seed)), routeTo('i0'));
});

test('goodput: follows a conversation to the instance holding its prefix', () => {
  const policy = create();
  const view = pool(4, (i) => ({ draining: i !== 2 }));
  const turn1 = prompt('t1', 7, 40);
  assert.deepEqual(route(policy, view, turn1), routeTo('i2'));
  policy.onFirstToken?.(turn1, 'i2', 900);
  policy.onCompleted?.(turn1, 'i2', 4000);
  // Turn 2 extends turn 1: 20k tokens cached on i2, 300 new ones.
  for (let seed = 0; seed < 10; seed++)
    assert.deepEqual(policy.decide(pool(4), prompt('t2', 7, 40, 300), new Rng(seed)), routeTo('i2'));
});

test('goodput: refuses what no instance can serve within the TTFT SLO, with a Retry-After', () => {
  const policy = create();
  const one = pool(1);
  // Three 60k-token prompts with lenient SLOs queue about 8 s of prefill on the only instance.
  const lenient = { ttftMs: 60_000, tpotMs: 10_000 };
  for (let r = 0; r < 3; r++)
    assert.equal(route(policy, one, prompt(`q${r}`, 10 + r, 117, 0, 256, lenient)).kind, 'route');
  const d = policy.decide(one, prompt('late', 20, 4), new Rng(1));
  assert.equal(d.kind, 'reject');
  if (d.kind !== 'reject') return;
  assert.equal(d.code, 'SY_ERR_SLO_UNREACHABLE');
  assert.match(d.reason, /TTFT/);
  assert.ok(
    d.retryAfterMs !== undefined && d.retryAfterMs > 2000 && d.retryAfterMs <= 60_000,
    `${d.retryAfterMs}`,
  );
  // A lenient SLO, or no early rejection, routes it. (Lenient in TPOT too: 8 s of prefill just
  // routed there says the instance spends nearly all its time in prefill, which slows decodes.)
  assert.equal(policy.decide(one, prompt('late', 20, 4, 0, 256, lenient), new Rng(1)).kind, 'route');
  assert.equal(create({ rejectEarly: false }).decide(one, prompt('late', 20, 4), new Rng(1)).kind, 'route');
  // A prompt whose own prefill alone exceeds the budget is refused even on an idle pool.
  const huge = prompt('huge', 30, 200); // 102k tokens: about 14 s of prefill
  assert.equal(create().decide(pool(4), huge, new Rng(1)).kind, 'reject');
});

test('goodput: keeps a long prefill off the instance where a short answer is decoding', () => {
  const policy = create();
  // A 4-token answer on i0: its TPOT (3 gaps, 100 ms SLO) absorbs under 300 ms of stall, one chunk.
  const short = prompt('short', 40, 2, 0, 4);
  assert.deepEqual(
    route(
      policy,
      pool(2, (i) => ({ draining: i === 1 })),
      short,
    ),
    routeTo('i0'),
  );
  policy.onFirstToken?.(short, 'i0', 60);
  // A 16k-token prompt: i0 is otherwise the better pick (i1 holds a queued prompt), yet it goes to i1.
  const queued = prompt('queued', 41, 2);
  assert.deepEqual(
    route(
      policy,
      pool(2, (i) => ({ draining: i === 0 })),
      queued,
    ),
    routeTo('i1'),
  );
  const long = prompt('long', 42, 32);
  const view = { ...pool(2), nowMs: 60 };
  for (let seed = 0; seed < 5; seed++)
    assert.deepEqual(policy.decide(view, long, new Rng(seed)), routeTo('i1'));
  // With i1 closed, admitting it would push the short answer past its SLO: refused (harmMax 0) ...
  const onlyI0 = { ...pool(2, (i) => ({ draining: i === 1 })), nowMs: 60 };
  const d = policy.decide(onlyI0, long, new Rng(1));
  assert.equal(d.kind, 'reject');
  if (d.kind === 'reject') assert.match(d.reason, /past their TPOT SLO/);
  // ... unless one such casualty is tolerated, or once the short answer is done.
  assert.deepEqual(create({ harmMax: 1 }).decide(onlyI0, long, new Rng(1)).kind, 'route');
  policy.onCompleted?.(short, 'i0', 100);
  assert.deepEqual(policy.decide(onlyI0, long, new Rng(1)), routeTo('i0'));
});

test('goodput: counts KV at its peak and refuses what would preempt others everywhere', () => {
  const policy = create({ ttftSloMs: 1e9, tpotSloMs: 1e9 });
  // 1,000 blocks of 16 tokens: 16,000 tokens of KV, 14,400 under the 0.9 headroom.
  const small = pool(2, () => ({ kvBlocksTotal: 1000 }));
  const a = prompt('a', 50, 20, 0, 2000, { ttftMs: 1e9, tpotMs: 1e9 }); // 12,240 tokens at peak
  const first = route(policy, small, a);
  assert.equal(first.kind, 'route');
  const other = first.kind === 'route' && first.instanceId === 'i0' ? 'i1' : 'i0';
  const b = prompt('b', 51, 20, 0, 2000, { ttftMs: 1e9, tpotMs: 1e9 });
  assert.deepEqual(route(policy, small, b), routeTo(other));
  const c = policy.decide(small, prompt('c', 52, 20, 0, 2000, { ttftMs: 1e9, tpotMs: 1e9 }), new Rng(1));
  assert.equal(c.kind, 'reject');
  if (c.kind === 'reject') assert.match(c.reason, /KV/);
  assert.equal(
    create({ ttftSloMs: 1e9, tpotSloMs: 1e9, rejectOnKvFull: false }).decide(small, b, new Rng(1)).kind,
    'route',
  );
});

test('goodput: parameters are validated strictly', () => {
  assert.throws(() => createRoutingPolicy('goodput', { ttftSlack: 0 }), /ttftSlack/);
  assert.throws(() => createRoutingPolicy('goodput', { harmMax: 0.5 }), /harmMax/);
  assert.throws(() => createRoutingPolicy('goodput', { bogus: 1 }), /bogus|unrecognized/i);
  assert.equal(createRoutingPolicy('goodput').name, 'goodput');
});
