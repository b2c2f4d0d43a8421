/** `switchyard sim --plan-pd --gpus 8` as a real child process: the table, --json, and its refusals. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

interface PlanJson {
  gpusMax: number;
  rateRps: number | null;
  split: {
    prefill: { instances: number; tp: number };
    decode: { instances: number; tp: number };
    gpus: number;
    goodputRps: number;
    goodputPerGpuRps: number;
  };
  colocated: { instances: number; tp: number; goodputPerGpuRps: number } | null;
}

const dir = mkdtempSync(join(tmpdir(), 'switchyard-plan-pd-'));

test('sim --plan-pd --gpus 8 prints the split beside the colocated cluster, writes it as JSON and simulates nothing', async () => {
  const file = join(dir, 'plan.json');
  const run = await runCli(['sim', '--plan-pd', '--gpus', '8', '--json', file, '--no-progress']);
  assert.equal(run.code, 0, run.stderr);
  const plan = JSON.parse(readFileSync(file, 'utf8')) as PlanJson;
  const s = plan.split;
  assert.equal(plan.gpusMax, 8);
  assert.equal(plan.rateRps, null);
  assert.ok(s.gpus <= 8 && s.prefill.instances >= 1 && s.decode.instances >= 1);
  assert.match(
    run.stdout,
    new RegExp(
      `disaggregated\\s+${s.prefill.instances} x tp${s.prefill.tp}\\s+${s.decode.instances} x tp${s.decode.tp}\\s+` +
        `${s.gpus}\\s+${s.goodputRps.toFixed(2)}\\s+${s.goodputPerGpuRps.toFixed(2)}`,
    ),
  );
  assert.ok(plan.colocated !== null);
  assert.match(run.stdout, new RegExp(`colocated\\s+${plan.colocated.instances} x tp${plan.colocated.tp}`));
  assert.match(run.stdout, /goodput per GPU vs colocated: \d+\.\d\dx/);
  // Nothing was simulated: the plan's six lines and the JSON file's, no summary table.
  assert.equal(run.stdout.trim().split('\n').length, 7, run.stdout);
  assert.match(run.stdout, /wrote .*plan\.json\n$/);
});

test('sim --plan-pd refuses a missing or too small --gpus, naming the flag', async () => {
  const [missing, tooFew] = await Promise.all([
    runCli(['sim', '--plan-pd']),
    runCli(['sim', '--plan-pd', '--gpus', '1']),
  ]);
  for (const run of [missing, tooFew]) {
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /invalid gpus .*\[SY_ERR_INVALID_ARGUMENT\]/);
  }
});
