import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kvLink, kvTransfer } from '../../model/kv-link.ts';
import { perfModelFor } from '../../model/perf.ts';
import {
  DYNAMO_MAX_LOCAL_PREFILL_TOKENS,
  decidePrefill,
  dynamoDecision,
  type PrefillDecisionInput,
  switchyardDecision,
} from './conditional.ts';

/** Conditional disaggregation rules (pure): src/policies/disagg/conditional.ts. */

const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
const CHUNK = 8192;

function input(more: Partial<PrefillDecisionInput> = {}): PrefillDecisionInput {
  const promptTokens = more.promptTokens ?? 3000;
  const transferMs = kvTransfer(perf.model, promptTokens, kvLink('ib-400'), {
    prefillTp: 1,
    decodeTp: 1,
  }).ttftAddedMs;
  return {
    promptTokens,
    prefixHitTokens: 0,
    prefillQueueRequests: 0,
    prefillQueueTokens: 0,
    prefillInstances: 1,
    decodeRunning: 16,
    decodeContextTokensMean: 2000,
    transferMs,
    ...more,
  };
}

test('dynamo: short prompts stay local, long ones go remote, the threshold is on the uncached part', () => {
  assert.equal(dynamoDecision(input({ promptTokens: 200 })).remote, false);
  assert.equal(dynamoDecision(input({ promptTokens: DYNAMO_MAX_LOCAL_PREFILL_TOKENS })).remote, false);
  assert.equal(dynamoDecision(input({ promptTokens: DYNAMO_MAX_LOCAL_PREFILL_TOKENS + 1 })).remote, true);
  assert.equal(dynamoDecision(input({ promptTokens: 3000 })).remote, true);
  // A long prompt mostly cached on the decode instance prefills there.
  assert.equal(dynamoDecision(input({ promptTokens: 3000, prefixHitTokens: 2500 })).remote, false);
});

test('dynamo: a busy prefill pool keeps long prompts local', () => {
  assert.equal(dynamoDecision(input({ promptTokens: 3000, prefillQueueRequests: 2 })).remote, true);
  assert.equal(dynamoDecision(input({ promptTokens: 3000, prefillQueueRequests: 3 })).remote, false);
  // Two prefill instances take twice the queue.
  assert.equal(dynamoDecision(input({ prefillQueueRequests: 4, prefillInstances: 2 })).remote, true);
});

test('switchyard: behind a prefill queue a short prompt stays local, a long one goes remote', () => {
  const short = switchyardDecision(input({ promptTokens: 64, prefillQueueTokens: 4000 }), perf, CHUNK);
  assert.equal(short.remote, false);
  const long = switchyardDecision(
    input({ promptTokens: 6000, decodeRunning: 32, prefillQueueTokens: 4000 }),
    perf,
    CHUNK,
  );
  assert.equal(long.remote, true);
  assert.ok((long.localCostMs as number) > (long.remoteCostMs as number));
});

test('switchyard: a long prefill queue or a large prefix hit keeps a prompt local', () => {
  const idle = switchyardDecision(input({ promptTokens: 4000 }), perf, CHUNK);
  assert.equal(idle.remote, true);
  const queued = switchyardDecision(input({ promptTokens: 4000, prefillQueueTokens: 200_000 }), perf, CHUNK);
  assert.equal(queued.remote, false);
  assert.ok((queued.remoteCostMs as number) > (idle.remoteCostMs as number));
  const cached = switchyardDecision(input({ promptTokens: 4000, prefixHitTokens: 3990 }), perf, CHUNK);
  assert.equal(cached.remote, false);
});

test('switchyard: with no running decodes the local cost is the local prefill alone', () => {
  const d = switchyardDecision(input({ promptTokens: 2000, decodeRunning: 0 }), perf, CHUNK);
  assert.ok(
    Math.abs(
      (d.localCostMs as number) -
        perf.stepTimeMs({
          prefillSeqs: 1,
          prefillTokens: 2000,
          prefillAttentionPairs: (2000 * 2001) / 2,
          decodeSeqs: 0,
          decodeContextTokens: 0,
          commonPrefixTokens: 0,
        }),
    ) < 1e-9,
  );
});

test('decisions are deterministic and decidePrefill dispatches on the rule', () => {
  const x = input({ promptTokens: 2500, prefillQueueTokens: 5000 });
  assert.deepEqual(decidePrefill('switchyard', x, perf, CHUNK), decidePrefill('switchyard', x, perf, CHUNK));
  assert.deepEqual(decidePrefill('dynamo', x, perf, CHUNK), dynamoDecision(x));
  assert.deepEqual(decidePrefill('switchyard', x, perf, CHUNK), switchyardDecision(x, perf, CHUNK));
});
