/**
 * `switchyard sim --prefill-instances P --decode-instances D --link L --pd-policy NAME` as a real
 * child process: a disaggregated run's JSON, a slower link's higher TTFT, and the flags' refusals.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, simPdArgs } from './support/cli.ts';

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

/** A 1 prefill + 2 decode run of 200 3,000-token prompts at 6 req/s over `link`, JSON to `json`. */
function args(link: string, json: string): string[] {
  const run = { rate: 6, requests: 200, inputTokens: 3000, outputTokens: 100, prefills: 1, decodes: 2 };
  return simPdArgs(run, ['--link', link, '--pd-policy', 'round-robin', '--json', json]);
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

/** `sim` flags of a 2 prefill + 2 decode run of `requests` 3,000-token prompts at `rate` req/s. */
function pairArgs(pdPolicy: string, rate: number, json: string, extra: readonly string[] = []): string[] {
  const run = { rate, requests: 200, inputTokens: 3000, outputTokens: 100, prefills: 2, decodes: 2 };
  return simPdArgs(run, ['--pd-policy', pdPolicy, '--json', json, ...extra]);
}

interface PairJson {
  policy: string;
  requests: number;
  completed: number;
  rejected: number;
  rejectedByCode?: Record<string, number>;
  perInstance: { id: string; requests: number }[];
}

test('--pd-policy mooncake picks both sides and rejects early under a TPOT SLO the decode pool cannot meet', async () => {
  const [loose, tight] = await Promise.all(
    [
      ['loose', '100'],
      ['tight', '8'],
    ].map(async ([name, tpotMs]) => {
      const file = join(dir, `mooncake-${name}.json`);
      const run = await runCli(pairArgs('mooncake', 40, file, ['--slo-tpot-ms', tpotMs as string]));
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(readFileSync(file, 'utf8')) as PairJson;
    }),
  );
  const [l, t] = [loose as PairJson, tight as PairJson];
  // The pair's prefill side is the run's policy.
  assert.equal(l.policy, 'mooncake/prefill');
  assert.equal(l.rejected, 0);
  assert.equal(l.completed, l.requests);
  // Both prefill instances (i0, i1) and both decode instances (i2, i3) take work.
  for (const instance of l.perInstance) assert.ok(instance.requests > 0, instance.id);
  // 40 req/s of 3,000-token prompts fills the decode batches past an 8 ms step: some are refused,
  // each counted once as a rejection with the policy's code, the rest complete.
  assert.ok(t.rejected > 0 && t.rejected < t.requests, `${t.rejected} rejected`);
  assert.equal(t.rejectedByCode?.['SY_ERR_SLO_UNREACHABLE'], t.rejected);
  assert.equal(t.completed + t.rejected, t.requests);
  // By default mooncake's decode side decides at the prefill's end (its `decodeAt`): every request
  // was prefilled (i0, i1) and only the completed ones reached a decode instance (i2, i3).
  const routed = (ids: string[]) =>
    t.perInstance.filter((i) => ids.includes(i.id)).reduce((n, i) => n + i.requests, 0);
  assert.equal(routed(['i0', 'i1']), t.requests);
  assert.equal(routed(['i2', 'i3']), t.completed);
});

test('a pair --pd-policy refuses --policy and --compare, which it would ignore', async () => {
  const file = join(dir, 'refused.json');
  for (const extra of [
    ['--policy', 'random'],
    ['--compare', 'random,least-kv'],
  ]) {
    const run = await runCli(pairArgs('round-robin', 5, file, extra));
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /cannot be used with --pd-policy round-robin[\s\S]*SY_ERR_INVALID_ARGUMENT/);
  }
  // A routing policy's name keeps its meaning (decode side only): --policy still picks the prefill.
  const run = await runCli(pairArgs('least-kv', 5, file, ['--policy', 'random']));
  assert.equal(run.code, 0, run.stderr);
  assert.equal((JSON.parse(readFileSync(file, 'utf8')) as PairJson).policy, 'random');
});

test('--pd-conditional dynamo keeps short prompts on their decode instance and sends long ones remote', async () => {
  const run = async (inputTokens: number) => {
    const file = join(dir, `conditional-${inputTokens}.json`);
    const flags = ['sim', '--workload', 'poisson', '--rate', '4', '--requests', '60', '--input-tokens'];
    const rest = ['--output-tokens', '50', '--prefill-instances', '1', '--decode-instances', '2'];
    const cli = await runCli([
      ...flags,
      String(inputTokens),
      ...rest,
      '--pd-conditional',
      'dynamo',
      '--no-progress',
      '--json',
      file,
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    return { stdout: cli.stdout, json: JSON.parse(readFileSync(file, 'utf8')) as PdJson };
  };
  const [short, long] = await Promise.all([run(400), run(3000)]);
  // Dynamo's threshold is 1,000 uncached tokens: 400-token prompts never leave the decode instance.
  assert.equal(short.json.completed, 60);
  assert.deepEqual([short.json.pd.localPrefills, short.json.pd.remotePrefills], [60, 0]);
  assert.equal(short.json.pd.kvBytesMoved, 0);
  assert.match(short.stdout, /prefills 60 local, 0 remote \(--pd-conditional dynamo\)/);
  assert.equal(long.json.completed, 60);
  assert.deepEqual([long.json.pd.localPrefills, long.json.pd.remotePrefills], [0, 60]);
  const refused = await runCli(['sim', '--requests', '10', '--pd-conditional', 'dynamo', '--no-progress']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /pd-conditional[\s\S]*SY_ERR_INVALID_ARGUMENT/);
});
