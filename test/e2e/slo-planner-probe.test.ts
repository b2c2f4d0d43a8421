/**
 * scripts/slo-planner-probe.ts --against, as a real process on a 3-minute sinusoid: the bound's file
 * is set against the planner's run tick by tick, so a file from a run of another load (here twice as
 * long) is refused (one line, exit 2) rather than read as zeros past its end, and --against with
 * --static (which has no planner ticks) is refused before any run rather than ignored. The documented
 * workflow (a `--clairvoyant 20 --json` file of the same load) goes through, though the two runs end
 * a few ticks apart.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'sy-probe-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The probe on a short sinusoid with `extra` flags: exit status, stdout, stderr. */
function probe(hours: string, ...extra: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'scripts/slo-planner-probe.ts', '--load', 'sinusoid', '--hours', hours, ...extra],
    { cwd: ROOT, encoding: 'utf8' },
  );
  return { status: r.status, out: r.stdout, err: r.stderr };
}

test('--against sets the bound against the run tick by tick, and refuses a file of another load', () => {
  const file = join(dir, 'bound.json');
  const written = probe('0.05', '--clairvoyant', '20', '--json', file);
  assert.equal(written.status, 0, written.err);

  // The same load: the table, each layer a figure, summing to planner - bound.
  const same = probe('0.05', '--against', file);
  assert.equal(same.status, 0, same.err);
  const all = same.out.split('\n').find((l) => l.trim().startsWith('all'));
  assert.ok(all !== undefined, same.out);
  const [planner, bound, ...layers] = all.trim().split(/\s+/).slice(1).map(Number);
  assert.ok(Number(bound) > 0, all);
  const sum = layers.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - (Number(planner) - Number(bound))) <= 0.05 * layers.length, all);

  // A run twice as long: the file's ticks end halfway. Refused, not read as a bound of 0.
  const longer = probe('0.1', '--against', file);
  assert.equal(longer.status, 2, longer.out);
  assert.match(
    longer.err,
    /^slo-planner-probe: --against .*: a run of sinusoid with \d+ requests, this one .*\n$/,
  );
  assert.doesNotMatch(longer.out, /against the bound, by cause/);

  // Static provisioning has no planner ticks to set against it: refused before the run.
  const fixed = probe('0.05', '--static', '4', '--against', file);
  assert.equal(fixed.status, 2, fixed.out);
  assert.match(fixed.err, /--against compares a slo-planner run/);
  assert.equal(fixed.out, '');
});
