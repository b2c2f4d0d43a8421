import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { kvLink } from '../../model/kv-link.ts';
import { readTraceLengths } from '../../workload/traces/read.ts';
import { perfModelCapacity } from '../capacity.ts';
import { type PdPlanInput, type PdSplit, planPd } from './plan.ts';

const BASE: PdPlanInput = {
  model: 'llama-3.1-8b',
  gpu: 'h100',
  gpus: 8,
  rateRps: Number.POSITIVE_INFINITY,
  lengths: [{ inputTokens: 1024, generatedTokens: 256 }],
  objectives: { ttftMs: 1000, tpotMs: 50, attainment: 0.9 },
};

const prefillGpus = (s: PdSplit): number => s.prefill.instances * s.prefill.tp;
const decodeGpus = (s: PdSplit): number => s.decode.instances * s.decode.tp;

function invalid(param: string): (e: unknown) => boolean {
  return (e) =>
    e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT' && e.details?.['param'] === param;
}

describe('P/D planner', () => {
  it('gives a prefill-heavy workload more prefill GPUs than a decode-heavy one', () => {
    const prefillHeavy = planPd({ ...BASE, lengths: [{ inputTokens: 4096, generatedTokens: 64 }] }).split;
    const decodeHeavy = planPd({ ...BASE, lengths: [{ inputTokens: 256, generatedTokens: 1024 }] }).split;
    assert.ok(
      prefillGpus(prefillHeavy) > prefillGpus(decodeHeavy),
      JSON.stringify([prefillHeavy, decodeHeavy]),
    );
    assert.ok(prefillGpus(prefillHeavy) > decodeGpus(prefillHeavy));
    assert.ok(decodeGpus(decodeHeavy) > prefillGpus(decodeHeavy));
    for (const s of [prefillHeavy, decodeHeavy]) {
      assert.ok(s.gpus <= 8);
      assert.ok(Math.abs(s.goodputPerGpuRps - s.goodputRps / s.gpus) < 1e-9);
    }
  });

  it('leaves out requests past the context (the run refuses them) and says how many', () => {
    const fit = { inputTokens: 1024, generatedTokens: 256 };
    // llama-3.1-8b's context is 131072: 131000 + 73 passes it by one, 131000 + 72 reaches it exactly.
    const past = { inputTokens: 131_000, generatedTokens: 73 };
    const edge = { inputTokens: 131_000, generatedTokens: 72 };
    const plain = planPd({ ...BASE, lengths: [fit, fit, fit] });
    const mixed = planPd({ ...BASE, lengths: [fit, past, fit, past, fit] });
    assert.equal(plain.pastContextRequests, 0);
    assert.equal(mixed.pastContextRequests, 2);
    assert.deepEqual(mixed.split, plain.split);
    // The edge request stays in the plan (a 131k prompt misses a 1 s TTFT, hence the 50% target).
    const objectives = { ...BASE.objectives, attainment: 0.5 };
    assert.equal(planPd({ ...BASE, objectives, lengths: [fit, edge] }).pastContextRequests, 0);
    assert.throws(() => planPd({ ...BASE, lengths: [past, past] }), invalid('lengths'));
  });

  it('a tight TPOT pushes the decode pool to a higher TP or more instances', () => {
    const loose = planPd(BASE).split;
    const tight = planPd({ ...BASE, objectives: { ...BASE.objectives, tpotMs: 12 } }).split;
    assert.ok(
      tight.decode.tp > loose.decode.tp || tight.decode.instances > loose.decode.instances,
      JSON.stringify([loose, tight]),
    );
    assert.ok(tight.goodputRps <= loose.goodputRps);
  });

  it('with a rate, takes the fewest GPUs that sustain it; without, the most goodput from the budget', () => {
    const all = planPd(BASE).split;
    const rate = all.arrivalRpsMax / 3;
    const sized = planPd({ ...BASE, rateRps: rate }).split;
    assert.ok(sized.meetsRate && sized.arrivalRpsMax >= rate);
    assert.ok(sized.gpus < all.gpus, JSON.stringify([sized, all]));
    // One GPU less would not do: the planner reports the smallest sufficient split.
    const fewer = planPd({ ...BASE, gpus: sized.gpus - 1, rateRps: rate }).split;
    assert.equal(fewer.meetsRate, false);
    assert.equal(all.meetsRate, false);
  });

  it('is deterministic and ignores the order of the lengths', () => {
    const lengths = [
      { inputTokens: 2000, generatedTokens: 100, weight: 3 },
      { inputTokens: 300, generatedTokens: 600, weight: 1 },
    ];
    const a = planPd({ ...BASE, lengths });
    const b = planPd({ ...BASE, lengths: [...lengths].reverse() });
    assert.deepEqual(a, b);
    assert.deepEqual(planPd(BASE), planPd(BASE));
  });

  it('charges the KV transfer to the prefill TTFT: a slow link costs goodput, layer-wise sending wins some back', () => {
    const tight = {
      ...BASE,
      objectives: { ...BASE.objectives, ttftMs: 300 },
      lengths: [{ inputTokens: 8000, generatedTokens: 64 }],
    };
    const fast = planPd({ ...tight, link: kvLink('nvlink') }).split;
    const slowLink = kvLink({ gbps: 10, latencyUs: 100 });
    const slow = planPd({ ...tight, link: slowLink }).split;
    const slowLayerwise = planPd({ ...tight, link: slowLink, layerwise: true }).split;
    assert.ok(slow.transferTtftAddedMs > 50 * fast.transferTtftAddedMs);
    // A slow link per GPU is worth splitting over more ranks: the slow plan goes to a higher TP.
    assert.ok(slow.prefill.tp > fast.prefill.tp);
    assert.ok(slow.goodputRps < fast.goodputRps, JSON.stringify([fast, slow]));
    assert.ok(slowLayerwise.transferTtftAddedMs < slow.transferTtftAddedMs);
    assert.ok(slowLayerwise.goodputRps > slow.goodputRps);
  });

  it('reports the colocated baseline on the same budget', () => {
    const plan = planPd(BASE);
    assert.ok(plan.colocated !== undefined);
    assert.ok(plan.colocated.gpus <= 8 && plan.colocated.goodputRps > 0);
    assert.ok(
      Math.abs(
        (plan.perGpuGainVsColocated as number) -
          plan.split.goodputPerGpuRps / plan.colocated.goodputPerGpuRps,
      ) < 1e-12,
    );
  });

  it('counts shapes no split can serve against the attainment target', () => {
    const lengths = [
      { inputTokens: 1024, generatedTokens: 128, weight: 9 },
      { inputTokens: 100_000, generatedTokens: 128, weight: 1 }, // its prefill alone outlasts 1 s of TTFT
    ];
    const plan = planPd({ ...BASE, lengths, objectives: { ...BASE.objectives, attainment: 0.85 } });
    assert.ok(Math.abs(plan.split.servedShare - 0.9) < 1e-12);
    assert.ok(Math.abs(plan.split.goodputRps - 0.9 * plan.split.arrivalRpsMax) < 1e-9);
    assert.throws(
      () => planPd({ ...BASE, lengths, objectives: { ...BASE.objectives, attainment: 0.95 } }),
      (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_CAPACITY',
    );
  });

  it('refuses bad input, naming the flag', () => {
    assert.throws(() => planPd({ ...BASE, gpus: 1 }), invalid('gpus'));
    assert.throws(() => planPd({ ...BASE, gpus: 2.5 }), invalid('gpus'));
    assert.throws(() => planPd({ ...BASE, rateRps: 0 }), invalid('rate'));
    assert.throws(
      () => planPd({ ...BASE, objectives: { ...BASE.objectives, ttftMs: -1 } }),
      invalid('slo-ttft-ms'),
    );
    assert.throws(
      () => planPd({ ...BASE, objectives: { ...BASE.objectives, tpotMs: 0 } }),
      invalid('slo-tpot-ms'),
    );
    assert.throws(
      () => planPd({ ...BASE, objectives: { ...BASE.objectives, attainment: 1.5 } }),
      invalid('goodput-target'),
    );
    assert.throws(
      () => planPd({ ...BASE, lengths: [{ inputTokens: 0, generatedTokens: 10 }] }),
      invalid('input-tokens'),
    );
    assert.throws(
      () => planPd({ ...BASE, objectives: { ...BASE.objectives, ttftMs: 1 } }),
      (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_CAPACITY',
    );
    assert.throws(
      () => planPd({ ...BASE, model: 'no-such-model' }),
      (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME',
    );
  });

  it("profiles a length bucket at its requests' mean lengths, not its longest", () => {
    // Nine answers of 300 tokens and one of 1,000 share a bucket (out 256-1023): the pools' rates
    // are those of the mean request (370 tokens), not of ten 1,000-token answers.
    const mix = [
      { inputTokens: 1000, generatedTokens: 300, weight: 9 },
      { inputTokens: 1000, generatedTokens: 1000, weight: 1 },
    ];
    const tp1 = { ...BASE, tpDegrees: [1] };
    const mixed = planPd({ ...tp1, lengths: mix }).split;
    const mean = planPd({ ...tp1, lengths: [{ inputTokens: 1000, generatedTokens: 370 }] }).split;
    const longest = planPd({ ...tp1, lengths: [{ inputTokens: 1000, generatedTokens: 1000 }] }).split;
    assert.deepEqual(
      [mixed.prefill.instances, mixed.decode.instances],
      [mean.prefill.instances, mean.decode.instances],
    );
    assert.ok(
      Math.abs(mixed.goodputRps / mean.goodputRps - 1) < 1e-9,
      `${mixed.goodputRps} vs ${mean.goodputRps}`,
    );
    assert.ok(longest.goodputRps < mixed.goodputRps * 0.8);
  });

  it("plans the Azure conversation sample's best split of the twin's at TP 1 (tcp-100, TTFT 500 / TPOT 25 ms)", () => {
    // The twin's goodput sweeps (scripts/pd-robust.ts, setting azure-x10-tcp): 3:5 13.7, 4:4 18.8
    // req/s per GPU. Profiling buckets at their longest lengths planned 3:5.
    const lengths = readTraceLengths('sample:azure-conv').map((p) => ({
      inputTokens: Math.max(1, p.inputTokens),
      generatedTokens: Math.max(1, p.outputTokens),
    }));
    const plan = planPd({
      ...BASE,
      lengths,
      tpDegrees: [1],
      link: kvLink('tcp-100'),
      objectives: { ttftMs: 500, tpotMs: 25, attainment: 0.9 },
    });
    assert.deepEqual([plan.split.prefill.instances, plan.split.decode.instances], [4, 4]);
  });

  it('prices short prompts batched into one prefill step, as an engine runs them', () => {
    // 200 in / 400 out at TTFT 200 / TPOT 10 ms (scripts/pd-robust.ts, chat-tight): the twin's
    // goodput per GPU is 30.7 at 1:7 and 28.7 at 2:6. One prompt per step, one prefill instance
    // looked too slow for the load seven decode instances carry, and the plan took 2:6.
    const plan = planPd({
      ...BASE,
      lengths: [{ inputTokens: 200, generatedTokens: 400 }],
      tpDegrees: [1],
      objectives: { ttftMs: 200, tpotMs: 10, attainment: 0.9 },
    });
    assert.deepEqual([plan.split.prefill.instances, plan.split.decode.instances], [1, 7]);
    // Prompts too long to share a step are priced as before: one per step.
    const long = planPd({ ...BASE, lengths: [{ inputTokens: 8000, generatedTokens: 500 }], tpDegrees: [1] });
    assert.ok(long.split.prefill.instances >= 2);
  });

  it('prices the work of requests that miss the SLOs: an engine prefills and decodes them all the same', () => {
    // 8% of prompts are 100k tokens: each prefill alone outlasts TTFT, so they never count as
    // goodput, but every one of them still takes an instance its prefill time. The plan left them
    // out of both pools and planned 115 req/s on 5 prefill GPUs, which would need 8% x 115 x 6.7 s
    // = 61 GPUs of prefill for them alone.
    const objectives = { ttftMs: 2000, tpotMs: 50, attainment: 0.9 };
    const lengths = [
      { inputTokens: 2000, generatedTokens: 200, weight: 92 },
      { inputTokens: 100_000, generatedTokens: 1000, weight: 8 },
    ];
    const plan = planPd({ ...BASE, lengths, objectives, tpDegrees: [1] }).split;
    const prefillMs = perfModelCapacity()(
      { model: 'llama-3.1-8b', gpu: 'h100', tp: 1, role: 'prefill' },
      {},
      100_000,
      1000,
    ).prefillMs;
    const longPrefillGpus = (plan.arrivalRpsMax * 0.08 * prefillMs) / 1000;
    assert.ok(
      longPrefillGpus <= prefillGpus(plan),
      `${longPrefillGpus} GPUs of long prefills on ${prefillGpus(plan)}`,
    );
    assert.ok(Math.abs(plan.servedShare - 0.92) < 1e-12);
    // The colocated baseline runs them too (it planned 121 req/s on 8 GPUs: 65 GPUs of their prefills).
    const colocated = planPd({ ...BASE, lengths, objectives, tpDegrees: [1] }).colocated;
    assert.ok(colocated !== undefined);
    const colocatedLongGpus = (colocated.arrivalRpsMax * 0.08 * prefillMs) / 1000;
    assert.ok(
      colocatedLongGpus <= colocated.gpus,
      `${colocatedLongGpus} GPUs of long prefills on ${colocated.gpus}`,
    );
  });

  it('queues the whole mix on one prefill queue: a shape that barely meets TTFT does not set the rate', () => {
    // 5% of prompts are 9,000 tokens, a 218 ms prefill against 300 ms of TTFT. Priced as a queue of
    // its own, that shape allowed its instance ~10% utilisation and dragged the mix to 43% of the
    // short-prompt rate; on a queue shared with the short prompts the wait allowed is the 90th
    // percentile request's slack, and the mix keeps about what its extra work allows (half again as
    // much prefill work as the short prompts bring).
    const objectives = { ttftMs: 300, tpotMs: 50, attainment: 0.9 };
    const short = planPd({
      ...BASE,
      lengths: [{ inputTokens: 1000, generatedTokens: 100 }],
      objectives,
      tpDegrees: [1],
    }).split;
    const mixed = planPd({
      ...BASE,
      lengths: [
        { inputTokens: 1000, generatedTokens: 100, weight: 95 },
        { inputTokens: 9000, generatedTokens: 100, weight: 5 },
      ],
      objectives,
      tpDegrees: [1],
    }).split;
    const ratio = mixed.arrivalRpsMax / short.arrivalRpsMax;
    assert.ok(ratio > 0.55, `mix at ${ratio} of the short-prompt rate`);
  });

  it("plans the Mooncake conversation sample's best split of the twin's at TP 1 (ib-400, TTFT 3000 / TPOT 20 ms)", () => {
    // The results page (docs/results/disaggregation.md, Mooncake conversation, tight; first 600 s,
    // the sample's first 1,750 requests): 4:4 0.37, 5:3 0.62, 6:2 0.46, 7:1 0.20 req/s per GPU.
    // The 32k+ prompts (9% of requests, mean 60k) missed TTFT by their bucket's mean and were left
    // out of both pools, and a 58k-token bucket priced on a queue of its own set the prefill rate:
    // the plan took 6:2 (7:1 on the whole sample).
    const all = readTraceLengths('sample:mooncake-conversation').map((p) => ({
      inputTokens: Math.max(1, p.inputTokens),
      generatedTokens: Math.max(1, p.outputTokens),
    }));
    for (const lengths of [all.slice(0, 1750), all]) {
      const plan = planPd({
        ...BASE,
        lengths,
        tpDegrees: [1],
        link: kvLink('ib-400'),
        objectives: { ttftMs: 3000, tpotMs: 20, attainment: 0.9 },
      });
      assert.deepEqual([plan.split.prefill.instances, plan.split.decode.instances], [5, 3]);
    }
  });

  it('with fixed TP degrees, searches only those, and refuses a budget below one instance per side', () => {
    const plan = planPd({ ...BASE, tpDegrees: [2] });
    assert.equal(plan.split.prefill.tp, 2);
    assert.equal(plan.split.decode.tp, 2);
    assert.equal(plan.colocated?.tp, 2);
    // Fewer GPUs than one prefill and one decode instance of the TP: the budget is named, not the SLOs.
    for (const gpus of [2, 4, 7])
      assert.throws(
        () => planPd({ ...BASE, gpus, tpDegrees: [4] }),
        (e: unknown) => invalid('gpus')(e) && /at least 8 GPUs for TP 4/.test((e as Error).message),
      );
    assert.equal(planPd({ ...BASE, gpus: 8, tpDegrees: [4] }).split.gpus, 8);
  });
});
