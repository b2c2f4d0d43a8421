/**
 * A time-varying workload without --duration or --requests runs for the length its own flags or file
 * imply (one period, one gap and burst, a rate curve to its last point). That length is bounded as
 * --duration is (31 days): `--period-s 1e9` or a curve written in milliseconds generated arrivals for
 * hours (the run never ended) instead of failing with what to write.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { SIM_DURATION_MAX_S } from './parse.ts';
import { resolveSettings } from './sim-command.ts';
import { fromCli, simFlags } from './sim-test-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-implied-length-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function resolve(flags: Record<string, unknown>) {
  return resolveSettings(simFlags({ instances: 1, ...flags }), {}, fromCli(Object.keys(flags)));
}

/** Asserts `flags` fail with SY_ERR_INVALID_ARGUMENT naming `param` and saying what to write. */
function assertRefused(flags: Record<string, unknown>, param: string, hint: RegExp) {
  assert.throws(
    () => resolve(flags),
    (e: unknown) => {
      assert.ok(e instanceof SwitchyardError, String(e));
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.match(e.message, new RegExp(`invalid ${param} `));
      assert.match(e.message, /at most 2678400 s \(31 days\) without --duration or --requests/);
      assert.match(e.message, /give --duration \(at most 2678400\) or --requests/);
      assert.match(e.message, hint);
      return true;
    },
  );
}

const sinusoid = { workload: 'sinusoid', rateMin: 1, rateMax: 2 };
const bursts = { workload: 'bursts', rate: 1, burstRate: 2, burstS: 10 };

describe('time-varying workloads: the length their flags imply is bounded as --duration is', () => {
  it('a sinusoid whose one period is past 31 days is refused; --duration or --requests bound it', () => {
    assertRefused({ ...sinusoid, periodS: 1e9 }, 'period-s', /got 1000000000 s: write it in seconds/);
    assert.ok(resolve({ ...sinusoid, periodS: 1e9, duration: 600 }));
    assert.ok(resolve({ ...sinusoid, periodS: 1e9, requests: 50 }));
    assert.ok(resolve({ ...sinusoid, periodS: SIM_DURATION_MAX_S }));
  });

  it('bursts whose gap and burst pass 31 days are refused', () => {
    assertRefused({ ...bursts, gapS: SIM_DURATION_MAX_S }, 'gap-s', /--gap-s \+ --burst-s of at most/);
    assert.ok(resolve({ ...bursts, gapS: SIM_DURATION_MAX_S, duration: 600 }));
    assert.ok(resolve({ ...bursts, gapS: SIM_DURATION_MAX_S - 10 }));
  });

  it('a rate curve written in milliseconds is refused, saying to divide by 1000', () => {
    const ms = join(dir, 'ms.csv');
    writeFileSync(ms, 'time_s,rate\n0,2\n3600000,2\n7200000000,4\n');
    assertRefused({ rateCurve: ms }, 'rate-curve', /from milliseconds: divide by 1000/);
    // Replaying its start with --duration is what a long curve is for: allowed.
    assert.ok(resolve({ rateCurve: ms, duration: 600 }));
    const s = join(dir, 's.csv');
    writeFileSync(s, `time_s,rate\n0,2\n${SIM_DURATION_MAX_S},4\n`);
    assert.ok(resolve({ rateCurve: s }));
  });
});
