/**
 * `switchyard sim --stages` with idle (rate 0) stages: `0:10,5:20,0:10,5:10` sends nothing in its
 * first 10 s and in 30-40 s, and the stages after them start where they would after busy ones. A rate
 * curve with a stretch at rate 0 is idle there too. An idle last stage (the run would end before it),
 * every stage idle, a negative rate and a non-number are refused with exit 2 and the reason.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-idle-stage-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const LENGTHS = ['--input-tokens', '200', '--output-tokens', '20', '--no-progress'];

/** The arrival times (ms) of the routed requests in a decision log. */
function routedAt(path: string): number[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { request?: string; atMs: number; instance?: string })
    .filter((e) => e.request !== undefined && e.instance !== undefined)
    .map((e) => e.atMs);
}

describe('sim: idle stages', () => {
  it('--stages with rate 0 sends nothing in those spans and keeps the later stages in place', async () => {
    const json = join(dir, 'stages.json');
    const log = join(dir, 'stages.jsonl');
    const run = await runCli([
      'sim',
      '--workload',
      'constant',
      '--stages',
      '0:10,5:20,0:10,5:10',
      ...LENGTHS,
      '--json',
      json,
      '--decision-log',
      log,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(readFileSync(json, 'utf8')) as { requests: number; completed: number };
    assert.equal(result.requests, 150);
    assert.equal(result.completed, 150);
    const at = routedAt(log);
    assert.equal(at.length, 150);
    assert.equal(Math.min(...at), 10_000);
    assert.equal(at.filter((t) => t >= 30_000 && t < 40_000).length, 0);
    assert.equal(Math.min(...at.filter((t) => t >= 30_000)), 40_000);
  });

  it('a rate curve with a stretch at rate 0 is idle there', async () => {
    const curve = join(dir, 'curve.csv');
    writeFileSync(curve, 'time_s,rate\n0,5\n20,5\n20.001,0\n40,0\n40.001,5\n60,5\n');
    const log = join(dir, 'curve.jsonl');
    const run = await runCli(['sim', '--rate-curve', curve, ...LENGTHS, '--decision-log', log]);
    assert.equal(run.code, 0, run.stderr);
    const at = routedAt(log);
    assert.ok(at.filter((t) => t < 20_000).length > 50, `${at.length}`);
    assert.equal(at.filter((t) => t >= 20_010 && t < 40_000).length, 0);
    assert.ok(at.filter((t) => t >= 40_000).length > 50);
  });

  it('refuses an idle last stage, every stage idle, a negative rate and a non-number', async () => {
    const cases: [string, RegExp][] = [
      ['5:10,0:10', /the last stage \(2 of 2\) has rate 0: a run ends with its last request/],
      ['0:10,0:5', /every stage has rate 0: no request would arrive/],
      ['-1:10,5:10', /a rate >= 0 \(req\/s\) and a positive duration/],
      ['nan:10,5:10', /a rate >= 0 \(req\/s\) and a positive duration/],
    ];
    for (const [stages, message] of cases) {
      const run = await runCli(['sim', '--workload', 'constant', `--stages=${stages}`, ...LENGTHS]);
      assert.equal(run.code, 2, `${stages}: ${run.stderr}`);
      assert.match(run.stderr, message, stages);
      assert.match(run.stderr, /SY_ERR_INVALID_ARGUMENT/, stages);
    }
  });
});
