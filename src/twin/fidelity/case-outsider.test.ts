/**
 * Fidelity cases as someone outside the project writes them for a held-out run (vLLM on H100,
 * Llama-2 / CodeLlama / Mixtral by their Hugging Face names, constant-rate stages of 600 s): the
 * spellings they copy resolve to catalogue ids, and a missing or misspelt measured field fails with
 * one line naming the path and what the field takes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { type FidelityCaseInput, loadFidelityCase, parseFidelityCase } from './case.ts';
import { checkCaseContext, runCase } from './run-case.ts';

const stage = (rateRps: number, measured: Record<string, unknown>) => ({ rateRps, durationS: 600, measured });

function heldOutCase(
  model: string,
  gpu: string,
  tp: number,
  over: Record<string, unknown> = {},
): FidelityCaseInput {
  return {
    name: 'held-out',
    source: { title: 'run', url: 'https://example.org/run', engine: 'vLLM v0.15.1' },
    model,
    gpu,
    tp,
    engine: { maxNumBatchedTokens: 2048, maxNumSeqs: 128 },
    workload: {
      arrival: 'constant',
      stages: [
        stage(5, { ttftMs: { mean: 40 }, perTokenMs: { mean: 12 }, saturated: false }),
        stage(20, { ttftMs: { p50: 60, p90: 90, p99: 140 }, perTokenMs: { p50: 20 }, saturated: false }),
      ],
      input: { kind: 'uniform', lo: 570, hi: 790 },
      output: { kind: 'fixed', tokens: 250 },
    },
    ...over,
  } as FidelityCaseInput;
}

function withStageMeasured(measured: Record<string, unknown>): FidelityCaseInput {
  const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);
  return { ...c, workload: { ...c.workload, stages: [stage(5, measured)] } } as FidelityCaseInput;
}

describe('held-out style cases', () => {
  it('resolve Hugging Face model names and vendor GPU names', () => {
    const cases: [string, string, number, string, string][] = [
      ['meta-llama/Llama-2-7b-hf', 'H100', 1, 'llama-2-7b', 'h100'],
      ['meta-llama/Llama-2-70b-hf', 'NVIDIA H100 80GB HBM3', 4, 'llama-2-70b', 'h100'],
      ['codellama/CodeLlama-34b-Instruct-hf', 'H100-SXM5-80GB', 2, 'codellama-34b', 'h100'],
      ['mistralai/Mixtral-8x7B-Instruct-v0.1', 'H100', 2, 'mixtral-8x7b', 'h100'],
    ];
    for (const [model, gpu, tp, modelId, gpuId] of cases) {
      const c = parseFidelityCase(heldOutCase(model, gpu, tp));
      assert.equal(c.model, modelId, model);
      assert.equal(c.gpu, gpuId, gpu);
    }
  });

  it('take a lognormal output and stages measured by mean only or by percentiles only', () => {
    const c = parseFidelityCase(
      heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
        workload: {
          ...heldOutCase('x', 'y', 1).workload,
          output: { kind: 'lognormal', mean: 250, cv: 0.3 },
        },
      }),
    );
    assert.equal(c.workload.arrival === 'constant' && c.workload.stages?.length, 2);
  });
});

describe('size', () => {
  it('20 stages of 600 s at 20 req/s (240,000 requests) is one case', () => {
    const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);
    const stages = Array.from({ length: 20 }, () => stage(20, { ttftMs: { mean: 40 }, saturated: false }));
    assert.ok(parseFidelityCase({ ...c, workload: { ...c.workload, stages } } as FidelityCaseInput));
  });
});

describe('a measured field missing or misspelt', () => {
  it('saturated omitted: says it is required and what it means', () => {
    assert.throws(() => parseFidelityCase(withStageMeasured({ ttftMs: { mean: 40 } })), {
      code: 'SY_ERR_INVALID_CONFIG',
      message:
        /workload\.stages\.0\.measured\.saturated: required: true if the engine fell behind the offered load .*, else false/,
    });
  });

  it('saturated as a word: says true or false', () => {
    assert.throws(() => parseFidelityCase(withStageMeasured({ ttftMs: { mean: 40 }, saturated: 'no' })), {
      message: /measured\.saturated: expected true or false, got "no"/,
    });
  });

  it('a p95 (which inference-perf, GuideLLM and genai-perf print) is taken', () => {
    const c = parseFidelityCase(withStageMeasured({ ttftMs: { mean: 40, p95: 70 }, saturated: false }));
    const stage = c.workload.arrival === 'constant' ? c.workload.stages?.[0] : undefined;
    assert.deepEqual(stage?.measured?.ttftMs, { mean: 40, p95: 70 });
  });

  it('a median, or a statistic not compared: says what to write', () => {
    assert.throws(() => parseFidelityCase(withStageMeasured({ ttftMs: { median: 40 }, saturated: false })), {
      message:
        /measured\.ttftMs: unknown key 'median'; takes mean, p50, p90, p95, p99 \(ms\) \(the median is p50\)/,
    });
    assert.throws(
      () => parseFidelityCase(withStageMeasured({ ttftMs: { mean: 40, min: 9, p75: 50 }, saturated: false })),
      {
        message:
          /unknown key 'min', 'p75'; .* \('min' is not compared: leave it out; 'p75' is not compared: leave it out\)/,
      },
    );
  });

  it("a figure under a load tester's name: names this format's figure, or why it is not compared", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { tpotMs: { mean: 12 } },
        /unknown key 'tpotMs'; .* \(TPOT, \(E2E - TTFT\) \/ \(output tokens - 1\) per request, is perTokenMs\)/,
      ],
      [{ tpot_ms: { mean: 12 } }, /is perTokenMs\)/],
      [{ itlMs: { mean: 12 } }, /\(ITL is not compared: .*give it as perTokenMs: \{ mean \}\)/],
      [{ latencyMs: { mean: 3000 } }, /unknown key 'latencyMs'; .* \(write e2eMs\)/],
      [{ e2eS: { mean: 3 } }, /\(e2eMs is in ms: e2eMs: \{ mean: <seconds x 1000> \}\)/],
      [{ ttft_ms: { mean: 40 } }, /\(write ttftMs\)/],
      [
        { outputThroughputTps: 1200 },
        /\(token throughput is not compared: leave it out, or give completed requests per second as throughputRps\)/,
      ],
      [{ requestThroughput: 4.9 }, /\(completed requests per second is throughputRps\)/],
    ];
    for (const [figure, message] of cases)
      assert.throws(() => parseFidelityCase(withStageMeasured({ ...figure, saturated: false })), { message });
  });

  it('a snake_case figure: names the figures measured takes', () => {
    assert.throws(() => parseFidelityCase(withStageMeasured({ ttft_ms: { mean: 40 }, saturated: false })), {
      message:
        /measured: unknown key 'ttft_ms'; takes ttftMs, perTokenMs, e2eMs, throughputRps, saturated, excluded/,
    });
  });

  it('a bare number for a latency: shows the object it should be', () => {
    assert.throws(() => parseFidelityCase(withStageMeasured({ ttftMs: 40, saturated: false })), {
      message: /measured\.ttftMs: expected an object such as \{ mean: 50, p90: 80 \}, got 40/,
    });
  });
});

describe('a gamma arrival without its cv', () => {
  it('says cv is required and what it is', () => {
    const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);
    assert.throws(
      () => parseFidelityCase({ ...c, workload: { ...c.workload, arrival: 'gamma' } } as FidelityCaseInput),
      {
        message: /workload\.cv: required with arrival gamma: the coefficient of variation of the gaps/,
      },
    );
  });
});

describe("keys as vLLM and other tools' configs name them", () => {
  it("engine options under vLLM's own names (engine arguments, flags) are read as this format's", () => {
    const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
      engine: { max_num_batched_tokens: 2048, '--max-num-seqs': 128, 'gpu-memory-utilization': 0.9 },
    });
    assert.deepEqual(parseFidelityCase(c).engine, {
      maxNumBatchedTokens: 2048,
      maxNumSeqs: 128,
      gpuMemoryUtilization: 0.9,
    });
  });

  it('an engine option given twice, tensor parallelism in engine, or an option the twin lacks: an issue naming it', () => {
    const twice = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
      engine: { max_num_seqs: 128, maxNumSeqs: 64 },
    });
    assert.throws(() => parseFidelityCase(twice), {
      message: /engine\.maxNumSeqs: maxNumSeqs given twice, as max_num_seqs and maxNumSeqs; give one/,
    });
    const tp = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, { engine: { tensor_parallel_size: 2 } });
    assert.throws(() => parseFidelityCase(tp), {
      message: /engine\.tensor_parallel_size: tensor parallelism is the case's top-level tp/,
    });
    const unknown = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, { engine: { swap_space: 4 } });
    assert.throws(() => parseFidelityCase(unknown), {
      message:
        /engine: 'swap_space': not an engine option the twin models; leave it out\. engine takes blockSize, maxNumSeqs/,
    });
  });

  it('vLLM serve options copied into engine at the values the twin runs are read, and change nothing', () => {
    const copied = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
      engine: {
        max_num_batched_tokens: 2048,
        dtype: 'float16',
        '--max-model-len': 4096,
        enable_chunked_prefill: true,
        enforce_eager: false,
      },
    });
    const plain = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
      engine: { max_num_batched_tokens: 2048 },
    });
    assert.deepEqual(parseFidelityCase(copied).engine, { maxNumBatchedTokens: 2048, maxModelLen: 4096 });
    for (const dtype of ['auto', 'bfloat16', 'BF16', 'half']) {
      const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, { engine: { dtype } });
      assert.deepEqual(parseFidelityCase(c).engine, {}, dtype);
    }
    // The same figures as the case without them (a short run: its first stage only).
    const short = (c: FidelityCaseInput): FidelityCaseInput =>
      ({
        ...c,
        workload: { ...c.workload, stages: (c.workload as { stages: unknown[] }).stages.slice(0, 1) },
      }) as FidelityCaseInput;
    assert.deepEqual(
      runCase(parseFidelityCase(short(copied))).rows.map((r) => r.predicted),
      runCase(parseFidelityCase(short(plain))).rows.map((r) => r.predicted),
    );
  });

  it('vLLM serve options at values the twin does not run: one issue each, saying what it runs', () => {
    const other = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, {
      engine: { enforce_eager: true, enable_chunked_prefill: false, dtype: 'float32', swap_space: 4 },
    });
    assert.throws(
      () => parseFidelityCase(other),
      (error: Error) => {
        assert.match(error.message, /engine\.enforce_eager: true: the twin runs CUDA-graph decode/);
        assert.match(error.message, /engine\.enable_chunked_prefill: false: the twin runs chunked prefill/);
        assert.match(error.message, /engine\.dtype: "float32": the twin runs the catalogue's 16-bit weights/);
        assert.match(error.message, /'swap_space': not an engine option the twin models/);
        assert.doesNotMatch(error.message, /Unrecognized key/);
        return true;
      },
    );
  });

  it("max_model_len bounds the case's requests, and past the model's context is refused", () => {
    const tight = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, { engine: { max_model_len: 900 } });
    assert.throws(() => checkCaseContext(parseFidelityCase(tight)), {
      message: /requests pass max_model_len \(engine\.maxModelLen\) of 900 tokens/,
    });
    const past = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1, { engine: { max_model_len: 8192 } });
    assert.throws(() => checkCaseContext(parseFidelityCase(past)), {
      message: /engine\.maxModelLen 8,192 is past llama-2-7b's context of 4,096 tokens/,
    });
  });
});

describe('workload keys', () => {
  it('arrival left out or misspelt says it is required or not an arrival, and lists each, not a bare discriminator error', () => {
    const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);
    const { arrival: _, ...unpaced } = c.workload as Record<string, unknown>;
    assert.throws(() => parseFidelityCase({ ...c, workload: unpaced } as FidelityCaseInput), {
      message:
        /workload\.arrival: required: constant \(evenly paced at rateRps, as load testers send\), poisson, gamma \(with cv\) or closed-loop/,
    });
    const misspelt = {
      ...c,
      workload: { ...c.workload, arrival: 'constant-rate' },
    } as unknown as FidelityCaseInput;
    assert.throws(() => parseFidelityCase(misspelt), {
      message: /workload\.arrival: "constant-rate" is not an arrival; write constant /,
    });
  });

  it('a percentile in capitals, as results tables print it, says to write it in lower case, not that it is not compared', () => {
    const c = withStageMeasured({ ttftMs: { P90: 70 }, saturated: false });
    assert.throws(() => parseFidelityCase(c), {
      message: /measured\.ttftMs: unknown key 'P90'; takes mean, p50, p90, p95, p99 \(ms\) \(write p90\)/,
    });
  });

  it('a top-level, stage or source key under another name says which key it is', () => {
    const c = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);
    assert.throws(() => parseFidelityCase({ ...c, tensor_parallel_size: 1 } as FidelityCaseInput), {
      message:
        /^fidelity case: \(top level\): unknown key 'tensor_parallel_size'; takes name, .* \(tensor parallelism is tp\)/,
    });
    const { source: _, ...unsourced } = c;
    assert.throws(() => parseFidelityCase(unsourced as FidelityCaseInput), {
      message:
        /source: required: an object such as \{ title: our run, url: https:\/\/\.\.\., engine: vLLM 0\.15\.1 \}/,
    });
    const stages = [{ rate: 5, duration: 600, measured: { ttftMs: { mean: 40 }, saturated: false } }];
    assert.throws(
      () => parseFidelityCase({ ...c, workload: { ...c.workload, stages } } as unknown as FidelityCaseInput),
      {
        message:
          /workload\.stages\.0: unknown key 'rate', 'duration'; takes rateRps, durationS, measured \(the rate is rateRps \(req\/s\); the length is durationS \(s\)\)/,
      },
    );
  });
});

describe('a file of several cases', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-fidelity-outsider-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const one = heldOutCase('meta-llama/Llama-2-7b-hf', 'H100', 1);

  it('a JSON list of cases is refused saying one case per file, without echoing the list back', () => {
    const path = join(dir, 'all.json');
    writeFileSync(path, JSON.stringify([one, { ...one, name: 'second' }]));
    assert.throws(
      () => loadFidelityCase(path),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'SY_ERR_INVALID_CONFIG');
        assert.match(
          error.message,
          /a file holds one case .* this one holds a list of 2: write each case to its own file/,
        );
        assert.doesNotMatch(error.message, /example\.org/);
        return true;
      },
    );
  });

  it("YAML documents one after another ('---') are refused saying one case per file", () => {
    const path = join(dir, 'all.yaml');
    writeFileSync(path, `${stringify(one)}---\n${stringify({ ...one, name: 'second' })}`);
    assert.throws(() => loadFidelityCase(path), {
      code: 'SY_ERR_INVALID_CONFIG',
      message:
        /a file holds one case, and this one has several YAML documents .*write each case to its own file/,
    });
    writeFileSync(path, stringify(one));
    assert.equal(loadFidelityCase(path).model, 'llama-2-7b');
  });
});
