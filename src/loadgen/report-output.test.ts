import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { prepareOutputPath } from './report.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-bench-out-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('--json: a missing folder is created before the run, as sim does', () => {
  const path = join(dir, 'a', 'b', 'bench.json');
  prepareOutputPath(path);
  assert.ok(statSync(join(dir, 'a', 'b')).isDirectory());
});

test('--json: a folder that cannot be created fails at once, naming the flag', () => {
  writeFileSync(join(dir, 'file'), '');
  assert.throws(
    () => prepareOutputPath(join(dir, 'file', 'bench.json')),
    (e: unknown) =>
      e instanceof SwitchyardError &&
      e.code === 'SY_ERR_INVALID_ARGUMENT' &&
      /invalid --json '.*bench\.json': cannot create folder/.test(e.message),
  );
});
