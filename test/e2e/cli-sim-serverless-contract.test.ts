/**
 * Issue 14's command line, `switchyard sim --workload multi-model --models N --zipf S --duration S
 * --gpus G [--keep-alive-s K] --serverless-policy NAME --json FILE`, with values other than the
 * documented example's and every policy: the JSON has coldStarts, gpuHours and ttftMs.cold/.warm
 * ({mean, p50, p90, p99}), keeps a plain run's fields, and its figures agree with each other.
 * Flags that would be dropped without a word are refused instead. Real CLI processes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-serverless-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const POLICIES = ['keep-alive', 'serverlessllm', 'switchyard'] as const;
const GPUS = 3;

/** The line: 6 models, Zipf 0.5, 3 GPUs, 5 simulated minutes, keep-alive 20 s. */
function contractArgs(policy: string, out: string, extra: readonly string[] = []): string[] {
  return [
    'sim',
    '--workload',
    'multi-model',
    '--models',
    '6',
    '--zipf',
    '0.5',
    '--duration',
    '300',
    '--gpus',
    String(GPUS),
    '--keep-alive-s',
    '20',
    '--serverless-policy',
    policy,
    '--json',
    out,
    '--no-progress',
    ...extra,
  ];
}

interface Stats {
  mean: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  count: number;
}

test('every serverless policy on the contract line: cold/warm TTFT, cold starts and GPU-hours that add up', async () => {
  const plainOut = join(dir, 'plain.json');
  const plain = await runCli(['sim', '--requests', '50', '--no-progress', '--json', plainOut]);
  assert.equal(plain.code, 0, plain.stderr);
  const plainKeys = Object.keys(JSON.parse(readFileSync(plainOut, 'utf8')));
  const runs = await Promise.all(
    POLICIES.map(async (policy) => {
      const out = join(dir, `${policy}.json`);
      return { policy, out, run: await runCli(contractArgs(policy, out)) };
    }),
  );
  for (const { policy, out, run } of runs) {
    assert.equal(run.code, 0, `${policy}: ${run.stderr}`);
    assert.doesNotMatch(run.stderr, /\n\s+at /, `${policy}: no stack trace`);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    for (const key of plainKeys) assert.ok(key in j, `${policy}: the JSON keeps ${key}`);
    assert.ok(Number.isInteger(j.coldStarts) && j.coldStarts >= 1, `${policy}: models start from zero`);
    assert.equal(typeof j.gpuHours, 'number');
    // Billed GPU time fits in the cluster's GPUs for the run, to the later of its last completion
    // and the workload's declared end (`billedUntilS`; the JSON rounds to 6 figures).
    assert.ok(j.billedUntilS >= j.simulatedSeconds, `${policy}: billed until ${j.billedUntilS} s`);
    assert.ok(j.gpuHours > 0 && j.gpuHours * 3600 <= GPUS * j.billedUntilS * (1 + 1e-5), `${policy}`);
    const cold = j.ttftMs.cold as Stats;
    const warm = j.ttftMs.warm as Stats;
    for (const [kind, s] of [
      ['cold', cold],
      ['warm', warm],
    ] as const) {
      for (const stat of ['mean', 'p50', 'p90', 'p99'] as const) {
        const v = s[stat];
        // A number, or null when no request was of that kind (docs/serverless.md).
        assert.ok(
          s.count > 0 ? typeof v === 'number' && v >= 0 : v === null,
          `${policy} ${kind}.${stat}: ${v}`,
        );
      }
      if (s.count > 0)
        assert.ok((s.p50 as number) <= (s.p90 as number) && (s.p90 as number) <= (s.p99 as number));
    }
    assert.ok(cold.count > 0, `${policy}: some requests waited for a start`);
    assert.equal(cold.count + warm.count, j.completed, `${policy}: every completed request is cold or warm`);
    assert.equal(j.completed + j.rejected, j.requests, `${policy}: no request lost`);
    assert.equal(j.models.length, 6);
    const perModel = j.models.reduce((n: number, m: { coldStarts: number }) => n + m.coldStarts, 0);
    assert.equal(perModel, j.coldStarts, `${policy}: the models' cold starts sum to the run's`);
    for (const p of j.instancesOverTime as { ready: number; starting: number; draining: number }[])
      assert.ok(p.ready + p.starting + p.draining <= GPUS, `${policy}: at most one instance per GPU (TP 1)`);
  }
});

test('--compare with --serverless-policy is refused: its table and JSON would drop cold starts and GPU-hours', async () => {
  const run = await runCli(
    contractArgs('keep-alive', join(dir, 'compare.json'), ['--compare', 'random,least-request']),
  );
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /invalid compare .*--serverless-policy.*SY_ERR_INVALID_ARGUMENT/);
});

test('--model llama-3.1-70b on H100s: each model at a TP that leaves KV cache for its requests (TP 4, not 2)', async () => {
  const out = join(dir, '70b.json');
  const run = await runCli(contractArgs('keep-alive', out, ['--gpus', '8', '--model', 'llama-3.1-70b']));
  assert.equal(run.code, 0, run.stderr);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.ok(
    (j.perInstance as { tp: number }[]).every((i) => i.tp === 4),
    'every slot is TP 4',
  );
  assert.equal(j.failedByReason?.upstream_4xx, undefined, 'no request refused for want of KV cache');
  assert.ok(j.completed > 0 && j.gpuHours > 0, `${j.completed} completed, ${j.gpuHours} GPU-hours`);
});

test('--no-sleep with a baseline policy is refused: only switchyard has sleep mode', async () => {
  const run = await runCli(contractArgs('serverlessllm', join(dir, 'no-sleep.json'), ['--no-sleep']));
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /invalid no-sleep 'serverlessllm': expected --serverless-policy switchyard/);
});

test('--retarget (opt-in) runs switchyard with re-targeting and counts them; refused where it would change nothing', async () => {
  const out = join(dir, 'retarget.json');
  const run = await runCli(contractArgs('switchyard', out, ['--retarget']));
  assert.equal(run.code, 0, run.stderr);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.ok(
    Number.isInteger(j.serverless.retargets) && j.serverless.retargets >= 0,
    JSON.stringify(j.serverless),
  );
  const plainOut = join(dir, 'retarget-default.json');
  assert.equal((await runCli(contractArgs('switchyard', plainOut))).code, 0);
  assert.equal(JSON.parse(readFileSync(plainOut, 'utf8')).serverless.retargets, 0);
  const baseline = await runCli(contractArgs('serverlessllm', join(dir, 'rt-b.json'), ['--retarget']));
  assert.equal(baseline.code, 2, baseline.stderr);
  assert.match(
    baseline.stderr,
    /invalid retarget 'serverlessllm': expected --serverless-policy switchyard with sleep mode on/,
  );
  const noSleep = await runCli(
    contractArgs('switchyard', join(dir, 'rt-n.json'), ['--retarget', '--no-sleep']),
  );
  assert.equal(noSleep.code, 2, noSleep.stderr);
  assert.match(noSleep.stderr, /invalid retarget 'switchyard'/);
});

test('--tp with --serverless-policy runs every model at that TP, and one that does not fit a node is refused', async () => {
  const out = join(dir, 'tp2.json');
  const run = await runCli(contractArgs('keep-alive', out, ['--gpus', '4', '--tp', '2']));
  assert.equal(run.code, 0, run.stderr);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.ok(
    (j.perInstance as { tp: number }[]).every((i) => i.tp === 2),
    'every slot is TP 2',
  );
  const tooWide = await runCli(contractArgs('keep-alive', join(dir, 'tp8.json'), ['--tp', '8']));
  assert.equal(tooWide.code, 2, tooWide.stderr);
  assert.match(tooWide.stderr, /invalid tp '8'/);
});
