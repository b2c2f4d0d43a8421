/** `switchyard plan-gpus` as a real child process: the plan, --json, a price file, and its refusals. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { runCli } from './support/cli.ts';

const PRICES = fileURLToPath(new URL('../../data/prices/gpu-prices.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'switchyard-plan-gpus-'));
const SHORT_LOOSE = [
  'plan-gpus',
  '--model',
  'llama-3.1-8b',
  '--rate',
  '2',
  '--input-tokens',
  '100',
  '--output-tokens',
  '100',
  '--slo-ttft-ms',
  '5000',
  '--slo-tpot-ms',
  '200',
];

interface PlanJson {
  usdPerHour: number;
  gpuCount: number;
  variants: { variant: { gpu: string; tp: number }; instances: number }[];
  prices: { url: string };
}

test('plan-gpus prints the mix, its hourly cost and the price source; --json carries the same plan', async () => {
  const [table, json] = await Promise.all([runCli(SHORT_LOOSE), runCli([...SHORT_LOOSE, '--json'])]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^llama-3\.1-8b at 2 req\/s: \$[\d.]+\/hour on \d+ GPUs?\n/);
  assert.match(table.stdout, /instances\s+gpu\s+tp\s+\$\/hour/);
  assert.match(table.stdout, /https:\/\/github\.com\/skypilot-org\/skypilot-catalog\//);
  assert.match(table.stdout, /not considered \(no price\): a40/);
  assert.equal(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout) as PlanJson;
  assert.ok(plan.variants.length > 0);
  assert.match(
    table.stdout,
    new RegExp(`\\$${plan.usdPerHour.toFixed(2).replace('.', '\\.')}/hour on ${plan.gpuCount} GPUs?\n`),
  );
  // One GPU reads as one (this plan's is a single L4: it printed "1 GPUs").
  assert.ok(table.stdout.includes(plan.gpuCount === 1 ? ' on 1 GPU\n' : ` on ${plan.gpuCount} GPUs\n`));
  for (const v of plan.variants)
    assert.match(table.stdout, new RegExp(`\\s${v.instances}\\s+${v.variant.gpu}\\s+${v.variant.tp}\\s`));
});

test('plan-gpus --prices: raising the chosen GPU price moves the plan off it', async () => {
  const before = await runCli([...SHORT_LOOSE, '--json']);
  assert.equal(before.code, 0, before.stderr);
  const chosen = (JSON.parse(before.stdout) as PlanJson).variants[0]?.variant.gpu;
  assert.ok(chosen !== undefined);
  const doc = parse(readFileSync(PRICES, 'utf8')) as {
    gpus: { gpu: string; instanceUsdPerHour: number; gpusPerInstance: number; usdPerGpuHour: number }[];
  };
  for (const row of doc.gpus) {
    if (row.gpu !== chosen) continue;
    row.instanceUsdPerHour = 800;
    row.usdPerGpuHour = 800 / row.gpusPerInstance;
  }
  const file = join(dir, 'dear.yaml');
  writeFileSync(file, stringify(doc));
  const after = await runCli([...SHORT_LOOSE, '--json', '--prices', file]);
  assert.equal(after.code, 0, after.stderr);
  const plan = JSON.parse(after.stdout) as PlanJson;
  assert.ok(!plan.variants.some((v) => v.variant.gpu === chosen), `still on ${chosen}`);
});

test('plan-gpus refuses an impossible SLO, a model that fits no GPU and a missing workload, with exit 2 and a stable code', async () => {
  const [slo, unfit, usage] = await Promise.all([
    runCli([
      'plan-gpus',
      '--model',
      'llama-3.1-8b',
      '--rate',
      '1',
      '--input-tokens',
      '8000',
      '--output-tokens',
      '200',
      '--slo-ttft-ms',
      '10',
    ]),
    runCli([
      'plan-gpus',
      '--model',
      'bloom-176b',
      '--rate',
      '1',
      '--input-tokens',
      '100',
      '--output-tokens',
      '100',
      '--gpus',
      'l4,a10g',
    ]),
    runCli(['plan-gpus', '--model', 'llama-3.1-8b', '--rate', '1']),
  ]);
  assert.equal(slo.code, 2, slo.stdout);
  assert.match(
    slo.stderr,
    /no GPU variant serves llama-3\.1-8b requests of 8000 input \/ 200 output tokens.*\[SY_ERR_SLO_UNREACHABLE\]/,
  );
  assert.doesNotMatch(slo.stderr, /\n\s+at /);
  assert.equal(unfit.code, 2, unfit.stdout);
  assert.match(unfit.stderr, /bloom-176b fits no priced GPU variant.*\[SY_ERR_CAPACITY\]/);
  assert.equal(usage.code, 2, usage.stdout);
  assert.match(
    usage.stderr,
    /--trace FILE, or both --input-tokens N and --output-tokens N \[SY_ERR_INVALID_ARGUMENT\]/,
  );
});

test('plan-gpus --help shows the flags and examples', async () => {
  const run = await runCli(['plan-gpus', '--help']);
  assert.equal(run.code, 0, run.stderr);
  for (const flag of [
    '--model',
    '--rate',
    '--slo-ttft-ms',
    '--slo-tpot-ms',
    '--trace',
    '--prices',
    '--gpus',
    '--tp',
    '--json',
  ]) {
    assert.ok(run.stdout.includes(flag), flag);
  }
  assert.match(run.stdout, /Examples:\n\s+switchyard plan-gpus --model llama-3\.1-8b/);
});
