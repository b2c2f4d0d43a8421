/** `switchyard sim --autoscaler`: the real CLI runs a control loop in the twin and reports its cost. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-autoscaler-'));

/** A load step: 5 req/s for 20 s, then 60 req/s for 60 s, on a pool of up to 3 H100s. */
function simArgs(autoscaler: string, json: string): string[] {
  return [
    'sim',
    '--workload',
    'constant',
    '--stages',
    '5:20,60:60',
    '--input-tokens',
    '512',
    '--output-tokens',
    '300',
    '--autoscaler',
    autoscaler,
    '--min-instances',
    '1',
    '--max-instances',
    '3',
    '--no-progress',
    '--json',
    json,
  ];
}

interface Point {
  timeS: number;
  ready: number;
  starting: number;
  draining: number;
  desired: number;
}

function readJson(path: string): Record<string, unknown> & { instancesOverTime: Point[] } {
  return JSON.parse(readFileSync(path, 'utf8'));
}

describe('sim --autoscaler', () => {
  it('static runs the whole pool from the start: GPU-hours are the pool for the whole run', async () => {
    const out = join(dir, 'static.json');
    const run = await runCli(simArgs('static', out));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /autoscaler: [\d.]+ GPU-hours, 0 cold starts, peak 3 ready/);
    const j = readJson(out);
    // The JSON keeps its fields and adds the control ones.
    for (const key of ['requests', 'completed', 'rejected', 'sloAttainment', 'gpuSeconds'])
      assert.ok(key in j, key);
    assert.equal(j['completed'] as number, j['requests'] as number, 'no request lost');
    assert.equal(j['coldStarts'], 0);
    assert.ok(Math.abs((j['gpuHours'] as number) - (j['gpuSeconds'] as number) / 3600) < 1e-4);
    assert.ok(j.instancesOverTime.length > 10);
    assert.ok(j.instancesOverTime.every((p) => p.ready === 3 && p.desired === 3 && p.starting === 0));
  });

  it('kpa starts instances after the step, counts its cold starts and bills less than the pool', async () => {
    const out = join(dir, 'kpa.json');
    const run = await runCli(simArgs('kpa', out));
    assert.equal(run.code, 0, run.stderr);
    const j = readJson(out);
    assert.equal((j['completed'] as number) + (j['rejected'] as number), j['requests'] as number);
    assert.ok((j['coldStarts'] as number) >= 1, `cold starts ${j['coldStarts']}`);
    const series = j.instancesOverTime;
    assert.equal(series[0]?.ready, 1);
    assert.ok(
      series.some((p) => p.starting > 0 && p.timeS > 20),
      'instances start after the step',
    );
    assert.ok(
      series.some((p) => p.ready > 1),
      'and become ready',
    );
    // Billed from each start: under the whole pool for the whole run.
    assert.ok((j['gpuHours'] as number) < (j['gpuSeconds'] as number) / 3600);
  });

  it('refuses an unknown autoscaler and control flags without one', async () => {
    const bad = await runCli(simArgs('nope', join(dir, 'x.json')));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /kpa/);
    const stray = await runCli(['sim', '--requests', '10', '--max-instances', '3', '--no-progress']);
    assert.notEqual(stray.code, 0);
    assert.match(stray.stderr, /only with --autoscaler/);
  });
});

describe('the config file autoscaler block', () => {
  const config = (block: string): string => {
    const path = join(
      dir,
      `as-${Math.abs(block.length * 7919) % 100_000}-${block.includes('bogus') ? 'bad' : 'ok'}.yaml`,
    );
    writeFileSync(
      path,
      [
        'cluster: { instances: 4, gpu: h100, model: llama-3.1-8b }',
        'workload: { kind: constant, stages: [{ rateRps: 5, durationS: 20 }, { rateRps: 60, durationS: 40 }], input: { kind: fixed, tokens: 512 }, output: { kind: fixed, tokens: 300 } }',
        block,
        '',
      ].join('\n'),
    );
    return path;
  };

  it('names the autoscaler, its pool and per-name parameters; flags override; a bad parameter is refused by name', async () => {
    const jsonOf = async (path: string, extra: string[] = []) => {
      const out = join(dir, `${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
      const run = await runCli(['sim', '--config', path, '--no-progress', '--json', out, ...extra]);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(readFileSync(out, 'utf8')) as {
        gpuHours: number;
        coldStarts: number;
        instancesOverTime: { ready: number }[];
      };
    };
    const lean = await jsonOf(
      config(
        'autoscaler: { name: kpa, minInstances: 1, maxInstances: 3, params: { kpa: { containerConcurrency: 1000 } } }',
      ),
    );
    const eager = await jsonOf(
      config(
        'autoscaler: { name: kpa, minInstances: 1, maxInstances: 3, params: { kpa: { containerConcurrency: 4 } } }',
      ),
    );
    // A target of 4 requests per replica starts the whole pool; 1,000 keeps to one instance.
    const peak = (r: { instancesOverTime: { ready: number }[] }) =>
      Math.max(...r.instancesOverTime.map((p) => p.ready));
    assert.equal(peak(lean), 1);
    assert.equal(peak(eager), 3);
    assert.ok(eager.gpuHours > lean.gpuHours);
    // A flag wins over the file: --max-instances 1 leaves no room to start anything.
    const capped = await jsonOf(
      config(
        'autoscaler: { name: kpa, minInstances: 1, maxInstances: 3, params: { kpa: { containerConcurrency: 4 } } }',
      ),
      ['--max-instances', '1'],
    );
    assert.equal(peak(capped), 1);
    const bad = await runCli([
      'sim',
      '--config',
      config('autoscaler: { name: kpa, maxInstances: 3, params: { kpa: { bogus: 1 } } }'),
      '--no-progress',
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bogus/);
    assert.match(bad.stderr, /SY_ERR_INVALID_CONFIG/);
  });
});
