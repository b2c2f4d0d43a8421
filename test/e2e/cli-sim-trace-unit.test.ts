/**
 * `sim --trace` on a Mooncake file stamped in seconds (the format's unit is ms): the run goes on,
 * with one warning on stderr naming the file, the rate and the --rate-scale that fixes it; the
 * header shows what is replayed (count, span, rate), not the --requests limit. A real sample does
 * not warn.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeSecondsStampedMooncake } from '../../src/workload/traces/seconds-stamped-test-support.ts';
import { runCli } from './support/cli.ts';

const SMALL = ['--instances', '1', '--no-progress'];
const dir = mkdtempSync(join(tmpdir(), 'sy-trace-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('sim --trace: a seconds-stamped Mooncake file warns once and runs; a real sample does not warn', async () => {
  const file = writeSecondsStampedMooncake(dir);
  const run = await runCli(['sim', '--trace', file, '--requests', '2000', ...SMALL]);
  assert.equal(run.code, 0, run.stderr);
  const warnings = run.stderr.split('\n').filter((l) => l.startsWith('warning: trace'));
  assert.equal(warnings.length, 1, run.stderr);
  assert.match(
    warnings[0] ?? '',
    /conv-seconds\.jsonl: 200 requests over 0\.0995 s, 2000 req\/s is implausibly dense/,
  );
  assert.match(warnings[0] ?? '', /--rate-scale 0\.001 replays it as meant/);
  assert.match(
    run.stdout,
    /workload trace \S*conv-seconds\.jsonl \(200 requests over 0\.0995 s, 2000 req\/s\)/,
  );
  assert.doesNotMatch(run.stdout, /2000 requests/);

  const fixed = await runCli(['sim', '--trace', file, '--rate-scale', '0.001', ...SMALL]);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.doesNotMatch(fixed.stderr, /warning: trace/);
  assert.match(fixed.stdout, /at 0\.001x rate \(200 requests over 99\.5 s, 2 req\/s\)/);

  const real = await runCli([
    'sim',
    '--trace',
    'sample:mooncake-conversation',
    '--requests',
    '300',
    ...SMALL,
  ]);
  assert.equal(real.code, 0, real.stderr);
  assert.doesNotMatch(real.stderr, /warning/);
  assert.match(
    real.stdout,
    /workload trace sample:mooncake-conversation \(300 requests over \d+ s, [\d.]+ req\/s\)/,
  );
});

test('sim --trace with several autoscalers: the time-unit warning is said once, not once per run', async () => {
  const file = writeSecondsStampedMooncake(dir);
  const run = await runCli([
    'sim',
    '--trace',
    file,
    '--autoscaler',
    'kpa,static',
    '--max-instances',
    '2',
    '--no-progress',
  ]);
  assert.equal(run.code, 0, run.stderr);
  const warnings = run.stderr.split('\n').filter((l) => l.startsWith('warning: trace'));
  assert.equal(warnings.length, 1, run.stderr);
});
