/** End-to-end runs of the `switchyard` CLI as a real child process on the bundled samples. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN, type CliRun, runCli } from './support/cli.ts';

const WALL_FIELDS = new Set(['wallSeconds', 'eventsPerWallS', 'decisionUs']);

function cli(args: string[]): Promise<CliRun> {
  return runCli([...args]);
}

function withoutWall(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value), (key, v) => (WALL_FIELDS.has(key) ? undefined : v));
}

const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));

test('sim on the Mooncake sample writes the documented JSON fields', async () => {
  const out = join(dir, 'mooncake.json');
  const html = join(dir, 'mooncake.html');
  const run = await cli([
    'sim',
    '--trace',
    'sample:mooncake-conversation',
    '--requests',
    '400',
    '--instances',
    '4',
    '--policy',
    'least-request',
    '--json',
    out,
    '--html',
    html,
  ]);
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(readFileSync(out, 'utf8'));
  for (const key of [
    'requests',
    'completed',
    'rejected',
    'sloAttainment',
    'throughputTokPerS',
    'prefixHitRate',
    'simulatedSeconds',
    'wallSeconds',
    'events',
  ]) {
    assert.ok(key in summary, `missing ${key}`);
  }
  for (const key of ['ttftMs', 'tpotMs', 'e2eMs']) {
    for (const stat of ['mean', 'p50', 'p90', 'p99'])
      assert.equal(typeof summary[key][stat], 'number', `${key}.${stat}`);
  }
  assert.equal(summary.requests, 400);
  assert.equal(summary.completed + summary.rejected, 400);
  assert.ok(summary.ttftMs.p99 >= summary.ttftMs.p50 && summary.ttftMs.p50 > 0);
  assert.ok(summary.prefixHitRate > 0, 'the Mooncake conversation trace shares prefixes');
  assert.match(run.stdout, /TTFT/);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /<html/i);
  assert.doesNotMatch(page, /<script[^>]+src=["']https?:/i);
});

test('sim is deterministic: the same seed and input give identical JSON apart from wall-clock fields', async () => {
  const args = [
    'sim',
    '--trace',
    'sample:azure-conv',
    '--requests',
    '600',
    '--instances',
    '3',
    '--policy',
    'random',
    '--seed',
    '42',
  ];
  const a = join(dir, 'a.json');
  const b = join(dir, 'b.json');
  const c = join(dir, 'c.json');
  assert.equal((await cli([...args, '--json', a])).code, 0);
  assert.equal((await cli([...args, '--json', b])).code, 0);
  assert.equal((await cli([...args.slice(0, -1), '43', '--json', c])).code, 0);
  const [ja, jb, jc] = [a, b, c].map((f) => withoutWall(JSON.parse(readFileSync(f, 'utf8'))));
  assert.deepEqual(ja, jb);
  assert.notDeepEqual(ja, jc, 'a different seed changes random routing');
});

test('the decision log is byte-identical for the same seed and input', async () => {
  const args = [
    'sim',
    '--trace',
    'sample:mooncake-conversation',
    '--requests',
    '300',
    '--instances',
    '4',
    '--policy',
    'prefix-affinity',
  ];
  const a = join(dir, 'a.log');
  const b = join(dir, 'b.log');
  assert.equal((await cli([...args, '--decision-log', a])).code, 0);
  assert.equal((await cli([...args, '--decision-log', b])).code, 0);
  const text = readFileSync(a, 'utf8');
  assert.equal(text, readFileSync(b, 'utf8'));
  const lines = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 300);
  assert.ok(
    lines.every(
      (l) =>
        typeof l.request === 'string' && (typeof l.instance === 'string' || typeof l.reject === 'string'),
    ),
  );
});

test('sim runs a generated Poisson workload from a YAML config, flags overriding it', async () => {
  const config = join(dir, 'sim.yaml');
  writeFileSync(
    config,
    [
      'seed: 3',
      'policy: round-robin',
      'cluster: { instances: 2, gpu: a100-80gb, model: llama-2-7b }',
      'engine: { maxNumSeqs: 64 }',
      'workload: { kind: poisson, rateRps: 5, maxRequests: 200, input: { kind: fixed, tokens: 512 }, output: { kind: fixed, tokens: 64 } }',
      'slo: { ttftMs: 1000, tpotMs: 50 }',
      '',
    ].join('\n'),
  );
  const out = join(dir, 'yaml.json');
  const run = await cli(['sim', '--config', config, '--instances', '3', '--json', out]);
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(summary.requests, 200);
  assert.equal(summary.instances, 3);
  assert.equal(summary.outputTokens, 200 * 64);
});

test('a wrong value gets a message naming it and the valid choices', async () => {
  const gpu = await cli(['sim', '--gpu', 'h900']);
  assert.notEqual(gpu.code, 0);
  assert.match(gpu.stderr, /h900/);
  assert.match(gpu.stderr, /h100/);
  const policy = await cli(['sim', '--policy', 'fastest']);
  assert.notEqual(policy.code, 0);
  assert.match(policy.stderr, /least-request/);
  const rate = await cli(['sim', '--rate', '-3']);
  assert.notEqual(rate.code, 0);
  assert.match(rate.stderr, /-3/);
  const sample = await cli(['sim', '--trace', 'sample:nope']);
  assert.notEqual(sample.code, 0);
  assert.match(sample.stderr, /azure-conv/);
  const config = join(dir, 'bad.yaml');
  writeFileSync(config, 'seed: 1\nclustr: { instances: 2 }\n');
  const bad = await cli(['sim', '--config', config]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /clustr/);
  assert.doesNotMatch(bad.stderr, /at .*\.ts:\d+/, 'no stack trace for a handled error');
  // Every usage error exits 2, whether commander or the command itself finds it.
  for (const r of [gpu, policy, rate, sample, bad]) assert.equal(r.code, 2, r.stderr);
  for (const args of [['sim', '--bogus'], ['bench', '--bogus'], ['fidelity', '--bogus'], ['bogus']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    // One line in the catalogue's format, as the command's own errors (src/cli/usage-error.ts).
    assert.match(
      r.stderr,
      /^switchyard: unknown (option|command) [^\n]*\[SY_ERR_UNKNOWN_NAME\]\n$/,
      r.stderr,
    );
  }
  assert.equal((await cli(['sim', '--help'])).code, 0);
});

test('--help explains each option and its default', async () => {
  const run = await cli(['sim', '--help']);
  assert.equal(run.code, 0);
  for (const flag of [
    '--trace',
    '--workload',
    '--rate-scale',
    '--max-num-seqs',
    '--max-num-batched-tokens',
    '--block-size',
    '--gpu-memory-utilization',
    '--no-prefix-caching',
    '--slo-ttft-ms',
    '--json',
    '--html',
    '--config',
  ]) {
    assert.match(run.stdout, new RegExp(flag), flag);
  }
  assert.match(run.stdout, /default: "h100"/);
});

test('the demo (npm run demo) compares the routing policies on the bundled trace, with goodput', async () => {
  const out = join(dir, 'demo.json');
  const run = await cli(['demo', '--requests', '300', '--json', out]);
  assert.equal(run.code, 0, run.stderr);
  const names = [
    'round-robin',
    'least-request',
    'prefix-affinity',
    'llm-d',
    'kv-cost',
    'mooncake',
    'goodput',
  ];
  for (const name of names) assert.match(run.stdout, new RegExp(name));
  const json = JSON.parse(readFileSync(out, 'utf8'));
  assert.deepEqual(Object.keys(json.policies), names);
  for (const summary of Object.values(json.policies) as { requests: number; goodputRps: number }[]) {
    assert.equal(summary.requests, 300);
    assert.equal(typeof summary.goodputRps, 'number');
  }
});

test('a reader that stops early (| head) ends the run quietly: status 0, no EPIPE stack', async () => {
  const { spawn } = await import('node:child_process');
  for (const args of [
    ['sim', '--help'],
    ['sim', '--requests', '3000', '--no-progress'],
  ]) {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // Read one chunk, then close our end of the pipe, as `head -1` does.
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 0, `${args.join(' ')}: ${stderr}`);
    assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
  }
});
