/**
 * End-to-end: `switchyard bench --workload FILE` as a real child process sends the twin's own
 * workload to real servers on 127.0.0.1: a sinusoid (an autoscaling workload) to the built-in sim
 * engine, and a two-model multi-model workload (the serverless case, from a sim config file) to
 * `switchyard serve` with one sim engine per model. Every request the twin's stream holds is sent
 * and answered with the twin's lengths, and each model's engine served exactly its model's share.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { Rng } from '../../src/core/rng.ts';
import type { BenchSummary, RequestRecord } from '../../src/loadgen/types.ts';
import { createWorkload } from '../../src/workload/create.ts';
import type { WorkloadSpecInput } from '../../src/workload/spec.ts';
import type { TwinRequest } from '../../src/workload/types.ts';
import { BIN, type CliRun, runCli } from './support/cli.ts';
import { type ServeProcess, startServe } from './support/serve.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-workload-'));
const children: ChildProcess[] = [];
const ADMIN_KEY = 'bench-workload-admin';

function bench(args: string[]): Promise<CliRun> {
  return runCli(['bench', '--no-progress', ...args], 60_000);
}

function twinOf(spec: WorkloadSpecInput, seed: number): TwinRequest[] {
  return [...createWorkload(spec, new Rng(seed).fork('workload'))];
}

/** The sum of a counter's samples on an engine's /metrics page (every label set). */
async function counter(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series}{`) || line.startsWith(`${series} `))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** `switchyard engine sim` as a child process, twenty times faster than modelled. */
async function startEngine(): Promise<string> {
  const child = spawn(
    process.execPath,
    [BIN, 'engine', 'sim', '--port', '0', '--time-scale', '0.05', '--kv-events', 'none'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  const stderr: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => stderr.push(l));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  return (JSON.parse(line) as { url: string }).url;
}

let engineUrl: string;
let serve: ServeProcess;

before(async () => {
  [engineUrl, serve] = await Promise.all([
    startEngine(),
    startServe(
      [
        '--admin-key',
        ADMIN_KEY,
        '--time-scale',
        '0.05',
        '--model',
        'm0=llama-3.1-8b',
        '--model',
        'm1=llama-3.1-8b',
        '--autoscaler',
        'static',
        '--min-instances',
        '1',
        '--max-instances',
        '1',
      ],
      children,
    ),
  ]);
});

after(async () => {
  await Promise.all(
    children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map((c) => {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        return exited;
      }),
  );
  rmSync(dir, { recursive: true, force: true });
});

/** A sinusoid (an autoscaling workload), 10x faster, to the sim engine. */
async function sinusoid(): Promise<void> {
  const spec: WorkloadSpecInput = {
    kind: 'sinusoid',
    rateMinRps: 1,
    rateMaxRps: 10,
    periodS: 20,
    durationS: 40,
    input: { kind: 'lognormal', mean: 300, cv: 0.5, max: 2000 },
    output: { kind: 'uniform', lo: 4, hi: 24 },
  };
  const file = join(dir, 'sinusoid.yaml');
  writeFileSync(file, stringify(spec));
  const twin = twinOf(spec, 3);
  const out = join(dir, 'sinusoid.json');
  const generatedBefore = await counter(engineUrl, 'vllm:generation_tokens_total');
  const run = await bench([
    '--url',
    engineUrl,
    '--workload',
    file,
    '--rate-scale',
    '10',
    '--seed',
    '3',
    '--json',
    out,
    '--save-requests',
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^workload sinusoid from .*sinusoid\.yaml at x10 · /m);
  const s = JSON.parse(readFileSync(out, 'utf8')) as BenchSummary;
  const n = twin.length;
  assert.ok(n > 100, `${n} requests in the twin's stream`);
  assert.deepEqual(s.requests, { scheduled: n, sent: n, completed: n, failed: 0 });
  assert.equal(s.workload['spec'], 'sinusoid');
  const rs = records(s);
  assert.equal(rs.length, n);
  let output = 0;
  for (const [i, r] of rs.entries()) {
    const t = twin[i] as TwinRequest;
    assert.equal(r.ok, true);
    assert.equal(r.scheduledMs, t.arrivalMs / 10, `request ${i} goes out at the twin's arrival / 10`);
    assert.equal(r.maxTokens, t.trueOutputTokens);
    assert.equal(r.outputTokens, t.trueOutputTokens, 'the engine generated the twin length');
    assert.equal(r.inputTokens, t.inputTokens, "the engine's count of the prompt is the twin's");
    output += r.outputTokens;
  }
  assert.equal(s.throughput.outputTokens, output);
  assert.equal((await counter(engineUrl, 'vllm:generation_tokens_total')) - generatedBefore, output);
}

/**
 * Shared system prompts on one instance, in the twin (`sim --config`) and live from the same file:
 * the prompts' text shares what the twin's chains share, so the engine's prefix cache hits as the
 * twin's does (0.861574 in both on a longer run; docs/bench.md).
 */
async function systemPrompts(): Promise<void> {
  const config = join(dir, 'system-prompts.yaml');
  writeFileSync(
    config,
    stringify({
      seed: 2,
      cluster: { instances: 1, gpu: 'h100', model: 'llama-3.1-8b' },
      workload: {
        kind: 'system-prompts',
        rateRps: 4,
        groups: 6,
        prefixTokens: 1000,
        suffix: { kind: 'uniform', lo: 50, hi: 400 },
        output: { kind: 'uniform', lo: 4, hi: 16 },
        durationS: 40,
      },
    }),
  );
  const twinJson = join(dir, 'system-prompts-twin.json');
  const sim = await runCli(['sim', '--config', config, '--no-progress', '--json', twinJson], 60_000);
  assert.equal(sim.code, 0, sim.stderr);
  const twin = JSON.parse(readFileSync(twinJson, 'utf8')) as { prefixHitRate: number; requests: number };
  const hitsBefore = await counter(engineUrl, 'vllm:prefix_cache_hits_total');
  const queriesBefore = await counter(engineUrl, 'vllm:prefix_cache_queries_total');
  const run = await bench(['--url', engineUrl, '--workload', config, '--rate-scale', '10']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`requests ${twin.requests} · completed ${twin.requests} · failed 0`));
  const hits = (await counter(engineUrl, 'vllm:prefix_cache_hits_total')) - hitsBefore;
  const queries = (await counter(engineUrl, 'vllm:prefix_cache_queries_total')) - queriesBefore;
  const live = hits / queries;
  assert.ok(twin.prefixHitRate > 0.5, `the twin hits ${twin.prefixHitRate}`);
  assert.ok(Math.abs(live - twin.prefixHitRate) < 0.03, `live ${live}, twin ${twin.prefixHitRate}`);
}

function records(s: BenchSummary): RequestRecord[] {
  return [...(s.records ?? [])].sort((a, b) => a.index - b.index);
}

describe('switchyard bench --workload', { concurrency: true }, () => {
  // The sim-engine runs share the engine's prefix-cache counters, so they run one after the other.
  test('against the sim engine', async (t) => {
    await t.test(
      'a sinusoid, 10x faster: every planned request sent and answered as the twin has it',
      sinusoid,
    );
    await t.test("shared system prompts: the engine's prefix-cache hit rate is the twin's", systemPrompts);
  });

  test('two models from a sim config through serve: each model gets exactly its requests', async () => {
    const spec: WorkloadSpecInput = {
      kind: 'multi-model',
      models: 2,
      modelRatesRps: [6, 2],
      onMeanS: 60,
      offMeanS: 2,
      durationS: 30,
      input: { kind: 'uniform', lo: 50, hi: 400 },
      output: { kind: 'uniform', lo: 4, hi: 16 },
    };
    const config = join(dir, 'serverless.yaml');
    writeFileSync(config, stringify({ seed: 4, policy: 'least-request', workload: spec }));
    const twin = twinOf(spec, 4);
    const want: Record<string, number> = {};
    for (const r of twin) want[r.model] = (want[r.model] ?? 0) + 1;
    assert.deepEqual(Object.keys(want).sort(), ['m0', 'm1']);
    const { instances } = (await (
      await fetch(`${serve.url}/admin/instances`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    ).json()) as { instances: { url: string; models: string[] }[] };
    assert.equal(instances.length, 2);
    const before = await Promise.all(instances.map((i) => counter(i.url, 'vllm:request_success_total')));
    const out = join(dir, 'serverless.json');
    const run = await bench(['--url', serve.url, '--workload', config, '--rate-scale', '10', '--json', out]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^models m0 \d+ · m1 \d+$/m);
    const s = JSON.parse(readFileSync(out, 'utf8')) as BenchSummary;
    assert.equal(s.seed, 4, "the config's seed");
    assert.equal(s.model, 'per request');
    const n = twin.length;
    assert.deepEqual(s.requests, { scheduled: n, sent: n, completed: n, failed: 0 });
    assert.deepEqual(s.models, {
      m0: { requests: want['m0'], completed: want['m0'], failed: 0 },
      m1: { requests: want['m1'], completed: want['m1'], failed: 0 },
    });
    // The engines' own counters: each model's engine answered exactly its model's requests.
    for (const [k, i] of instances.entries()) {
      const served = (await counter(i.url, 'vllm:request_success_total')) - (before[k] as number);
      assert.equal(served, want[i.models[0] as string], `engine of ${i.models[0]}`);
    }
  });

  test('a bad workload file fails before sending, naming the file and the key, exit 2', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'kind: sinusoid\nrateMinRps: 5\nrateMaxRps: 2\nperiodS: 10\ndurationS: 10\n' +
        'input: { kind: fixed, tokens: 100 }\noutput: { kind: fixed, tokens: 10 }\n',
    );
    const run = await bench(['--url', 'http://127.0.0.1:1', '--workload', file]);
    assert.equal(run.code, 2);
    assert.match(
      run.stderr,
      /^switchyard: --workload '.*bad\.yaml': invalid workload spec: workload\.rateMaxRps: rateMinRps must be <= rateMaxRps \[SY_ERR_INVALID_ARGUMENT\]\n$/,
    );
  });
});
