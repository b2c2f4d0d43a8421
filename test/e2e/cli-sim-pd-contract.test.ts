/**
 * Issue 15's command lines with small values: `switchyard sim ... --prefill-instances P
 * --decode-instances D [--link L] [--pd-policy NAME]` over every link and pair policy, and
 * `switchyard sim ... --plan-pd --gpus G` for odd and tiny G. Real CLI processes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli, simPdArgs } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-pd-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const LINKS = ['nvlink', 'ib-400', 'roce-200', 'tcp-100'] as const;
const PAIR_POLICIES = ['round-robin', 'load-aware', 'prefix-aware', 'mooncake'] as const;
const SMALL = { rate: 4, requests: 60, inputTokens: 2000, outputTokens: 32, prefills: 1, decodes: 3 };

interface PdJson {
  prefillInstances: number;
  decodeInstances: number;
  link: string;
  policy: string;
  params: Record<string, unknown>;
  transfers: number;
  transferMsMean: number;
  transferMsP99: number;
  kvBytesMoved: number;
  localPrefills: number;
  remotePrefills: number;
}

test('every link and pair policy: a P + D cluster, the JSON keeps its fields and adds a consistent pd block', async () => {
  const plainOut = join(dir, 'plain.json');
  const plain = await runCli(['sim', '--requests', '20', '--no-progress', '--json', plainOut]);
  assert.equal(plain.code, 0, plain.stderr);
  const plainKeys = Object.keys(JSON.parse(readFileSync(plainOut, 'utf8')));
  const cases = [
    ...LINKS.map((link) => ({ link, policy: 'load-aware' })),
    ...PAIR_POLICIES.map((policy) => ({ link: 'roce-200', policy })),
  ];
  const runs = await Promise.all(
    cases.map(async (c) => {
      const out = join(dir, `${c.link}-${c.policy}.json`);
      const run = await runCli(simPdArgs(SMALL, ['--link', c.link, '--pd-policy', c.policy, '--json', out]));
      return { ...c, out, run };
    }),
  );
  const meanByLink = new Map<string, number>();
  for (const { link, policy, out, run } of runs) {
    const name = `${link} ${policy}`;
    assert.equal(run.code, 0, `${name}: ${run.stderr}`);
    assert.match(run.stdout, new RegExp(`P/D 1 prefill \\+ 3 decode over ${link}: `), name);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    for (const key of plainKeys) assert.ok(key in j, `${name}: the JSON keeps ${key}`);
    const pd = j.pd as PdJson;
    assert.equal(pd.prefillInstances, 1);
    assert.equal(pd.decodeInstances, 3);
    assert.equal(pd.link, link);
    assert.equal(pd.policy, policy);
    assert.equal(j.instances, 4, `${name}: the cluster is P + D`);
    assert.equal(j.perInstance.length, 4);
    assert.equal(j.completed + j.rejected, j.requests, `${name}: no request lost`);
    assert.equal(pd.transfers, pd.remotePrefills, `${name}: one transfer per remote prefill`);
    assert.ok(pd.transfers > 0 && pd.kvBytesMoved > 0, name);
    assert.ok(pd.transferMsMean > 0 && pd.transferMsMean <= pd.transferMsP99 * (1 + 1e-9), name);
    if (policy === 'load-aware') meanByLink.set(link, pd.transferMsMean);
  }
  // The same prompts over slower links take longer to move.
  const means = LINKS.map((l) => meanByLink.get(l) as number);
  for (let k = 1; k < means.length; k++)
    assert.ok((means[k] as number) > (means[k - 1] as number), `${LINKS[k]} slower than ${LINKS[k - 1]}`);
});

test('a P/D --compare names the disaggregated cluster it ran, not the default colocated one', async () => {
  const run = await runCli(simPdArgs({ ...SMALL, prefills: 2 }, ['--compare', 'random,least-request']));
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /· 5 instances \(2 prefill \+ 3 decode: 5x h100 llama-3\.1-8b\)\n/);
});

test('--compare with autoscaled P/D pools is refused: the comparison would drop their GPU-hours', async () => {
  const run = await runCli(simPdArgs(SMALL, ['--autoscaler', 'kpa', '--compare', 'random,least-request']));
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /invalid compare .*one routing policy with --autoscaler/);
});

test('sim --plan-pd --gpus G plans a split for tiny, odd and larger G', async () => {
  const sizes = [2, 3, 5, 7, 12];
  const runs = await Promise.all(
    sizes.map(async (g) => {
      const out = join(dir, `plan-${g}.json`);
      return {
        g,
        out,
        run: await runCli(['sim', '--plan-pd', '--gpus', String(g), '--json', out, '--no-progress']),
      };
    }),
  );
  for (const { g, out, run } of runs) {
    assert.equal(run.code, 0, `G=${g}: ${run.stderr}`);
    const plan = JSON.parse(readFileSync(out, 'utf8'));
    const s = plan.split;
    assert.equal(plan.gpusMax, g);
    assert.ok(s.prefill.instances >= 1 && s.decode.instances >= 1, `G=${g}`);
    assert.equal(s.gpus, s.prefill.instances * s.prefill.tp + s.decode.instances * s.decode.tp, `G=${g}`);
    assert.ok(s.gpus <= g && s.goodputRps > 0, `G=${g}: ${s.gpus} GPUs`);
    assert.match(
      run.stdout,
      new RegExp(`disaggregated\\s+${s.prefill.instances} x tp${s.prefill.tp}\\s`),
      `G=${g}`,
    );
  }
});

test('sim --kv-release-timeout-ms: the JSON echoes the timeout used, and a refused decode leg holds the prefill KV that long', async () => {
  // At --gpu-memory-utilization 0.26 an H100 holds ~4,480 tokens of
  // Llama-3.1-8B KV. 'refused' (3,000 + 3,000) prefills but can never fit the decode instance: 400,
  // its prefill KV never read. 'next' (2,000) fits the prefill instance only once that KV is freed.
  const trace = join(dir, 'refused-decode.jsonl');
  writeFileSync(
    trace,
    '{"timestamp":0,"input_length":3000,"output_length":3000,"hash_ids":[1]}\n' +
      '{"timestamp":10,"input_length":2000,"output_length":20,"hash_ids":[2]}\n',
  );
  const base = ['sim', '--trace', trace, '--prefill-instances', '1', '--decode-instances', '1'];
  const common = ['--gpu-memory-utilization', '0.26', '--no-progress'];
  const cases = [
    { flag: ['--kv-release-timeout-ms', '5000'], heldMs: 5_000 },
    { flag: [], heldMs: 120_000 },
  ];
  for (const { flag, heldMs } of cases) {
    const out = join(dir, `release-${heldMs}.json`);
    const run = await runCli([...base, ...common, ...flag, '--json', out]);
    assert.equal(run.code, 0, run.stderr);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(j.pd.kvReleaseTimeoutMs, heldMs, 'the JSON says which timeout the run used');
    assert.deepEqual(j.failedByReason, { upstream_4xx: 1 });
    assert.equal(j.completed, 1);
    // 'next' starts once the release frees the blocks: not before, and not long after.
    assert.ok(j.ttftMs.p50 >= heldMs, `TTFT ${j.ttftMs.p50} ms, before the ${heldMs} ms release`);
    assert.ok(j.ttftMs.p50 < heldMs + 1_000, `TTFT ${j.ttftMs.p50} ms, long after the ${heldMs} ms release`);
  }
});
