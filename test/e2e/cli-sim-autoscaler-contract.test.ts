/**
 * Issue 13's command line, run as written there with small values and every autoscaler name:
 * `switchyard sim --workload sinusoid --rate-min R --rate-max R --period-s S --duration S
 * --input-tokens N --output-tokens N --autoscaler NAME --min-instances N --max-instances M
 * --slo-ttft-ms X --slo-tpot-ms Y --json FILE`, and `--rate-curve FILE.csv`. The JSON keeps a plain
 * run's fields and adds gpuHours, instancesOverTime and coldStarts, with figures that agree.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-autoscaler-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const AUTOSCALERS = ['kpa', 'apa', 'saturation', 'dynamo-planner', 'slo-planner', 'static'] as const;
const MIN = 2;
const MAX = 4;

/** The sinusoid line with small values (a two-minute run), plus `extra`. */
function sinusoidArgs(json: string, extra: readonly string[]): string[] {
  return [
    'sim',
    '--workload',
    'sinusoid',
    '--rate-min',
    '1',
    '--rate-max',
    '12',
    '--period-s',
    '120',
    '--duration',
    '120',
    '--input-tokens',
    '512',
    '--output-tokens',
    '64',
    '--slo-ttft-ms',
    '2000',
    '--slo-tpot-ms',
    '50',
    '--no-progress',
    '--json',
    json,
    ...extra,
  ];
}

interface Point {
  timeS: number;
  ready: number;
  starting: number;
  draining: number;
  desired: number;
}

type Report = Record<string, unknown> & { instancesOverTime: Point[] };

function readJson(path: string): Report {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The invariants every autoscaled run's JSON must hold, for a pool of `min`..`max` instances. */
function checkControlled(
  name: string,
  j: Report,
  plainKeys: readonly string[],
  min: number,
  max: number,
): void {
  for (const key of plainKeys) assert.ok(key in j, `${name}: the JSON keeps ${key}`);
  assert.equal(typeof j['gpuHours'], 'number', name);
  assert.ok(Number.isInteger(j['coldStarts']) && (j['coldStarts'] as number) >= 0, `${name}: coldStarts`);
  assert.equal(
    (j['completed'] as number) + (j['rejected'] as number),
    j['requests'],
    `${name}: no request lost`,
  );
  // Billed GPU-seconds fit in the pool for the whole run, which ends at the later of the last
  // completion and the workload's declared end, `billedUntilS` (the JSON rounds to 6 figures).
  const billedS = (j['gpuHours'] as number) * 3600;
  const untilS = j['billedUntilS'] as number;
  assert.ok(untilS >= (j['simulatedSeconds'] as number), `${name}: billed until ${untilS} s`);
  assert.ok(billedS > 0, `${name}: something was billed`);
  assert.ok(billedS <= max * untilS * (1 + 1e-5), `${name}: ${billedS} s billed`);
  const series = j.instancesOverTime;
  assert.ok(series.length > 10, `${name}: ${series.length} points`);
  let lastS = -1;
  for (const p of series) {
    assert.ok(p.timeS >= lastS, `${name}: times in order`);
    lastS = p.timeS;
    assert.ok(p.ready + p.starting + p.draining <= max, `${name}: at most --max-instances at ${p.timeS} s`);
    // --min-instances is the fewest: the pool starts there (as `serve` starts its minimum before
    // the gateway) and never wants fewer.
    assert.ok(p.desired >= min && p.desired <= max, `${name}: desired ${p.desired} at ${p.timeS} s`);
    assert.ok(
      p.ready + p.starting >= min,
      `${name}: ${p.ready} ready + ${p.starting} starting at ${p.timeS} s`,
    );
  }
  assert.equal(
    series[0]?.ready,
    series[0]?.desired,
    `${name}: what it wants at time 0 is provisioned before the run`,
  );
}

test('sim --workload sinusoid --autoscaler NAME: every autoscaler keeps the plain JSON and adds consistent control figures', async () => {
  const plainOut = join(dir, 'plain.json');
  const plain = await runCli(sinusoidArgs(plainOut, []));
  assert.equal(plain.code, 0, plain.stderr);
  const plainKeys = Object.keys(readJson(plainOut));
  assert.ok(!plainKeys.includes('gpuHours'), 'a plain run has no control fields');
  const runs = await Promise.all(
    AUTOSCALERS.map(async (name) => {
      const out = join(dir, `${name}.json`);
      const run = await runCli(
        sinusoidArgs(out, [
          '--autoscaler',
          name,
          '--min-instances',
          String(MIN),
          '--max-instances',
          String(MAX),
        ]),
      );
      return { name, out, run };
    }),
  );
  for (const { name, out, run } of runs) {
    assert.equal(run.code, 0, `${name}: ${run.stderr}`);
    assert.doesNotMatch(run.stderr, /\n\s+at /, `${name}: no stack trace`);
    assert.match(run.stdout, /autoscaler: [\d.]+ GPU-hours, \d+ cold starts, peak \d+ ready/, name);
    const j = readJson(out);
    checkControlled(name, j, plainKeys, MIN, MAX);
    if (name === 'static') {
      assert.equal(j['coldStarts'], 0, 'static runs the whole pool from the start');
      assert.ok(j.instancesOverTime.every((p) => p.ready === MAX));
    }
  }
});

test('sim --rate-curve FILE.csv --autoscaler: any shape, from zero instances', async () => {
  const csv = join(dir, 'curve.csv');
  writeFileSync(csv, 'time_s,rate\n0,0.5\n40,8\n80,1\n120,0\n');
  const out = join(dir, 'curve.json');
  const run = await runCli([
    'sim',
    '--rate-curve',
    csv,
    '--input-tokens',
    '512',
    '--output-tokens',
    '64',
    '--autoscaler',
    'kpa',
    '--min-instances',
    '0',
    '--max-instances',
    '3',
    '--no-progress',
    '--json',
    out,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const j = readJson(out);
  checkControlled('rate-curve kpa', j, ['requests', 'completed', 'sloAttainment', 'gpuSeconds'], 0, 3);
  assert.match(String(j['workload']), /rate-curve/);
  assert.ok((j['coldStarts'] as number) >= 1, 'from zero, the first instance is a cold start');
});
