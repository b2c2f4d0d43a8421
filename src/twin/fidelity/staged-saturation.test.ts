/**
 * A stage that starts with the backlog the stage before left is saturated when its own queue grows
 * through it, however large the backlog: the held-out run's shape (constant-rate stages of one
 * length) past the twin's capacity read 'no' on every stage after the first, with TTFTs of minutes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFidelityCase } from './case.ts';
import { isSaturated } from './observe.ts';
import { runCase } from './run-case.ts';

describe('saturation of a stage that starts with a backlog', () => {
  it('a queue growing from a carried-in backlog is saturated', () => {
    // 10,000 queued when the stage starts, 0.5 more per arrival: +240 from the second fifth to the last.
    const growing = Array.from({ length: 600 }, (_, i) => 10_000 + Math.floor(i / 2));
    assert.equal(isSaturated(growing), true);
  });

  it('a backlog draining, or a flat queue above one, is not', () => {
    const draining = Array.from({ length: 600 }, (_, i) => Math.max(3, 10_000 - 20 * i));
    assert.equal(isSaturated(draining), false);
    const flat = Array.from({ length: 600 }, (_, i) => 5_000 + (i % 7));
    assert.equal(isSaturated(flat), false);
    // A stationary queue of a few requests whose first arrival happened to see more.
    const noisy = Array.from({ length: 600 }, (_, i) => (i === 0 ? 9 : 2 + (i % 5)));
    assert.equal(isSaturated(noisy), false);
  });

  it('every stage of a run held past capacity is saturated in the twin', () => {
    const stage = { rateRps: 20, durationS: 60, measured: { ttftMs: { mean: 80 }, saturated: false } };
    const c = parseFidelityCase({
      name: 'llama-2-70b-past-capacity',
      source: { title: 'test', url: 'https://example.org', engine: 'vLLM v0.15.1' },
      model: 'meta-llama/Llama-2-70b-hf',
      gpu: 'H100',
      tp: 4,
      engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 },
      workload: {
        arrival: 'constant',
        stages: [stage, stage, stage, stage],
        input: { kind: 'uniform', lo: 570, hi: 790 },
        output: { kind: 'fixed', tokens: 250 },
      },
    });
    const { rows } = runCase(c);
    assert.equal(rows.length, 4);
    for (const [k, row] of rows.entries()) {
      // The queue each stage leaves is longer than the one before: TTFT grows stage on stage.
      if (k > 0) assert.ok(row.predicted.ttftMs.mean > (rows[k - 1]?.predicted.ttftMs.mean ?? 0));
      assert.equal(row.predicted.saturated, true, `${row.label}: TTFT ${row.predicted.ttftMs.mean} ms`);
    }
  });
});
