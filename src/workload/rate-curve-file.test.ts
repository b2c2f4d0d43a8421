import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Rng } from '../core/rng.ts';
import { createWorkload } from './create.ts';
import { parseRateCurve, readRateCurve } from './rate-curve-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-rate-curve-'));
const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;

describe('rate-curve files', () => {
  it('reads points with a header, comments, blank lines and CRLF', () => {
    const text = '# a morning ramp\r\ntime_s,rate\r\n0,1\r\n\r\n60, 10.5\r\n120,0\r\n';
    assert.deepEqual(parseRateCurve(text, 'c.csv'), [
      { timeS: 0, rateRps: 1 },
      { timeS: 60, rateRps: 10.5 },
      { timeS: 120, rateRps: 0 },
    ]);
    assert.deepEqual(parseRateCurve('0,0\n1e2,3\n', 'c.csv'), [
      { timeS: 0, rateRps: 0 },
      { timeS: 100, rateRps: 3 },
    ]);
  });

  it('reads a spreadsheet export: quoted cells and empty cells at the end', () => {
    assert.deepEqual(parseRateCurve('"time_s","rate",\n"0","1",\n"60","2",,\n', 'c.csv'), [
      { timeS: 0, rateRps: 1 },
      { timeS: 60, rateRps: 2 },
    ]);
    assert.throws(() => parseRateCurve('0,1,\n60,2,5\n', 'c.csv'), {
      message: /^c\.csv:2: expected 2 columns/,
    });
  });

  it('takes the usual names for the two columns as a header', () => {
    for (const header of ['time,rate', 'T,RPS', 't_s,req/s', 'seconds,qps', 'time_s,rate_rps'])
      assert.deepEqual(parseRateCurve(`${header}\n0,1\n60,2\n`, 'c.csv'), [
        { timeS: 0, rateRps: 1 },
        { timeS: 60, rateRps: 2 },
      ]);
  });

  it('rejects a bad curve naming the file and the line', () => {
    const cases: [string, RegExp][] = [
      ['time_s,rate\n0,1\n10,abc\n', /^c\.csv:3: rate must be a number >= 0/],
      ['0,1\n10,2\n10,3\n', /^c\.csv:3: time_s 10 is not after the previous point's 10/],
      ['0,1\n20,2\n# note\n5,3\n', /^c\.csv:4: time_s 5 is not after/],
      ['5,1\n10,2\n', /^c\.csv:1: the first point must be at time_s 0/],
      ['0,1\n10,-2\n', /^c\.csv:2: rate must be a number >= 0/],
      ['0,1\n10,2,3\n', /^c\.csv:2: expected 2 columns/],
      ['0,1\n', /^c\.csv:1: a rate curve needs at least 2 points/],
      ['0,0\n10,0\n', /^c\.csv:2: every rate is 0/],
      ['when,how\n0,1\n', /^c\.csv:1: expected a header 'time_s,rate'/],
      ['rate,time_s\n0,1\n10,2\n', /^c\.csv:1: the columns are time_s,rate in that order/],
      [
        'time_ms,rate\n0,1\n1000,2\n',
        /^c\.csv:1: times are in seconds \(time_s\), got a column named 'time_ms'/,
      ],
      ['0,1\n60,2\n30,3\n', /^c\.csv:3: time_s 30 is not after .*increasing time/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseRateCurve(text, 'c.csv'), { code: 'SY_ERR_TRACE_PARSE', message }, text);
    }
  });

  it('reads the example diurnal day (examples/diurnal-day.csv): 24 h, peak about 4x the trough', () => {
    const points = readRateCurve(fileURLToPath(new URL('../../examples/diurnal-day.csv', import.meta.url)));
    assert.equal(points.at(-1)?.timeS, 86_400);
    const rates = points.map((p) => p.rateRps);
    const ratio = Math.max(...rates) / Math.min(...rates);
    assert.ok(ratio > 3.5 && ratio < 4.5, `peak/trough ${ratio}`);
  });

  it('drives a rate-curve workload from a file, failing before the run on a bad file', () => {
    const good = join(dir, 'good.csv');
    writeFileSync(good, 'time_s,rate\n0,10\n100,10\n');
    const n = [...createWorkload({ kind: 'rate-curve', file: good, ...lengths }, new Rng(1))].length;
    assert.ok(Math.abs(n - 1000) < 5 * Math.sqrt(1000), `${n} arrivals`);
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'time_s,rate\n0,10\n100,x\n');
    assert.throws(() => createWorkload({ kind: 'rate-curve', file: bad, ...lengths }, new Rng(1)), {
      code: 'SY_ERR_TRACE_PARSE',
      message: /bad\.csv:3:/,
    });
    assert.throws(() => readRateCurve(join(dir, 'missing.csv')), { code: 'SY_ERR_NOT_FOUND' });
    assert.throws(() => readRateCurve(dir), {
      code: 'SY_ERR_NOT_FOUND',
      message: /is a folder, not a CSV file/,
    });
  });
});
