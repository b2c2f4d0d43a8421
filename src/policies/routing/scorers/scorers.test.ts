import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../../core/errors.ts';
import { makeRequest } from '../../../core/request.ts';
import { testCluster } from '../conformance.ts';
import { createScorer, scorerNames } from './catalogue.ts';
import { inFlightScorer } from './in-flight.ts';
import { createKvCostScorer, KV_COST_SCORER_DEFAULTS } from './kv-cost.ts';
import { kvUsageScorer } from './kv-usage.ts';
import { createPrefixCacheScorer } from './prefix-cache.ts';
import { queueScorer } from './queue.ts';
import { sessionAffinityScorer } from './session-affinity.ts';

const request = makeRequest({
  id: 'r',
  inputTokens: 64,
  maxTokens: 1,
  arrivalMs: 0,
  prefix: { blockTokens: 16, hashes: [11, 12, 13, 14] },
});

function scores(scorer: { score: typeof queueScorer.score }, view = testCluster(4)): number[] {
  const out = new Float64Array(view.instances.length);
  scorer.score(view, request, view.instances, out);
  return [...out].map((x) => Math.round(x * 1e9) / 1e9);
}

test('queue scorer: (max - waiting) / (max - min); all equal gives 1', () => {
  assert.deepEqual(
    scores(
      queueScorer,
      testCluster(4, (i) => ({ waiting: [4, 0, 2, 1][i] ?? 0 })),
    ),
    [0, 1, 0.5, 0.75],
  );
  assert.deepEqual(
    scores(
      queueScorer,
      testCluster(3, () => ({ waiting: 7 })),
    ),
    [1, 1, 1],
  );
});

test('in-flight scorer: (max - inFlight) / (max - min)', () => {
  assert.deepEqual(
    scores(
      inFlightScorer,
      testCluster(3, (i) => ({ inFlight: [10, 5, 0][i] ?? 0 })),
    ),
    [0, 0.5, 1],
  );
});

test('kv-usage scorer: 1 - kvUsage', () => {
  assert.deepEqual(
    scores(
      kvUsageScorer,
      testCluster(3, (i) => ({ kvUsage: [0, 0.25, 1][i] ?? 0 })),
    ),
    [1, 0.75, 0],
  );
});

test('prefix-cache scorer: matched blocks / request blocks, learned from routing', () => {
  const scorer = createPrefixCacheScorer();
  assert.deepEqual(scores(scorer), [0, 0, 0, 0]);
  scorer.onRouted?.({ ...request, prefix: { blockTokens: 16, hashes: [11, 12, 13] } }, 'i2', 0);
  scorer.onRouted?.({ ...request, prefix: { blockTokens: 16, hashes: [11] } }, 'i0', 0);
  assert.deepEqual(scores(scorer), [0.25, 0, 0.75, 0]);
  assert.equal(scorer.cachedBlocks('i2'), 3);
});

test('scorer catalogue: builds by name, rejects unknown names and parameters', () => {
  assert.deepEqual(scorerNames(), [
    'in-flight',
    'kv-cost',
    'kv-usage',
    'prefix-cache',
    'queue',
    'session-affinity',
  ]);
  assert.equal(createScorer('prefix-cache', { capacityBlocks: 128 }).name, 'prefix-cache');
  assert.throws(
    () => createScorer('nope'),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME',
  );
  assert.throws(
    () => createScorer('queue', { weight: 2 }),
    (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG',
  );
  // A stateful scorer is fresh per call: two profiles never share an index.
  assert.notEqual(createScorer('prefix-cache'), createScorer('prefix-cache'));
});

test('session-affinity scorer: one owner per session, stable across decisions; none without a session or tenant', () => {
  const view = testCluster(4);
  const withSession = (id: string, sessionId: string) => ({ ...request, id, sessionId });
  const owner = (r: typeof request) => {
    const out = new Float64Array(4);
    sessionAffinityScorer.score(view, r, view.instances, out);
    assert.equal(
      [...out].reduce((a, b) => a + b, 0),
      1,
    );
    return out.indexOf(1);
  };
  // The same session goes to the same instance whatever the request; sessions spread over instances.
  assert.equal(owner(withSession('a', 's1')), owner(withSession('b', 's1')));
  const owners = new Set(Array.from({ length: 64 }, (_, i) => owner(withSession(`r${i}`, `s${i}`))));
  assert.ok(owners.size >= 3, `64 sessions on ${owners.size} instance(s)`);
  // Without its owner among the candidates, a session moves; the others keep theirs (rendezvous).
  const first = owner(withSession('x', 's1'));
  const rest = view.instances.filter((_, i) => i !== first);
  const out = new Float64Array(3);
  sessionAffinityScorer.score(view, withSession('x', 's1'), rest, out);
  assert.equal([...out].filter((x) => x === 1).length, 1);
  assert.deepEqual(scores(sessionAffinityScorer), [0, 0, 0, 0]);
});

test('kv-cost scorer: cheapest (cached prefix, least active prefill and decode) scores 1, dearest 0', () => {
  const scorer = createKvCostScorer(KV_COST_SCORER_DEFAULTS);
  // Nothing routed yet: every candidate costs the same.
  assert.deepEqual(scores(scorer), [1, 1, 1, 1]);
  // i1 holds the first 3 of the 4 blocks; i2 is busy with a 1024-token request of another prefix.
  scorer.onRouted?.(
    { ...request, id: 'a', inputTokens: 48, prefix: { blockTokens: 16, hashes: [11, 12, 13] } },
    'i1',
    0,
  );
  scorer.onCompleted?.({ ...request, id: 'a' }, 'i1', 0);
  scorer.onRouted?.(
    { ...request, id: 'b', inputTokens: 1024, prefix: { blockTokens: 16, hashes: [99] } },
    'i2',
    0,
  );
  const s = scores(scorer);
  assert.equal(s[1], 1);
  assert.equal(s[2], 0);
  assert.ok((s[0] as number) > 0 && (s[0] as number) < 1);
  // Its first token moves b's prompt from prefill to decode only; completion frees it all.
  scorer.onFirstToken?.({ ...request, id: 'b' }, 'i2', 0);
  assert.equal(scores(scorer)[2], 0);
  scorer.onCompleted?.({ ...request, id: 'b' }, 'i2', 0);
  assert.deepEqual(
    scores(scorer).map((x) => (x === 1 ? 1 : 0)),
    [0, 1, 0, 0],
  );
});
