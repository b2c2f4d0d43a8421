/**
 * Config files may use YAML merge keys (`<<: *defaults`): without them `<<` was read as a key, and
 * `sim --config` on a workload built from an anchor failed with "kind: Invalid discriminator value".
 * A file whose aliases expand past the parser's bound (10^9 nodes from 9 lines) is one line
 * (SY_ERR_INVALID_CONFIG), not the parser's ReferenceError and a stack trace.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
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

test('duplicate keys and alias bombs are still refused', () => {
  assert.throws(
    () => read('seed: 1\nseed: 2\n'),
    (e) => e instanceof SwitchyardError && /DUPLICATE_KEY/.test(e.message),
  );
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i += 1)
    bomb.push(
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(', ')}]`,
    );
  assert.throws(() => read(`${bomb.join('\n')}\n`), SwitchyardError);
});
