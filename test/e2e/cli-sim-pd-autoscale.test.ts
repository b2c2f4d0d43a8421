/**
 * `switchyard sim --prefill-instances P --decode-instances D --autoscaler NAME` as a real child
 * process: the pools scale apart (long prompts grow the prefill pool only), the JSON's `pdPools`,
 * the decision log's pool-tagged scale lines, the same output for the same seed, and the refusals.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, simPdArgs } from './support/cli.ts';

interface PoolJson {
  autoscaler: string;
  minInstances: number;
  maxInstances: number;
  initialInstances: number;
  gpuHours: number;
  coldStarts: number;
  peakReady: number;
  instancesOverTime: { timeS: number; ready: number; starting: number; draining: number }[];
}

interface RunJson {
  requests: number;
  completed: number;
  gpuHours: number;
  coldStarts: number;
  pd: { prefillInstances: number; decodeInstances: number };
  pdPools: {
    joint: boolean;
    prefill: PoolJson;
    decode: PoolJson;
    scaleEvents: { atMs: number; pool: string; line: string }[];
  };
}

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-pd-autoscale-'));

/** Two minutes of 8,000-token prompts at 6 req/s: more than one prefill instance serves. */
function args(name: string, extra: readonly string[] = []): string[] {
  const run = { rate: 6, durationS: 120, inputTokens: 8000, outputTokens: 32, prefills: 1, decodes: 1 };
  return simPdArgs(run, [
    '--autoscaler',
    'slo-planner',
    '--max-prefill-instances',
    '3',
    '--max-decode-instances',
    '3',
    '--json',
    join(dir, `${name}.json`),
    '--decision-log',
    join(dir, `${name}.jsonl`),
    ...extra,
  ]);
}

/** The JSON without the wall-clock fields (the only ones that may differ between two runs). */
function withoutWallClock(text: string): unknown {
  const { wallSeconds, eventsPerWallS, decisionUs, ...rest } = JSON.parse(text) as Record<string, unknown>;
  return rest;
}

test('long prompts grow the prefill pool only; pdPools, pool-tagged scale lines, same seed same output', async () => {
  const runs = await Promise.all(['a', 'b'].map((name) => runCli(args(name))));
  for (const run of runs) assert.equal(run.code, 0, run.stderr);
  const stdout = (runs[0] as { stdout: string }).stdout;
  assert.match(stdout, /P\/D pools:\n {2}prefill pool \(slo-planner, 1-3, 1 at start\): [\d.]+ GPU-hours/);
  assert.match(
    stdout,
    /decode pool \(slo-planner, 1-3, 1 at start\): [\d.]+ GPU-hours, 0 cold starts, peak 1 ready/,
  );

  const text = readFileSync(join(dir, 'a.json'), 'utf8');
  const r = JSON.parse(text) as RunJson;
  assert.equal(r.completed, r.requests);
  assert.equal(r.pd.prefillInstances, 1);
  assert.equal(r.pdPools.joint, false);
  assert.ok(r.pdPools.prefill.peakReady >= 2, `prefill peak ${r.pdPools.prefill.peakReady}`);
  assert.equal(r.pdPools.decode.peakReady, 1);
  assert.equal(r.coldStarts, r.pdPools.prefill.coldStarts);
  assert.ok(
    Math.abs(r.gpuHours - r.pdPools.prefill.gpuHours - r.pdPools.decode.gpuHours) < 1e-5,
    `total ${r.gpuHours} vs pools`,
  );
  for (const name of ['prefill', 'decode'] as const) {
    const p = r.pdPools[name];
    assert.equal(p.instancesOverTime[0]?.ready, 1, `${name} starts at its count`);
    for (const x of p.instancesOverTime)
      assert.ok(x.ready + x.starting >= 1 && x.ready + x.starting <= 3, `${name} at ${x.timeS} s`);
  }

  // Scale lines: in the decision log among the routing lines, tagged with the pool, as in the JSON.
  const log = readFileSync(join(dir, 'a.jsonl'), 'utf8').trim().split('\n');
  const scale = log
    .map((line) => JSON.parse(line) as { atMs: number; pool?: string; placement?: string })
    .filter((e) => e.placement !== undefined);
  assert.ok(scale.length > 0, 'scale lines in the decision log');
  assert.deepEqual(
    scale.map((e) => [e.atMs, e.pool, e.placement]),
    r.pdPools.scaleEvents.map((e) => [e.atMs, e.pool, e.line]),
  );
  assert.ok(
    scale.every((e) => e.pool === 'prefill'),
    'only the prefill pool scaled',
  );

  // The same seed: the same JSON (wall-clock fields aside) and a byte-identical decision log.
  assert.deepEqual(withoutWallClock(readFileSync(join(dir, 'b.json'), 'utf8')), withoutWallClock(text));
  assert.equal(readFileSync(join(dir, 'b.jsonl'), 'utf8'), readFileSync(join(dir, 'a.jsonl'), 'utf8'));
});

test('the colocated bounds, a pool that could empty, and pool flags without --autoscaler are refused', async () => {
  const cases: [string[], RegExp][] = [
    [['--max-instances', '4'], /max-instances[\s\S]*--max-prefill-instances[\s\S]*SY_ERR_INVALID_ARGUMENT/],
    [['--max-decode-instances', '1', '--decode-instances', '2'], /decode-instances[\s\S]*1\.\.1/],
    [['--prefill-autoscaler', 'nope'], /prefill-autoscaler/],
  ];
  const runs = await Promise.all(cases.map(([extra]) => runCli(args('refused', extra))));
  for (const [k, run] of runs.entries()) {
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, (cases[k] as [string[], RegExp])[1]);
  }
  const without = await runCli([
    'sim',
    '--requests',
    '10',
    '--prefill-instances',
    '1',
    '--decode-instances',
    '1',
    '--max-prefill-instances',
    '3',
    '--no-progress',
  ]);
  assert.notEqual(without.code, 0);
  assert.match(without.stderr, /max-prefill-instances[\s\S]*--autoscaler[\s\S]*SY_ERR_INVALID_ARGUMENT/);
});

test('a run whose last requests are refused at the decode pick, after their prefill, closes its books', async () => {
  // Mooncake's early rejection refuses each request at its decode pick (TPOT 1 ms cannot be met),
  // after its prefill leg ended: that leg's end is no completion, so the run's end (none) may not
  // be checked against it (it was: "the run's end 0 ms precedes a completion at 1733 ms").
  const json = join(dir, 'refused-at-decode.json');
  const run = await runCli([
    ...['sim', '--workload', 'poisson', '--rate', '2', '--requests', '3'],
    ...['--input-tokens', '8000', '--output-tokens', '200'],
    ...['--prefill-instances', '1', '--decode-instances', '1', '--pd-policy', 'mooncake'],
    ...['--slo-tpot-ms', '1', '--autoscaler', 'slo-planner'],
    ...['--max-prefill-instances', '2', '--max-decode-instances', '2', '--no-progress', '--json', json],
  ]);
  assert.equal(run.code, 0, run.stderr);
  const out = JSON.parse(readFileSync(json, 'utf8')) as RunJson;
  assert.equal(out.requests, 3);
  assert.equal(out.completed, 0, 'every request refused at its decode pick');
  assert.ok(Number.isFinite(out.pdPools.prefill.gpuHours));
});
