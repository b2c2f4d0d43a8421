/**
 * A cluster flag (--instances, --gpu, --model, --tp) over a config file's `cluster.groups` replaced
 * the groups with a uniform cluster whose other fields were the defaults: `--gpu a100-80gb` over
 * one group of 2 H100s ran 4 A100s, the count lost without a word. It is now refused, naming the
 * flag and the groups.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const path = join(mkdtempSync(join(tmpdir(), 'sy-groups-flags-')), 'groups.yaml');
writeFileSync(
  path,
  'cluster: { groups: [{ count: 2, gpu: h100, model: llama-3.1-8b, tp: 1 }] }\n' +
    'workload: { kind: poisson, rateRps: 2, durationS: 10, input: { kind: fixed, tokens: 100 }, output: { kind: fixed, tokens: 10 } }\n',
);
const sim = (...args: string[]) => runCliInProcess(['sim', '--no-progress', '--config', path, ...args]);

test("a cluster flag over a config file's cluster.groups is refused, naming both", async () => {
  for (const [flag, value] of [
    ['--gpu', 'a100-80gb'],
    ['--instances', '3'],
    ['--model', 'qwen2.5-7b'],
    ['--tp', '2'],
  ] as const) {
    const r = await sim(flag, value);
    assert.equal(r.code, USAGE_EXIT_CODE, `${flag}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `invalid ${flag.slice(2)} '${value}': expected no --instances, --gpu, --model or --tp over a config file's cluster\\.groups`,
      ),
    );
  }
  // Other flags still override the file.
  assert.equal((await sim('--seed', '3')).code, 0);
});
