import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { readYamlFile } from './yaml-file.ts';

/** The SwitchyardError that reading `text` as a YAML file throws. */
function errorFor(text: string): SwitchyardError {
  const dir = mkdtempSync(join(tmpdir(), 'sy-yaml-'));
  const file = join(dir, 'bad.yaml');
  try {
    writeFileSync(file, text);
    readYamlFile(file, `config '${file}'`);
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    return error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.fail('expected a YAML error');
}

describe('readYamlFile errors', () => {
  it('is one line: file, line and column, message, code, the source line near it', () => {
    const e = errorFor('backends:\n  - id: a\n    url: [http://x\n');
    assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, /^config '.*bad\.yaml' is not valid YAML: line 4, column 1: Flow sequence/);
    assert.match(e.message, /\(BAD_INDENT\); near "url: \[http:\/\/x"$/);
    assert.deepEqual(
      [e.details?.['line'], e.details?.['column'], e.details?.['yamlCode']],
      [4, 1, 'BAD_INDENT'],
    );
  });

  it('names a duplicate key where it is', () => {
    const e = errorFor('port: 1\nport: 2\n');
    assert.equal(e.message.split('\n').length, 1);
    assert.match(e.message, /line 2, column 1: Map keys must be unique \(DUPLICATE_KEY\); near "port: 2"$/);
  });

  it('cuts a long source line', () => {
    const e = errorFor(`a: b: ${'x'.repeat(200)}\n`);
    assert.match(e.message, /near "a: b: x{74}\.\.\."$/);
  });
});
