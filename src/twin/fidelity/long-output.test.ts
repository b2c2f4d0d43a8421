/**
 * A case's output lengths are what the engine generates: a benchmark client sends max_tokens equal
 * to the output length it asks for (`vllm bench serve --random-output-len O --ignore-eos`), so the
 * twin generates every token of it, past the 4096 that `switchyard sim` declares by default.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type FidelityCaseInput, parseFidelityCase } from './case.ts';
import { checkCaseContext, replayOpenLoop, runCase } from './run-case.ts';

function longOutputCase(
  inputTokens: number,
  outputTokens: number,
  arrival: 'poisson' | 'closed-loop',
): FidelityCaseInput {
  const lengths = {
    input: { kind: 'fixed' as const, tokens: inputTokens },
    output: { kind: 'fixed' as const, tokens: outputTokens },
  };
  return {
    name: 'long-output',
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.11.0' },
    model: 'llama-3.1-8b',
    gpu: 'h100',
    workload:
      arrival === 'poisson'
        ? { arrival, rateRps: 0.5, requests: 3, ...lengths }
        : { arrival, concurrency: 1, requests: 2, ...lengths },
    measured: { e2eMs: { mean: 60_000 }, saturated: false },
  };
}

test('an open-loop case generates every output token it asks for, past 4096', () => {
  const { log, result } = replayOpenLoop(parseFidelityCase(longOutputCase(1000, 8000, 'poisson')));
  assert.equal(result.failed, 0);
  assert.deepEqual([...log.generatedTokens], [8000, 8000, 8000]);
});

test('a closed-loop case with twice the output takes about twice as long to answer', () => {
  const e2e = (out: number): number => {
    const row = runCase(parseFidelityCase(longOutputCase(1000, out, 'closed-loop'))).rows[0];
    assert.ok(row !== undefined);
    return row.predicted.e2eMs.mean;
  };
  const ratio = e2e(8000) / e2e(4000);
  assert.ok(ratio > 1.8 && ratio < 2.2, `E2E of 8000 over 4000 output tokens: ${ratio}`);
});

test('the context check counts the whole output: 125,000 prompt + 8,000 output pass 131,072', () => {
  assert.throws(() => checkCaseContext(parseFidelityCase(longOutputCase(125_000, 8000, 'poisson'))), {
    code: 'SY_ERR_INVALID_CONFIG',
    message:
      /3 of 3 requests pass llama-3\.1-8b's context of 131,072 tokens .*125,000 prompt \+ 8,000 output = 133,000/,
  });
});
