/**
 * End-to-end: a YAML syntax error in `serve --config` or `sim --config` (one loader,
 * src/adapters/yaml-file.ts) is reported as one stderr line: the file, line and column, the
 * message, the YAML error code and the source line near it, with no caret block or blank line.
 * (Here with a backend URL left unclosed, the slip behind the /v1 URL test's neighbour.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-yaml-errors-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const file = join(dir, 'bad.yaml');
writeFileSync(file, 'backends:\n  - id: e0\n    url: [http://127.0.0.1:8000\n');

describe('a YAML syntax error in a --config file', { timeout: 60_000 }, () => {
  for (const [command, what] of [
    ['serve', 'gateway config'],
    ['sim', 'config file'],
  ] as const) {
    it(`is one line from ${command}`, async () => {
      const run = await runCli([command, '--config', file], 30_000);
      assert.equal(run.code, 2, run.stderr);
      assert.equal(run.stderr.endsWith('\n'), true);
      const lines = run.stderr.slice(0, -1).split('\n');
      assert.deepEqual(lines.length, 1, run.stderr);
      assert.ok(
        lines[0]?.startsWith(`switchyard: ${what} '${file}' is not valid YAML: line 4, column 1: `),
        lines[0],
      );
      assert.match(
        lines[0] as string,
        /\(BAD_INDENT\); near "url: \[http:\/\/127\.0\.0\.1:8000" \[SY_ERR_INVALID_CONFIG\]$/,
      );
    });
  }
});
