import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { create as createTar } from 'tar';
import { Rng } from '../core/rng.ts';
import { createWorkload } from './create.ts';
import {
  parseServegen,
  readServegen,
  type ServegenReplay,
  servegenArrivalTimesMs,
  servegenRateRps,
} from './servegen.ts';

const SAMPLE = 'sample:servegen-m-small-day2';
const lengths = { input: { kind: 'fixed', tokens: 100 }, output: { kind: 'fixed', tokens: 10 } } as const;
const dir = mkdtempSync(join(tmpdir(), 'switchyard-servegen-'));

/** Arrivals per hour of a replay. */
function hourly(timesMs: Iterable<number>, hours: number): number[] {
  const counts = new Array<number>(hours).fill(0);
  for (const t of timesMs) counts[Math.floor(t / 3_600_000)] = (counts[Math.floor(t / 3_600_000)] ?? 0) + 1;
  return counts;
}

/** The file's mean summed rate per hour, times the scale (the expected hourly rate). */
function expectedHourly(replay: ServegenReplay, hours: number): number[] {
  const data = readServegen(SAMPLE);
  return Array.from({ length: hours }, (_, h) => {
    let sum = 0;
    for (let w = 0; w < 6; w++) sum += servegenRateRps(data, replay, h * 3600 + w * 600 + 1);
    return (sum / 6) * 3600;
  });
}

/**
 * Per hour of the slice at `rateScale`: the expected count and its standard deviation. A stationary
 * Gamma-renewal count over a window has variance about cv² times its mean (ServeGen's client 14 runs
 * at cv 8-12, so its count is far noisier than a Poisson one).
 */
function hourlyMoments(rateScale: number): { mean: number[]; sd: number[] } {
  const data = readServegen(SAMPLE);
  const mean = new Array<number>(24).fill(0);
  const variance = new Array<number>(24).fill(0);
  for (const c of data.clients) {
    for (const w of c.windows) {
      const h = Math.floor((w.startS - data.firstS) / 3600);
      const n = w.rateRps * rateScale * 600;
      mean[h] = (mean[h] as number) + n;
      variance[h] = (variance[h] as number) + w.cv * w.cv * n;
    }
  }
  return { mean, sd: variance.map(Math.sqrt) };
}

describe('ServeGen replay', () => {
  it('reads the committed slice: five clients, one day of 600 s windows', () => {
    const data = readServegen(SAMPLE);
    assert.deepEqual(
      data.clients.map((c) => c.id),
      ['5', '8', '14', '31', '41'],
    );
    for (const c of data.clients) assert.equal(c.windows.length, 144);
    assert.equal(data.firstS, 86_400);
    assert.equal(data.endS, 172_800);
  });

  it('keeps the diurnal peak-to-trough ratio at the chosen scale', () => {
    for (const rateScale of [0.05, 0.02]) {
      const replay = { rateScale, startH: 0 };
      const { mean, sd } = hourlyMoments(rateScale);
      const got = hourly(servegenArrivalTimesMs(readServegen(SAMPLE), replay, new Rng(1)), 24);
      for (let h = 0; h < 24; h++) {
        const [m, s] = [mean[h] as number, sd[h] as number];
        assert.ok(
          Math.abs((got[h] as number) - m) <= 5 * s,
          `scale ${rateScale} hour ${h}: ${got[h]} vs ${m.toFixed(0)} ± ${s.toFixed(0)}`,
        );
      }
      const peak = mean.indexOf(Math.max(...mean));
      const trough = mean.indexOf(Math.min(...mean));
      const want = (mean[peak] as number) / (mean[trough] as number);
      assert.ok(want > 3.5, `the slice is diurnal (${want.toFixed(2)})`);
      const have = (got[peak] as number) / (got[trough] as number);
      // The ratio's relative error is about the two counts' relative errors combined.
      const rel = Math.hypot(
        (sd[peak] as number) / (mean[peak] as number),
        (sd[trough] as number) / (mean[trough] as number),
      );
      assert.ok(5 * rel < 0.3, `a bound that means something (${(5 * rel).toFixed(3)})`);
      assert.ok(
        Math.abs(have / want - 1) <= 5 * rel,
        `scale ${rateScale}: peak/trough ${have.toFixed(2)} vs ${want.toFixed(2)}`,
      );
    }
  });

  it('replays a span from startH for durationS, rebased to 0', () => {
    const replay = { rateScale: 0.01, startH: 20, durationS: 1800 };
    const times = [...servegenArrivalTimesMs(readServegen(SAMPLE), replay, new Rng(2))];
    assert.ok(times.length > 0 && (times.at(-1) as number) < 1_800_000);
    const want = expectedHourly({ rateScale: 0.01, startH: 20 }, 1)[0] as number;
    assert.ok(Math.abs(times.length / (want / 2) - 1) < 0.15, `${times.length} vs ${want / 2}`);
    const spec = {
      kind: 'servegen',
      file: SAMPLE,
      rateScale: 0.01,
      startH: 20,
      durationS: 1800,
      ...lengths,
    } as const;
    const reqs = [...createWorkload(spec, new Rng(2))];
    assert.equal(reqs.length, [...createWorkload(spec, new Rng(2))].length, 'same seed, same requests');
    assert.ok(
      reqs.every((r, i) => i === 0 || r.arrivalMs >= (reqs[i - 1] as { arrivalMs: number }).arrivalMs),
    );
  });

  it("a client's arrivals do not depend on which other clients are replayed", () => {
    const data = readServegen(SAMPLE);
    const replay = { rateScale: 0.01, startH: 3, durationS: 600 };
    const alone = [...servegenArrivalTimesMs(data, { ...replay, clients: ['31'] }, new Rng(5))];
    const all = new Set(servegenArrivalTimesMs(data, replay, new Rng(5)));
    assert.ok(alone.length > 0);
    assert.ok(alone.every((t) => all.has(t)));
    assert.throws(() => [...servegenArrivalTimesMs(data, { ...replay, clients: ['99'] }, new Rng(5))], {
      code: 'SY_ERR_UNKNOWN_NAME',
    });
    const spec = { kind: 'servegen', file: SAMPLE, ...lengths } as const;
    assert.throws(() => createWorkload({ ...spec, clients: ['5', '99'] }, new Rng(1)), {
      code: 'SY_ERR_UNKNOWN_NAME',
      message: /servegen client '99'/,
    });
    assert.throws(() => createWorkload({ ...spec, startH: 24 }, new Rng(1)), {
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: /startH \(--start-h\) '24'.*it spans 24 h/,
    });
  });

  it("reads ServeGen's own chunk files, a directory of them and a tar bundle", () => {
    const cat = join(dir, 'm-tiny');
    mkdirSync(cat);
    writeFileSync(join(cat, 'chunk-0-trace.csv'), '0,0,0,,0,0\n600,2.5,1.2,Gamma,0.7,0.04\n');
    writeFileSync(join(cat, 'chunk-7-trace.csv'), '0,1,1,Exponential,1,0\n600,0,0,,0,0\n');
    const data = readServegen(cat);
    assert.deepEqual(
      data.clients.map((c) => [c.id, c.windows.length]),
      [
        ['0', 2],
        ['7', 2],
      ],
    );
    // ServeGen's own bundle format: the chunk files under data/<kind>/<model>/ in a tar.gz.
    const root = join(dir, 'bundle');
    mkdirSync(join(root, 'data', 'language', 'm-tiny'), { recursive: true });
    mkdirSync(join(root, 'data', 'language', 'm-other'), { recursive: true });
    for (const f of ['chunk-0-trace.csv', 'chunk-7-trace.csv'])
      writeFileSync(join(root, 'data', 'language', 'm-tiny', f), readFileSync(join(cat, f)));
    writeFileSync(join(root, 'data', 'language', 'm-other', 'chunk-1-trace.csv'), '0,1,1,,0,0\n');
    const bundle = join(dir, 'language_m-tiny_trace.tar.gz');
    createTar({ gzip: true, file: bundle, cwd: root, sync: true }, ['data/language/m-tiny']);
    assert.deepEqual(readServegen(bundle).clients, data.clients);
    const mixed = join(dir, 'mixed_trace.tar.gz');
    createTar({ gzip: true, file: mixed, cwd: root, sync: true }, ['data']);
    assert.throws(() => readServegen(mixed), { code: 'SY_ERR_TRACE_PARSE', message: /several categories/ });
    const one = readServegen(join(cat, 'chunk-7-trace.csv'));
    assert.equal(one.clients[0]?.id, '7');
    assert.equal(one.clients[0]?.windows[0]?.rateRps, 1);
  });

  it('rejects bad rows naming the line, and a missing file', () => {
    const cases: [string, RegExp][] = [
      ['client,timestamp_s,rate,cv\n1,0,2,\n', /^s\.csv:2: cv must be a number > 0 where rate > 0/],
      ['client,timestamp_s,rate,cv\n1,0,2,1\n1,0,2,1\n', /^s\.csv:3: client 1: timestamp_s 0 is not after/],
      ['0,x,1\n', /^s\.csv:1: rate must be a number >= 0/],
      ['0,1\n', /^s\.csv:1: expected timestamp_s,rate,cv/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseServegen(text, 's.csv'), { code: 'SY_ERR_TRACE_PARSE', message }, text);
    }
    assert.throws(() => readServegen(join(dir, 'nope.csv')), { code: 'SY_ERR_NOT_FOUND' });
    assert.throws(() => readServegen('sample:nope'), { code: 'SY_ERR_UNKNOWN_NAME' });
  });
});
