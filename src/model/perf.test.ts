import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { vllmServeBatchDefaults } from './engines.ts';
import { gpuIds, gpuSpec } from './gpus.ts';
import { weightBytesPerGpu } from './kv.ts';
import { modelIds, modelSpec } from './models.ts';
import { createPerfModel, expectedExpertsTouched, perfModelFor } from './perf.ts';
import type { StepShape } from './types.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof SwitchyardError ? e.code : `not a SwitchyardError: ${String(e)}`;
  }
  return undefined;
}

describe('perf model', () => {
  const llama8 = perfModelFor('h100', 'llama-3.1-8b', 1);

  it('prefill time grows with tokens and with cached context', () => {
    let previous = 0;
    for (const tokens of [16, 128, 512, 1024, 2048, 4096, 8192]) {
      const t = llama8.prefillTimeMs(tokens);
      assert.ok(t > previous, `prefill ${tokens} = ${t} should exceed ${previous}`);
      previous = t;
    }
    assert.ok(llama8.prefillTimeMs(512, 8192) > llama8.prefillTimeMs(512, 0));
  });

  it('decode step time grows with batch and with context', () => {
    let previous = 0;
    for (const batch of [1, 2, 8, 32, 128, 256]) {
      const t = llama8.decodeStepTimeMs(batch, 1000);
      assert.ok(t > previous, `decode batch ${batch} = ${t} should exceed ${previous}`);
      previous = t;
    }
    previous = 0;
    for (const ctx of [100, 1000, 4000, 16000, 64000]) {
      const t = llama8.decodeStepTimeMs(32, ctx);
      assert.ok(t > previous, `decode context ${ctx} = ${t} should exceed ${previous}`);
      previous = t;
    }
  });

  it('lands near published and measured figures', () => {
    // vLLM on one H100: TPOT 6.48 ms at concurrency 1; the weight-read bound alone is ~4.8 ms.
    const tpot = llama8.decodeStepTimeMs(1, 300);
    assert.ok(tpot > 5.5 && tpot < 7.5, `tpot ${tpot}`);
    // Prefill of 1024 tokens is 14 TFLOP of GEMMs: at least 14.5 ms at peak on an H100.
    const prefill = llama8.prefillTimeMs(1024);
    assert.ok(prefill > 18 && prefill < 40, `prefill ${prefill}`);
    // Splitwise (2023-era engine): Llama-2-70B on 8 x H100, prompt 2048 in 137 ms, a token in ~30 ms.
    const legacy = perfModelFor('h100', 'llama-2-70b', 8, 'legacy-2023');
    const prompt = legacy.prefillTimeMs(2048);
    const token = legacy.decodeStepTimeMs(1, 576);
    assert.ok(Math.abs(prompt / 137 - 1) < 0.15, `prompt ${prompt}`);
    assert.ok(Math.abs(token / 30.6 - 1) < 0.15, `token ${token}`);
  });

  it('higher tensor parallelism takes less time for the same work on a 70B model', () => {
    for (const gpu of ['h100', 'a100-80gb']) {
      const times = [2, 4, 8].map((tp) => perfModelFor(gpu, 'llama-3.1-70b', tp));
      for (let i = 1; i < times.length; i++) {
        const [a, b] = [times[i - 1]!, times[i]!];
        assert.ok(b.prefillTimeMs(2048) < a.prefillTimeMs(2048), `${gpu} prefill tp${a.tp} -> tp${b.tp}`);
        assert.ok(
          b.decodeStepTimeMs(32, 2000) < a.decodeStepTimeMs(32, 2000),
          `${gpu} decode tp${a.tp} -> tp${b.tp}`,
        );
      }
    }
  });

  it('MoE reads only the touched experts: cheap at batch 1, all experts across a large batch', () => {
    assert.equal(expectedExpertsTouched(8, 2, 1), 2);
    assert.ok(expectedExpertsTouched(8, 2, 256) > 7.99);
    const mixtral = perfModelFor('h100', 'mixtral-8x7b', 2);
    const gpu = mixtral.gpu;
    // Time to stream every weight on one shard once: what a batch touching all experts pays.
    const allWeightsMs =
      (weightBytesPerGpu(mixtral.model, 2) /
        (gpu.hbmBandwidthBytesPerS * mixtral.calibration.memoryEfficiency)) *
      1000;
    const batch1 = mixtral.decodeStepTimeMs(1, 500);
    const batch64 = mixtral.decodeStepTimeMs(64, 500);
    assert.ok(batch1 < 0.6 * allWeightsMs, `batch 1: ${batch1} ms vs all experts ${allWeightsMs} ms`);
    assert.ok(batch64 > 0.95 * allWeightsMs, `batch 64: ${batch64} ms vs all experts ${allWeightsMs} ms`);
    // Touching 8 experts instead of 2 costs about 3x in the MoE layer (vLLM 0.14's fused MoE on an
    // H100 at TP2: 0.16 ms for 1 token, 0.49 ms for 64), a little less with attention's GEMMs added.
    assert.ok(mixtral.layerGemmTimeMs(64) > 2.5 * mixtral.layerGemmTimeMs(1));
  });

  it('stepTimeMs agrees with the conveniences and costs nothing for an empty step', () => {
    const shape: StepShape = {
      prefillSeqs: 1,
      prefillTokens: 1000,
      prefillAttentionPairs: 1000 * 24 + (1000 * 1001) / 2,
      decodeSeqs: 0,
      decodeContextTokens: 0,
      commonPrefixTokens: 0,
    };
    assert.equal(llama8.stepTimeMs(shape), llama8.prefillTimeMs(1000, 24));
    const empty: StepShape = {
      prefillSeqs: 0,
      prefillTokens: 0,
      prefillAttentionPairs: 0,
      decodeSeqs: 0,
      decodeContextTokens: 0,
      commonPrefixTokens: 0,
    };
    assert.equal(llama8.stepTimeMs(empty), 0);
    // A mixed step costs more than either half alone, less than both run separately.
    const mixed: StepShape = { ...shape, decodeSeqs: 64, decodeContextTokens: 64 * 1500 };
    const both = llama8.prefillTimeMs(1000, 24) + llama8.decodeStepTimeMs(64, 1500);
    assert.ok(llama8.stepTimeMs(mixed) > llama8.prefillTimeMs(1000, 24));
    assert.ok(llama8.stepTimeMs(mixed) < both);
  });

  it('gives finite positive times for every catalogue pair and valid tp', () => {
    for (const gpuId of gpuIds()) {
      for (const modelId of modelIds()) {
        const model = modelSpec(modelId);
        for (const tp of [1, 2, 4, 8]) {
          if (model.heads % tp !== 0) continue;
          const perf = createPerfModel(gpuSpec(gpuId), model, tp);
          for (const t of [perf.prefillTimeMs(777, 100), perf.decodeStepTimeMs(17, 900)]) {
            assert.ok(Number.isFinite(t) && t > 0, `${gpuId} ${modelId} tp${tp}: ${t}`);
          }
        }
      }
    }
  });

  it('pads decode batches to CUDA-graph capture sizes and runs larger batches eagerly', () => {
    const o = perfModelFor('h100', 'llama-2-70b', 4).operators!;
    assert.equal(o.paddedTokensOf(9), 16);
    assert.equal(o.paddedTokensOf(257), 272);
    assert.equal(o.paddedTokensOf(513), 513);
    assert.equal(o.cudaGraphMaxTokens, 512);
    assert.equal(
      perfModelFor('h100', 'llama-2-70b', 4, 'vllm', { maxNumSeqs: 128 }).operators!.cudaGraphMaxTokens,
      256,
    );
    // Batches 9 and 16 replay the same graph: only attention differs.
    const shape = (seqs: number): StepShape => ({
      prefillSeqs: 0,
      prefillTokens: 0,
      prefillAttentionPairs: 0,
      decodeSeqs: seqs,
      decodeContextTokens: seqs * 700,
      commonPrefixTokens: 0,
    });
    const gap = o.gpuStepMs(shape(16)) - o.gpuStepMs(shape(9));
    assert.ok(gap > 0 && gap < 0.3, `gap ${gap}`);
  });

  it('splits a step into terms that add up to the step time', () => {
    const o = perfModelFor('h100', 'llama-2-70b', 4, 'vllm', { maxNumSeqs: 128 }).operators!;
    for (const shape of [
      {
        prefillSeqs: 0,
        prefillTokens: 0,
        prefillAttentionPairs: 0,
        decodeSeqs: 100,
        decodeContextTokens: 80_000,
        commonPrefixTokens: 0,
      },
      {
        prefillSeqs: 1,
        prefillTokens: 1920,
        prefillAttentionPairs: 1920 * 961,
        decodeSeqs: 128,
        decodeContextTokens: 100_000,
        commonPrefixTokens: 0,
      },
    ]) {
      const b = o.stepBreakdownMs(shape);
      const parts =
        b.gemmMs +
        b.elementwiseMs +
        b.allReduceMs +
        b.prefillAttentionMs +
        b.decodeAttentionMs +
        b.cascadeAttentionMs;
      assert.ok(Math.abs(parts - b.gpuMs) < 1e-9 && Math.abs(b.stepMs - o.stepTimeMs(shape)) < 1e-9);
      assert.ok(b.allReduceMs > 0 && b.decodeAttentionMs > 0 && b.overheadMs >= 0.3);
      assert.equal(b.graph, shape.prefillTokens === 0);
    }
  });

  it('hides the per-stream cost of decode attention under a long KV read', () => {
    // Llama-2-7B is MHA: 128 sequences are 4096 KV streams. At 805 tokens of context the KV read
    // (54 GB over 32 layers) is within 15% of the HBM floor; adding the stream cost took it to 25%.
    const perf = perfModelFor('h100', 'llama-2-7b', 1);
    const o = perf.operators!;
    const kvBytes = 128 * 805 * perf.kvBytesPerToken();
    const floorMs = (kvBytes / perf.gpu.hbmBandwidthBytesPerS) * 1000;
    const attentionMs = 32 * o.decodeAttentionMs(128, 128 * 805);
    assert.ok(attentionMs > floorMs && attentionMs < 1.15 * floorMs, `${attentionMs} vs ${floorMs}`);
    // With one token of context the stream set-up is what remains.
    assert.ok(o.decodeAttentionMs(128, 128) > o.decodeAttentionMs(1, 1));
  });

  it("knows vllm serve's batch defaults per GPU", () => {
    assert.deepEqual(vllmServeBatchDefaults(gpuSpec('h100')), {
      maxNumSeqs: 1024,
      maxNumBatchedTokens: 8192,
    });
    assert.deepEqual(vllmServeBatchDefaults(gpuSpec('h200')), {
      maxNumSeqs: 1024,
      maxNumBatchedTokens: 8192,
    });
    assert.deepEqual(vllmServeBatchDefaults(gpuSpec('a100-80gb')), {
      maxNumSeqs: 256,
      maxNumBatchedTokens: 2048,
    });
    assert.deepEqual(vllmServeBatchDefaults(gpuSpec('l40s')), { maxNumSeqs: 256, maxNumBatchedTokens: 2048 });
  });

  it("charges vLLM's custom all-reduce: a few microseconds in a graph, more eagerly", () => {
    const perf = perfModelFor('h100', 'llama-2-70b', 4);
    const decodeMessage = 8 * 8192 * 2;
    const inGraphUs = perf.allReduceTimeMs(decodeMessage) * 1000;
    assert.ok(inGraphUs > 4 && inGraphUs < 7, `graph all-reduce ${inGraphUs} us`);
    // The NCCL ring of the classic model charged an order of magnitude more.
    assert.ok(perf.ncclAllReduceTimeMs(decodeMessage) * 1000 > 25);
    // 2048 tokens run eagerly.
    const eagerMs = perf.allReduceTimeMs(2048 * 8192 * 2);
    assert.ok(eagerMs > perf.allReduceTimeMs(512 * 8192 * 2));
  });

  it('rejects unknown ids with SY_ERR_UNKNOWN_NAME listing the valid ones', () => {
    assert.throws(
      () => perfModelFor('h1000', 'llama-3.1-8b', 1),
      (e: unknown) =>
        e instanceof SwitchyardError &&
        e.code === 'SY_ERR_UNKNOWN_NAME' &&
        e.message.includes('h1000') &&
        gpuIds().every((id) => e.message.includes(id)),
    );
    assert.throws(
      () => perfModelFor('h100', 'llama-9', 1),
      (e: unknown) =>
        e instanceof SwitchyardError &&
        e.code === 'SY_ERR_UNKNOWN_NAME' &&
        modelIds().every((id) => e.message.includes(id)),
    );
    assert.equal(
      codeOf(() => perfModelFor('h100', 'llama-3.1-8b', 1, 'tgi-0.1')),
      'SY_ERR_UNKNOWN_NAME',
    );
  });

  it('rejects a tp that does not split the heads with SY_ERR_INVALID_ARGUMENT', () => {
    for (const tp of [0, 3, 1.5, -2, 64]) {
      assert.equal(
        codeOf(() => perfModelFor('h100', 'llama-3.1-8b', tp)),
        'SY_ERR_INVALID_ARGUMENT',
        `tp ${tp}`,
      );
    }
    // More shards than KV heads is fine when tp is a multiple of them (KV heads are replicated).
    assert.equal(
      codeOf(() => perfModelFor('h100', 'llama-3.1-8b', 16)),
      undefined,
    );
  });
});

it('fractional token and batch counts (policies price mean requests) lie between their neighbours', () => {
  const perf = perfModelFor('h100', 'llama-3.1-8b', 1);
  for (const tokens of [100, 4291, 20_000]) {
    const lo = perf.prefillTimeMs(tokens);
    const mid = perf.prefillTimeMs(tokens + 0.5);
    const hi = perf.prefillTimeMs(tokens + 1);
    assert.ok(lo <= mid && mid <= hi, `${tokens}: ${lo} ${mid} ${hi}`);
  }
  for (const batch of [1, 37, 300]) {
    const lo = perf.decodeStepTimeMs(batch, 1000);
    const mid = perf.decodeStepTimeMs(batch + 0.5, 1000);
    const hi = perf.decodeStepTimeMs(batch + 1, 1000);
    assert.ok(lo <= mid && mid <= hi, `${batch}: ${lo} ${mid} ${hi}`);
  }
});
