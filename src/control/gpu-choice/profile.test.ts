import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { perfModelFor } from '../../model/index.ts';
import { isProfiled, type PlanObjectives, profileVariant, type VariantProfile } from './profile.ts';
import { bucketize } from './workload.ts';

const SHORT = bucketize([{ inputTokens: 200, generatedTokens: 200 }]);
const LONG = bucketize([{ inputTokens: 6000, generatedTokens: 500 }]);

function profiled(
  gpu: string,
  model: string,
  tp: number,
  buckets = SHORT,
  objectives: PlanObjectives = { ttftMs: 2000, tpotMs: 50 },
): VariantProfile {
  const p = profileVariant(gpu, model, tp, buckets, objectives);
  assert.ok(isProfiled(p), `${model} on ${tp} x ${gpu} should fit`);
  return p;
}

describe('gpu-choice profile', () => {
  it('the rate it reports keeps the predicted TPOT and TTFT within the objectives', () => {
    const [cap] = profiled('h100', 'llama-3.1-8b', 1, LONG).capacities;
    assert.ok(cap !== undefined && cap.maxRateRps > 0);
    assert.ok(cap.tpotMs <= 50, `tpot ${cap.tpotMs}`);
    assert.ok(cap.ttftMs <= 2000, `ttft ${cap.ttftMs}`);
  });

  it('a looser TPOT buys a higher rate until the saturation share caps it', () => {
    const caps = [25, 50, 100].map(
      (tpotMs) => profiled('a10g', 'llama-3.1-8b', 2, SHORT, { ttftMs: 2000, tpotMs }).capacities[0],
    );
    const rates = caps.map((c) => c?.maxRateRps ?? 0);
    assert.ok(rates[0]! < rates[1]!, `rates ${rates.join(', ')}`);
    assert.equal(caps[0]?.limitedBy, 'tpot');
    assert.equal(caps[2]?.limitedBy, 'saturation');
    assert.ok(rates[1]! <= rates[2]!, `rates ${rates.join(', ')}`);
  });

  it('never plans past SATURATION_SHARE_MAX of the rate at the batch cap', () => {
    const [loose] = profiled('h100', 'llama-3.1-8b', 1, LONG, {}).capacities;
    assert.equal(loose?.limitedBy, 'saturation');
    const [tight] = profiled('h100', 'llama-3.1-8b', 1, LONG, { tpotMs: 20 }).capacities;
    assert.ok((tight?.maxRateRps ?? 0) < (loose?.maxRateRps ?? 0));
  });

  it('a TPOT below a lone request decode step gives rate 0, limited by tpot, with the lone latency', () => {
    const loneStepMs = perfModelFor('l4', 'llama-3.1-8b', 1).decodeStepTimeMs(1, 300);
    const [cap] = profiled('l4', 'llama-3.1-8b', 1, SHORT, {
      ttftMs: 5000,
      tpotMs: loneStepMs * 0.9,
    }).capacities;
    assert.equal(cap?.maxRateRps, 0);
    assert.equal(cap?.limitedBy, 'tpot');
    assert.ok((cap?.tpotMs ?? 0) > loneStepMs * 0.9);
  });

  it('skips a variant whose weights leave no room for a KV cache, and a TP that does not split the model', () => {
    const unfit = profileVariant('l4', 'llama-3.1-70b', 1, SHORT, {});
    assert.ok(!isProfiled(unfit));
    assert.match(unfit.reason, /does not fit on 1 x l4/);
    const badTp = profileVariant('h100', 'llama-3.1-8b', 3, SHORT, {});
    assert.ok(!isProfiled(badTp));
    assert.match(badTp.reason, /invalid tp '3'/);
  });

  it('a request longer than the model context or KV cache gets rate 0, limited by context', () => {
    const huge = bucketize([{ inputTokens: 200_000, generatedTokens: 1000 }]);
    const [cap] = profiled('l4', 'llama-3.1-8b', 2, huge, {}).capacities;
    assert.equal(cap?.maxRateRps, 0);
    assert.equal(cap?.limitedBy, 'context');
  });
});
