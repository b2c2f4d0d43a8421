/**
 * `sim --trace` on a file whose rows are out of order (two clients' rows appended one after the
 * other): the run replays them sorted by timestamp, says so once on stderr, and its header's span
 * and rate are those of the sorted rows. Same file and seed, same JSON.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './support/cli.ts';

const SMALL = ['--instances', '1', '--no-progress'];
const WALL_FIELDS = new Set(['wallSeconds', 'eventsPerWallS', 'decisionUs']);

function withoutWall(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value), (key, v) => (WALL_FIELDS.has(key) ? undefined : v));
}

/** Client A at 0, 2, 4 ... 18 s, then client B at 1, 3 ... 19 s: 9 rows step back (B at 19 s does not), up to 17 s. */
function interleavedTrace(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sy-trace-order-')), 'two-clients.csv');
  const stamp = (s: number) => `2024-05-10 00:00:${String(s).padStart(2, '0')}.0000000`;
  const a = Array.from({ length: 10 }, (_, i) => `${stamp(2 * i)},100,10`);
  const b = Array.from({ length: 10 }, (_, i) => `${stamp(2 * i + 1)},200,20`);
  writeFileSync(file, `TIMESTAMP,ContextTokens,GeneratedTokens\n${[...a, ...b].join('\n')}\n`);
  return file;
}

test('sim --trace: rows out of order replay sorted, with one warning', async () => {
  const file = interleavedTrace();
  const run = await runCli(['sim', '--trace', file, ...SMALL]);
  assert.equal(run.code, 0, run.stderr);
  const warnings = run.stderr.split('\n').filter((l) => l.includes('out of order'));
  assert.deepEqual(warnings, [
    `warning: trace ${file}: 9 rows were out of order (up to 17 s back); replayed sorted by TIMESTAMP`,
  ]);
  // 20 requests from 0 to 19 s, 1 a second: the sorted rows.
  assert.match(run.stdout, /workload trace \S*two-clients\.csv \(20 requests over 19 s, 1 req\/s\)/);

  // Same file, same seed: the same JSON, apart from the wall-clock fields.
  const dir = mkdtempSync(join(tmpdir(), 'sy-trace-order-json-'));
  const [a, b] = [join(dir, 'a.json'), join(dir, 'b.json')];
  for (const out of [a, b]) {
    const r = await runCli(['sim', '--trace', file, '--json', out, ...SMALL]);
    assert.equal(r.code, 0, r.stderr);
  }
  const [ja, jb] = [a, b].map((f) => withoutWall(JSON.parse(readFileSync(f, 'utf8'))));
  assert.deepEqual(ja, jb);
  assert.match(readFileSync(a, 'utf8'), /"completed":\s*20\b/);
});

test('sim --trace --requests on rows out of order: the warning says rows further on were not read', async () => {
  const file = interleavedTrace();
  const run = await runCli(['sim', '--trace', file, '--requests', '12', ...SMALL]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(
    run.stderr,
    /2 rows were out of order \(up to 17 s back\); replayed sorted by TIMESTAMP; the read stopped at the --requests\/--duration point/,
  );
});
