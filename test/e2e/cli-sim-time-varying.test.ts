/** End-to-end runs of `switchyard sim` on time-varying workloads: sinusoid, rate curve, ServeGen slice. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-tv-'));
const SLICE = fileURLToPath(new URL('../../data/samples/servegen/m-small-day2.csv', import.meta.url));
const common = ['--instances', '4', '--input-tokens', '256', '--output-tokens', '32', '--no-progress'];

function summaryOf(path: string): { requests: number; completed: number; workload: string } {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** A Poisson count is within 5 standard deviations (sqrt of the mean) of its mean. */
function assertPoissonCount(got: number, mean: number, what: string): void {
  assert.ok(
    Math.abs(got - mean) <= 5 * Math.sqrt(mean),
    `${what}: ${got} requests, integral of the rate ${mean}`,
  );
}

test('sim --workload sinusoid runs the integral of the rate, and --rate-curve a CSV of any shape', async () => {
  const sinusoid = join(dir, 'sinusoid.json');
  const run = await runCli([
    'sim',
    '--workload',
    'sinusoid',
    '--rate-min',
    '1',
    '--rate-max',
    '24',
    '--period-s',
    '60',
    '--duration',
    '120',
    ...common,
    '--json',
    sinusoid,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const s = summaryOf(sinusoid);
  assertPoissonCount(s.requests, 12.5 * 120, 'sinusoid');
  assert.equal(s.completed, s.requests);
  assert.match(s.workload, /sinusoid 1\.\.24 req\/s period 60 s/);

  const csv = join(dir, 'curve.csv');
  writeFileSync(csv, 'time_s,rate\n0,2\n60,20\n90,20\n120,0\n');
  const curve = join(dir, 'curve.json');
  const byCurve = await runCli(['sim', '--rate-curve', csv, ...common, '--json', curve]);
  assert.equal(byCurve.code, 0, byCurve.stderr);
  assertPoissonCount(summaryOf(curve).requests, 11 * 60 + 20 * 30 + 10 * 30, 'rate curve');
});

test('sim rejects a bad rate-curve CSV naming its line, stray flags and unknown ServeGen clients, with exit 2', async () => {
  const csv = join(dir, 'bad.csv');
  writeFileSync(csv, 'time_s,rate\n0,2\n60,20\n30,5\n');
  const bad = await runCli(['sim', '--rate-curve', csv, ...common]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /bad\.csv:4: time_s 30 is not after the previous point's 60/);
  assert.doesNotMatch(bad.stderr, /at .*\.ts:\d+/, 'no stack trace for a handled error');
  const stray = await runCli(['sim', '--workload', 'bursts', '--period-s', '60', ...common]);
  assert.equal(stray.code, 2, stray.stderr);
  assert.match(stray.stderr, /--period-s only with --workload sinusoid/);
  const client = await runCli(['sim', '--servegen-file', SLICE, '--servegen-clients', '5,77', ...common]);
  assert.equal(client.code, 2, client.stderr);
  assert.match(client.stderr, /unknown servegen client '77'; valid: 14, 31, 41, 5, 8/);
});

test('sim --workload servegen replays the committed slice at a scale', async () => {
  const out = join(dir, 'servegen.json');
  const run = await runCli([
    'sim',
    '--workload',
    'servegen',
    '--servegen-file',
    SLICE,
    '--scale',
    '0.005',
    '--start-h',
    '21',
    '--duration',
    '600',
    ...common,
    '--json',
    out,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const s = summaryOf(out);
  // 21 h into the slice the five clients sum to about 990 req/s: ~2,970 requests at 0.005x in 600 s.
  assert.ok(s.requests > 2000 && s.requests < 4000, `${s.requests} requests`);
  assert.match(s.workload, /servegen .* from 21 h at 0\.005x rate/);
});
