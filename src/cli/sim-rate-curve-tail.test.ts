/**
 * A rate curve whose last rows have rate 0 declares idle time the twin does not simulate (a run ends
 * at its last completion): the run warns, naming the tail, instead of shortening it silently.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runTwin } from '../twin/run.ts';
import { idleTailOf } from '../workload/rate-curve-file.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-rate-curve-tail-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `sim --rate-curve` on `csv` with `extra` flags: its warnings and simulated seconds. */
function run(name: string, csv: string, extra: Record<string, unknown> = {}) {
  const file = join(dir, `${name}.csv`);
  writeFileSync(file, csv);
  const flags = { rateCurve: file, instances: 1, ...extra };
  const settings = resolveSettings(simFlags(flags), {}, fromCli(Object.keys(flags)));
  const warnings: string[] = [];
  const result = runTwin(settings, undefined, undefined, undefined, (line) => warnings.push(line));
  return { file, warnings, simulatedS: result.summary.simulatedSeconds };
}

describe('rate curve with a zero-rate tail', () => {
  it('warns that the tail is not simulated, naming where it starts and ends', () => {
    const r = run('tail', 'time_s,rate\n0,2\n20,2\n21,0\n600,0\n');
    assert.equal(r.warnings.length, 1, r.warnings.join('\n'));
    assert.match(
      r.warnings[0] as string,
      /rate curve .*tail\.csv: the rate is 0 from 21 s to 600 s; .*not simulated/,
    );
    // What the warning says: the run stopped near the last arrival, not at the curve's end.
    assert.ok(r.simulatedS < 60, `simulated ${r.simulatedS} s`);
  });

  it('the tail up to --duration only, and no warning when --duration ends before it', () => {
    const csv = 'time_s,rate\n0,2\n20,2\n21,0\n600,0\n';
    assert.match(run('cut', csv, { duration: 100 }).warnings[0] as string, /from 21 s to 100 s/);
    assert.deepEqual(run('inside', csv, { duration: 21 }).warnings, []);
  });

  it('no warning for a curve that arrives to its end, or falls to 0 only at its last point', () => {
    assert.deepEqual(run('busy', 'time_s,rate\n0,2\n30,4\n').warnings, []);
    assert.deepEqual(run('ramp', 'time_s,rate\n0,2\n30,0\n').warnings, []);
  });

  it('idleTailOf: the first of the trailing zero points to the last', () => {
    const p = (timeS: number, rateRps: number) => ({ timeS, rateRps });
    assert.deepEqual(idleTailOf([p(0, 1), p(10, 0), p(20, 0)]), { fromS: 10, endS: 20 });
    assert.deepEqual(idleTailOf([p(0, 0), p(5, 1), p(10, 0), p(20, 0), p(30, 0)]), { fromS: 10, endS: 30 });
    assert.equal(idleTailOf([p(0, 1), p(10, 0)]), undefined);
    assert.equal(idleTailOf([p(0, 1), p(10, 1)]), undefined);
  });
});
