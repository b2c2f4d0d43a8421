import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import { startupTimeMs } from '../model/startup.ts';
import { runTwin, type TwinSettings } from './run.ts';
import { fittingTp, gpuNodes, type ServerlessSettings } from './serverless-host.ts';
import { serverlessTwinSettings } from './serverless-test-support.ts';

/** Two fine-tunes taking turns on `gpus` H100s for 20 simulated minutes. */
function settings(
  policy: string,
  gpus: number,
  sleep?: ServerlessSettings['sleep'],
  traffic: { modelRatesRps: number[]; onMeanS: number; offMeanS: number } = {
    modelRatesRps: [0.3, 0.3],
    onMeanS: 60,
    offMeanS: 90,
  },
): TwinSettings {
  const workload = {
    kind: 'multi-model',
    models: traffic.modelRatesRps.length,
    bases: ['llama-3.1-8b', 'qwen2.5-7b'],
    ...traffic,
    durationS: 1200,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  return serverlessTwinSettings(
    workload,
    withSleep(
      serverlessFromFlags({ serverlessPolicy: policy, gpus, keepAliveS: 30, gpu: 'h100' }, workload),
      sleep,
    ),
  );
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
  assert.ok((s.ttftMs.cold.p50 ?? 0) > (s.ttftMs.warm.p50 ?? Number.POSITIVE_INFINITY));
});

test('the fixed keep-alive never stops the other model; ServerlessLLM stops the idle one', () => {
  const keep = runTwin(settings('keep-alive', 1)).serverless;
  const lru = runTwin(settings('serverlessllm', 1)).serverless;
  assert.equal(keep?.evictions, 0);
  assert.ok((lru?.evictions ?? 0) > 0);
});

test('without sleep mode, with a GPU per model nothing is evicted and each model starts once per wake-up', () => {
  const r = runTwin(settings('switchyard', 2, false));
  assert.equal(r.serverless?.evictions, 0);
  assert.equal(r.models?.length, 2);
  assert.equal(
    r.models?.reduce((n, m) => n + m.coldStarts, 0),
    r.coldStarts,
  );
});

test('nodes and TP: 20 GPUs in nodes of 8; a 70B base takes four H100s', () => {
  assert.deepEqual(
    gpuNodes(20, 8, 'h100').map((n) => n.gpus),
    [8, 8, 4],
  );
  assert.equal(fittingTp('llama-3.1-8b', 'h100', 8), 1);
  // Two H100s hold its weights, but at the 1024 sequences an H100 engine runs, KV for under 1,100
  // tokens: every request refused. Four leave KV for a step's 8,192 tokens and more.
  assert.equal(fittingTp('llama-3.1-70b', 'h100', 8), 4);
  assert.throws(() => fittingTp('llama-3.1-70b', 'h100', 2), /KV cache for 8192 tokens/);
  // With 256 sequences (as --max-num-seqs 256) the reserve is smaller and two H100s do.
  assert.equal(fittingTp('llama-3.1-70b', 'h100', 8, { maxNumSeqs: 256 }), 2);
  // Llama-2-70B's 32k vocabulary keeps the sampler's reserve small: two H100s at the defaults.
  assert.equal(fittingTp('llama-2-70b', 'h100', 8), 2);
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
  // Only two models ever read their weights from the store: every later start is a wake (an engine
  // started into sleep reads its weights too, a load of its own).
  assert.equal(
    s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd + s.sleep.wakes,
    (r.coldStarts ?? 0) + s.sleep.prestarts,
  );
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
    (s.ttftMs.cold.p50 ?? Number.POSITIVE_INFINITY) < (off?.ttftMs.cold.p50 ?? 0),
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
  // Swaps and engines started into sleep too: the same seed gives the same figures.
  const busy = { modelRatesRps: [2, 2, 0.05], onMeanS: 60, offMeanS: 30 };
  const c = runTwin(settings('switchyard', 1, undefined, busy));
  const d = runTwin(settings('switchyard', 1, undefined, busy));
  assert.ok(
    (c.serverless?.sleep.swaps ?? 0) > 0 && (c.serverless?.sleep.prestarts ?? 0) > 0,
    JSON.stringify(c.serverless?.sleep),
  );
  assert.deepEqual(c.serverless, d.serverless);
  assert.deepEqual(c.summary.ttftMs, d.summary.ttftMs);
});

test('drain-and-swap: two busy models on one GPU take turns, every later start a wake, p99 after warm-up far below a start-up', () => {
  const busy = { modelRatesRps: [2, 2], onMeanS: 60, offMeanS: 30 };
  const r = runTwin(settings('switchyard', 1, { loneSleepMaxMs: 3_600_000 }, busy));
  const s = r.serverless;
  assert.ok(s !== undefined);
  // Busy instances were drained so the other model's sleeper could wake on the one GPU.
  assert.ok(s.sleep.swaps > 0, JSON.stringify(s.sleep));
  // Each model read its weights from the store once; every other start was a wake.
  assert.equal(s.loadsByTier.remote, 2);
  assert.equal(
    s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd + s.sleep.wakes,
    (r.coldStarts ?? 0) + s.sleep.prestarts,
  );
  for (const p of r.instancesOverTime ?? []) assert.ok(p.ready + p.starting <= 1, JSON.stringify(p));
  // Past the warm-up nobody waits for an engine start-up (~44 s): turns cost a drain and a wake.
  const startupMs = startupTimeMs({ gpu: 'h100', model: 'llama-3.1-8b', tp: 1 });
  assert.ok(s.ttftMsAfterWarmup.count > 0);
  assert.ok(s.ttftMsAfterWarmup.p99 < startupMs / 3, `${s.ttftMsAfterWarmup.p99} vs ${startupMs}`);
  // The whole run's cold p99 still holds the first starts, a start-up each.
  assert.ok((s.ttftMs.cold.p99 ?? 0) > startupMs, `${s.ttftMs.cold.p99}`);
});

test('a model not yet asked for is started into sleep beside an awake one, so its first start is a wake', () => {
  const rare = { modelRatesRps: [0.05, 0.05, 0.05, 0.05], onMeanS: 60, offMeanS: 300 };
  const r = runTwin(settings('switchyard', 1, { loneSleepMaxMs: 3_600_000 }, rare));
  const s = r.serverless;
  assert.ok(s !== undefined);
  assert.ok(s.sleep.prestarts > 0, JSON.stringify(s.sleep));
  // Four models, one GPU: each model's engine was made once, by a start or a start into sleep, and
  // each read its weights through a tier's lane (a start into sleep too: four loads, all from the store).
  assert.equal(s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd, 4);
  assert.equal(s.loadsByTier.remote, 4);
  // Started into sleep only on the GPU billed anyway: billing stays within the run's span (one GPU
  // to the later of the last completion and the workload's declared end).
  assert.ok((r.billedUntilS ?? 0) >= r.summary.simulatedSeconds);
  assert.ok((r.gpuHours ?? 0) <= (r.billedUntilS ?? 0) / 3600 + 1e-9);
  const off = runTwin(settings('switchyard', 1, false, rare)).serverless;
  assert.equal(off?.sleep.prestarts, 0);
});

test('a model with no instance ready yet whose requests wait is started into sleep, so it gets in beside two busy models taking turns on the GPU', () => {
  // m0 and m1 busy on the one GPU take turns by sleeping and waking; m2 has no sleeper, and every
  // loaded instance is within a burst, so the policy offers no victim for its fresh start. Before,
  // only models with no request held were started into sleep: m2 served 31 of its 705 requests and
  // m1 1447 of 1947 (1174 refused after waiting 120 s).
  const busy = { modelRatesRps: [2, 2, 0.5], onMeanS: 600, offMeanS: 30 };
  const r = runTwin(settings('switchyard', 1, undefined, busy));
  const s = r.serverless;
  assert.ok(s !== undefined);
  assert.ok(s.sleep.prestarts > 0, JSON.stringify(s.sleep));
  assert.equal(r.models?.length, 3);
  for (const m of r.models ?? []) {
    assert.ok(m.requests > 0, m.model);
    assert.equal(m.completed, m.requests, `${m.model}: ${m.completed} of ${m.requests} served`);
  }
  assert.equal(r.summary.completed + r.summary.rejected, r.summary.requests);
  assert.equal(r.summary.rejected, 0);
});

test('a swap for a TP 4 sleeper behind several blockers, one stopping at once, runs to the end (was: a crash)', () => {
  // m01, a 70B at TP 4 among 8Bs, sleeps on four GPUs held by four models' instances; draining the
  // first idle one stops it at once, which swapped for m01 again and stopped a later blocker before
  // the first loop reached it: drainForSwap read the gone instance (TypeError at 1316 s).
  const workload = {
    kind: 'multi-model',
    models: 16,
    zipfExponent: 1.4,
    rateRps: 10,
    bases: [
      'llama-3.1-8b',
      'llama-3.1-70b',
      'llama-3.1-8b',
      'qwen2.5-7b',
      'llama-3.1-8b',
      'llama-3.1-8b',
      'qwen2.5-7b',
      'llama-3.1-8b',
      'llama-2-7b',
    ],
    durationS: 1320,
    input: { kind: 'fixed', tokens: 1024 },
    output: { kind: 'fixed', tokens: 128 },
  };
  const serverless = serverlessFromFlags(
    { serverlessPolicy: 'switchyard', gpus: 8, keepAliveS: 300, gpu: 'h100' },
    workload,
  );
  const r = runTwin({ ...serverlessTwinSettings(workload, serverless), seed: 2 });
  const s = r.serverless;
  assert.ok(s !== undefined);
  assert.ok(s.sleep.swaps > 0, JSON.stringify(s.sleep));
  assert.equal(r.summary.completed + r.summary.rejected, r.summary.requests);
  assert.ok((r.gpuHours ?? 0) * 3600 <= 8 * r.summary.simulatedSeconds * (1 + 1e-9));
});

test('boot into sleep (opt-in): models never asked for start into sleep on free GPUs, so first starts are wakes; off by default', () => {
  const rare = { modelRatesRps: [0.02, 0.02, 0.02, 0.02], onMeanS: 60, offMeanS: 600 };
  const hold = { loneSleepMaxMs: 3_600_000, bootIntoSleep: true };
  const r = runTwin(settings('switchyard', 2, hold, rare));
  const s = r.serverless;
  assert.ok(s !== undefined);
  // At the first decision both GPUs are free and nothing waits: engines boot there.
  assert.ok(s.sleep.boots > 0 && s.sleep.boots <= s.sleep.prestarts, JSON.stringify(s.sleep));
  // Each model's engine is made once (a load, a start into sleep beside an awake one, or a boot),
  // and the booted models' first starts are wakes: fewer loads than models.
  // Every engine reads its weights through a tier, a boot's too. (Re-targets, which would read
  // weights into an engine already made, are opt-in and off here.)
  // One more: m1's requests waited 15 s (a swap residency) on m3's start holding its sleeper's
  // GPU while GPU 1 was free, so m1 started fresh there (swapVerdict's freeGpu), and that start
  // stopped unused when m3 was ready and m1's sleeper woke.
  const loads = s.loadsByTier.remote + s.loadsByTier.dram + s.loadsByTier.ssd;
  assert.equal(s.retargets, 0);
  assert.equal(loads, 5);
  const startLoads = loads - s.sleep.prestarts;
  assert.ok(startLoads < 4 && s.sleep.wakes > 0, JSON.stringify({ startLoads, ...s.sleep }));
  // Billed while held: two GPUs at most, over the run's span.
  assert.ok((r.gpuHours ?? 0) <= (2 * r.summary.simulatedSeconds) / 3600 + 1e-9);
  const off = runTwin(settings('switchyard', 2, { ...hold, bootIntoSleep: false }, rare)).serverless;
  assert.ok(off !== undefined);
  assert.equal(off.sleep.boots, 0);
  // Off unless asked: the default boots nothing either.
  const plain = runTwin(settings('switchyard', 2, { loneSleepMaxMs: 3_600_000 }, rare)).serverless;
  assert.equal(plain?.sleep.boots, 0);
  assert.deepEqual(plain, off);
  // Without it a model's first request waits for a start-up; with it, for a wake.
  assert.ok(
    (s.ttftMs.cold.p50 ?? Number.POSITIVE_INFINITY) < (off.ttftMs.cold.p50 ?? 0),
    `${s.ttftMs.cold.p50} vs ${off.ttftMs.cold.p50}`,
  );
  // Deterministic: the same seed gives the same figures.
  assert.deepEqual(runTwin(settings('switchyard', 2, hold, rare)).serverless, s);
  // The hold rule applies to booted GPUs: at the default hold (60 s, then by value within the GPU
  // account) sleepers nobody asks for are stopped, and the bill is below the hour-long hold's.
  const held = runTwin(settings('switchyard', 2, { bootIntoSleep: true }, rare));
  assert.ok((held.serverless?.sleep.boots ?? 0) > 0);
  assert.ok((held.serverless?.sleep.stoppedAsleep ?? 0) > 0, JSON.stringify(held.serverless?.sleep));
  assert.ok((held.gpuHours ?? 0) < (r.gpuHours ?? 0), `${held.gpuHours} vs ${r.gpuHours}`);
});

/** `models` models sharing `rateRps` evenly on 4 H100s, two per node, keep-alive 3 s, for `durationS`. */
function crowd(policy: string, models: number, rateRps: number, durationS: number): TwinSettings {
  const workload = {
    kind: 'multi-model',
    models,
    zipfExponent: 0,
    rateRps,
    bases: ['llama-3.1-8b', 'qwen2.5-7b'],
    durationS,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  return {
    ...settings(policy, 4),
    seed: 1,
    workload,
    serverless: serverlessFromFlags(
      { serverlessPolicy: policy, gpus: 4, gpusPerNode: 2, keepAliveS: 3, gpu: 'h100' },
      workload,
    ),
  };
}

test('GPU-hours end at the run’s end, as the instance counts do, when keep-alives and held requests run past it', () => {
  // 200 models on 4 GPUs: most requests wait in a buffer and time out after the last completion,
  // so the loop goes on ticking (and keep-alives stop instances) past the run's end.
  for (const policy of ['keep-alive', 'switchyard']) {
    const r = runTwin(crowd(policy, 200, 6, 30));
    const s = r.serverless;
    assert.ok(s !== undefined);
    const endS = r.summary.simulatedSeconds;
    const series = r.instancesOverTime ?? [];
    assert.ok((series.at(-1)?.timeS ?? 0) <= endS, `${series.at(-1)?.timeS} past ${endS}`);
    // Every base is tp1 on an H100: instances are GPUs. The series samples at ticks (2 s), so
    // starts and stops between ticks leave it a little off the bill; a tail past the end would not.
    let gpuS = 0;
    for (const [i, p] of series.entries()) {
      gpuS += (p.ready + p.starting + p.draining) * ((series[i + 1]?.timeS ?? endS) - p.timeS);
    }
    const integral = gpuS / 3600 + s.sleep.loneGpuHours;
    const billed = r.gpuHours ?? 0;
    assert.ok(
      Math.abs(integral - billed) <= 0.03 * billed,
      `${policy}: series ${integral} vs billed ${billed}`,
    );
    // No request found a ready instance: no warm figures, rather than a 0 ms no request saw.
    assert.equal(s.warmRequests, 0);
    assert.deepEqual(s.ttftMs.warm, { mean: null, p50: null, p90: null, p99: null, count: 0 });
    assert.equal(s.ttftMs.cold.count, s.coldRequests);
    assert.ok((s.ttftMs.cold.p50 ?? 0) > 0);
  }
});
