/**
 * A goodput sweep needs an arrival rate. On a trace of one request, or of requests all stamped at
 * one instant, `sim --goodput` swept nine scales of "0.00 req/s", every one at 100% within the SLO,
 * and reported a goodput of 0 req/s (JSON `goodputRps: 0`): a figure that reads as "serves nothing".
 * It is now refused before the run.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCliInProcess } from '../cli/cli-test-support.ts';
import { USAGE_EXIT_CODE } from '../cli/main.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-goodput-no-rate-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const row = (ms: number) =>
  JSON.stringify({ timestamp: ms, input_length: 600, output_length: 20, hash_ids: [1, 2] });
const write = (name: string, stamps: number[]) => {
  const path = join(dir, name);
  writeFileSync(path, `${stamps.map(row).join('\n')}\n`);
  return path;
};

for (const [name, stamps] of [
  ['one.jsonl', [0]],
  ['instant.jsonl', [500, 500, 500, 500]],
] as const) {
  test(`sim --goodput on ${name} is refused with exit status 2, naming --goodput`, async () => {
    const r = await runCliInProcess([
      'sim',
      '--no-progress',
      '--trace',
      write(name, [...stamps]),
      '--goodput',
    ]);
    assert.equal(r.code, USAGE_EXIT_CODE, r.stderr);
    assert.match(r.stderr, /invalid goodput: .*no rate.*run without --goodput \[SY_ERR_INVALID_ARGUMENT\]/s);
  });
}

test('two requests a second apart still sweep', async () => {
  const r = await runCliInProcess([
    'sim',
    '--no-progress',
    '--trace',
    write('two.jsonl', [0, 1000]),
    '--goodput',
    '--instances',
    '1',
  ]);
  assert.equal(r.code, 0, r.stderr);
});
