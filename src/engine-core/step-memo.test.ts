import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../model/types.ts';
import { DECODE_MEMO_PAGE_BITS, DECODE_MEMO_SEQS_MAX, DecodeStepMemo } from './step-memo.ts';

/** A pure model with irrational-looking times, counting its calls. */
function countingPerf(): PerfModel & { calls: number } {
  const perf = {
    calls: 0,
    gpu: {} as GpuSpec,
    model: {} as ModelSpec,
    tp: 1,
    stepTimeMs(s: StepShape): number {
      perf.calls++;
      return Math.sqrt(2 + s.decodeContextTokens) / 7 + s.decodeSeqs / 3 + s.prefillTokens / 11;
    },
    prefillTimeMs: () => 1,
    decodeStepTimeMs: () => 1,
    kvBytesPerToken: () => 1,
    weightBytes: () => 1,
  };
  return perf;
}

function decode(seqs: number, context: number): StepShape {
  return {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: seqs,
    decodeContextTokens: context,
  };
}

test('the memo returns the model its exact times and asks it once per decode shape', () => {
  const perf = countingPerf();
  const memo = new DecodeStepMemo(perf);
  for (let round = 0; round < 2; round++) {
    for (const [seqs, context] of [
      [1, 100],
      [1, 101],
      [2, 100],
      [DECODE_MEMO_SEQS_MAX, 5 << DECODE_MEMO_PAGE_BITS],
    ] as const) {
      const expected = countingPerf().stepTimeMs(decode(seqs, context));
      assert.equal(memo.stepTimeMs(decode(seqs, context)), expected);
      assert.equal(memo.decodeStepTimeMs(decode(seqs, 0), context), expected);
    }
  }
  assert.equal(perf.calls, 4);
});

test('prefill steps, large batches and fractional contexts go to the model every time', () => {
  const perf = countingPerf();
  const memo = new DecodeStepMemo(perf);
  const prefill: StepShape = {
    ...decode(1, 10),
    prefillSeqs: 1,
    prefillTokens: 5,
    prefillAttentionPairs: 15,
  };
  for (let i = 0; i < 3; i++) {
    memo.stepTimeMs(prefill);
    memo.stepTimeMs(decode(DECODE_MEMO_SEQS_MAX + 1, 10));
    memo.stepTimeMs(decode(1, 10.5));
  }
  assert.equal(perf.calls, 9);
  assert.equal(memo.stepTimeMs(decode(1, 10.5)), countingPerf().stepTimeMs(decode(1, 10.5)));
});

test('a pass-through (no pages) asks the model every time; the page bound holds', () => {
  const perf = countingPerf();
  const pass = new DecodeStepMemo(perf, 0);
  pass.stepTimeMs(decode(1, 1));
  pass.stepTimeMs(decode(1, 1));
  assert.equal(perf.calls, 2);
  assert.equal(pass.pageFor(1, 1), undefined);
  const bounded = new DecodeStepMemo(countingPerf(), 1);
  assert.ok(bounded.pageFor(1, 0) !== undefined);
  assert.equal(bounded.pageFor(1, 1 << DECODE_MEMO_PAGE_BITS), undefined);
});
