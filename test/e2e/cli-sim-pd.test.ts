/**
 * `switchyard sim --prefill-instances P --decode-instances D --link L --pd-policy NAME` as a real
 * child process: a disaggregated run's JSON, a slower link's higher TTFT, and the flags' refusals.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

interface PdJson {
  completed: number;
  requests: number;
  ttftMs: { mean: number };
  pd: {
    prefillInstances: number;
    decodeInstances: number;
    link: string;
    transferMsMean: number;
    transferMsP99: number;
    kvBytesMoved: number;
    localPrefills: number;
    remotePrefills: number;
  };
}

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-pd-'));

function args(link: string, json: string): string[] {
  return [
    'sim',
    '--workload',
    'poisson',
    '--rate',
    '6',
    '--requests',
    '200',
    '--input-tokens',
    '3000',
    '--output-tokens',
    '100',
    '--prefill-instances',
    '1',
    '--decode-instances',
    '2',
    '--link',
    link,
    '--pd-policy',
    'round-robin',
    '--no-progress',
    '--json',
    json,
  ];
}

test('a disaggregated sim completes every request, reports pd, and a slower link raises TTFT', async () => {
  const runs = await Promise.all(
    ['nvlink', 'tcp-100'].map(async (link) => {
      const file = join(dir, `${link}.json`);
      const run = await runCli(args(link, file));
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`P/D 1 prefill \\+ 2 decode over ${link}: 200 transfers`));
      return JSON.parse(readFileSync(file, 'utf8')) as PdJson;
    }),
  );
  const [fast, slow] = runs as [PdJson, PdJson];
  for (const [r, link] of [
    [fast, 'nvlink'],
    [slow, 'tcp-100'],
  ] as const) {
    assert.equal(r.completed, r.requests);
    assert.equal(r.pd.prefillInstances, 1);
    assert.equal(r.pd.decodeInstances, 2);
    assert.equal(r.pd.link, link);
    // Llama-3.1-8B's KV is 128 KiB a token; every prompt moved once.
    assert.equal(r.pd.kvBytesMoved, r.requests * 3000 * 131072);
    assert.ok(r.pd.transferMsP99 >= r.pd.transferMsMean && r.pd.transferMsMean > 0);
    // No conditional rule: every request prefilled remotely.
    assert.equal(r.pd.remotePrefills, r.requests);
    assert.equal(r.pd.localPrefills, 0);
  }
  assert.ok(slow.pd.transferMsMean > 10 * fast.pd.transferMsMean);
  assert.ok(slow.ttftMs.mean > fast.ttftMs.mean + 0.9 * (slow.pd.transferMsMean - fast.pd.transferMsMean));
});

test('half a P/D cluster, or --pd-policy alone, is refused with a stable code', async () => {
  const half = await runCli(['sim', '--requests', '10', '--prefill-instances', '2', '--no-progress']);
  assert.notEqual(half.code, 0);
  assert.match(half.stderr, /decode-instances[\s\S]*SY_ERR_INVALID_ARGUMENT/);
  const alone = await runCli(['sim', '--requests', '10', '--pd-policy', 'random', '--no-progress']);
  assert.notEqual(alone.code, 0);
  assert.match(alone.stderr, /pd-policy[\s\S]*SY_ERR_INVALID_ARGUMENT/);
});
