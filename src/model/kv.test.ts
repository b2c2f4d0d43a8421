import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { GiB, KiB } from '../core/units.ts';
import { gpuSpec } from './gpus.ts';
import {
  kvBlocksThatFit,
  kvBytesPerToken,
  kvBytesPerTokenPerGpu,
  kvCacheBytesPerGpu,
  peakActivationBytes,
  weightBytesPerGpu,
} from './kv.ts';
import { modelSpec, modelWeightBytes, parameterCount } from './models.ts';
import { perfModelFor } from './perf.ts';

describe('KV and weight sizing', () => {
  it('sizes KV per token: Llama-3.1-8B 128 KiB, 70B 320 KiB', () => {
    assert.equal(kvBytesPerToken(modelSpec('llama-3.1-8b')), 128 * KiB);
    assert.equal(kvBytesPerToken(modelSpec('llama-3.1-70b')), 320 * KiB);
    assert.equal(kvBytesPerToken(modelSpec('llama-2-7b')), 512 * KiB);
    assert.equal(perfModelFor('h100', 'llama-3.1-70b', 4).kvBytesPerToken(), 320 * KiB);
  });

  it('splits KV across shards, replicating KV heads past their count', () => {
    const m = modelSpec('llama-3.1-70b');
    assert.equal(kvBytesPerTokenPerGpu(m, 4), 80 * KiB);
    assert.equal(kvBytesPerTokenPerGpu(m, 8), 40 * KiB);
    // 8 KV heads over 16 shards: each shard still holds a whole head.
    assert.equal(kvBytesPerTokenPerGpu(m, 16), 40 * KiB);
  });

  it('counts parameters as the model cards state', () => {
    const billions = (id: string): number => parameterCount(modelSpec(id)) / 1e9;
    assert.ok(Math.abs(billions('llama-3.1-8b') - 8.03) < 0.05);
    assert.ok(Math.abs(billions('llama-3.1-70b') - 70.6) < 0.2);
    assert.ok(Math.abs(billions('llama-2-7b') - 6.74) < 0.05);
    assert.ok(Math.abs(billions('mixtral-8x7b') - 46.7) < 0.2);
    assert.ok(Math.abs(billions('qwen2.5-7b') - 7.6) < 0.1);
    assert.ok(Math.abs(billions('opt-13b') - 12.9) < 0.2);
    assert.ok(Math.abs(billions('bloom-176b') - 176) < 2);
    const m = modelSpec('llama-2-70b');
    assert.ok(Math.abs(weightBytesPerGpu(m, 8) * 8 - modelWeightBytes(m)) / modelWeightBytes(m) < 0.01);
  });

  it('fits a sane number of blocks: Llama-3.1-8B on one H100 at 0.9', () => {
    const blocks = kvBlocksThatFit(gpuSpec('h100'), modelSpec('llama-3.1-8b'), 1, 0.9, 16);
    // 0.9 x 79.6 GiB - 15 GiB of weights - a few GiB of reserve, in 2 MiB blocks: 25-30 thousand.
    assert.ok(blocks > 25_000 && blocks < 30_000, `blocks ${blocks}`);
    assert.ok(kvBlocksThatFit(gpuSpec('h100'), modelSpec('llama-3.1-8b'), 1, 0.5, 16) < blocks);
    assert.equal(
      kvBlocksThatFit(gpuSpec('h100'), modelSpec('llama-3.1-8b'), 1, 0.9, 32),
      Math.floor(blocks / 2),
    );
  });

  it('sizes the KV cache as vLLM logged it: Llama-3.1-8B on an H100 at 0.9, max_num_seqs 1024', () => {
    // vLLM's start-up log (llm-d-benchmark): 14.99 GiB weights, 4.76 GiB peak activation,
    // 0.13 GiB non-torch, -0.45 GiB CUDA graphs, 51.38 GiB of KV cache.
    const options = { maxNumSeqs: 1024, maxNumBatchedTokens: 8192 };
    const m = modelSpec('llama-3.1-8b');
    const peak = peakActivationBytes(m, 1, options) / GiB;
    assert.ok(Math.abs(peak / 4.76 - 1) < 0.03, `peak activation ${peak} GiB`);
    const kv = kvCacheBytesPerGpu(gpuSpec('h100'), m, 1, 0.9, options) / GiB;
    assert.ok(Math.abs(kv / 51.38 - 1) < 0.02, `KV ${kv} GiB`);
    // A smaller max_num_seqs shrinks the sampler's warm-up and leaves more KV.
    assert.ok(kvCacheBytesPerGpu(gpuSpec('h100'), m, 1, 0.9, { ...options, maxNumSeqs: 128 }) / GiB > kv + 3);
    assert.ok(
      kvBlocksThatFit(gpuSpec('h100'), m, 1, 0.9, 16, { maxNumSeqs: 128 }) >
        kvBlocksThatFit(gpuSpec('h100'), m, 1, 0.9, 16, options),
    );
  });

  it('throws SY_ERR_CAPACITY when the weights do not fit', () => {
    assert.throws(
      () => kvBlocksThatFit(gpuSpec('l4'), modelSpec('llama-2-70b'), 1, 0.9, 16),
      (e: unknown) =>
        e instanceof SwitchyardError && e.code === 'SY_ERR_CAPACITY' && e.message.includes('l4'),
    );
    assert.ok(kvBlocksThatFit(gpuSpec('h100'), modelSpec('llama-2-70b'), 2, 0.9, 16) > 0);
  });

  it('rejects a bad utilisation or block size', () => {
    for (const [util, block] of [
      [0, 16],
      [1.2, 16],
      [0.9, 0],
      [0.9, 7.5],
    ] as const) {
      assert.throws(
        () => kvBlocksThatFit(gpuSpec('h100'), modelSpec('llama-3.1-8b'), 1, util, block),
        (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT',
      );
    }
  });
});
