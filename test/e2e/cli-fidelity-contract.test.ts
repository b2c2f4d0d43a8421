/**
 * Issue 12's harness as a user would drive it: `switchyard fidelity FILE` on a case written by hand
 * in the documented format (docs/fidelity.md) with names copied from Hugging Face and nvidia-smi,
 * the engine options of the issue's measurements and constant-rate stages, one row per stage.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-fidelity-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const STAGED_CASE = `name: user-staged
source: { title: a user's staged run, url: "https://example.org/run", engine: vLLM 0.15.1 }
model: meta-llama/Llama-2-7b-hf
gpu: NVIDIA H100 80GB HBM3
tp: 1
engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 }
workload:
  arrival: constant
  stages:
    - { rateRps: 3, durationS: 20, measured: { ttftMs: { mean: 40, p90: 60 }, perTokenMs: { mean: 9 }, e2eMs: { mean: 2300 }, saturated: false } }
    - { rateRps: 6, durationS: 20, measured: { ttftMs: { mean: 45 }, perTokenMs: { mean: 10, p90: 12 }, saturated: false } }
  input: { kind: uniform, lo: 570, hi: 790 }
  output: { kind: fixed, tokens: 100 }
`;

interface Figure {
  figure: string;
  stat: string;
  measuredMs: number;
  predictedMs: number;
  errorPct: number;
}

test('fidelity FILE --json on a hand-written staged case: one row per stage, each measured figure predicted', async () => {
  const file = join(dir, 'user-staged.yaml');
  writeFileSync(file, STAGED_CASE);
  const run = await runCli(['fidelity', file, '--json', '--no-progress']);
  assert.equal(run.code, 0, run.stderr);
  const json = JSON.parse(run.stdout) as {
    cases: {
      name: string;
      rows: {
        label: string;
        load: string;
        figures: Figure[];
        saturation: string;
        predicted: { ttftMs: { mean: number; p50: number; p90: number; p99: number; count: number } };
      }[];
    }[];
    summary: { rows: number; ttftMedianAbsErrorPct: number | null; perTokenMedianAbsErrorPct: number | null };
  };
  assert.equal(json.cases.length, 1);
  const [c] = json.cases;
  assert.equal(c?.name, 'user-staged');
  assert.deepEqual(
    c?.rows.map((r) => [r.label, r.load]),
    [
      ['user-staged#1', '3 req/s'],
      ['user-staged#2', '6 req/s'],
    ],
  );
  const asked = [
    ['ttftMs:mean', 'ttftMs:p90', 'perTokenMs:mean', 'e2eMs:mean'],
    ['ttftMs:mean', 'perTokenMs:mean', 'perTokenMs:p90'],
  ];
  c?.rows.forEach((row, k) => {
    assert.deepEqual(
      row.figures.map((f) => `${f.figure}:${f.stat}`).sort(),
      [...(asked[k] as string[])].sort(),
      row.label,
    );
    for (const f of row.figures) {
      assert.ok(Number.isFinite(f.predictedMs) && f.predictedMs > 0, `${row.label} ${f.figure}`);
      assert.ok(Math.abs(f.errorPct - ((f.predictedMs - f.measuredMs) / f.measuredMs) * 100) < 1e-9);
    }
    // A stage's figures are over the requests that arrived in it: a constant 3 or 6 req/s for 20 s.
    assert.equal(row.predicted.ttftMs.count, k === 0 ? 60 : 120, row.label);
    assert.equal(row.saturation, 'agree', `${row.label}: an unloaded 7B on an H100 does not saturate`);
  });
  assert.equal(json.summary.rows, 2);
  assert.equal(typeof json.summary.ttftMedianAbsErrorPct, 'number');
  assert.equal(typeof json.summary.perTokenMedianAbsErrorPct, 'number');
});

/**
 * An outside evaluator's case in JSON, as they copy it: the model with a revision, the GPU as a spec
 * sheet writes it, prompt lengths as inference-perf's normal (mean, std_dev, min, max), a p95.
 */
const EVALUATOR_CASE = {
  name: 'evaluator-normal',
  source: { title: 'an evaluator run', url: 'https://example.org/run', engine: 'vLLM v0.15.1' },
  model: 'meta-llama/Llama-2-7b-chat-hf@main',
  gpu: 'H100 SXM5 (80 GB)',
  tp: 1,
  engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 },
  workload: {
    arrival: 'constant',
    stages: [
      {
        rateRps: 4,
        durationS: 15,
        measured: { ttftMs: { mean: 40, p95: 70 }, perTokenMs: { p95: 12 }, saturated: false },
      },
    ],
    input: { kind: 'normal', mean: 680, stdDev: 60, min: 570, max: 790 },
    output: { kind: 'fixed', tokens: 100 },
  },
};

test('fidelity on an evaluator JSON case: names resolved and reported, normal lengths, p95 compared, same bytes twice', async () => {
  const file = join(dir, 'evaluator-normal.json');
  writeFileSync(file, JSON.stringify(EVALUATOR_CASE, null, 2));
  const run = await runCli(['fidelity', file, '--json', '--no-progress']);
  assert.equal(run.code, 0, run.stderr);
  const again = await runCli(['fidelity', file, '--json', '--no-progress']);
  assert.equal(again.stdout, run.stdout, 'the same case gives the same bytes');
  const json = JSON.parse(run.stdout) as {
    cases: {
      model: string;
      gpu: string;
      tp: number;
      instances: number;
      rows: {
        figures: Figure[];
        predicted: { ttftMs: { p95: number; p90: number; p99: number; count: number } };
      }[];
    }[];
  };
  const [c] = json.cases;
  assert.deepEqual([c?.model, c?.gpu, c?.tp, c?.instances], ['llama-2-7b', 'h100', 1, 1]);
  const [row] = c?.rows ?? [];
  assert.deepEqual(
    row?.figures.map((f) => `${f.figure}:${f.stat}`),
    ['ttftMs:mean', 'ttftMs:p95', 'perTokenMs:p95'],
  );
  const ttft = row?.predicted.ttftMs;
  assert.equal(row?.figures[1]?.predictedMs, ttft?.p95);
  assert.ok(ttft !== undefined && ttft.p90 <= ttft.p95 && ttft.p95 <= ttft.p99, JSON.stringify(ttft));
  assert.equal(ttft?.count, 60);
  const table = await runCli(['fidelity', file, '--no-progress']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /TTFT p95/);
  assert.match(
    table.stdout,
    /^evaluator-normal: llama-2-7b on h100, TP 1; vLLM v0\.15\.1, https:\/\/example\.org\/run$/m,
  );
});
