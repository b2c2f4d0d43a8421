/** `switchyard sim --autoscaler a,b`: the real CLI compares autoscalers on one workload and seed. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-autoscaler-compare-'));

/** A short sinusoid (1 to 8 req/s, two periods) on a pool of up to 3 H100s. */
const SIM = [
  'sim',
  '--workload',
  'sinusoid',
  '--rate-min',
  '1',
  '--rate-max',
  '8',
  '--period-s',
  '120',
  '--duration',
  '240',
  '--input-tokens',
  '2048',
  '--output-tokens',
  '256',
  '--min-instances',
  '1',
  '--max-instances',
  '3',
  '--no-progress',
];

interface Point {
  timeS: number;
  ready: number;
  starting: number;
  draining: number;
  desired: number;
  arrivalRps: number;
}

type Entry = Record<string, unknown> & { instancesOverTime: Point[]; gpuHours: number };

describe('sim --autoscaler a,b (comparison)', () => {
  it('runs each autoscaler on the same workload: one table row, JSON entry and replicas chart each', async () => {
    const json = join(dir, 'compare.json');
    const html = join(dir, 'compare.html');
    const run = await runCli([...SIM, '--autoscaler', 'kpa,static', '--json', json, '--html', html]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /compare autoscalers kpa, static/);
    const rows = run.stdout.split('\n').filter((l) => /^│ (kpa|static) /.test(l));
    assert.equal(rows.length, 2, run.stdout);
    // static is the baseline: its own ratio is 1, and kpa's is its GPU-hours over static's.
    assert.match(rows[1] as string, /│\s+1\.00x\s+│/);

    const entries = (JSON.parse(readFileSync(json, 'utf8')) as { autoscalers: Record<string, Entry> })
      .autoscalers;
    assert.deepEqual(Object.keys(entries), ['kpa', 'static']);
    const kpa = entries['kpa'] as Entry;
    const fixed = entries['static'] as Entry;
    for (const e of [kpa, fixed]) {
      // Every field a single autoscaled run writes.
      for (const key of ['requests', 'completed', 'sloAttainment', 'ttftMs', 'gpuHours', 'coldStarts'])
        assert.ok(key in e, key);
      assert.ok(e.instancesOverTime.length > 10);
      assert.ok(
        e.instancesOverTime.some((p) => p.arrivalRps > 0),
        'the offered load is recorded',
      );
    }
    assert.equal(kpa['requests'], fixed['requests'], 'the same workload');
    assert.ok(fixed.instancesOverTime.every((p) => p.ready === 3));
    assert.ok(kpa.gpuHours < fixed.gpuHours, `kpa ${kpa.gpuHours} vs static ${fixed.gpuHours}`);
    assert.equal(fixed['xStatic'], 1);
    assert.ok(Math.abs((kpa['xStatic'] as number) - kpa.gpuHours / fixed.gpuHours) < 1e-3);
    const shown = (rows[0] as string).match(/│\s+([\d.]+)x\s+│/)?.[1];
    assert.equal(shown, (kpa.gpuHours / fixed.gpuHours).toFixed(2));

    const page = readFileSync(html, 'utf8');
    assert.match(page, /Replicas over time/);
    // The page says what the runs differ by: the autoscaler, with the one routing policy beside it.
    assert.match(page, /<li>autoscalers <b>kpa, static<\/b><\/li>/);
    assert.match(page, /<th>autoscaler<\/th>/);
    assert.match(page, /id="rep-0"/);
    assert.match(page, /id="rep-1"/);
    const data = page.match(/<script type="application\/json" id="sy-data">(.*?)<\/script>/s)?.[1];
    assert.ok(data !== undefined);
    const payload = JSON.parse(data) as {
      runs: { name: string; control?: { autoscaler: string; instancesOverTime: Point[] } }[];
    };
    assert.deepEqual(
      payload.runs.map((r) => r.control?.autoscaler),
      ['kpa', 'static'],
    );
    for (const [i, r] of payload.runs.entries()) {
      const name = i === 0 ? 'kpa' : 'static';
      // The JSON rounds floats; the counts and their times are exact in both.
      const counts = (points: readonly Point[] | undefined) =>
        (points ?? []).map((p) => [p.timeS, p.ready, p.starting, p.draining, p.desired]);
      assert.deepEqual(counts(r.control?.instancesOverTime), counts(entries[name]?.instancesOverTime), name);
    }
  });

  it('refuses several autoscalers with several policies', async () => {
    const run = await runCli([
      ...SIM,
      '--autoscaler',
      'kpa,static',
      '--compare',
      'round-robin,least-request',
    ]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /one routing policy/);
  });
});
