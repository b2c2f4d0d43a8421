/**
 * The twin's command line as a new user meets it: bad values and unwritable report paths are usage
 * errors (exit 2) that name the flag, before any work runs. Runs the CLI in this process (runCliInProcess).
 * The autoscaler's pool, which needs the printed table: test/e2e/cli-sim-qa.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCliInProcess as runCli } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';
import { checkOutputFile } from './output-file.ts';
import { alignColumns } from './plan-gpus-command.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-qa-'));
/** A regular file: a path under it cannot be created, even by root. */
const FILE = join(dir, 'plain.txt');
writeFileSync(FILE, 'keep me\n');
const UNDER_FILE = join(FILE, 'report.json');
const FOLDER = join(dir, 'folder');
mkdirSync(FOLDER);

interface Run {
  code: number;
  stderr: string;
}

async function assertUsageError(args: readonly string[], message: RegExp): Promise<Run> {
  const run = await runCli(args);
  assert.equal(run.code, USAGE_EXIT_CODE, `${args.join(' ')}: ${run.stderr}`);
  assert.match(run.stderr, message);
  return run;
}

const SIM = ['sim', '--no-progress', '--requests', '20', '--input-tokens', '128', '--output-tokens', '8'];

describe('report paths are checked before the run', () => {
  it('sim --json, --html, --decision-log: a folder or a path under a file is a usage error', async () => {
    for (const [flag, name] of [
      ['--json', 'json'],
      ['--html', 'html'],
      ['--decision-log', 'decision-log'],
    ] as const) {
      await assertUsageError([...SIM, flag, FOLDER], new RegExp(`invalid ${name} .*not a folder`));
      await assertUsageError([...SIM, flag, UNDER_FILE], new RegExp(`invalid ${name} .*can write`));
    }
    await assertUsageError([...SIM, '--json', ''], /invalid json '': expected a file path/);
    const same = join(dir, 'same.out');
    await assertUsageError([...SIM, '--json', same, '--html', same], /invalid html .*other than json's/);
  });

  it("sim: the config file's output paths too", async () => {
    const config = join(dir, 'out.yaml');
    writeFileSync(config, `output: { json: ${JSON.stringify(UNDER_FILE)} }\n`);
    await assertUsageError([...SIM, '--config', config], /invalid output\.json/);
  });

  it('demo, plan-gpus, fidelity and bench --json', async () => {
    await assertUsageError(
      ['demo', '--no-progress', '--requests', '5', '--json', UNDER_FILE],
      /invalid json/,
    );
    const plan = ['plan-gpus', '--model', 'llama-3.1-8b', '--rate', '2', '--input-tokens', '100'];
    await assertUsageError(
      [...plan, '--output-tokens', '10', '--json', FOLDER],
      /invalid json .*not a folder/,
    );
    const cases = fileURLToPath(new URL('../../data/fidelity/h100-llama-3.1-8b-c1.yaml', import.meta.url));
    await assertUsageError(['fidelity', cases, '--no-progress', '--json', UNDER_FILE], /invalid json/);
    // Refused before it connects: port 1 has no server, and the error is about the file.
    await assertUsageError(
      ['bench', '--url', 'http://127.0.0.1:1', '--requests', '1', '--json', UNDER_FILE],
      /invalid --json/,
    );
  });

  it('fidelity --json a.yaml b.yaml does not write the report over a.yaml (commander gives a.yaml to --json)', async () => {
    const a = join(dir, 'a.yaml');
    const text = readFileSync(
      fileURLToPath(new URL('../../data/fidelity/h100-llama-3.1-8b-c1.yaml', import.meta.url)),
      'utf8',
    );
    writeFileSync(a, text);
    const b = fileURLToPath(new URL('../../data/fidelity/h100-llama-3.1-8b-c4.yaml', import.meta.url));
    await assertUsageError(['fidelity', '--no-progress', '--json', a, b], /invalid json .*not a case file/);
    assert.equal(readFileSync(a, 'utf8'), text);
  });

  it('checkOutputFile leaves an existing file as it was and no probe file behind', () => {
    checkOutputFile('json', FILE);
    assert.equal(readFileSync(FILE, 'utf8'), 'keep me\n');
    const fresh = join(dir, 'new', 'deeper', 'r.json');
    checkOutputFile('json', fresh);
    assert.throws(() => readFileSync(fresh), { code: 'ENOENT' });
  });
});

describe('bad values name their flag', () => {
  it('sim --workload sinusoid with --rate-min above --rate-max', async () => {
    await assertUsageError(
      ['sim', '--workload', 'sinusoid', '--rate-min', '5', '--rate-max', '1', '--period-s', '60'],
      /invalid rate-max '1': expected at least --rate-min \(5\)/,
    );
  });

  it('sim --compare and demo --policies with no name in the list', async () => {
    await assertUsageError([...SIM, '--compare', ',,'], /invalid compare ',,'.*round-robin/);
    await assertUsageError(['demo', '--policies', ' , '], /invalid policies .*round-robin/);
  });

  it('sim --compare under one --autoscaler (its GPU-hours would be dropped)', async () => {
    await assertUsageError(
      [...SIM, '--autoscaler', 'kpa', '--compare', 'round-robin,least-request'],
      /invalid compare .*one routing policy with --autoscaler/,
    );
  });

  it("sim --instances, --tp and the pool bounds are the config schema's (10^11 instances never finished)", async () => {
    await assertUsageError(
      [...SIM, '--instances', '99999999999'],
      /--instances <n>' argument '99999999999' is invalid.*1\.\.100000/,
    );
    await assertUsageError([...SIM, '--tp', '65'], /not an integer in 1\.\.64/);
    await assertUsageError([...SIM, '--autoscaler', 'kpa', '--max-instances', '10001'], /1\.\.10000/);
    await assertUsageError(
      ['demo', '--instances', '100001'],
      /--instances <n>' argument '100001' is invalid/,
    );
  });

  it('sim --trace, --rate-curve, --servegen-file with an empty path name the flag', async () => {
    for (const flag of ['--trace', '--rate-curve', '--servegen-file'])
      await assertUsageError([...SIM, flag, ''], new RegExp(`${flag} <[^>]+>' argument '' is invalid`));
  });

  it('sim --duration past 31 days is refused naming the flag (1e12 s generated arrivals for hours)', async () => {
    await assertUsageError(
      [
        ...SIM,
        '--workload',
        'sinusoid',
        '--rate-min',
        '1',
        '--rate-max',
        '2',
        '--period-s',
        '10',
        '--duration',
        '1e12',
      ],
      /--duration.*more than 2678400 s \(31 days\)/,
    );
  });

  it("sim --rate-curve with a --duration past the curve's end (the run stopped at the end, the label said otherwise)", async () => {
    const curve = join(dir, 'curve.csv');
    writeFileSync(curve, 'time_s,rate\n0,2\n120,4\n');
    await assertUsageError(
      [...SIM, '--rate-curve', curve, '--duration', '121'],
      /invalid duration '121': expected at most the rate curve's end, 120 s/,
    );
  });

  it('sim --control-interval-ms below the floor (0.001 ms never finished)', async () => {
    await assertUsageError(
      [...SIM, '--autoscaler', 'kpa', '--control-interval-ms', '0.001'],
      /invalid control-interval-ms '0\.001': expected at least 100 ms/,
    );
  });

  it('sim --stages in hex or with a stray comma', async () => {
    await assertUsageError([...SIM, '--stages', '0x10:5'], /invalid stages '0x10:5'/);
    await assertUsageError([...SIM, '--stages', '8:5,'], /stage 2 of 2 is empty/);
  });

  it('fidelity: an unknown GPU in one of several cases names its file', async () => {
    const good = fileURLToPath(new URL('../../data/fidelity/h100-llama-3.1-8b-c1.yaml', import.meta.url));
    const bad = join(dir, 'bad-gpu.yaml');
    writeFileSync(bad, readFileSync(good, 'utf8').replace('gpu: h100', 'gpu: h900'));
    await assertUsageError(
      ['fidelity', '--no-progress', good, bad],
      /fidelity case '.*bad-gpu\.yaml': unknown gpu 'h900'/,
    );
  });

  it('plan-gpus --gpus with an unknown GPU (it read as one without a price)', async () => {
    await assertUsageError(
      [
        'plan-gpus',
        '--model',
        'llama-3.1-8b',
        '--rate',
        '2',
        '--input-tokens',
        '100',
        '--output-tokens',
        '10',
        '--gpus',
        'h100,zz',
      ],
      /invalid gpus: unknown gpu 'zz'; valid: .*h100/,
    );
  });
});

describe('plan-gpus table', () => {
  it('widens each column to its widest cell (a billion req/s overran the fixed widths)', () => {
    const lines = alignColumns(
      [
        ['instances', 'gpu', '$/hour', 'utilization'],
        ['35246001', 'h200', '$373607610.60', '100%'],
      ],
      [true, false, true, true],
    );
    assert.deepEqual(lines, [
      '  instances  gpu          $/hour  utilization',
      '   35246001  h200  $373607610.60  100%',
    ]);
  });
});
