import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SwitchyardError } from '../../../core/errors.ts';
import { makeRequest } from '../../../core/request.ts';
import { testCluster } from '../conformance.ts';
import { createScorer, scorerNames } from './catalogue.ts';
import { inFlightScorer } from './in-flight.ts';
import { kvUsageScorer } from './kv-usage.ts';
import { createPrefixCacheScorer } from './prefix-cache.ts';
import { queueScorer } from './queue.ts';

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
  assert.deepEqual(scorerNames(), ['in-flight', 'kv-usage', 'prefix-cache', 'queue']);
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
