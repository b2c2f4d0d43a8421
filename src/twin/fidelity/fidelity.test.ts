import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { TwinRequest } from '../../workload/types.ts';
import { type FidelityCase, type FidelityCaseInput, loadFidelityCase, parseFidelityCase } from './case.ts';
import { compareAll, compareRow, errorPct, median } from './compare.ts';
import { figureStats, isSaturated, RequestLog, SATURATION_SAMPLES_MIN } from './observe.ts';
import { fmtSignedPct, formatFidelityTable } from './report.ts';
import { type CaseRow, cappedSource, replayOpenLoop, runCase } from './run-case.ts';

const REPO = join(import.meta.dirname, '..', '..', '..');
const measured = { ttftMs: { mean: 50, p90: 80 }, perTokenMs: { mean: 10 }, saturated: false };

function openCase(over: Partial<FidelityCaseInput> = {}): FidelityCaseInput {
  return {
    name: 'open',
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.23.0' },
    model: 'llama-3.1-8b',
    gpu: 'h100',
    workload: {
      arrival: 'constant',
      rateRps: 4,
      requests: 60,
      input: { kind: 'fixed', tokens: 512 },
      output: { kind: 'fixed', tokens: 64 },
    },
    measured,
    ...over,
  };
}

function closedCase(concurrency: number, requests: number): FidelityCaseInput {
  return openCase({
    name: `closed-${concurrency}`,
    workload: {
      arrival: 'closed-loop',
      concurrency,
      requests,
      input: { kind: 'fixed', tokens: 512 },
      output: { kind: 'uniform', lo: 32, hi: 96 },
    },
  });
}

describe('case format', () => {
  it('fills defaults: tp 1, one instance, seed 1, no engine options', () => {
    const c = parseFidelityCase(openCase());
    assert.equal(c.tp, 1);
    assert.equal(c.instances, 1);
    assert.equal(c.seed, 1);
    assert.deepEqual(c.engine, {});
  });

  it('refuses unknown keys, naming the path', () => {
    assert.throws(() => parseFidelityCase({ ...openCase(), engine: { maxBatch: 3 } }), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /engine/,
    });
    assert.throws(() => parseFidelityCase({ ...openCase(), measured: { ...measured, ttft: 3 } }), {
      code: 'SY_ERR_INVALID_CONFIG',
    });
  });

  it('refuses a model or GPU the catalogue lacks, listing the valid ones', () => {
    assert.throws(() => parseFidelityCase(openCase({ model: 'gpt-5' })), {
      code: 'SY_ERR_UNKNOWN_NAME',
      message: /llama-3\.1-8b/,
    });
    assert.throws(() => parseFidelityCase(openCase({ gpu: 'tpu' })), { code: 'SY_ERR_UNKNOWN_NAME' });
  });

  it('reads Hugging Face and nvidia-smi names as the catalogue ids, and refuses an ambiguous GPU', () => {
    const c = parseFidelityCase(
      openCase({ model: 'meta-llama/Llama-3.1-8B-Instruct', gpu: 'NVIDIA H100 80GB HBM3' }),
    );
    assert.deepEqual([c.model, c.gpu], ['llama-3.1-8b', 'h100']);
    assert.throws(() => parseFidelityCase(openCase({ gpu: 'A100' })), {
      code: 'SY_ERR_UNKNOWN_NAME',
      message: /ambiguous gpu 'A100'.*'a100-40gb' or 'a100-80gb'/,
    });
  });

  it("says in one sentence which keys a length distribution's kind takes", () => {
    const w = openCase().workload as Record<string, unknown>;
    const input = { kind: 'uniform', min: 570, max: 790 };
    assert.throws(() => parseFidelityCase(openCase({ workload: { ...w, input } as never })), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /^fidelity case: workload\.input: uniform takes lo and hi; got min and max$/,
    });
  });

  it('needs exactly one of rateRps and stages, a limit at one rate, and measured figures somewhere', () => {
    const w = openCase().workload as Record<string, unknown>;
    const stages = [{ rateRps: 2, durationS: 10 }];
    assert.throws(() => parseFidelityCase(openCase({ workload: { ...w, stages } as never })), {
      message: /rateRps or stages/,
    });
    const { requests: _, ...unbounded } = w;
    assert.throws(() => parseFidelityCase(openCase({ workload: unbounded as never })), {
      message: /requests or durationS/,
    });
    const { measured: _m, ...bare } = openCase();
    assert.throws(() => parseFidelityCase(bare), { message: /measured/ });
    const { rateRps: _r, requests: _q, ...staged } = w;
    const withStageFigures = { ...staged, stages: [{ ...stages[0], measured }] };
    assert.equal(parseFidelityCase({ ...bare, workload: withStageFigures as never }).measured, undefined);
  });

  it('refuses a workload that would send more requests than a case may', () => {
    const stages = [{ rateRps: 100, durationS: 6000, measured }];
    const { measured: _m, ...bare } = openCase();
    const w = {
      arrival: 'constant',
      stages,
      input: { kind: 'fixed', tokens: 10 },
      output: { kind: 'fixed', tokens: 10 },
    };
    assert.throws(() => parseFidelityCase({ ...bare, workload: w as never }), { message: /at most 500000/ });
    // The same stages cut by durationS fit.
    assert.ok(parseFidelityCase({ ...bare, workload: { ...w, durationS: 60 } as never }));
  });

  it("docs/fidelity.md's example case is a valid case, and so are its staged, shared-prefix and capped workloads", () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'fidelity.md'), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string);
    const example = parseFidelityCase(parseYaml(blocks[0] as string));
    assert.equal(example.workload.arrival, 'closed-loop');
    const staged = parseYaml(blocks[1] as string) as { workload: unknown };
    const { measured: _m, ...bare } = openCase();
    const c = parseFidelityCase({ ...bare, workload: staged.workload as never });
    assert.equal(c.workload.arrival === 'constant' ? c.workload.stages?.length : 0, 2);
    const shared = parseYaml(blocks[2] as string) as { workload: unknown };
    const p = parseFidelityCase(openCase({ workload: shared.workload as never }));
    assert.deepEqual(p.workload.prefix, { tokens: 2000, groups: 4, zipfExponent: 0 });
    const capped = parseYaml(blocks[3] as string) as { workload: unknown };
    const q = parseFidelityCase(openCase({ workload: capped.workload as never }));
    assert.equal(q.workload.arrival === 'poisson' ? q.workload.maxConcurrency : 0, 64);
  });

  it('refuses an empty figure set', () => {
    assert.throws(() => parseFidelityCase(openCase({ measured: { ttftMs: {}, saturated: false } })), {
      message: /at least one/,
    });
  });
});

describe('empirical trace paths', () => {
  const SHIPPED_LENGTHS = join('data', 'fidelity', 'lengths', 'sharegpt-200-seed0-llama3.csv');
  /** A case file in `dir` whose input and output lengths come from the trace `trace`. */
  function writeCase(dir: string, trace: string): string {
    const c = openCase({
      workload: {
        arrival: 'constant',
        rateRps: 2,
        requests: 30,
        input: { kind: 'empirical', trace, format: 'vidur' },
        output: { kind: 'empirical', trace, format: 'vidur' },
      },
    });
    const path = join(dir, 'case.json');
    writeFileSync(path, JSON.stringify(c));
    return path;
  }
  /** Runs `body` with the current directory `cwd`, then goes back. */
  function inDir<T>(cwd: string, body: () => T): T {
    const before = process.cwd();
    process.chdir(cwd);
    try {
      return body();
    } finally {
      process.chdir(before);
    }
  }
  const csv = (rows: readonly [number, number][]) =>
    `num_prefill_tokens,num_decode_tokens\n${rows.map((r) => r.join(',')).join('\n')}\n`;

  it('reads a relative trace beside the case file, whatever the current directory', () => {
    const root = mkdtempSync(join(tmpdir(), 'sy-fidelity-'));
    try {
      const caseDir = join(root, 'cases');
      const elsewhere = join(root, 'elsewhere');
      mkdirSync(join(caseDir, 'lengths'), { recursive: true });
      mkdirSync(elsewhere);
      writeFileSync(join(caseDir, 'lengths', 'l.csv'), csv([[300, 40]]));
      const path = writeCase(caseDir, 'lengths/l.csv');
      const c = inDir(elsewhere, () => loadFidelityCase(path));
      assert.equal((c.workload.input as { trace: string }).trace, join(caseDir, 'lengths', 'l.csv'));
      const [row] = inDir(elsewhere, () => runCase(c)).rows;
      assert.equal(row?.predicted.completed, 30);
      // Every request has the trace's 40 output tokens: the per-token time spans 39 gaps.
      const withLengths = inDir(elsewhere, () => replayOpenLoop(c)).log;
      assert.deepEqual(new Set(withLengths.generatedTokens), new Set([40]));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('falls back to the current directory (the shipped cases name theirs from the repository root)', () => {
    const root = mkdtempSync(join(tmpdir(), 'sy-fidelity-'));
    try {
      const path = writeCase(root, SHIPPED_LENGTHS);
      const c = inDir(REPO, () => loadFidelityCase(path));
      assert.equal((c.workload.output as { trace: string }).trace, join(REPO, SHIPPED_LENGTHS));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses a path that names different files beside the case and from the current directory, naming both', () => {
    const root = mkdtempSync(join(tmpdir(), 'sy-fidelity-'));
    try {
      mkdirSync(join(root, 'data', 'fidelity', 'lengths'), { recursive: true });
      writeFileSync(join(root, SHIPPED_LENGTHS), csv([[300, 40]]));
      const path = writeCase(root, SHIPPED_LENGTHS);
      assert.throws(() => inDir(REPO, () => loadFidelityCase(path)), {
        code: 'SY_ERR_INVALID_CONFIG',
        message: new RegExp(
          `workload\\.input\\.trace: .*names two different files, ${join(root, SHIPPED_LENGTHS)} \\(beside the case\\) and ${join(REPO, SHIPPED_LENGTHS)} \\(from the current directory\\)`,
        ),
      });
      // The same bytes in both places are one trace: taken from beside the case.
      writeFileSync(join(root, SHIPPED_LENGTHS), readFileSync(join(REPO, SHIPPED_LENGTHS)));
      const c = inDir(REPO, () => loadFidelityCase(path));
      assert.equal((c.workload.input as { trace: string }).trace, join(root, SHIPPED_LENGTHS));
      // Neither: not found, naming both places.
      const missing = writeCase(root, 'nowhere.csv');
      assert.throws(() => inDir(REPO, () => loadFidelityCase(missing)), {
        code: 'SY_ERR_NOT_FOUND',
        message: /no file 'nowhere\.csv' beside the case \(.*\) or in the current directory/,
      });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a CSV of per-request lengths under its own column names: says which header a case reads', () => {
    const root = mkdtempSync(join(tmpdir(), 'sy-fidelity-'));
    try {
      writeFileSync(join(root, 'mine.csv'), 'input_tokens,output_tokens\n600,250\n700,240\n');
      // As an evaluator writes it: no format (the shipped cases say vidur).
      const lengths = { kind: 'empirical' as const, trace: 'mine.csv' };
      const path = join(root, 'mine-case.json');
      const c = openCase({
        workload: { arrival: 'constant', rateRps: 2, requests: 30, input: lengths, output: lengths },
      });
      writeFileSync(path, JSON.stringify(c));
      assert.throws(() => loadFidelityCase(path), {
        code: 'SY_ERR_TRACE_PARSE',
        message: new RegExp(
          `^fidelity case '.*': ${join(root, 'mine.csv')}:1: cannot tell this lengths file's format\\. A CSV of per-request lengths is read with the header num_prefill_tokens,num_decode_tokens`,
        ),
      });
      // Renamed as the message says, it reads.
      writeFileSync(join(root, 'mine.csv'), 'num_prefill_tokens,num_decode_tokens\n600,250\n700,240\n');
      assert.equal(loadFidelityCase(path).workload.input.kind, 'empirical');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('saturation', () => {
  it('a flat queue is not saturation, however noisy', () => {
    const flat = Array.from({ length: 200 }, (_, i) => 10 + (i % 7));
    assert.equal(isSaturated(flat), false);
  });

  it('a queue that keeps growing is', () => {
    const growing = Array.from({ length: 200 }, (_, i) => Math.floor(i / 4));
    assert.equal(isSaturated(growing), true);
  });

  it('a small growth at low load is noise, and too few arrivals say nothing', () => {
    assert.equal(isSaturated(Array.from({ length: 100 }, (_, i) => (i < 80 ? 1 : 4))), false);
    assert.equal(isSaturated(Array.from({ length: SATURATION_SAMPLES_MIN - 1 }, (_, i) => i * 10)), false);
  });
});

describe('comparison', () => {
  it('signed error: + when the twin is slower', () => {
    assert.equal(errorPct(100, 110), 10);
    assert.equal(errorPct(100, 75), -25);
    assert.equal(fmtSignedPct(10), '+10.0%');
    assert.equal(fmtSignedPct(-4), '-4.0%');
  });

  it('median of odd and even lists, null for none', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), null);
  });

  const setup = { model: 'llama-2-7b', gpu: 'h100', tp: 1, instances: 1 };
  const stats = (mean: number) => ({
    mean,
    p50: mean,
    p90: mean * 2,
    p95: mean * 2.5,
    p99: mean * 3,
    count: 10,
  });
  const row = (label: string, ttftMean: number, saturated: boolean): CaseRow => ({
    label,
    load: '1 req/s',
    measured: { ttftMs: { mean: 100, p90: 200 }, perTokenMs: { p50: 10 }, saturated: false },
    predicted: {
      ttftMs: stats(ttftMean),
      perTokenMs: stats(12),
      e2eMs: stats(1000),
      throughputRps: 1,
      saturated,
      requests: 10,
      completed: 10,
    },
  });

  it("compares a measured p95 with the twin's exact 95th percentile, shown as 'p95'", () => {
    const r = compareRow({ ...row('p', 100, false), measured: { ttftMs: { p95: 200 }, saturated: false } });
    assert.deepEqual(
      r.figures.map((f) => [f.figure, f.stat, f.predictedMs]),
      [['ttftMs', 'p95', 250]],
    );
    assert.match(formatFidelityTable([r]), /TTFT p95/);
    const ones = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(figureStats(ones).p95, 95.05);
    assert.equal(figureStats([]).p95, 0);
  });

  it('compares every statistic the measurement gives and flags twin-only saturation', () => {
    const r = compareRow(row('a', 150, true));
    assert.deepEqual(
      r.figures.map((f) => [f.figure, f.stat, f.errorPct]),
      [
        ['ttftMs', 'mean', 50],
        ['ttftMs', 'p90', 50],
        ['perTokenMs', 'p50', 20],
      ],
    );
    assert.equal(r.saturation, 'twin-only');
    const table = formatFidelityTable([r]);
    assert.match(table, /TTFT mean\s*│\s*100\s*│\s*150\s*│\s*\+50\.0%/);
    assert.match(table, /saturated\s*│\s*no\s*│\s*yes\s*│\s*TWIN ONLY/);
  });

  it('summarises by the mean where given, else the median, over all rows', () => {
    const results = [
      {
        name: 'x',
        source: { title: 't', url: 'u', engine: 'e' },
        setup,
        rows: [row('a', 150, false), row('b', 80, false)],
        failed: 0,
      },
      {
        name: 'y',
        source: { title: 't', url: 'u', engine: 'e' },
        setup,
        rows: [row('c', 100, true)],
        failed: 0,
      },
    ];
    const { summary } = compareAll(results);
    assert.equal(summary.rows, 3);
    assert.equal(summary.ttftMedianAbsErrorPct, 20);
    assert.equal(summary.perTokenMedianAbsErrorPct, 20);
    assert.equal(summary.twinOnlySaturations, 1);
    assert.equal(summary.excludedFigures, 0);
  });

  it('leaves excluded figures out of the medians but keeps them in the table, marked', () => {
    const excluded = row('a', 300, false);
    const marked: CaseRow = {
      ...excluded,
      measured: { ...excluded.measured, excluded: { figures: ['ttftMs'], reason: 'cached prompts' } },
    };
    const source = { title: 't', url: 'u', engine: 'e' };
    const { rows, summary } = compareAll([
      { name: 'x', source, setup, rows: [marked, row('b', 110, false)], failed: 0 },
    ]);
    assert.equal(summary.ttftMedianAbsErrorPct, 10);
    assert.equal(summary.ttftRows, 1);
    assert.equal(summary.perTokenRows, 2);
    assert.equal(summary.excludedFigures, 2);
    assert.match(formatFidelityTable(rows), /TTFT mean\s*│\s*100\s*│\s*300\s*│\s*\+200\.0% \(x\)/);
  });
});

describe('runCase', () => {
  it('is deterministic: the same case twice gives the same figures', () => {
    const c = parseFidelityCase(openCase());
    assert.deepEqual(runCase(c), runCase(c));
  });

  it('gives one row per measured stage over the requests that arrived in it', () => {
    const c = parseFidelityCase(
      openCase({
        measured: undefined,
        workload: {
          arrival: 'constant',
          stages: [
            { rateRps: 2, durationS: 30, measured },
            { rateRps: 5, durationS: 30 },
            { rateRps: 8, durationS: 30, measured },
          ],
          input: { kind: 'fixed', tokens: 512 },
          output: { kind: 'fixed', tokens: 64 },
        },
      }),
    );
    const result = runCase(c);
    assert.deepEqual(
      result.rows.map((r) => [r.label, r.load, r.predicted.requests, r.predicted.completed]),
      [
        ['open#1', '2 req/s', 60, 60],
        ['open#3', '8 req/s', 240, 240],
      ],
    );
  });

  it('a staged run whose rate rises below capacity is not saturated as a whole (its stages are not)', () => {
    const c = parseFidelityCase(
      openCase({
        workload: {
          arrival: 'constant',
          stages: [
            { rateRps: 2, durationS: 60, measured },
            { rateRps: 8, durationS: 30, measured },
          ],
          input: { kind: 'fixed', tokens: 512 },
          output: { kind: 'fixed', tokens: 256 },
        },
      }),
    );
    const rows = runCase(c).rows;
    assert.deepEqual(
      rows.map((r) => [r.label, r.predicted.saturated]),
      [
        ['open', false],
        ['open#1', false],
        ['open#2', false],
      ],
    );
    // In flight follows the rate (4x here): a trend test on it over the whole run would read a queue.
    const [, low, high] = rows;
    assert.ok(low !== undefined && high !== undefined);
    assert.ok(high.predicted.e2eMs.mean * 8 > 3 * low.predicted.e2eMs.mean * 2);
  });

  it('a far overloaded open loop saturates in the twin', () => {
    const c = parseFidelityCase(
      openCase({
        workload: {
          arrival: 'poisson',
          rateRps: 200,
          requests: 600,
          input: { kind: 'fixed', tokens: 4000 },
          output: { kind: 'fixed', tokens: 200 },
        },
      }),
    );
    const [row] = runCase(c).rows;
    assert.equal(row?.predicted.saturated, true);
  });

  /** 512-token prompts and 256-token answers on one H100 held to 16 sequences: about 8.7 req/s. */
  function sixteenSeqs(workload: Record<string, unknown>): FidelityCaseInput {
    return openCase({
      engine: { maxNumSeqs: 16 },
      workload: {
        arrival: 'constant',
        input: { kind: 'fixed', tokens: 512 },
        output: { kind: 'fixed', tokens: 256 },
        ...workload,
      } as never,
    });
  }

  it('a short run below capacity is not saturated, though its batch is still filling when arrivals stop', () => {
    // 20 s of arrivals against an E2E of about 11.5 s: in flight rises 20 -> 120 for the whole run
    // (the ramp the old in-flight rule read as a queue), while no request waits to start.
    const { result, log } = replayOpenLoop(
      parseFidelityCase(
        openCase({
          workload: {
            arrival: 'poisson',
            rateRps: 10,
            requests: 200,
            input: { kind: 'fixed', tokens: 512 },
            output: { kind: 'fixed', tokens: 1024 },
          },
        }),
      ),
    );
    const [row] = result.rows;
    assert.equal(row?.predicted.saturated, false);
    assert.ok(row.predicted.ttftMs.p99 < 200, `TTFT p99 ${row.predicted.ttftMs.p99} ms`);
    assert.ok(isSaturated(Array.from(log.inFlightAtArrival)), 'in flight does grow through the run');
  });

  it('a short run far above capacity is saturated: its queue grows within seconds', () => {
    const [row] = runCase(parseFidelityCase(sixteenSeqs({ rateRps: 40, requests: 200 }))).rows;
    assert.equal(row?.predicted.saturated, true);
  });

  it('a long run just under capacity is not saturated', () => {
    // 8.5 req/s against about 8.7: 15 of 16 sequences busy for 235 s.
    const { result, log } = replayOpenLoop(parseFidelityCase(sixteenSeqs({ rateRps: 8.5, requests: 2000 })));
    assert.equal(result.rows[0]?.predicted.saturated, false);
    assert.ok(Math.max(...log.inFlightAtArrival) >= 14, 'the engine is nearly full');
    // Just over capacity the same run is.
    const [over] = runCase(parseFidelityCase(sixteenSeqs({ rateRps: 9.5, requests: 2000 }))).rows;
    assert.equal(over?.predicted.saturated, true);
  });

  it('stages rising across capacity: the stages below are not saturated, the one past it and the run are', () => {
    const c = parseFidelityCase({
      ...sixteenSeqs({
        stages: [
          { rateRps: 4, durationS: 30, measured },
          { rateRps: 8, durationS: 60, measured },
          { rateRps: 12, durationS: 30, measured },
        ],
      }),
    });
    assert.deepEqual(
      runCase(c).rows.map((r) => [r.label, r.predicted.saturated]),
      [
        ['open', true],
        ['open#1', false],
        ['open#2', false],
        ['open#3', true],
      ],
    );
  });

  it('the shipped 70B TP8 ShareGPT case is not saturated at 16 or 8 req/s with 200 requests, nor with 1,000', () => {
    const shipped = loadFidelityCase(
      join(REPO, 'data', 'fidelity', 'a100-40gb-llama-3.3-70b-tp8-sharegpt-qps16.yaml'),
    );
    assert.equal(shipped.workload.arrival, 'poisson');
    for (const [rateRps, requests] of [
      [16, 200],
      [8, 200],
      [8, 1000],
    ] as const) {
      const c = { ...shipped, workload: { ...shipped.workload, rateRps, requests } } as FidelityCase;
      const [row] = runCase(c).rows;
      assert.equal(row?.predicted.saturated, false, `${rateRps} req/s x ${requests}`);
    }
  });

  for (const concurrency of [1, 4, 16]) {
    it(`a closed loop of ${concurrency} keeps ${concurrency} requests in flight (Little's law)`, () => {
      const c = parseFidelityCase(closedCase(concurrency, concurrency * 12));
      const [row] = runCase(c).rows;
      assert.ok(row !== undefined);
      const p = row.predicted;
      assert.equal(p.completed, concurrency * 12);
      assert.equal(p.saturated, false);
      // Mean in flight = throughput x mean E2E: at most C, and close to it (the last wave drains).
      const inFlight = (p.throughputRps * p.e2eMs.mean) / 1000;
      assert.ok(inFlight <= concurrency * 1.0001, `in flight ${inFlight}`);
      assert.ok(inFlight >= concurrency * 0.85, `in flight ${inFlight}`);
    });
  }

  it('a closed loop ends when the engine refuses every request (a prompt larger than its KV cache)', () => {
    const c = parseFidelityCase({ ...closedCase(2, 6), engine: { numGpuBlocksOverride: 4 } });
    const result = runCase(c);
    assert.equal(result.failed, 6);
    assert.equal(result.rows[0]?.predicted.completed, 0);
  });

  it('a closed loop of one never overlaps two requests: TTFT is the bare prefill', () => {
    const one = runCase(parseFidelityCase(closedCase(1, 10))).rows[0];
    const alone = runCase(parseFidelityCase(closedCase(1, 1))).rows[0];
    assert.ok(one !== undefined && alone !== undefined);
    assert.ok(Math.abs(one.predicted.ttftMs.p50 - alone.predicted.ttftMs.p50) < 1e-9);
  });
});

describe('workload.prefix', () => {
  /** 2,000 shared tokens + 100 of each request's own, or the same 2,100-token prompts sharing nothing. */
  function prefixCase(shared: boolean, engine: FidelityCaseInput['engine'] = {}): FidelityCaseInput {
    const output = { kind: 'fixed', tokens: 32 } as const;
    const workload = shared
      ? {
          arrival: 'poisson' as const,
          rateRps: 4,
          requests: 80,
          prefix: { tokens: 2000, groups: 2 },
          input: { kind: 'fixed' as const, tokens: 100 },
          output,
        }
      : {
          arrival: 'poisson' as const,
          rateRps: 4,
          requests: 80,
          input: { kind: 'fixed' as const, tokens: 2100 },
          output,
        };
    return openCase({ name: shared ? 'shared' : 'unshared', engine, workload });
  }

  it('fills groups 1 and a uniform pick, and refuses a bad block naming the key', () => {
    const c = parseFidelityCase(prefixCase(true));
    assert.deepEqual(c.workload.prefix, { tokens: 2000, groups: 2, zipfExponent: 0 });
    const w = prefixCase(true).workload as Record<string, unknown>;
    const bad = (prefix: unknown): FidelityCaseInput => openCase({ workload: { ...w, prefix } as never });
    assert.throws(() => parseFidelityCase(bad({ tokens: 100, group: 2 })), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /workload\.prefix.*group/,
    });
    assert.throws(() => parseFidelityCase(bad({ tokens: 0 })), { message: /workload\.prefix\.tokens/ });
    assert.throws(() => parseFidelityCase(bad({ tokens: 100, groups: 1.5 })), {
      message: /workload\.prefix\.groups/,
    });
    assert.throws(() => parseFidelityCase(bad({ tokens: 100, zipfExponent: -1 })), {
      message: /workload\.prefix\.zipfExponent/,
    });
    assert.throws(() => parseFidelityCase(bad({ tokens: 200_000, groups: 10_000 })), {
      message: /workload\.prefix\.groups: tokens × groups/,
    });
  });

  it('a long shared prefix lowers TTFT against the same prompts sharing nothing, through the prefix cache', () => {
    const ttftMean = (input: FidelityCaseInput): number => {
      const [row] = runCase(parseFidelityCase(input)).rows;
      assert.ok(row !== undefined);
      assert.equal(row.predicted.completed, 80);
      return row.predicted.ttftMs.mean;
    };
    const shared = ttftMean(prefixCase(true));
    const unshared = ttftMean(prefixCase(false));
    const sharedNoCache = ttftMean(prefixCase(true, { enablePrefixCaching: false }));
    // 2,000 of 2,100 tokens cached (minus the two groups' first prefills): well under half the prefill.
    assert.ok(shared < unshared * 0.5, `shared ${shared} ms, unshared ${unshared} ms`);
    // Without the cache the same prompts cost what prompts sharing nothing cost.
    assert.ok(Math.abs(sharedNoCache - unshared) <= unshared * 0.02, `${sharedNoCache} vs ${unshared}`);
  });

  it('puts the prefix in front of the drawn input, keeping arrivals, and a closed loop takes it too', () => {
    const closed = closedCase(4, 40);
    const w = closed.workload as Record<string, unknown>;
    const withPrefix = openCase({
      ...closed,
      workload: { ...w, prefix: { tokens: 1024, groups: 1 } } as never,
    });
    const plain = runCase(parseFidelityCase(closed)).rows[0];
    const cached = runCase(parseFidelityCase(withPrefix)).rows[0];
    assert.ok(plain !== undefined && cached !== undefined);
    assert.equal(cached.predicted.completed, 40);
    // 1,024 more tokens a prompt, all but the first prefill served from the cache: TTFT stays near
    // that of the bare 512-token prompts rather than growing by the prefix's prefill.
    const noCache = runCase(parseFidelityCase({ ...withPrefix, engine: { enablePrefixCaching: false } }))
      .rows[0];
    assert.ok(noCache !== undefined);
    assert.ok(cached.predicted.ttftMs.p50 < noCache.predicted.ttftMs.p50, 'the cache must cut TTFT');
    assert.ok(noCache.predicted.ttftMs.p50 > plain.predicted.ttftMs.p50, 'longer prompts must cost more');
  });
});

describe('workload.maxConcurrency (a client cap on an open loop)', () => {
  /** 40 req/s of 2,000-token prompts and 200-token answers on one H100: far past what it serves. */
  function overloaded(maxConcurrency?: number): FidelityCaseInput {
    return openCase({
      name: 'capped',
      workload: {
        arrival: 'constant',
        rateRps: 40,
        requests: 400,
        input: { kind: 'fixed', tokens: 2000 },
        output: { kind: 'fixed', tokens: 200 },
        ...(maxConcurrency !== undefined ? { maxConcurrency } : {}),
      },
    });
  }

  /** Most requests the engine held at once, from the recorded send and finish times. */
  function peakInFlight(log: RequestLog): number {
    const events: [number, number][] = [];
    for (let i = 0; i < log.size; i++) {
      events.push([log.arrivalMs[i] as number, 1]);
      events.push([log.finishMs[i] as number, -1]);
    }
    // An answer that ends when the next request is sent frees its slot first.
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0;
    let peak = 0;
    for (const [, delta] of events) {
      now += delta;
      peak = Math.max(peak, now);
    }
    return peak;
  }

  it('holds the engine at the cap while the client queue grows: client-bound, not engine-saturated', () => {
    const cap = 16;
    const { result, log } = replayOpenLoop(parseFidelityCase(overloaded(cap)));
    assert.equal(log.failed, 0);
    assert.ok(Number.isFinite(log.finishMs[log.size - 1] as number));
    assert.equal(peakInFlight(log), cap);
    // Sent in order, never before due; request k waits for the (k - cap)-th answer to end.
    for (let k = 1; k < log.size; k++) {
      assert.ok((log.arrivalMs[k] as number) >= (log.arrivalMs[k - 1] as number));
      assert.ok((log.arrivalMs[k] as number) >= (log.scheduledMs[k] as number));
    }
    const [row] = result.rows;
    assert.ok(row?.predicted.client !== undefined);
    const client = row.predicted.client;
    assert.equal(row.load, '40 req/s, cap 16');
    assert.equal(row.predicted.saturated, false);
    assert.equal(client.clientBound, true);
    assert.ok(client.sendRateRps < 40 * 0.8, `sent at ${client.sendRateRps} req/s`);
    // The wait grows: the last tenth of requests waited far longer than the first tenth.
    const wait = (k: number) => (log.arrivalMs[k] as number) - (log.scheduledMs[k] as number);
    const tenth = Math.floor(log.size / 10);
    const mean = (from: number) => {
      let sum = 0;
      for (let k = from; k < from + tenth; k++) sum += wait(k);
      return sum / tenth;
    };
    assert.ok(mean(log.size - tenth) > 5 * mean(0) + 1000, `${mean(0)} -> ${mean(log.size - tenth)} ms`);
    // The verdict reads client-bound as falling behind: against a measured run that kept up, twin only.
    const compared = compareRow(row);
    assert.equal(compared.client?.twin, 'client-bound');
    assert.equal(compared.saturation, 'twin-only');
    assert.equal(compareRow({ ...row, measured: { ...row.measured, saturated: true } }).saturation, 'agree');
    const table = formatFidelityTable([compared]);
    assert.match(table, /saturated\s*│\s*no\s*│\s*client-bound\s*│\s*TWIN ONLY/);
    assert.match(table, /client wait p90\s*│\s*-\s*│/);

    // Uncapped, the same arrivals saturate the engine.
    const [uncapped] = runCase(parseFidelityCase(overloaded())).rows;
    assert.equal(uncapped?.predicted.saturated, true);
    assert.equal(uncapped?.predicted.client, undefined);
    assert.ok((uncapped?.predicted.ttftMs.mean as number) > 10 * row.predicted.ttftMs.mean);
  });

  it('a cap that never binds changes no figure', () => {
    const uncapped = replayOpenLoop(parseFidelityCase(openCase()));
    const peak = Math.max(...uncapped.log.inFlightAtArrival) + 1;
    for (const cap of [peak, 4096]) {
      const capped = replayOpenLoop(
        parseFidelityCase(openCase({ workload: { ...openCase().workload, maxConcurrency: cap } as never })),
      );
      const [row] = capped.result.rows;
      assert.ok(row?.predicted.client !== undefined);
      const { client, ...figures } = row.predicted;
      assert.deepEqual(figures, uncapped.result.rows[0]?.predicted);
      assert.deepEqual(capped.log.arrivalMs, uncapped.log.arrivalMs);
      assert.equal(client.waitMs.p99, 0);
      assert.equal(client.clientBound, false);
      assert.ok(Math.abs(client.sendRateRps - 4) < 1e-9, `${client.sendRateRps}`);
    }
  });

  it('keeps stage membership by scheduled time, so a stage holds the requests its rate generated', () => {
    const c = parseFidelityCase(
      openCase({
        measured: undefined,
        workload: {
          arrival: 'constant',
          maxConcurrency: 8,
          stages: [
            { rateRps: 30, durationS: 10, measured },
            { rateRps: 2, durationS: 10, measured },
          ],
          input: { kind: 'fixed', tokens: 2000 },
          output: { kind: 'fixed', tokens: 200 },
        },
      }),
    );
    const { result, log } = replayOpenLoop(c);
    assert.deepEqual(
      result.rows.map((r) => [r.label, r.load, r.predicted.requests]),
      [
        ['open#1', '30 req/s, cap 8', 300],
        ['open#2', '2 req/s, cap 8', 20],
      ],
    );
    // The first stage's backlog spills past its end: some of its requests are sent in the second.
    assert.ok((log.arrivalMs[299] as number) > 10_000, `last of stage 1 sent at ${log.arrivalMs[299]} ms`);
    assert.equal(result.rows[0]?.predicted.client?.clientBound, true);
  });

  it('is refused on a closed loop (which has concurrency), at 0, and when not an integer, naming the path', () => {
    const closed = closedCase(4, 40);
    assert.throws(
      () => parseFidelityCase({ ...closed, workload: { ...closed.workload, maxConcurrency: 4 } as never }),
      { code: 'SY_ERR_INVALID_CONFIG', message: /workload.*maxConcurrency/ },
    );
    const w = openCase().workload;
    for (const bad of [0, 2.5, -1, 5000])
      assert.throws(() => parseFidelityCase(openCase({ workload: { ...w, maxConcurrency: bad } as never })), {
        code: 'SY_ERR_INVALID_CONFIG',
        message: /workload\.maxConcurrency/,
      });
    assert.equal(
      parseFidelityCase(openCase({ workload: { ...w, maxConcurrency: 1 } as never })).workload.arrival,
      'constant',
    );
  });
});

describe('cappedSource', () => {
  it("bounds a run's polls in all, and says so: answers that kept ending are not reported as none", () => {
    // Cap 1, three requests due at 0; the simulator's part is played by hand: pull, and end answers.
    const base = [0, 1, 2].map((k) => ({ id: `r${k}`, arrivalMs: 0 }) as unknown as TwinRequest);
    const log = new RequestLog(base.length);
    const it = cappedSource(base, 1, log, 0.5, 5)[Symbol.iterator]();
    const pull = () => it.next().value as TwinRequest;
    assert.equal(pull().id, 'r0');
    log.routed(0, 0);
    const ids = [pull().id, pull().id, pull().id]; // no slot: three polls
    log.completed(0, 1.5, 1);
    assert.equal(pull().id, 'r1');
    log.routed(1, 1.5);
    ids.push(pull().id, pull().id); // two more: five in all, the bound
    assert.equal(new Set(ids).size, 5, `poll ids are unique: ${ids}`);
    assert.throws(pull, (e: Error) => {
      assert.match(e.message, /5 polls in all/);
      assert.match(e.message, /2 since the last send/);
      return true;
    });
  });
});
