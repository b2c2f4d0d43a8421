import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kvLink, kvTransfer } from '../../model/kv-link.ts';
import { perfModelFor } from '../../model/perf.ts';
import {
  DYNAMO_MAX_LOCAL_PREFILL_TOKENS,
  decidePrefill,
  dynamoDecision,
  LocalStallLedger,
  type PrefillDecisionInput,
  SLO_REMOTE_TTFT_SHARE,
  SLO_TPOT_SHARE,
  sloDecision,
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
  const y = input({ promptTokens: 2500, prefillQueueTokens: 20_000, slo: SLO });
  assert.deepEqual(decidePrefill('slo', y, perf, CHUNK), sloDecision(y, perf, CHUNK));
});

const SLO = { ttftMs: 500, tpotMs: 25 };
/** A prefill queue of about 450 ms: the remote TTFT is past half of SLO.ttftMs. */
const LONG_QUEUE = 20_000;

test('slo: remote while the prefill pool meets half the TTFT SLO, whatever the decode batch', () => {
  const quiet = sloDecision(input({ promptTokens: 3000, slo: SLO }), perf, CHUNK);
  assert.equal(quiet.remote, true);
  assert.ok((quiet.remoteCostMs as number) <= SLO_REMOTE_TTFT_SHARE * SLO.ttftMs);
  // A short prompt too: `switchyard` would keep it local (it is cheaper there), `slo` uses the idle pool.
  const short = input({ promptTokens: 64, prefillQueueTokens: 4000, slo: SLO });
  assert.equal(switchyardDecision(short, perf, CHUNK).remote, false);
  assert.equal(sloDecision(short, perf, CHUNK).remote, true);
});

test('slo: behind a long prefill queue, local while the decode instance has TPOT budget', () => {
  const x = input({ promptTokens: 3000, prefillQueueTokens: LONG_QUEUE, slo: SLO });
  const d = sloDecision(x, perf, CHUNK);
  assert.ok((d.remoteCostMs as number) > SLO_REMOTE_TTFT_SHARE * SLO.ttftMs);
  assert.equal(d.remote, false);
  const stall = d.stallMs as number;
  assert.ok(stall > 0);
  // The budget: a share 1 - decode step / (0.9 TPOT) of the TTFT SLO, less the recent local stall.
  const budget = (1 - perf.decodeStepTimeMs(16, 2000) / (SLO_TPOT_SHARE * SLO.tpotMs)) * SLO.ttftMs;
  const at = (recentLocalStallMs: number) => sloDecision({ ...x, recentLocalStallMs }, perf, CHUNK).remote;
  assert.equal(at(budget - stall - 1e-6), false);
  assert.equal(at(budget - stall + 1e-3), true);
});

test('slo: at a TPOT SLO the decode batch alone nearly fills, every prompt goes remote', () => {
  // 16 decodes of 2,000 tokens take ~7.8 ms a step: no budget under 0.9 x 8 ms.
  const x = input({ promptTokens: 500, prefillQueueTokens: LONG_QUEUE, slo: { ttftMs: 500, tpotMs: 8 } });
  assert.equal(sloDecision(x, perf, CHUNK).remote, true);
  assert.equal(switchyardDecision(x, perf, CHUNK).remote, false);
});

test('slo: local prompts already queued on the decode instance count against local', () => {
  const x = input({ promptTokens: 3000, prefillQueueTokens: LONG_QUEUE, slo: SLO });
  assert.equal(sloDecision(x, perf, CHUNK).remote, false);
  const backlog = sloDecision({ ...x, decodePendingPrefillTokens: 40_000 }, perf, CHUNK);
  assert.ok((backlog.localCostMs as number) > (backlog.remoteCostMs as number));
  assert.equal(backlog.remote, true);
  // `switchyard` does not read the backlog (its figures are unchanged by it).
  assert.deepEqual(
    switchyardDecision({ ...x, decodePendingPrefillTokens: 40_000 }, perf, CHUNK),
    switchyardDecision(x, perf, CHUNK),
  );
});

test('slo: without an SLO it decides as switchyard', () => {
  const x = input({ promptTokens: 64, prefillQueueTokens: 4000 });
  assert.deepEqual(sloDecision(x, perf, CHUNK), switchyardDecision(x, perf, CHUNK));
});

test('slo: a burst of arrivals at one busy decode instance keeps only its budget local', () => {
  // 200 prompts 1 ms apart, the prefill pool always behind: a per-request check would keep them
  // all local; the ledger keeps about the budget's worth (the rest goes remote).
  const ledger = new LocalStallLedger();
  let local = 0;
  let stallOne = 0;
  for (let i = 0; i < 200; i++) {
    const recentLocalStallMs = ledger.recentMs('d0', i, SLO.ttftMs);
    const x = input({ promptTokens: 1000, prefillQueueTokens: LONG_QUEUE, slo: SLO, recentLocalStallMs });
    const d = sloDecision(x, perf, CHUNK);
    stallOne = d.stallMs as number;
    if (!d.remote) {
      local++;
      ledger.add('d0', i, SLO.ttftMs, d.stallMs as number);
    }
    assert.equal(sloDecision({ ...x, recentLocalStallMs: 0 }, perf, CHUNK).remote, false);
  }
  const budget = (1 - perf.decodeStepTimeMs(16, 2000) / (SLO_TPOT_SHARE * SLO.tpotMs)) * SLO.ttftMs;
  // Over 200 ms the budget decays back by about 1 - e^-0.4 of itself: at most ~1.4 budgets' worth.
  assert.ok(local >= Math.floor(budget / stallOne), `${local}`);
  assert.ok(local <= Math.ceil((1.4 * budget) / stallOne), `${local}`);
  assert.ok(local < 100, `${local}`);
});

test('LocalStallLedger: decays with the horizon as time constant, per decode instance', () => {
  const ledger = new LocalStallLedger();
  assert.equal(ledger.recentMs('d0', 0, 500), 0);
  ledger.add('d0', 100, 500, 40);
  assert.equal(ledger.recentMs('d0', 100, 500), 40);
  assert.ok(Math.abs(ledger.recentMs('d0', 600, 500) - 40 / Math.E) < 1e-9);
  assert.equal(ledger.recentMs('d1', 600, 500), 0);
  // An earlier time than the last record reads the record undecayed, never more.
  assert.equal(ledger.recentMs('d0', 50, 500), 40);
  ledger.add('d0', 600, 500, 10);
  assert.ok(Math.abs(ledger.recentMs('d0', 600, 500) - (40 / Math.E + 10)) < 1e-9);
});

test('LocalStallLedger: a withdraw for an entry since dropped leaves a newer entry of the same id alone', () => {
  const ledger = new LocalStallLedger();
  const old = ledger.add('d0', 0, 500, 40);
  // The instance is removed, then one comes back under its id and takes a local prefill.
  ledger.forget('d0');
  ledger.add('d0', 10, 500, 25);
  ledger.withdraw(old, 500);
  assert.equal(ledger.recentMs('d0', 10, 500), 25, 'the late withdraw of the old incarnation is ignored');
  // Within one incarnation a withdraw still takes its record back.
  const mine = ledger.add('d0', 10, 500, 5);
  ledger.withdraw(mine, 500);
  assert.ok(Math.abs(ledger.recentMs('d0', 10, 500) - 25) < 1e-9);
  // An entry dropped because its stall was taken back to nothing starts a new incarnation too.
  const a = ledger.add('d1', 0, 500, 7);
  ledger.withdraw(a, 500);
  assert.equal(ledger.size, 1);
  ledger.add('d1', 0, 500, 9);
  ledger.withdraw(a, 500);
  assert.equal(ledger.recentMs('d1', 0, 500), 9);
});
