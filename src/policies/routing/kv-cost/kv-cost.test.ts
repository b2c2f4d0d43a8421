import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { runRoutingConformance, testCluster } from '../conformance.ts';
import { createRoutingPolicy } from '../registry.ts';
import { createKvCost, kvCostParams } from './kv-cost.ts';

runRoutingConformance('kv-cost', () => createKvCost());
runRoutingConformance('kv-cost (temperature 0.5)', () =>
  createKvCost(kvCostParams.parse({ temperature: 0.5 })),
);

/** A prompt of `blocks` 16-token chain blocks whose first `shared` blocks come from `family`. */
function prompt(id: string, family: number, blocks: number, shared = blocks): Request {
  const hashes: number[] = [];
  for (let i = 0; i < blocks; i++) hashes.push(i < shared ? family * 100_000 + i : 900_000_000 + i);
  return makeRequest({
    id,
    inputTokens: blocks * 16,
    maxTokens: 8,
    arrivalMs: 0,
    prefix: { blockTokens: 16, hashes },
  });
}

const idle = testCluster(2, () => ({ inFlight: 0, waiting: 0, running: 0, pendingPrefillTokens: 0 }));

function decideId(policy: ReturnType<typeof createKvCost>, request: Request, seed = 1): string {
  const d = policy.decide(idle, request, new Rng(seed));
  assert.equal(d.kind, 'route');
  return d.kind === 'route' ? d.instanceId : '';
}

test('kv-cost: prefers the cached prefix until its active decode blocks outweigh the overlap', () => {
  const policy = createKvCost();
  const warm = prompt('warm', 1, 64);
  policy.onRouted?.(warm, 'i1', 0);
  policy.onCompleted?.(warm, 'i1', 10);
  // i1 holds all 64 blocks: cost 0 + (0 + 1024) / 16 = 64 against i0's (1024 + 1024) / 16 = 128.
  for (let seed = 0; seed < 20; seed++) assert.equal(decideId(policy, prompt('a', 1, 64), seed), 'i1');
  // Two requests decoding on i1 hold 2048 tokens: 0 + (2048 + 1024) / 16 = 192 > 128.
  for (const id of ['b', 'c']) {
    const r = prompt(id, 1, 64);
    policy.onRouted?.(r, 'i1', 20);
    policy.onFirstToken?.(r, 'i1', 30);
  }
  for (let seed = 0; seed < 20; seed++) assert.equal(decideId(policy, prompt('d', 1, 64), seed), 'i0');
  // Once they finish, the cache wins again.
  policy.onCompleted?.(prompt('b', 1, 64), 'i1', 40);
  policy.onFailed?.(prompt('c', 1, 64), 'i1', 40);
  assert.equal(decideId(policy, prompt('e', 1, 64)), 'i1');
});

test('kv-cost: the overlap weight trades prefill against decode', () => {
  // i1 caches the prompt but one request decodes there: 0 + (1024 + 1024) / 16 = 128 against i0's
  // w x 1024 / 16 + 1024 / 16. With w = 1 that is a tie; w = 2 favours the cache, w = 0.5 the idle one.
  const setUp = (overlapWeight: number) => {
    const policy = createKvCost(kvCostParams.parse({ overlapWeight }));
    const r = prompt('r', 1, 64);
    policy.onRouted?.(r, 'i1', 0);
    policy.onFirstToken?.(r, 'i1', 1);
    return policy;
  };
  assert.equal(decideId(setUp(2), prompt('x', 1, 64)), 'i1');
  assert.equal(decideId(setUp(0.5), prompt('x', 1, 64)), 'i0');
  const tie = setUp(1);
  const seen = new Set<string>();
  for (let seed = 0; seed < 32; seed++) seen.add(decideId(tie, prompt('x', 1, 64), seed));
  assert.deepEqual([...seen].sort(), ['i0', 'i1'], 'ties go either way, by the seeded generator');
});

test('kv-cost: active prefill counts until the first token', () => {
  const policy = createKvCost();
  // i0: a 2048-token prompt still in prefill (2048 prefill + 2048 decode tokens). i1: a 3072-token one
  // past its first token (3072 decode tokens). Beyond what the new request adds everywhere, i0 costs
  // 4096 / 16 and i1 3072 / 16.
  const inPrefill = prompt('p', 7, 128);
  const decoding = prompt('d', 8, 192);
  policy.onRouted?.(inPrefill, 'i0', 0);
  policy.onRouted?.(decoding, 'i1', 0);
  policy.onFirstToken?.(decoding, 'i1', 1);
  const fresh = prompt('f', 9, 64);
  assert.equal(decideId(policy, fresh), 'i1');
  // Its first token moves i0's request to decode only: 2048 / 16 < 3072 / 16.
  policy.onFirstToken?.(inPrefill, 'i0', 5);
  assert.equal(decideId(policy, fresh), 'i0');
  // A second first token for the same request changes nothing.
  policy.onFirstToken?.(inPrefill, 'i0', 6);
  assert.equal(decideId(policy, fresh), 'i0');
});

test('kv-cost: the request ledger is bounded and forgets the oldest', () => {
  const policy = createKvCost(kvCostParams.parse({ requestsTrackedMax: 2 }));
  // Three unfinished 1024-token requests on i1; the bound keeps two: 2 x (1024 prefill + 1024 decode)
  // = 4096 tokens, where all three would be 6144. i0 carries one 2560-token request: 5120 tokens.
  for (const id of ['a', 'b', 'c']) policy.onRouted?.(prompt(id, 10 + id.charCodeAt(0), 64), 'i1', 0);
  policy.onRouted?.(prompt('z', 99, 160), 'i0', 0);
  assert.equal(decideId(policy, prompt('n', 5, 1)), 'i1');
});

test('kv-cost: softmax sampling follows the cost', () => {
  const policy = createKvCost(kvCostParams.parse({ temperature: 0.3 }));
  const warm = prompt('warm', 3, 64);
  policy.onRouted?.(warm, 'i1', 0);
  policy.onCompleted?.(warm, 'i1', 1);
  const rng = new Rng(11);
  let cached = 0;
  for (let r = 0; r < 400; r++) {
    const d = policy.decide(idle, prompt(`s${r}`, 3, 64), rng);
    if (d.kind === 'route' && d.instanceId === 'i1') cached++;
  }
  // Normalised costs 0 and 1: p(i1) = 1 / (1 + e^(-1/0.3)) = 0.966.
  assert.ok(cached > 360 && cached < 400, `cache holder chosen ${cached} / 400 times`);
});

test('kv-cost: the catalogue builds it and rejects an unknown parameter by name', () => {
  assert.equal(createRoutingPolicy('kv-cost').name, 'kv-cost');
  assert.throws(() => createRoutingPolicy('kv-cost', { overlapWieght: 1 }), /overlapWieght/);
});
