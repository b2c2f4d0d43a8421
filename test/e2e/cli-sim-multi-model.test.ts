/** End-to-end runs of `switchyard sim --workload multi-model`: the flags reach the generator, bad ones exit 2. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-mm-'));
const common = ['--instances', '2', '--input-tokens', '256', '--output-tokens', '32', '--no-progress'];

test('sim --workload multi-model --models N --zipf S runs the workload it names', async () => {
  const out = join(dir, 'mm.json');
  const run = await runCli([
    'sim',
    '--workload',
    'multi-model',
    '--models',
    '8',
    '--zipf',
    '1.2',
    '--rate',
    '2',
    '--duration',
    '300',
    ...common,
    '--json',
    out,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const s = JSON.parse(readFileSync(out, 'utf8')) as { requests: number; workload: string };
  assert.match(s.workload, /^multi-model 8 models zipf 1\.2 at 2 req\/s, on-off 300\/30 s \(300 s\)/);
  // About 600 requests; on/off arrivals vary more than Poisson ones, so the bound is loose.
  assert.ok(s.requests > 300 && s.requests < 900, `${s.requests} requests`);
});

test('sim rejects multi-model flags out of range or without their kind, with exit 2', async () => {
  const tooMany = await runCli(['sim', '--workload', 'multi-model', '--models', '1001', ...common]);
  assert.equal(tooMany.code, 2, tooMany.stderr);
  assert.match(
    tooMany.stderr,
    /--models <n>' argument '1001' is invalid. '1001' is not an integer in 1..1000/,
  );
  const missing = await runCli(['sim', '--workload', 'multi-model', ...common]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /--models N with --workload multi-model/);
  const stray = await runCli(['sim', '--workload', 'poisson', '--zipf', '1', ...common]);
  assert.equal(stray.code, 2, stray.stderr);
  assert.match(stray.stderr, /--zipf only with --workload multi-model \[SY_ERR_INVALID_ARGUMENT\]/);
  const negative = await runCli([
    'sim',
    '--workload',
    'multi-model',
    '--models',
    '4',
    '--zipf',
    '-1',
    ...common,
  ]);
  assert.notEqual(negative.code, 0);
  assert.match(negative.stderr, /--zipf/);
});
