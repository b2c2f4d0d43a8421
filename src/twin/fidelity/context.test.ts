import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type FidelityCaseInput, loadFidelityCase, parseFidelityCase } from './case.ts';
import { checkCaseContext, runCase } from './run-case.ts';

/** A fidelity case whose lengths pass the model's context is refused before it runs, naming why. */

function llama2Case(
  inputTokens: number,
  outputTokens: number,
  arrival: 'poisson' | 'closed-loop',
): FidelityCaseInput {
  const lengths = {
    input: { kind: 'fixed' as const, tokens: inputTokens },
    output: { kind: 'fixed' as const, tokens: outputTokens },
  };
  return {
    name: 'long-on-llama-2',
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.15.1' },
    model: 'llama-2-7b',
    gpu: 'h100',
    workload:
      arrival === 'poisson'
        ? { arrival, rateRps: 2, requests: 10, ...lengths }
        : { arrival, concurrency: 2, requests: 10, ...lengths },
    measured: { perTokenMs: { mean: 20 }, saturated: false },
  };
}

const refused =
  /case 'long-on-llama-2': 10 of 10 requests pass llama-2-7b's context of 4,096 tokens \(the first, r0: 4,000 prompt \+ 97 output = 4,097\)/;

test('a case whose prompt plus output pass the context is refused with the case, the model and the limit', () => {
  for (const arrival of ['poisson', 'closed-loop'] as const) {
    const c = parseFidelityCase(llama2Case(4000, 97, arrival));
    assert.throws(() => runCase(c), { code: 'SY_ERR_INVALID_CONFIG', message: refused }, arrival);
    // At the limit exactly every request is served.
    const atLimit = parseFidelityCase(llama2Case(4000, 96, arrival));
    checkCaseContext(atLimit);
    assert.equal(runCase(atLimit).failed, 0, arrival);
  }
});

const dir = mkdtempSync(join(tmpdir(), 'sy-fidelity-context-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('loading a case file refuses it at validation, before any case runs', () => {
  const path = join(dir, 'long.json');
  writeFileSync(path, JSON.stringify(llama2Case(4000, 97, 'poisson')));
  assert.throws(() => loadFidelityCase(path), { code: 'SY_ERR_INVALID_CONFIG', message: refused });
  writeFileSync(path, JSON.stringify(llama2Case(4000, 96, 'poisson')));
  assert.equal(loadFidelityCase(path).model, 'llama-2-7b');
});
