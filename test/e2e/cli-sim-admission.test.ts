/**
 * End-to-end runs of `switchyard sim` for what policies may know and how runs are judged: the
 * declared max_tokens, the shared early-rejection step on any policy, the goodput target, and
 * percentiles that count rejected requests. Real child processes on the bundled samples.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type CliRun, runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sim-admission-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): Promise<CliRun> {
  return runCli([...args], 180_000);
}

const readJson = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8'));

test('--early-reject gives round-robin the same refusals as goodput, and tables count them', async () => {
  const out = join(dir, 'compare.json');
  const run = await cli([
    'sim',
    '--trace',
    'sample:mooncake-conversation',
    '--requests',
    '400',
    '--instances',
    '2',
    '--rate-scale',
    '4',
    '--slo-ttft-ms',
    '5000',
    '--compare',
    'round-robin,goodput',
    '--early-reject',
    '--no-progress',
    '--json',
    out,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const policies = readJson(out)['policies'] as Record<string, Record<string, unknown>>;
  for (const name of ['round-robin', 'goodput']) {
    const s = policies[name] as Record<string, unknown>;
    const rejected = s['rejected'] as number;
    assert.ok(rejected > 0, `${name} rejected ${rejected}`);
    const all = s['ttftMsAll'] as { count: number; p99: number | null };
    assert.equal(all.count, (s['completed'] as number) + rejected, name);
    assert.ok((s['prefixHitRateAll'] as number) <= (s['prefixHitRate'] as number), name);
    assert.match(s['workload'] as string, /max_tokens cap:4096/);
  }
  assert.match(run.stdout, /rejected/);
});

test('--goodput-target is the sweep target; 99% is never above 90%', async () => {
  const sweep = async (target: string | undefined): Promise<Record<string, unknown>> => {
    const out = join(dir, `goodput-${target ?? 'default'}.json`);
    const args = ['sim', '--trace', 'sample:azure-conv', '--requests', '600', '--instances', '2'];
    args.push('--slo-ttft-ms', '500', '--slo-tpot-ms', '50', '--goodput', '--no-progress', '--json', out);
    if (target !== undefined) args.push('--goodput-target', target);
    const run = await cli(args);
    assert.equal(run.code, 0, run.stderr);
    return readJson(out);
  };
  const at90 = await sweep(undefined);
  const at99 = await sweep('0.99');
  assert.equal((at90['goodputSweep'] as { targetAttainment: number }).targetAttainment, 0.9);
  assert.equal((at99['goodputSweep'] as { targetAttainment: number }).targetAttainment, 0.99);
  assert.ok((at99['goodputRps'] as number) <= (at90['goodputRps'] as number));
});

test('bad --goodput-target and --declared-max-tokens fail with a stable code naming the flag', async () => {
  for (const args of [
    ['--goodput-target', '1.5'],
    ['--declared-max-tokens', 'cap:0'],
  ]) {
    const run = await cli([
      'sim',
      '--trace',
      'sample:azure-conv',
      '--requests',
      '10',
      '--no-progress',
      ...args,
    ]);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /SY_ERR_INVALID_ARGUMENT/);
    assert.match(run.stderr, new RegExp((args[0] as string).slice(2)));
  }
});

test('--declared-max-tokens exact declares the true length; none declares nothing', async () => {
  const summaries = [];
  for (const declared of ['exact', 'none']) {
    const out = join(dir, `declared-${declared}.json`);
    const run = await cli([
      'sim',
      '--trace',
      'sample:azure-conv',
      '--requests',
      '200',
      '--declared-max-tokens',
      declared,
      '--no-progress',
      '--json',
      out,
    ]);
    assert.equal(run.code, 0, run.stderr);
    summaries.push(readJson(out));
  }
  const [exact, none] = summaries as [Record<string, unknown>, Record<string, unknown>];
  assert.match(exact['workload'] as string, /max_tokens exact/);
  assert.match(none['workload'] as string, /max_tokens none/);
  // The engine generates the same true lengths either way: round-robin's placement ignores both.
  assert.equal(exact['outputTokens'], none['outputTokens']);
});
