/**
 * Config files may use YAML merge keys (`<<: *defaults`): without them `<<` was read as a key, and
 * `sim --config` on a workload built from an anchor failed with "kind: Invalid discriminator value".
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readYamlFile } from './yaml-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-yaml-merge-'));

function read(text: string): unknown {
  const path = join(dir, 'c.yaml');
  writeFileSync(path, text);
  return readYamlFile(path, 'config file');
}

test('a merge key copies the anchored map; a key beside it wins', () => {
  const doc = read(
    'base: &b { kind: poisson, rateRps: 5, durationS: 60 }\nworkload:\n  <<: *b\n  rateRps: 8\n',
  ) as { workload: Record<string, unknown> };
  assert.deepEqual(doc.workload, { kind: 'poisson', rateRps: 8, durationS: 60 });
});
