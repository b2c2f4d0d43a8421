/**
 * `switchyard sim` as a new user meets it, in real processes: an autoscaler's pool (most instances)
 * is not the fixed cluster's 4 unless asked, the run says which cap applied and when the loop asked
 * for all of it; a report path that cannot be written stops the run before it starts, with one line
 * and exit 2, never a stack trace. Quicker checks of the same kind: src/cli/cli-qa.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AUTOSCALER_POOL_DEFAULT } from '../../src/cli/sim-autoscaler.ts';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-sim-qa-'));

describe('a report path that cannot be written', () => {
  it('stops sim before it runs: one line naming the flag, exit 2, no stack', async () => {
    const file = join(dir, 'plain.txt');
    writeFileSync(file, 'x');
    const run = await runCli(['sim', '--no-progress', '--requests', '10', '--json', join(file, 'r.json')]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^switchyard: invalid json '.*r\.json': expected a file this process can write/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(run.stdout, '', 'nothing simulated');
  });
});

describe('sim --autoscaler pool', () => {
  const LOAD = [
    'sim',
    '--no-progress',
    '--workload',
    'constant',
    '--rate',
    '2',
    '--duration',
    '20',
    '--input-tokens',
    '128',
    '--output-tokens',
    '8',
    '--autoscaler',
    'kpa',
  ];
  const poolOf = (path: string): number =>
    (JSON.parse(readFileSync(path, 'utf8')) as { instances: number }).instances;

  it(`without --max-instances or --instances is ${AUTOSCALER_POOL_DEFAULT}, and the run says so`, async () => {
    const json = join(dir, 'pool-default.json');
    const run = await runCli([...LOAD, '--json', json]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(poolOf(json), AUTOSCALER_POOL_DEFAULT);
    assert.match(
      run.stdout,
      new RegExp(`pool: 1 to ${AUTOSCALER_POOL_DEFAULT} instances \\(the most: the default`),
    );
  });

  it('is --instances when given, --max-instances over both, and at least --min-instances', async () => {
    const json = (name: string): string => join(dir, `pool-${name}.json`);
    // Three processes at once: each writes its own report.
    const [given, max, min] = await Promise.all([
      runCli([...LOAD, '--instances', '3', '--json', json('given')]),
      runCli([...LOAD, '--instances', '3', '--max-instances', '5', '--json', json('max')]),
      // Was refused as "invalid max-instances '4'", a flag the user never gave.
      runCli([...LOAD, '--min-instances', '20', '--json', json('min')]),
    ]);
    for (const run of [given, max, min]) assert.equal(run.code, 0, run.stderr);
    assert.equal(poolOf(json('given')), 3);
    assert.match(given.stdout, /pool: 1 to 3 instances \(the most: the cluster size/);
    assert.equal(poolOf(json('max')), 5);
    assert.match(max.stdout, /pool: 1 to 5 instances \(the most: --max-instances\)/);
    assert.equal(poolOf(json('min')), 20);
  });

  it("is the config file's cluster size when it gives one (it was the flag's default, 4)", async () => {
    const config = join(dir, 'cluster.yaml');
    writeFileSync(config, 'cluster: { instances: 6 }\n');
    const json = join(dir, 'pool-config.json');
    const run = await runCli([...LOAD, '--config', config, '--json', json]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(poolOf(json), 6);
  });

  it('says when the loop asked for the whole pool', async () => {
    const run = await runCli([
      'sim',
      '--no-progress',
      '--workload',
      'constant',
      '--rate',
      '60',
      '--duration',
      '20',
      '--input-tokens',
      '4000',
      '--output-tokens',
      '8',
      '--autoscaler',
      'slo-planner',
      '--max-instances',
      '2',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /slo-planner asked for all 2 at \d+ s: the cap may have held it down/);
  });
});
