import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import {
  engineConfigsFor,
  parseWithSchema,
  simConfigFileSchema,
  toClusterSpec,
  toEngineConfig,
} from './config.ts';
import { runSimulation } from './simulator.ts';

test("unset batch limits take vllm serve's defaults for the GPU; explicit options win", () => {
  const h100 = toEngineConfig({}, 'h100');
  assert.equal(h100.maxNumSeqs, 1024);
  assert.equal(h100.maxNumBatchedTokens, 8192);
  const h200 = toEngineConfig(undefined, 'h200');
  assert.deepEqual([h200.maxNumSeqs, h200.maxNumBatchedTokens], [1024, 8192]);
  const a100 = toEngineConfig({}, 'a100-80gb');
  assert.deepEqual([a100.maxNumSeqs, a100.maxNumBatchedTokens], [256, 2048]);
  const l4 = toEngineConfig({ blockSize: 32 }, 'l4');
  assert.deepEqual([l4.maxNumSeqs, l4.maxNumBatchedTokens, l4.blockSize], [256, 2048, 32]);
  const explicit = toEngineConfig({ maxNumSeqs: 128, maxNumBatchedTokens: 2048 }, 'h100');
  assert.deepEqual([explicit.maxNumSeqs, explicit.maxNumBatchedTokens], [128, 2048]);
  const onlySeqs = toEngineConfig({ maxNumSeqs: 64 }, 'h100');
  assert.deepEqual([onlySeqs.maxNumSeqs, onlySeqs.maxNumBatchedTokens], [64, 8192]);
  // No GPU: the GPU-independent defaults, as before.
  assert.deepEqual(toEngineConfig({}), DEFAULT_ENGINE_CONFIG);
});

test('an unknown GPU or a token budget below the block size is refused', () => {
  assert.throws(() => toEngineConfig({}, 'no-such-gpu'), /no-such-gpu/);
  assert.throws(
    () => toEngineConfig({ blockSize: 4096 }, 'a100-80gb'),
    (error: Error & { code?: string }) => error.code === 'SY_ERR_INVALID_CONFIG',
  );
});

test('a mixed cluster resolves the defaults per group', () => {
  const cluster = {
    groups: [
      { count: 2, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 },
      { count: 1, gpu: 'a100-80gb', model: 'llama-3.1-8b', tp: 1 },
    ],
  };
  const configs = engineConfigsFor({ enablePrefixCaching: false }, cluster);
  assert.deepEqual(
    configs.map((c) => [c.maxNumSeqs, c.maxNumBatchedTokens, c.enablePrefixCaching]),
    [
      [1024, 8192, false],
      [256, 2048, false],
    ],
  );
});

test("the simulator builds each group's engines from that group's options", () => {
  const cluster = {
    groups: [
      { count: 1, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 },
      { count: 1, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 },
    ],
  };
  const work = () =>
    createWorkload(
      {
        kind: 'poisson',
        rateRps: 4,
        maxRequests: 40,
        input: { kind: 'uniform', lo: 512, hi: 1024 },
        output: { kind: 'uniform', lo: 1, hi: 32 },
      },
      new Rng(3),
    );
  const run = (tinySecond: boolean) =>
    runSimulation(work(), {
      seed: 1,
      cluster,
      engine: DEFAULT_ENGINE_CONFIG,
      // Four 16-token blocks hold no prompt here: every request sent to the second group is refused.
      engineByGroup: tinySecond
        ? [DEFAULT_ENGINE_CONFIG, { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 4 }]
        : undefined,
      policy: createRoutingPolicy('round-robin'),
      slo: { ttftMs: 1000, tpotMs: 50 },
      workload: 'test',
    }).summary;
  assert.equal(run(false).rejected, 0);
  const split = run(true);
  const second = split.perInstance[1];
  assert.ok(second !== undefined && second.requests > 0);
  assert.equal(split.rejected, second.requests);
  assert.equal(split.completed, split.perInstance[0]?.requests);
});

test('a config file may name GPUs and models as vendors and Hugging Face do; the run sees catalogue ids', () => {
  const file = parseWithSchema(
    simConfigFileSchema,
    { cluster: { instances: 2, gpu: 'NVIDIA H100 80GB HBM3', model: 'meta-llama/Llama-3.1-8B-Instruct' } },
    'config',
  );
  assert.deepEqual(toClusterSpec(file.cluster).groups, [
    { count: 2, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 },
  ]);
  const groups = parseWithSchema(
    simConfigFileSchema,
    {
      cluster: {
        groups: [{ count: 1, gpu: 'A100-SXM4-80GB', model: 'bot', base: 'Qwen/Qwen2.5-7B-Instruct' }],
      },
    },
    'config',
  );
  assert.deepEqual(toClusterSpec(groups.cluster).groups, [
    { count: 1, gpu: 'a100-80gb', model: 'bot', base: 'qwen2.5-7b', tp: 1 },
  ]);
  // An unknown name is kept and refused where used, as before, with SY_ERR_UNKNOWN_NAME.
  assert.throws(() => toEngineConfig({}, 'H100 PCIe'), { code: 'SY_ERR_UNKNOWN_NAME', message: /PCIe card/ });
});
