import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { PrefixForest } from './prefix-forest.ts';
import { DECODE_MEMO_PAGE_BITS, DECODE_MEMO_SEQS_MAX, DecodeStepMemo } from './step-memo.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

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
    commonPrefixTokens: 0,
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

test('an invalid time is handed back but never remembered, so it is asked (and refused) every time', () => {
  for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
    let asked = 0;
    const perf: PerfModel = {
      ...countingPerf(),
      stepTimeMs: (s: StepShape) => {
        asked++;
        return s.decodeContextTokens === 7 ? bad : 1 + s.decodeContextTokens;
      },
    };
    const memo = new DecodeStepMemo(perf);
    for (let i = 0; i < 2; i++) {
      assert.ok(Object.is(memo.stepTimeMs(decode(1, 7)), bad));
      assert.ok(Object.is(memo.decodeStepTimeMs(decode(1, 0), 7), bad));
      // The page a fused loop reads has no time there: every read is a miss.
      assert.ok(Number.isNaN(memo.pageFor(1, 7)?.[7]));
    }
    assert.equal(asked, 4);
    // Valid times are kept as before.
    assert.equal(memo.stepTimeMs(decode(1, 8)), 9);
    assert.equal(memo.pageFor(1, 8)?.[8], 9);
    assert.equal(asked, 5);
  }
});

test('a fused decode step refuses an invalid time from the model, and so does the next core sharing its memo', () => {
  let poison = false;
  const perf: PerfModel = {
    ...countingPerf(),
    stepTimeMs: (s: StepShape) =>
      poison && s.prefillTokens === 0 && s.decodeContextTokens === 40 ? -1 : 1 + s.decodeContextTokens / 100,
  };
  // Two cores of one perf model share its memo: the second must not be handed the first's -1.
  for (let core = 0; core < 2; core++) {
    poison = false;
    const engine = new EngineCore(
      { ...DEFAULT_ENGINE_CONFIG, blockSize: 4 },
      perf,
      100,
      { onFinish: () => {} },
      { prefixForest: new PrefixForest(4), memoizeDecodeSteps: true },
    );
    engine.add({ id: 'a', inputTokens: 30, outputTokens: 30, arrivalMs: 0, blockHashes: [] }, 0);
    const firstMs = engine.startStep(0)!;
    engine.finishStep(firstMs);
    poison = true;
    // Decoding from a 31-token context, the fused loop reaches the poisoned context 40.
    assert.throws(
      () => engine.startStep(firstMs, Number.POSITIVE_INFINITY),
      /perf model returned step time -1/,
    );
  }
});
