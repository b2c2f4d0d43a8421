import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../../core/view.ts';
import { engineBlockHashes } from '../../../engine-core/prefix.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createRoutingPolicy } from '../registry.ts';
import type { RoutingPolicy } from '../types.ts';
import { createKvEvents, kvEventsParams } from './kv-events.ts';

runRoutingConformance('kv-events', () => createKvEvents());
runRoutingConformance('kv-events (longest prefix)', () =>
  createKvEvents(kvEventsParams.parse({ score: 'longest-prefix' })),
);
runRoutingConformance('kv-events (load guard)', () =>
  createKvEvents(kvEventsParams.parse({ loadGuard: true })),
);

/** A prompt of `chainBlocks` 512-token chain blocks (Mooncake-style), all from `family`. */
function prompt(id: string, family: number, chainBlocks: number): Request {
  const hashes = Array.from({ length: chainBlocks }, (_, i) => family * 1000 + i);
  return makeRequest({
    id,
    inputTokens: chainBlocks * 512,
    maxTokens: 8,
    arrivalMs: 0,
    prefix: { blockTokens: 512, hashes },
  });
}

/**
 * A pool whose KV is idle (nothing in use, no prefill pending), so the default cost reduces to the
 * uncached prompt: the mechanics of matching below are seen as they are.
 */
function idle(n: number, fields: (i: number) => Partial<InstanceView>): ClusterView {
  return testCluster(n, (i) => ({ kvUsage: 0, pendingPrefillTokens: 0, waiting: 0, ...fields(i) }));
}

/** i0 is the least loaded; i1 and i2 are busier. */
const view: ClusterView = idle(3, (i) => ({ inFlight: [0, 3, 5][i] ?? 0 }));

function routed(policy: RoutingPolicy, request: Request, v: ClusterView = view, seed = 1): string {
  const d = policy.decide(v, request, new Rng(seed));
  assert.equal(d.kind, 'route');
  return d.kind === 'route' ? d.instanceId : '';
}

function stored(policy: RoutingPolicy, instanceId: string, hashes: readonly number[]): void {
  policy.onKvEvent?.(instanceId, { type: 'BlockStored', hashes, parentHash: undefined }, 0);
}

test('kv-events: matches only what BlockStored reported, and forgets on BlockRemoved', () => {
  const policy = createKvEvents();
  const r = prompt('r', 1, 4);
  // Nothing reported: least in-flight.
  assert.equal(routed(policy, r), 'i0');
  const engine = engineBlockHashes(r.prefix, r.inputTokens, 16);
  stored(policy, 'i2', engine);
  assert.equal(routed(policy, r), 'i2');
  // i1 reports the first half: i2 still has the longer match.
  stored(policy, 'i1', engine.slice(0, 64));
  assert.equal(routed(policy, r), 'i2');
  // The engine evicts i2's first block: nothing after it can be hit there any more.
  policy.onKvEvent?.('i2', { type: 'BlockRemoved', hashes: [engine[0] as number] }, 1);
  assert.equal(routed(policy, r), 'i1');
  policy.onKvEvent?.('i1', { type: 'AllBlocksCleared' }, 2);
  assert.equal(routed(policy, r), 'i0');
});

test('kv-events: a hole in the reported chain ends the match there', () => {
  const policy = createKvEvents();
  const r = prompt('r', 2, 2);
  const engine = engineBlockHashes(r.prefix, r.inputTokens, 16);
  // i2 holds blocks 0..9 and 11..63 (not 10); i1 holds 0..19.
  stored(policy, 'i2', [...engine.slice(0, 10), ...engine.slice(11)]);
  stored(policy, 'i1', engine.slice(0, 20));
  assert.equal(routed(policy, r), 'i1');
});

test('kv-events: hashes the prompt at each instance block size and compares matched tokens', () => {
  const policy = createKvEvents();
  const r = prompt('r', 3, 2);
  const v = idle(3, (i) => ({ inFlight: [0, 3, 5][i] ?? 0, blockSize: i === 2 ? 32 : 16 }));
  // i1 (16-token blocks) holds 12 blocks = 192 tokens; i2 (32-token blocks) holds 8 = 256 tokens.
  stored(policy, 'i1', engineBlockHashes(r.prefix, r.inputTokens, 16).slice(0, 12));
  stored(policy, 'i2', engineBlockHashes(r.prefix, r.inputTokens, 32).slice(0, 8));
  assert.equal(routed(policy, r, v), 'i2');
  stored(policy, 'i1', engineBlockHashes(r.prefix, r.inputTokens, 16).slice(0, 20));
  assert.equal(routed(policy, r, v), 'i1');
});

test('kv-events: equal matches go to the fewest in-flight, then the fewest waiting', () => {
  const policy = createKvEvents();
  const r = prompt('r', 4, 1);
  const engine = engineBlockHashes(r.prefix, r.inputTokens, 16);
  stored(policy, 'i1', engine);
  stored(policy, 'i2', engine);
  assert.equal(routed(policy, r), 'i1');
  const v = idle(3, (i) => ({ inFlight: [0, 3, 3][i] ?? 0, waiting: [0, 4, 2][i] ?? 0 }));
  assert.equal(routed(policy, r, v), 'i2');
  // Fully tied: the seeded generator decides, so both appear across seeds.
  const tied = idle(3, (i) => ({ inFlight: [0, 3, 3][i] ?? 0 }));
  const seen = new Set<string>();
  for (let seed = 0; seed < 32; seed++) seen.add(routed(policy, r, tied, seed));
  assert.deepEqual([...seen].sort(), ['i1', 'i2']);
});

test('kv-events: the load guard ignores the cache while the pool is imbalanced', () => {
  const guarded = createKvEvents(
    kvEventsParams.parse({ loadGuard: true, loadGuardAbs: 4, loadGuardRel: 1.5 }),
  );
  const plain = createKvEvents();
  const r = prompt('r', 5, 1);
  for (const p of [guarded, plain]) stored(p, 'i2', engineBlockHashes(r.prefix, r.inputTokens, 16));
  const imbalanced = idle(3, (i) => ({ inFlight: [1, 3, 9][i] ?? 0 }));
  assert.equal(routed(plain, r, imbalanced), 'i2');
  assert.equal(routed(guarded, r, imbalanced), 'i0');
  // max - min = 4 is not above the absolute threshold: the cache wins again.
  const balanced = idle(3, (i) => ({ inFlight: [1, 3, 5][i] ?? 0 }));
  assert.equal(routed(guarded, r, balanced), 'i2');
});

/**
 * The holder of a long prefix (i2: the whole 2,048-token prompt cached) is far busier than the rest:
 * 90% of its 10,000 16-token blocks in use and 20,000 prompt tokens waiting for prefill.
 */
const hotHolder = (i: number): Partial<InstanceView> =>
  i === 2
    ? { inFlight: 40, waiting: 25, kvUsage: 0.9, pendingPrefillTokens: 20_000 }
    : { inFlight: i, waiting: 0, kvUsage: 0.1, pendingPrefillTokens: 0 };

test('kv-events: by default a far busier holder of the prefix loses to an idle instance (no hot spot)', () => {
  const policy = createKvEvents();
  const longest = createKvEvents(kvEventsParams.parse({ score: 'longest-prefix' }));
  const r = prompt('r', 8, 4);
  const engine = engineBlockHashes(r.prefix, r.inputTokens, 16);
  for (const p of [policy, longest]) stored(p, 'i2', engine);
  const v = testCluster(3, hotHolder);
  // Saving 2,048 prompt tokens does not pay for 128,000 more tokens of KV and 20,000 of prefill.
  assert.equal(routed(policy, r, v), 'i0');
  // The longest match alone sends it to the hot spot anyway.
  assert.equal(routed(longest, r, v), 'i2');
});

test('kv-events: by default the cached prefix wins while it saves more than the extra load costs', () => {
  const policy = createKvEvents();
  const r = prompt('r', 9, 4);
  stored(policy, 'i2', engineBlockHashes(r.prefix, r.inputTokens, 16));
  // i2 holds 1,600 tokens of KV (100 blocks) more than the others and saves 2,048 of prefill.
  const v = idle(3, (i) => ({ inFlight: [0, 1, 2][i] ?? 0, kvUsage: i === 2 ? 0.01 : 0 }));
  assert.equal(routed(policy, r, v), 'i2');
  // 3,200 tokens more (200 blocks): the saving no longer pays at overlapWeight 1; at 2 it does.
  const busier = idle(3, (i) => ({ inFlight: [0, 1, 2][i] ?? 0, kvUsage: i === 2 ? 0.02 : 0 }));
  assert.equal(routed(policy, r, busier), 'i0');
  const heavy = createKvEvents(kvEventsParams.parse({ overlapWeight: 2 }));
  stored(heavy, 'i2', engineBlockHashes(r.prefix, r.inputTokens, 16));
  assert.equal(routed(heavy, r, busier), 'i2');
});

test('kv-events: prefill already sent to the holder counts against it until its first token', () => {
  const policy = createKvEvents();
  const r = prompt('r', 10, 4);
  stored(policy, 'i2', engineBlockHashes(r.prefix, r.inputTokens, 16));
  const pending = (tokens: number) =>
    idle(3, (i) => ({ inFlight: i, pendingPrefillTokens: i === 2 ? tokens : 0 }));
  assert.equal(routed(policy, r, pending(2000)), 'i2');
  assert.equal(routed(policy, r, pending(2100)), 'i0');
});

test('kv-events: the per-instance bound drops the oldest stored blocks first', () => {
  const policy = createKvEvents(kvEventsParams.parse({ blocksPerInstanceMax: 40 }));
  const a = prompt('a', 6, 1);
  const b = prompt('b', 7, 1);
  stored(policy, 'i2', engineBlockHashes(a.prefix, a.inputTokens, 16));
  stored(policy, 'i2', engineBlockHashes(b.prefix, b.inputTokens, 16));
  // 64 blocks reported, 40 kept: a's first 24 blocks went, so a no longer matches; b does.
  assert.equal(routed(policy, a), 'i0');
  assert.equal(routed(policy, b), 'i2');
});

test('kv-events: the catalogue builds it and rejects an unknown parameter by name', () => {
  assert.equal(createRoutingPolicy('kv-events').name, 'kv-events');
  assert.throws(() => createRoutingPolicy('kv-events', { loadguard: 1 }), /loadguard/);
});

test('kv-events: an exact chain (engine hashes from token ids) is matched as it is, at its own block size', () => {
  const policy = createKvEvents();
  // The engine's own hashes of a 5-block prompt; instances report different block sizes in the view
  // (not scraped yet, or wrong): the exact chain's declared block size is what counts.
  const hashes = [0xdeadbeef, 0x12345678, 0x0badf00d, 0xfeedface, 0x7fffffff];
  const r = makeRequest({
    id: 'x',
    inputTokens: 5 * 16 + 3,
    maxTokens: 8,
    arrivalMs: 0,
    prefix: { blockTokens: 16, hashes, exact: true },
  });
  const v = idle(3, (i) => ({ inFlight: [0, 3, 5][i] ?? 0, blockSize: [16, 32, 64][i] ?? 16 }));
  assert.equal(routed(policy, r, v), 'i0');
  stored(policy, 'i2', hashes.slice(0, 3));
  assert.equal(routed(policy, r, v), 'i2');
  stored(policy, 'i1', hashes);
  assert.equal(routed(policy, r, v), 'i1');
  // Derived (text-chain) engine hashes of the same numbers do not match: exactness is what makes
  // the hashes usable as they are.
  assert.equal(routed(policy, { ...r, prefix: { blockTokens: 16, hashes } }, v), 'i0');
  // A prompt with fewer input tokens than the chain covers matches only its own full blocks.
  const short = { ...r, inputTokens: 2 * 16 };
  stored(policy, 'i0', hashes.slice(0, 2));
  assert.equal(routed(policy, short, v), 'i0');
});
