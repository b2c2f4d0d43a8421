/**
 * A ServeGen replay holds at most WORKLOAD_REQUESTS_MAX requests too. The file bounds its span but
 * not its rate, which --scale multiplies: `sim --servegen-file <deepseek-r1> --scale 1e6 --duration
 * 60` (about a billion arrivals) ran on with no end in sight, and `--scale 1e308` (rates overflowing
 * to Infinity, every gap 0) never left its first window; both now fail before the run, naming
 * --scale, as a plain rate over a long duration does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { FIXED_LENGTHS, refusal } from './bound-test-support.ts';
import { createWorkload } from './create.ts';
import { parseServegen, readServegen, servegenArrivalTimesMs, servegenExpectedRequests } from './servegen.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-servegen-bound-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** One client, two 600 s windows at 10 req/s: 12,000 requests at scale 1. */
const file = join(dir, 'chunk-7-trace.csv');
writeFileSync(file, '0,10,1.5,Gamma,0.4,2.5\n600,10,2,Gamma,0.25,4\n');

const build = (spec: Record<string, unknown>) => createWorkload(spec as never, new Rng(1));
const servegen = (rateScale: number, extra: Record<string, unknown> = {}) => ({
  kind: 'servegen',
  file,
  rateScale,
  ...FIXED_LENGTHS,
  ...extra,
});

describe('ServeGen replays and the 50-million request bound', () => {
  it('counts what the windows send in the span: rate x scale x seconds', () => {
    const data = readServegen(file);
    assert.equal(servegenExpectedRequests(data, { rateScale: 1, startH: 0 }), 12_000);
    assert.equal(servegenExpectedRequests(data, { rateScale: 2, startH: 0, durationS: 900 }), 18_000);
    assert.equal(servegenExpectedRequests(data, { rateScale: 1, startH: 0.25 }), 3_000);
  });

  it('a scale past the bound is refused by its expected count, naming --scale, unless maxRequests cuts it', () => {
    const e = refusal(() => build(servegen(1e4)));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(e.message, /about 120,000,000 requests \(the clients' rates x rateScale \(--scale\) 10000/);
    assert.match(e.message, /more than 50,000,000/);
    assert.equal([...build(servegen(1e4, { maxRequests: 3 }))].length, 3);
    // Under the bound is taken (lazily: nothing is drawn here).
    build(servegen(1e3));
  });

  it('a scale that overflows a rate is refused even with maxRequests', () => {
    const e = refusal(() => build(servegen(1e308, { maxRequests: 3 })));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(e.message, /invalid rateScale \(--scale\) '1e\+308'/);
  });

  it('multi-model from ServeGen is counted by its rate over the span', () => {
    const e = refusal(() =>
      build({
        kind: 'multi-model',
        models: 2,
        rateRps: 1e5,
        source: 'servegen',
        servegenFile: file,
        ...FIXED_LENGTHS,
      }),
    );
    assert.match(e.message, /about 120,000,000 requests \(rateRps \(--rate\) 100000 over 1200 s/);
  });

  it('sim refuses such a scale with exit status 2 before simulating', async () => {
    const r = await runCliInProcess(['sim', '--no-progress', '--servegen-file', file, '--scale', '1e6']);
    assert.equal(r.code, USAGE_EXIT_CODE);
    assert.match(r.stderr, /rateScale \(--scale\) 1000000.*SY_ERR_INVALID_ARGUMENT/s);
  });
});

describe('a window with a vanishing CV', () => {
  it('sends its rate x length like any other (its shape was Infinity and its draws NaN: none)', () => {
    const data = parseServegen('0,1,1e-200,,0,0\n600,1,1,,0,0\n', 'cv.csv', '3');
    const times = [...servegenArrivalTimesMs(data, { rateScale: 1, startH: 0, durationS: 600 }, new Rng(1))];
    assert.ok(Math.abs(times.length - 600) <= 1, `${times.length} arrivals in the first window`);
    // Evenly paced: the CV -> 0 limit of a Gamma renewal process.
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    assert.ok(gaps.every((g) => Math.abs(g - 1000) < 1e-6));
  });
});

describe('a ServeGen file spanning more than 31 days', () => {
  // Windows at 0 s and 1e9 s: 31 years, which a control loop ticked through without end.
  const far = join(dir, 'chunk-8-trace.csv');
  writeFileSync(far, '0,1,1,,0,0\n1000000000,1,1,,0,0\n');

  it('is refused without durationS or maxRequests, naming the span; with either it runs', () => {
    const e = refusal(() => build({ kind: 'servegen', file: far, ...FIXED_LENGTHS }));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(
      e.message,
      /spans 1000000600 s from startH \(--start-h\) 0, more than 2678400 s \(31 days\)/,
    );
    build({ kind: 'servegen', file: far, durationS: 600, ...FIXED_LENGTHS });
    assert.equal([...build({ kind: 'servegen', file: far, maxRequests: 2, ...FIXED_LENGTHS })].length, 2);
  });

  it('cut by maxRequests alone, is refused when the count is not expected within 31 days', () => {
    // The first window sends about 600 requests; the 601st would come 31 years in.
    const e = refusal(() => build({ kind: 'servegen', file: far, maxRequests: 1000, ...FIXED_LENGTHS }));
    assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(
      e.message,
      /maxRequests \(--requests\) 1000 of .*chunk-8-trace\.csv, which spans 1000000600 s from startH \(--start-h\) 0, would run past 2678400 s \(31 days\): about 600 requests are expected by then/,
    );
    assert.equal(e.details?.['param'], 'workload.maxRequests');
    // With a rate that sends the count in the first window, or --duration, it runs.
    assert.equal(
      [...build({ kind: 'servegen', file: far, maxRequests: 1000, rateScale: 2, ...FIXED_LENGTHS })].length,
      1000,
    );
    build({ kind: 'servegen', file: far, maxRequests: 1000, durationS: 600, ...FIXED_LENGTHS });
  });

  it('sim --servegen-file with only --requests is refused with exit status 2 before simulating', async () => {
    const r = await runCliInProcess(['sim', '--no-progress', '--servegen-file', far, '--requests', '1000']);
    assert.equal(r.code, USAGE_EXIT_CODE, r.stderr);
    assert.match(r.stderr, /would run past 2678400 s \(31 days\).*\[SY_ERR_INVALID_ARGUMENT\]/);
  });

  it('multi-model from it too', () => {
    const e = refusal(() =>
      build({
        kind: 'multi-model',
        models: 2,
        rateRps: 1,
        source: 'servegen',
        servegenFile: far,
        ...FIXED_LENGTHS,
      }),
    );
    assert.match(e.message, /spans 1000000600 s/);
  });
});
