/** `switchyard fidelity` (and sim's --workload constant --stages) as a real child process. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CliRun, runCli } from './support/cli.ts';

const CASE = fileURLToPath(new URL('../../data/fidelity/a40-llama-3.1-8b-burst50.yaml', import.meta.url));
const CASES = fileURLToPath(new URL('../../data/fidelity', import.meta.url));

function cli(args: string[]): Promise<CliRun> {
  return runCli([...args]);
}

const dir = mkdtempSync(join(tmpdir(), 'switchyard-fidelity-'));

test('fidelity on a shipped case prints measured and predicted figures, errors and a saturation flag', async () => {
  const run = await cli(['fidelity', CASE]);
  assert.equal(run.code, 0, run.stderr);
  const header = run.stdout.split('\n').find((line) => line.includes('figure'));
  assert.ok(header !== undefined, run.stdout);
  for (const column of ['case', 'load', 'measured', 'twin', 'error'])
    assert.match(header, new RegExp(column));
  assert.match(run.stdout, /a40-llama-3\.1-8b-burst50/);
  assert.match(run.stdout, /TTFT median\s*│\s*220\s*│\s*[\d,.]+\s*│\s*[+-][\d,.]+%/);
  assert.match(run.stdout, /saturated\s*│\s*no\s*│\s*(no|yes)\s*│\s*(ok|TWIN ONLY)/);
  // This case keeps its TTFT out of the medians (the table marks it and the notes say why).
  assert.match(run.stdout, /median \|error\|: TTFT n\/a; per-token [\d.]+% over 1 row; E2E n\/a/);
  assert.match(run.stdout, /TTFT p99\s*│\s*243\s*│\s*[\d,.]+\s*│\s*[+-][\d,.]+% \(x\)/);
  assert.match(run.stdout, /https:\/\/www\.databasemart\.com\/blog\/vllm-gpu-benchmark-a40/);
  // Same input, same output: the twin is deterministic and the table holds no wall-clock field.
  const again = await cli(['fidelity', CASE]);
  assert.equal(again.stdout, run.stdout);
});

test('fidelity --json: every row carries measured, predicted, signed errors and the saturation verdict', async () => {
  const out = join(dir, 'fidelity.json');
  const run = await cli(['fidelity', CASES, '--json', out, '--no-progress']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`wrote ${out.replaceAll('.', '\\.')}`));
  const json = JSON.parse(readFileSync(out, 'utf8')) as {
    cases: {
      name: string;
      source: { url: string };
      rows: {
        figures: { measuredMs: number; predictedMs: number; errorPct: number }[];
        saturation: string;
        predicted: { ttftMs: { mean: number } };
      }[];
    }[];
    summary: { rows: number; perTokenMedianAbsErrorPct: number | null; twinOnlySaturations: number };
  };
  assert.ok(json.cases.length >= 3);
  for (const c of json.cases) {
    assert.ok(c.source.url.startsWith('https://'), c.name);
    for (const row of c.rows) {
      assert.ok(['agree', 'twin-only', 'real-only'].includes(row.saturation));
      assert.ok(row.figures.length > 0);
      for (const f of row.figures) {
        assert.ok(f.predictedMs > 0);
        assert.ok(Math.abs(f.errorPct - ((f.predictedMs - f.measuredMs) / f.measuredMs) * 100) < 1e-9);
      }
    }
  }
  assert.equal(
    json.summary.rows,
    json.cases.reduce((n, c) => n + c.rows.length, 0),
  );
  assert.equal(typeof json.summary.perTokenMedianAbsErrorPct, 'number');
  // Without a file, the JSON goes to stdout instead of the table.
  const one = await cli(['fidelity', CASE, '--json']);
  const parsed = JSON.parse(one.stdout) as typeof json;
  assert.deepEqual(
    parsed.cases.map((c) => c.name),
    ['a40-llama-3.1-8b-burst50'],
  );
  assert.deepEqual(
    parsed.cases[0],
    json.cases.find((c) => c.name === 'a40-llama-3.1-8b-burst50'),
  );
});

test('fidelity refuses a bad case with one line naming the path', async () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, readFileSync(CASE, 'utf8').replace('gpu: a40', 'gpu: a40\nmaxBatch: 3'));
  const run = await cli(['fidelity', bad]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /maxBatch.*SY_ERR_INVALID_CONFIG/);
  const unknownModel = join(dir, 'model.yaml');
  writeFileSync(unknownModel, readFileSync(CASE, 'utf8').replace('model: llama-3.1-8b', 'model: gpt-5'));
  const run2 = await cli(['fidelity', unknownModel]);
  assert.equal(run2.code, 2);
  assert.match(run2.stderr, /unknown model 'gpt-5'.*SY_ERR_UNKNOWN_NAME/);
  const missing = await cli(['fidelity', join(dir, 'nope.yaml')]);
  assert.match(missing.stderr, /SY_ERR_NOT_FOUND/);
});

test('fidelity reads names copied from Hugging Face and nvidia-smi, and refuses an ambiguous GPU', async () => {
  const shipped = readFileSync(CASE, 'utf8');
  const aliased = join(dir, 'aliased.yaml');
  writeFileSync(
    aliased,
    shipped
      .replace('model: llama-3.1-8b', 'model: meta-llama/Llama-3.1-8B-Instruct')
      .replace('gpu: a40', 'gpu: NVIDIA A40'),
  );
  const [run, original] = await Promise.all([cli(['fidelity', aliased]), cli(['fidelity', CASE])]);
  assert.equal(run.code, 0, run.stderr);
  // The same case under other names: the same table, figure for figure.
  assert.equal(run.stdout, original.stdout);
  const ambiguous = join(dir, 'ambiguous.yaml');
  writeFileSync(ambiguous, shipped.replace('gpu: a40', 'gpu: A100'));
  const refused = await cli(['fidelity', ambiguous]);
  assert.equal(refused.code, 2);
  assert.match(
    refused.stderr,
    /ambiguous gpu 'A100': give the memory size; did you mean 'a100-40gb' or 'a100-80gb'\?.*SY_ERR_UNKNOWN_NAME/,
  );
});

test('fidelity: a shared prefix cuts the predicted TTFT, and a bad prefix block is refused naming its key', async () => {
  const caseWith = (prefix: string, input: number): string =>
    [
      'name: prefix-check',
      'source: { title: t, url: "https://example.org", engine: vLLM }',
      'model: llama-3.1-8b',
      'gpu: h100',
      'workload:',
      '  arrival: poisson',
      '  rateRps: 4',
      '  requests: 60',
      prefix,
      `  input: { kind: fixed, tokens: ${input} }`,
      '  output: { kind: fixed, tokens: 16 }',
      'measured: { ttftMs: { mean: 100 }, saturated: false }',
      '',
    ].join('\n');
  const shared = join(dir, 'shared.yaml');
  const unshared = join(dir, 'unshared.yaml');
  writeFileSync(shared, caseWith('  prefix: { tokens: 3000 }', 100));
  writeFileSync(unshared, caseWith('', 3100));
  const ttftMean = async (file: string): Promise<number> => {
    const run = await cli(['fidelity', file, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const json = JSON.parse(run.stdout) as {
      cases: { rows: { predicted: { ttftMs: { mean: number } } }[] }[];
    };
    return json.cases[0]?.rows[0]?.predicted.ttftMs.mean ?? Number.NaN;
  };
  const withPrefix = await ttftMean(shared);
  const without = await ttftMean(unshared);
  assert.ok(withPrefix < without / 2, `shared ${withPrefix} ms vs ${without} ms`);
  const bad = join(dir, 'bad-prefix.yaml');
  writeFileSync(bad, caseWith('  prefix: { tokens: 3000, group: 4 }', 100));
  const run = await cli(['fidelity', bad]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /workload\.prefix.*group.*SY_ERR_INVALID_CONFIG/);
});

test('sim --workload constant --stages runs each stage at its rate, back to back', async () => {
  const out = join(dir, 'stages.json');
  const run = await cli([
    'sim',
    '--workload',
    'constant',
    '--stages',
    '4:30,12:30',
    '--instances',
    '1',
    '--input-tokens',
    '700',
    '--output-tokens',
    '50',
    '--json',
    out,
    '--no-progress',
  ]);
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(readFileSync(out, 'utf8')) as { requests: number; workload: string };
  assert.equal(summary.requests, 4 * 30 + 12 * 30);
  assert.match(summary.workload, /constant stages 4:30,12:30/);
  const bad = await cli(['sim', '--workload', 'constant', '--stages', '4:30,x:1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid stages 'x:1'.*SY_ERR_INVALID_ARGUMENT/);
});
