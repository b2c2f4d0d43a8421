/**
 * A fidelity case saved with classic Mac OS line endings (a carriage return alone) is refused with
 * a line that says so: the YAML parser breaks no line there, and read such a file as one comment
 * ("expected an object ..., got null") or a stray CR at its end as a YAML syntax error. CRLF files
 * run as LF ones do.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sy-fidelity-cr-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const LINES = [
  '# a case',
  'name: cr',
  'source: { title: t, url: https://example.org, engine: vLLM v0.15.1 }',
  'model: meta-llama/Llama-2-7b-hf',
  'gpu: H100',
  'workload: { arrival: constant, rateRps: 1, requests: 4, input: { kind: fixed, tokens: 16 }, output: { kind: fixed, tokens: 4 } }',
  'measured: { ttftMs: { mean: 20 }, saturated: false }',
];

/** `switchyard fidelity --no-progress --json FILE` in its own process: exit code, stdout, stderr. */
function fidelity(name: string, text: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = join(dir, name);
  writeFileSync(path, text);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'fidelity', '--no-progress', '--json', '--', path],
      (error, stdout, stderr) =>
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr }),
    );
  });
}

const REFUSAL = (path: string, line: number): string =>
  `switchyard: fidelity case '${join(dir, path)}': line ${line} ends in a carriage return without a line feed ` +
  '(a classic Mac OS line ending); save the file with LF or CRLF line endings [SY_ERR_INVALID_CONFIG]\n';

test('a case file with CR line endings is refused naming them', async () => {
  const run = await fidelity('mac.yaml', `${LINES.join('\r')}\r`);
  assert.deepEqual(run, { code: 2, stdout: '', stderr: REFUSAL('mac.yaml', 1) });
});

test('a stray CR at the end of a case file is refused naming its line', async () => {
  const run = await fidelity('stray.yaml', `${LINES.join('\n')}\n\r`);
  assert.deepEqual(run, { code: 2, stdout: '', stderr: REFUSAL('stray.yaml', LINES.length + 1) });
});

test('a JSON case with a lone CR is refused too (the YAML parser made it a wrong key)', async () => {
  const json = '{"name": "cr",\r"gpu": "H100"}\n';
  const run = await fidelity('mac.json', json);
  assert.deepEqual(run, { code: 2, stdout: '', stderr: REFUSAL('mac.json', 1) });
});

test('LF and CRLF case files run alike', async () => {
  const lf = await fidelity('lf.yaml', `${LINES.join('\n')}\n`);
  const crlf = await fidelity('crlf.yaml', `${LINES.join('\r\n')}\r\n`);
  assert.equal(lf.code, 0, lf.stderr);
  assert.equal(crlf.code, 0, crlf.stderr);
  const cases = (stdout: string): unknown => (JSON.parse(stdout) as { cases: unknown }).cases;
  assert.equal((cases(lf.stdout) as unknown[]).length, 1);
  assert.deepEqual(cases(crlf.stdout), cases(lf.stdout));
});
