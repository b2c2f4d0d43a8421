/**
 * Two case files with one name (a folder of per-stage cases copied from one file) are refused
 * naming both files, not only the name, so the copy to rename can be found among twenty.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCliInProcess } from './cli-test-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-fidelity-names-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function yamlCase(name: string, rateRps: number): string {
  return [
    `name: ${name}`,
    'source: { title: t, url: https://example.org, engine: vLLM v0.15.1 }',
    'model: meta-llama/Llama-2-7b-hf',
    'gpu: H100',
    `workload: { arrival: constant, rateRps: ${rateRps}, requests: 4, input: { kind: fixed, tokens: 16 }, output: { kind: fixed, tokens: 4 } }`,
    'measured: { ttftMs: { mean: 20 }, saturated: false }',
    '',
  ].join('\n');
}

describe('fidelity case names', () => {
  it('two files with one name are refused naming both files', async () => {
    for (const [file, rate] of [
      ['rate-01.yaml', 1],
      ['rate-02.yaml', 2],
      ['rate-03.yaml', 3],
    ] as const)
      writeFileSync(join(dir, file), yamlCase(file === 'rate-01.yaml' ? 'other' : 'stage', rate));
    const run = await runCliInProcess(['fidelity', '--no-progress', dir]);
    assert.equal(run.code, 2, run.stderr);
    assert.match(
      run.stderr,
      new RegExp(
        `two fidelity cases are named 'stage': ${join(dir, 'rate-02.yaml')} and ${join(dir, 'rate-03.yaml')}; give each case its own name`,
      ),
    );
  });
});
