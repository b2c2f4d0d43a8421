/** `switchyard sim --plan-pd --gpus 8` as a real child process: the table, --json, and its refusals. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

test('sim --plan-pd --trace leaves out requests past the model context and says how many', async () => {
  // llama-3.1-8b (the default model) has a 131072-token context: two rows of 200k-token prompts.
  const trace = join(dir, 'past-context.csv');
  const rows = Array.from({ length: 20 }, (_, i) => {
    const stamp = `2024-05-10 00:00:${String(i).padStart(2, '0')}.0000000`;
    return `${stamp},${i % 10 === 3 ? 200_000 : 1000},100`;
  });
  writeFileSync(trace, `TIMESTAMP,ContextTokens,GeneratedTokens\n${rows.join('\n')}\n`);
  const file = join(dir, 'past-context.json');
  const run = await runCli(['sim', '--plan-pd', '--gpus', '8', '--trace', trace, '--json', file]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(
    run.stdout,
    /left out 2 requests past llama-3\.1-8b's 131072-token context \(prompt plus output\): the run refuses them/,
  );
  const plan = JSON.parse(readFileSync(file, 'utf8')) as { pastContextRequests: number };
  assert.equal(plan.pastContextRequests, 2);
});
