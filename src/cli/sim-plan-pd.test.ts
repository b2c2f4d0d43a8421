/**
 * `sim --plan-pd` from its flags: `--tp` given fixes the TP degree planned (the one a disaggregated
 * run can then use), a budget below one TP group per side is refused naming `--gpus`, and the flags
 * of a disaggregated run, which the plan would ignore, are refused naming each.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type PlanPdFlags, planPdFromFlags } from './sim-plan-pd.ts';
import { fromCli } from './sim-test-support.ts';

const BASE: PlanPdFlags = {
  planPd: true,
  gpus: 8,
  gpu: 'h100',
  model: 'llama-3.1-8b',
  tp: 1,
  inputTokens: 4096,
  outputTokens: 256,
  sloTtftMs: 1000,
  sloTpotMs: 12,
};

describe('sim --plan-pd flags', () => {
  it('plans at --tp N only when --tp is given, and over every TP degree when it is not', () => {
    // This workload's free plan mixes TP degrees (decode at TP 2, docs/disaggregation.md).
    const free = planPdFromFlags(BASE);
    assert.notEqual(free.split.decode.tp, 1);
    const fixed = planPdFromFlags(BASE, fromCli(['tp']));
    assert.equal(fixed.split.prefill.tp, 1);
    assert.equal(fixed.split.decode.tp, 1);
    assert.equal(fixed.colocated?.tp, 1);
    const four = planPdFromFlags({ ...BASE, tp: 4 }, fromCli(['tp']));
    assert.deepEqual([four.split.prefill.tp, four.split.decode.tp], [4, 4]);
  });

  it('refuses --gpus below one prefill and one decode instance of --tp, naming --gpus', () => {
    for (const gpus of [2, 6])
      assert.throws(() => planPdFromFlags({ ...BASE, gpus, tp: 4 }, fromCli(['tp'])), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: new RegExp(`invalid gpus '${gpus}': expected at least 8 GPUs for TP 4`),
      });
  });

  const runFlags: [string, Partial<PlanPdFlags>][] = [
    ['prefill-instances', { prefillInstances: 3 }],
    ['decode-instances', { decodeInstances: 5 }],
    ['pd-policy', { pdPolicy: 'no-such-policy' }],
    ['pd-params', { pdParams: '{}' }],
    ['pd-conditional', { pdConditional: 'dynamo' }],
  ];
  for (const [flag, extra] of runFlags)
    it(`refuses --${flag}, which only a disaggregated run reads`, () => {
      assert.throws(() => planPdFromFlags({ ...BASE, ...extra }), {
        code: 'SY_ERR_INVALID_ARGUMENT',
        message: new RegExp(`invalid ${flag} .*no --${flag} with --plan-pd`),
      });
    });
});
