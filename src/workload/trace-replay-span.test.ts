/**
 * A trace replay lasts at most 31 days of simulated time, as `--duration` does. `sim --trace
 * <azure conv> --rate-scale 1e-6 --requests 200 --autoscaler kpa` spread 200 requests over 709 days
 * and its control loop, ticking every 2 s through them, did not finish in a minute (nor, at that
 * pace, in ten); it is now refused before the run, naming --rate-scale.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';
import { Rng } from '../core/rng.ts';
import { refusal } from './bound-test-support.ts';
import { createWorkload } from './create.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-trace-span-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'three.jsonl');
// Three requests at 0 s, 1 s and one hour (Mooncake stamps are ms).
writeFileSync(
  file,
  [0, 1000, 3_600_000]
    .map((timestamp) => JSON.stringify({ timestamp, input_length: 600, output_length: 20, hash_ids: [1, 2] }))
    .join('\n'),
);
const replay = (more: Record<string, unknown>) =>
  createWorkload({ kind: 'trace', trace: file, ...more } as never, new Rng(1));

test('a replay stretched past 31 days is refused, naming --rate-scale and the span', () => {
  // An hour at 1e-3: 3.6 million s, past 2,678,400.
  const e = refusal(() => replay({ rateScale: 1e-3 }));
  assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.match(
    e.message,
    /invalid rateScale \(--rate-scale\) '0\.001': .* its last request would arrive at 3600000 s/,
  );
});

test('cut by a count or a duration, or less stretched, it runs', () => {
  assert.equal([...replay({ rateScale: 1e-3, maxRequests: 2 })].length, 2);
  assert.equal([...replay({ rateScale: 1e-3, durationS: 2 })].length, 2);
  assert.equal([...replay({ rateScale: 2e-3 })].at(-1)?.arrivalMs, 1_800_000_000);
});

test('sim exits 2 before the run', async () => {
  const r = await runCliInProcess(['sim', '--no-progress', '--trace', file, '--rate-scale', '0.001']);
  assert.equal(r.code, USAGE_EXIT_CODE);
  assert.match(r.stderr, /expected a replay of at most 2678400 s \(31 days\)/);
});
