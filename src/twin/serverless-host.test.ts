import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import { runTwin, type TwinSettings } from './run.ts';
import { fittingTp, gpuNodes, type ServerlessSettings } from './serverless-host.ts';

/** Two fine-tunes taking turns on `gpus` H100s for 20 simulated minutes. */
function settings(policy: string, gpus: number, sleep?: ServerlessSettings['sleep']): TwinSettings {
  const workload = {
    kind: 'multi-model',
    models: 2,
    bases: ['llama-3.1-8b', 'qwen2.5-7b'],
    modelRatesRps: [0.3, 0.3],
    onMeanS: 60,
    offMeanS: 90,
    durationS: 1200,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  return {
    seed: 3,
    policy: 'least-request',
    policies: {},
    cluster: { groups: [] },
    engine: {},
    workload,
    slo: { ttftMs: 2000, tpotMs: 100 },
    output: {},
    expectedRequests: undefined,
    serverless: withSleep(
      serverlessFromFlags({ serverlessPolicy: policy, gpus, keepAliveS: 30, gpu: 'h100' }, workload),
      sleep,
    ),
  };
}

function withSleep(
  s: ServerlessSettings | undefined,
  sleep: ServerlessSettings['sleep'],
): ServerlessSettings | undefined {
  return s === undefined || sleep === undefined ? s : { ...s, sleep };
}

test('two models on one GPU: starts come from the model cache, a model back on its node loads from DRAM', () => {
  const r = runTwin(settings('serverlessllm', 1));
  const s = r.serverless;
  assert.ok(s !== undefined);
  // The first start of each model reads the remote store; later ones find the weights in DRAM.
  assert.equal(s.loadsByTier.remote, 2);
  assert.ok(s.loadsByTier.dram > 0);
  assert.equal(s.loadsByTier.dram + s.loadsByTier.remote + s.loadsByTier.ssd, r.coldStarts);
  // Never more than the one GPU held at once: billed GPU-hours stay within the run's span.
  for (const p of r.instancesOverTime ?? []) assert.ok(p.ready + p.starting <= 1, JSON.stringify(p));
  assert.ok((r.gpuHours ?? 0) <= r.summary.simulatedSeconds / 3600 + 1e-9);
  assert.equal(s.coldRequests + s.warmRequests, r.summary.completed);
  assert.ok(s.ttftMs.cold.p50 > s.ttftMs.warm.p50);
});

test('the fixed keep-alive never stops the other model; ServerlessLLM stops the idle one', () => {
  const keep = runTwin(settings('keep-alive', 1)).serverless;
  const lru = runTwin(settings('serverlessllm', 1)).serverless;
  assert.equal(keep?.evictions, 0);
  assert.ok((lru?.evictions ?? 0) > 0);
});

test('with a GPU per model nothing is evicted and each model starts once per wake-up', () => {
  const r = runTwin(settings('switchyard', 2));
  assert.equal(r.serverless?.evictions, 0);
  assert.equal(r.models?.length, 2);
  assert.equal(
    r.models?.reduce((n, m) => n + m.coldStarts, 0),
    r.coldStarts,
  );
});

test('nodes and TP: 20 GPUs in nodes of 8; a 70B base takes two H100s', () => {
  assert.deepEqual(
    gpuNodes(20, 8, 'h100').map((n) => n.gpus),
    [8, 8, 4],
  );
  assert.equal(fittingTp('llama-3.1-8b', 'h100', 8), 1);
  assert.equal(fittingTp('llama-3.1-70b', 'h100', 8), 2);
  assert.throws(() => fittingTp('llama-3.1-70b', 'h100', 1));
  assert.throws(() => gpuNodes(0, 8, 'h100'));
});

test('sleep mode: two models time-share one GPU by sleeping and waking, never paying the engine start-up again', () => {
  const r = runTwin(settings('switchyard', 1, { loneSleepMaxMs: 3_600_000 }));
  const s = r.serverless;
  assert.ok(s !== undefined);
  assert.equal(s.sleep.on, true);
  assert.ok(s.sleep.wakes > 0 && s.sleep.sleeps >= s.sleep.wakes, JSON.stringify(s.sleep));
  // A wake is the 8B shard over PCIe (~0.64 s) plus 0.3 s, not the ~44 s start-up.
  assert.ok(s.sleep.wakeMsMean > 500 && s.sleep.wakeMsMean < 1500, `${s.sleep.wakeMsMean}`);
  // Only two models ever read their weights from a tier: every later start is a wake.
  assert.equal(s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd + s.sleep.wakes, r.coldStarts);
  assert.equal(s.loadsByTier.remote, 2);
  // One GPU: never more than one awake or starting instance on it, and billing within the run's span.
  for (const p of r.instancesOverTime ?? []) assert.ok(p.ready + p.starting <= 1, JSON.stringify(p));
  assert.ok((r.gpuHours ?? 0) <= r.summary.simulatedSeconds / 3600 + 1e-9);
  // The sleepers' own time is billed too (the GPU is held while any instance is there).
  assert.ok(s.sleep.loneGpuHours > 0);
  const off = runTwin(settings('switchyard', 1, false)).serverless;
  assert.equal(off?.sleep.on, false);
  assert.equal(off?.sleep.wakes, 0);
  assert.ok(
    s.ttftMs.cold.p50 < (off?.ttftMs.cold.p50 ?? 0),
    `${s.ttftMs.cold.p50} vs ${off?.ttftMs.cold.p50}`,
  );
});

test('sleep mode is off for the baselines, and a run with it is deterministic', () => {
  assert.equal(runTwin(settings('serverlessllm', 1)).serverless?.sleep.on, false);
  const a = runTwin(settings('switchyard', 1, { loneSleepMaxMs: 20_000 }));
  const b = runTwin(settings('switchyard', 1, { loneSleepMaxMs: 20_000 }));
  assert.deepEqual(a.serverless, b.serverless);
  assert.equal(a.gpuHours, b.gpuHours);
  assert.ok((a.serverless?.sleep.stoppedAsleep ?? 0) > 0);
});
