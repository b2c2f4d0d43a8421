import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import { runTwin } from './run.ts';
import { serverlessTwinSettings } from './serverless-test-support.ts';

test('a 70B at TP 4 among three busy 8Bs on four GPUs is served (was: locked out all run)', () => {
  // The 8Bs, each asked twice a second in bursts of ~10 min, hold three of the four GPUs and are
  // always within a burst, so the victim rule never offers them; the 70B needs all four at once.
  // Before aging (`starved` in src/control/serverless/policies.ts) it served none of its 68
  // requests: each was refused after 120 s held.
  const workload = {
    kind: 'multi-model',
    models: 4,
    bases: ['llama-3.1-8b', 'llama-3.1-8b', 'qwen2.5-7b', 'llama-3.1-70b'],
    modelRatesRps: [2, 2, 2, 0.2],
    onMeanS: 600,
    offMeanS: 30,
    durationS: 1200,
    input: { kind: 'fixed', tokens: 512 },
    output: { kind: 'fixed', tokens: 64 },
  };
  const serverless = serverlessFromFlags(
    { serverlessPolicy: 'switchyard', gpus: 4, keepAliveS: 30, gpu: 'h100' },
    workload,
  );
  const r = runTwin({ ...serverlessTwinSettings(workload, serverless), seed: 1 });
  const big = r.models?.find((m) => m.base === 'llama-3.1-70b');
  assert.ok(big !== undefined && big.requests > 0);
  assert.ok(big.completed >= big.requests / 2, `70B: ${big.completed} of ${big.requests} served`);
  for (const m of r.models ?? []) assert.ok(m.completed + m.rejected === m.requests, m.model);
  assert.equal(r.summary.completed + r.summary.rejected, r.summary.requests);
  // Billed to the run's end, the later of the last completion and --duration (billedUntilS).
  const endS = r.billedUntilS ?? r.summary.simulatedSeconds;
  assert.ok(endS >= 1200 && endS >= r.summary.simulatedSeconds, `billed until ${endS} s`);
  assert.ok((r.gpuHours ?? 0) <= (4 * endS) / 3600 + 1e-9, `${r.gpuHours} GPU-hours`);
});
