import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RoutingDecision } from '../../core/decision.ts';
import { makeRequest, type Request, type Slo } from '../../core/request.ts';
import { Rng } from '../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import { perfModelFor } from '../../model/perf.ts';
import { runRoutingConformance, testCluster } from '../routing/conformance.ts';
import type { PolicyContext } from '../routing/types.ts';
import {
  checkPairPolicy,
  createPairPolicy,
  isPdPairPolicy,
  type PairPolicy,
  PD_PAIR_POLICIES,
  type PdPairPolicyName,
} from './pair.ts';

// Price every test instance as Llama 3.1 8B on one H100 (the test cluster names its model 'default').
const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
const context: PolicyContext = { perfModel: () => perf };
const pair = (name: PdPairPolicyName, params: Record<string, unknown> = {}): PairPolicy =>
  createPairPolicy(name, params, context);

// Every side of every pair is a routing policy and passes the shared suite. Mooncake's sides reject
// the suite's 100,000-token prompt under default SLOs (rightly), so they run with SLOs nothing misses.
for (const name of PD_PAIR_POLICIES) {
  const params = name === 'mooncake' ? { ttftSloMs: 1e9, tpotSloMs: 1e9 } : {};
  runRoutingConformance(`pair ${name} (prefill side)`, () => pair(name, params).prefill);
  runRoutingConformance(`pair ${name} (decode side)`, () => pair(name, params).decode);
}

/** An idle pool of `n` instances of `role`, ids `${prefix}0..`, with `fields` on top. */
function pool(
  prefix: string,
  n: number,
  fields: (i: number) => Partial<InstanceView> = () => ({}),
): ClusterView {
  const view = testCluster(n, (i) => ({
    id: `${prefix}${i}`,
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    pendingPrefillTokens: 0,
    ...fields(i),
  }));
  return view;
}

/** A prompt of `blocks` 512-token chain blocks of `family`, plus `extra` tokens of its own. */
function prompt(id: string, family: number, blocks: number, extra = 0, slo?: Slo): Request {
  const hashes = Array.from({ length: blocks + (extra > 0 ? 1 : 0) }, (_, i) =>
    i < blocks ? family * 1000 + i : 900_000 + family,
  );
  return makeRequest({
    id,
    inputTokens: blocks * 512 + extra,
    maxTokens: 64,
    arrivalMs: 0,
    prefix: { blockTokens: 512, hashes },
    slo,
  });
}

function routed(d: RoutingDecision): string {
  assert.equal(d.kind, 'route', JSON.stringify(d));
  return d.kind === 'route' ? d.instanceId : '';
}

/** Runs one request through a pair the way both hosts do: prefill pick, its hooks, then decode pick. */
function through(p: PairPolicy, prefillView: ClusterView, decodeView: ClusterView, r: Request, rng: Rng) {
  const prefill = routed(p.prefill.decide(prefillView, r, rng));
  p.prefill.onRouted?.(r, prefill, 0);
  p.prefill.onFirstToken?.(r, prefill, 0);
  p.prefill.onCompleted?.(r, prefill, 0, 1);
  const decode = routed(p.decode.decide(decodeView, r, rng));
  p.decode.onRouted?.(r, decode, 0);
  return { prefill, decode };
}

test('pair: the names, two distinct policies per pair, unknown names and parameters refused', () => {
  for (const name of PD_PAIR_POLICIES) {
    const p = pair(name);
    assert.equal(p.name, name);
    assert.notEqual(p.prefill, p.decode);
    assert.equal(p.prefill.name, `${name}/prefill`);
    assert.equal(p.decode.name, `${name}/decode`);
    assert.ok(isPdPairPolicy(name));
  }
  assert.equal(isPdPairPolicy('least-request'), false);
  assert.throws(
    () => createPairPolicy('nope' as PdPairPolicyName, {}, context),
    /SY_ERR_UNKNOWN_NAME|unknown P\/D pair policy 'nope'.*mooncake/,
  );
  assert.throws(
    () => checkPairPolicy('load-aware', { kvWeight: 1 }),
    /kvWeight.*valid: inFlightWeight, kvUsageWeight/,
  );
  assert.throws(() => checkPairPolicy('mooncake', { ttftSloMs: -1 }), /ttftSloMs/);
  checkPairPolicy('mooncake', { ttftSloMs: 500, link: 'tcp-100' });
});

test('round-robin: each pool alternates with its own counter', () => {
  const p = pair('round-robin');
  const prefillView = pool('p', 2, () => ({ role: 'prefill' }));
  const decodeView = pool('d', 2, () => ({ role: 'decode' }));
  const rng = new Rng(1);
  const seen = Array.from({ length: 6 }, (_, k) =>
    through(p, prefillView, decodeView, prompt(`r${k}`, k, 1), rng),
  );
  // One counter shared by both picks would advance twice per request: p0 and d1 forever.
  assert.deepEqual(
    seen.map((s) => s.prefill),
    ['p0', 'p1', 'p0', 'p1', 'p0', 'p1'],
  );
  assert.deepEqual(
    seen.map((s) => s.decode),
    ['d0', 'd1', 'd0', 'd1', 'd0', 'd1'],
  );
});

test('load-aware: prefill by fewest queued prompt tokens, decode by free KV and fewest in flight', () => {
  const p = pair('load-aware');
  const rng = new Rng(3);
  const prefillView = pool('p', 3, (i) => ({ pendingPrefillTokens: [9000, 200, 4000][i] as number }));
  // In-flight requests alone would pick p0 (fewest); queued tokens say p1.
  const withInFlight = pool('p', 3, (i) => ({
    pendingPrefillTokens: [9000, 200, 4000][i] as number,
    inFlight: [1, 5, 3][i] as number,
  }));
  for (let seed = 0; seed < 8; seed++) {
    assert.equal(routed(p.prefill.decide(prefillView, prompt('r', 1, 2), new Rng(seed))), 'p1');
    assert.equal(routed(p.prefill.decide(withInFlight, prompt('r', 1, 2), new Rng(seed))), 'p1');
  }
  // d2: least KV used and fewest in flight.
  const decodeView = pool('d', 3, (i) => ({
    kvUsage: [0.8, 0.6, 0.1][i] as number,
    inFlight: [40, 30, 5][i] as number,
  }));
  assert.equal(routed(p.decode.decide(decodeView, prompt('r', 1, 2), rng)), 'd2');
  // Equal KV as last scraped (stale): the fresh in-flight count decides.
  const stale = pool('d', 3, (i) => ({ kvUsage: 0.5, inFlight: [7, 2, 9][i] as number }));
  assert.equal(routed(p.decode.decide(stale, prompt('r', 1, 2), rng)), 'd1');
  // The weights are parameters: KV alone ignores in-flight.
  const kvOnly = pair('load-aware', { inFlightWeight: 0 });
  const skew = pool('d', 2, (i) => ({ kvUsage: [0.2, 0.3][i] as number, inFlight: [50, 0][i] as number }));
  assert.equal(routed(kvOnly.decode.decide(skew, prompt('r', 1, 2), rng)), 'd0');
  assert.equal(routed(p.decode.decide(skew, prompt('r', 1, 2), rng)), 'd1');
});

test('prefix-aware: the prefill follows the cached prefix unless its holder is queued up', () => {
  const p = pair('prefix-aware');
  const prefillView = pool('p', 4, () => ({ role: 'prefill' }));
  const decodeView = pool('d', 2, () => ({ role: 'decode' }));
  const rng = new Rng(5);
  const first = through(p, prefillView, decodeView, prompt('warm', 7, 16), rng).prefill;
  // The same 8,192-token prefix with a new turn: every seed goes back to the instance that holds it.
  for (let k = 0; k < 10; k++) {
    const r = prompt(`turn${k}`, 7, 16, 300);
    assert.equal(routed(p.prefill.decide(prefillView, r, new Rng(100 + k))), first);
  }
  // Queue 60,000 prompt tokens on the holder (routed, no first token yet): the cache no longer pays.
  for (let k = 0; k < 6; k++) p.prefill.onRouted?.(prompt(`q${k}`, 50 + k, 20), first, 0);
  const r = prompt('late', 7, 16, 300);
  assert.notEqual(routed(p.prefill.decide(prefillView, r, new Rng(9))), first);
  // A cold prompt goes to an instance with nothing queued, not the busy holder.
  assert.notEqual(routed(p.prefill.decide(prefillView, prompt('cold', 99, 4), new Rng(9))), first);
});

test('mooncake: the prefill side takes a longer cached prefix held elsewhere when fetching it pays', () => {
  const p = pair('mooncake');
  p.prefill.onRouted?.(prompt('warm', 2, 64), 'p2', 0); // 32,768 tokens now cached on p2
  const r = prompt('r', 2, 64, 100);
  // Idle pool: p2 computes 100 tokens, the others would fetch 32k tokens first.
  assert.equal(routed(p.prefill.decide(pool('p', 4), r, new Rng(1))), 'p2');
  // p2 has 16k tokens queued (~0.5 s): fetching the prefix over RoCE to an idle instance is quicker.
  const p2Busy = pool('p', 4, (i) => ({ pendingPrefillTokens: i === 2 ? 16_384 : 0 }));
  assert.notEqual(routed(p.prefill.decide(p2Busy, r, new Rng(1))), 'p2');
  // Over TCP the fetch (~0.8 s) costs more than p2's queue: back to the holder.
  const slow = pair('mooncake', { link: 'tcp-100' });
  slow.prefill.onRouted?.(prompt('warm', 2, 64), 'p2', 0);
  assert.equal(routed(slow.prefill.decide(p2Busy, r, new Rng(1))), 'p2');
});

test('mooncake: the prefill side rejects when no prefill instance meets the TTFT SLO', () => {
  const p = pair('mooncake');
  const swamped = pool('p', 2, () => ({ pendingPrefillTokens: 400_000 }));
  const d = p.prefill.decide(swamped, prompt('r', 3, 2), new Rng(1));
  assert.equal(d.kind, 'reject');
  if (d.kind === 'reject') {
    assert.equal(d.code, 'SY_ERR_SLO_UNREACHABLE');
    assert.match(d.reason, /TTFT/);
    assert.ok(d.retryAfterMs !== undefined && d.retryAfterMs > 1000, `${d.retryAfterMs}`);
  }
  // A prefill instance's own batch is not the TPOT the request will see: a tight TPOT SLO over
  // prefill instances with heavy batches does not refuse (the plain mooncake policy would).
  const heavy = pool('p', 2, () => ({ running: 200, kvUsage: 0.9 }));
  const tight = prompt('t', 3, 2, 0, { ttftMs: 5000, tpotMs: 5 });
  assert.equal(p.prefill.decide(heavy, tight, new Rng(1)).kind, 'route');
});

test('mooncake: the decode side takes the least estimated TPOT and rejects when none meets the SLO', () => {
  const p = pair('mooncake');
  const slo = { ttftMs: 5000, tpotMs: 12 };
  // d0: 200 sequences over 144k tokens of KV; d1: 20 sequences, little KV; d2 as d0.
  const decodeView = pool('d', 3, (i) =>
    i === 1 ? { running: 20, inFlight: 20, kvUsage: 0.05 } : { running: 200, inFlight: 200, kvUsage: 0.9 },
  );
  assert.equal(routed(p.decode.decide(decodeView, prompt('r', 4, 2, 0, slo), new Rng(1))), 'd1');
  // Host accounting counts sequences the last scrape has not seen: d1's 20 running are 240 in flight.
  const unseen = pool('d', 2, (i) =>
    i === 0 ? { running: 100, inFlight: 100, kvUsage: 0.5 } : { running: 20, inFlight: 240, kvUsage: 0.5 },
  );
  assert.equal(routed(p.decode.decide(unseen, prompt('r', 4, 2, 0, slo), new Rng(1))), 'd0');
  const allHeavy = pool('d', 2, () => ({ running: 200, inFlight: 200, kvUsage: 0.9 }));
  const d = p.decode.decide(allHeavy, prompt('r', 4, 2, 0, slo), new Rng(1));
  assert.equal(d.kind, 'reject');
  if (d.kind === 'reject') {
    assert.equal(d.code, 'SY_ERR_SLO_UNREACHABLE');
    assert.match(d.reason, /decode pool: estimated TPOT [\d.]+ ms .* TPOT budget 12\.0 ms/);
    assert.ok(d.retryAfterMs !== undefined && d.retryAfterMs >= 1);
  }
  // Without early rejection the least bad is taken; slack tolerates it.
  assert.equal(
    pair('mooncake', { rejectEarly: false }).decode.decide(allHeavy, prompt('r', 4, 2, 0, slo), new Rng(1))
      .kind,
    'route',
  );
  assert.equal(
    pair('mooncake', { sloSlack: 3 }).decode.decide(allHeavy, prompt('r', 4, 2, 0, slo), new Rng(1)).kind,
    'route',
  );
});

test('mooncake: the decode side counts the prompts of requests sent but not yet in the batch', () => {
  const p = pair('mooncake');
  const slo = { ttftMs: 5000, tpotMs: 1e9 };
  // Both hold 10 requests in flight. d0's are all in its scraped batch; d1's batch has 2 and 8 more
  // are on the way (picked at arrival, still prefilling), their KV not in d1's scraped usage yet.
  const decodeView = pool('d', 2, (i) =>
    i === 0 ? { running: 10, inFlight: 10, kvUsage: 0.2 } : { running: 2, inFlight: 10, kvUsage: 0.1 },
  );
  const r = prompt('r', 4, 2, 0, slo);
  // Nothing learnt yet: the 8 inbound are priced at this 1,024-token prompt, so d1 looks lighter.
  assert.equal(routed(p.decode.decide(decodeView, r, new Rng(1))), 'd1');
  // The pool has been finishing 60,000-token prompts: 8 of those on the way outweigh d0's KV.
  for (let i = 0; i < 50; i++) {
    const done = makeRequest({ id: `done${i}`, inputTokens: 60_000, maxTokens: 64, arrivalMs: 0 });
    p.decode.onCompleted?.(done, 'd0', 1000, 64);
  }
  assert.equal(routed(p.decode.decide(decodeView, r, new Rng(1))), 'd0');
});

test('every pair decides the decode side at the prefill end by default; mooncake at arrival on request', () => {
  const decodeAt = Object.fromEntries(PD_PAIR_POLICIES.map((name) => [name, pair(name).decodeAt]));
  assert.deepEqual(decodeAt, {
    'round-robin': 'prefill-end',
    'load-aware': 'prefill-end',
    'prefix-aware': 'prefill-end',
    mooncake: 'prefill-end',
  });
  assert.equal(pair('mooncake', { decodeAt: 'arrival' }).decodeAt, 'arrival');
  assert.throws(() => pair('mooncake', { decodeAt: 'later' }), /decodeAt/);
  assert.throws(() => pair('load-aware', { decodeAt: 'arrival' }), /decodeAt/);
});
