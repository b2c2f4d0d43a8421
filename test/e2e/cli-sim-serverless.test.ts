/**
 * `switchyard sim --serverless-policy` end to end: the exact command line later checks rely on, its
 * JSON fields, determinism, and usage errors. Real child processes of the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const WALL_FIELDS = new Set(['wallSeconds', 'eventsPerWallS', 'decisionUs']);
const dir = mkdtempSync(join(tmpdir(), 'switchyard-serverless-'));

function withoutWall(text: string): unknown {
  return JSON.parse(text, (key, v) => (WALL_FIELDS.has(key) ? undefined : v));
}

/** The documented command line: 12 models on 4 GPUs for 15 simulated minutes. */
function args(policy: string, out: string): string[] {
  return [
    'sim',
    '--workload',
    'multi-model',
    '--models',
    '12',
    '--zipf',
    '1.2',
    '--duration',
    '900',
    '--gpus',
    '4',
    '--keep-alive-s',
    '30',
    '--serverless-policy',
    policy,
    '--json',
    out,
    '--no-progress',
  ];
}

test('the serverless command line writes cold/warm TTFT, cold starts, GPU-hours and per-model rows; same seed, same JSON', async () => {
  const first = join(dir, 'a.json');
  const second = join(dir, 'b.json');
  const logA = join(dir, 'a.jsonl');
  const logB = join(dir, 'b.jsonl');
  const [a, b] = await Promise.all([
    runCli([...args('switchyard', first), '--decision-log', logA]),
    runCli([...args('switchyard', second), '--decision-log', logB]),
  ]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const textA = readFileSync(first, 'utf8');
  const summary = JSON.parse(textA);
  assert.ok(summary.coldStarts > 0, 'models start from zero, so some start cold');
  assert.ok(summary.gpuHours > 0 && summary.gpuHours <= (4 * 900) / 3600 + 0.5);
  for (const kind of ['cold', 'warm']) {
    for (const stat of ['mean', 'p50', 'p90', 'p99']) {
      assert.equal(typeof summary.ttftMs[kind][stat], 'number', `ttftMs.${kind}.${stat}`);
    }
  }
  // A cold request waited for an instance to start (~45 s with vLLM-like engine init).
  assert.ok(summary.ttftMs.cold.p50 > 5000, `cold p50 ${summary.ttftMs.cold.p50}`);
  assert.ok(summary.ttftMs.warm.p50 < summary.ttftMs.cold.p50);
  assert.equal(summary.models.length, 12);
  assert.equal(summary.models[0].model, 'm00');
  const s = summary.serverless;
  assert.equal(s.policy, 'switchyard');
  assert.equal(s.coldRequests + s.warmRequests, summary.completed);
  assert.equal(
    summary.models.reduce((n: number, m: { coldStarts: number }) => n + m.coldStarts, 0),
    summary.coldStarts,
  );
  assert.deepEqual(withoutWall(textA), withoutWall(readFileSync(second, 'utf8')));
  // The decision log carries each start (with the tier its weights came from) and is byte-identical.
  const log = readFileSync(logA, 'utf8');
  assert.match(log, /"placement":"m00@node-1#\d+ start \(\d+ request\(s\)\): weights from remote/);
  assert.equal(log, readFileSync(logB, 'utf8'));
});

test('the baselines run on the same command line and never pre-warm', async () => {
  const out = join(dir, 'keep-alive.json');
  const run = await runCli(args('keep-alive', out));
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(summary.serverless.policy, 'keep-alive');
  assert.equal(summary.serverless.prewarms, 0);
  assert.equal(summary.serverless.evictions, 0);
});

test('serverless usage errors name the flag and exit before running', async () => {
  const noPolicy = await runCli(['sim', '--workload', 'multi-model', '--models', '4', '--gpus', '2']);
  assert.notEqual(noPolicy.code, 0);
  assert.match(noPolicy.stderr, /gpus.*only with --serverless-policy/);
  const notMulti = await runCli([
    'sim',
    '--workload',
    'poisson',
    '--gpus',
    '2',
    '--serverless-policy',
    'switchyard',
  ]);
  assert.notEqual(notMulti.code, 0);
  assert.match(notMulti.stderr, /--workload multi-model/);
  const bad = await runCli([
    'sim',
    '--workload',
    'multi-model',
    '--models',
    '4',
    '--gpus',
    '2',
    '--serverless-policy',
    'nope',
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /keep-alive, serverlessllm, switchyard/);
});
