/**
 * `fidelity --json a.json b.json`: commander gives a.json to --json, so a JSON case file would be
 * overwritten by the report of b.json (the .yaml form was refused, the .json one was not). An
 * existing file holding a case is refused, and left as it was; a previous report is overwritten.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';
import { checkJsonNotACase } from './fidelity.ts';
import { USAGE_EXIT_CODE } from './main.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-fidelity-json-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function jsonCase(name: string): string {
  return JSON.stringify({
    name,
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.15.1' },
    model: 'meta-llama/Llama-2-7b-hf',
    gpu: 'H100',
    workload: {
      arrival: 'closed-loop',
      concurrency: 1,
      requests: 2,
      input: { kind: 'fixed', tokens: 16 },
      output: { kind: 'fixed', tokens: 4 },
    },
    measured: { e2eMs: { mean: 100 }, saturated: false },
  });
}

describe('fidelity --json target', () => {
  it('a JSON case given right after --json is refused and kept', async () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    writeFileSync(a, jsonCase('a'));
    writeFileSync(b, jsonCase('b'));
    const run = await runCliInProcess(['fidelity', '--no-progress', '--json', a, b]);
    assert.equal(run.code, USAGE_EXIT_CODE, run.stderr);
    assert.match(run.stderr, /invalid json .*not a case file/);
    assert.equal(readFileSync(a, 'utf8'), jsonCase('a'));
  });

  it('an existing report, a missing file or a non-case file may be written', () => {
    const report = join(dir, 'report.json');
    writeFileSync(report, JSON.stringify({ cases: [], summary: {} }));
    checkJsonNotACase(report, []);
    checkJsonNotACase(join(dir, 'new.json'), []);
    const notJson = join(dir, 'notes.json');
    writeFileSync(notJson, 'not json');
    checkJsonNotACase(notJson, []);
    checkJsonNotACase(join(notJson, 'under-a-file.json'), []);
  });
});
