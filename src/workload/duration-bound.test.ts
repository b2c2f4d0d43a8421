/**
 * A workload's length is bounded at 31 days (as `sim --duration` is): `durationS: 1000000000` or a
 * rate curve whose times are in milliseconds ran on generating arrivals (sim --config never ended)
 * instead of failing with what to write.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Rng } from '../core/rng.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { createWorkload, parseWorkloadSpec } from './create.ts';
import { WORKLOAD_DURATION_MAX_S } from './spec.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-duration-bound-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const lengths = FIXED_LENGTHS;
const sinusoid = { kind: 'sinusoid', rateMinRps: 1, rateMaxRps: 2, periodS: 600, ...lengths };

describe('workload length bound (31 days)', () => {
  it('durationS past 31 days is refused, saying it is in seconds', () => {
    assert.equal(WORKLOAD_DURATION_MAX_S, 2_678_400);
    const e = refusal(() => parseWorkloadSpec({ ...sinusoid, durationS: 1e9 }));
    assert.match(e.message, /durationS: at most 2678400 s \(31 days\); durationS is in seconds/);
    assert.equal(parseWorkloadSpec({ ...sinusoid, durationS: WORKLOAD_DURATION_MAX_S }).kind, 'sinusoid');
  });

  it('a rate curve ending past 31 days with no durationS or maxRequests is refused (file or inline)', () => {
    const file = join(dir, 'ms.csv');
    writeFileSync(file, 'time_s,rate\n0,2\n3600000,2\n');
    const rng = () => new Rng(1);
    const fromFile = refusal(() => createWorkload({ kind: 'rate-curve', file, ...lengths }, rng()));
    assert.equal(fromFile.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(fromFile.message, /ms\.csv\) ends at 3600000 s, more than 2678400 s/);
    assert.match(fromFile.message, /divide by 1000\), or set durationS or maxRequests/);
    const points = [
      { timeS: 0, rateRps: 1 },
      { timeS: 1e9, rateRps: 1 },
    ];
    assert.match(
      refusal(() => createWorkload({ kind: 'rate-curve', points, ...lengths }, rng())).message,
      /the rate curve ends at 1000000000 s/,
    );
    // Bounded by durationS or maxRequests: its start replays.
    const first = createWorkload({ kind: 'rate-curve', file, durationS: 60, ...lengths }, rng());
    assert.ok([...first].length > 0);
    const few = createWorkload({ kind: 'rate-curve', points, maxRequests: 3, ...lengths }, rng());
    assert.equal([...few].length, 3);
  });
});
