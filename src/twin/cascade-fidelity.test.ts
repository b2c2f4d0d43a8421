import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type FidelityCaseInput, parseFidelityCase } from './fidelity/case.ts';
import { runCase } from './fidelity/run-case.ts';

/**
 * Issue 12's 7B setup at 20 req/s with a 512-token system prompt in front of 293 tokens of each
 * request's own: about a hundred sequences decode at once, all sharing the prompt's 32 cached blocks.
 */
function systemPromptCase(engine: FidelityCaseInput['engine']): FidelityCaseInput {
  return {
    name: 'system-prompt',
    source: { title: 't', url: 'https://example.org', engine: 'vLLM 0.15.1' },
    model: 'llama-2-7b',
    gpu: 'h100',
    engine: { maxNumSeqs: 128, maxNumBatchedTokens: 2048, ...engine },
    workload: {
      arrival: 'constant',
      rateRps: 20,
      requests: 300,
      prefix: { tokens: 512 },
      input: { kind: 'fixed', tokens: 293 },
      output: { kind: 'fixed', tokens: 250 },
    },
    measured: { perTokenMs: { mean: 20 }, saturated: false },
  };
}

function perTokenMean(engine: FidelityCaseInput['engine']): number {
  const [row] = runCase(parseFidelityCase(systemPromptCase(engine))).rows;
  assert.ok(row !== undefined);
  assert.equal(row.predicted.completed, 300);
  return row.predicted.perTokenMs.mean;
}

describe('fidelity harness: cascade attention', () => {
  it('a shared system prompt decodes faster per token than with --disable-cascade-attn', () => {
    const cascade = perTokenMean({});
    const off = perTokenMean({ disableCascadeAttn: true });
    // Llama-2-7B is MHA: 512 shared tokens of ~100 sequences are most of each step's KV read.
    assert.ok(cascade < off * 0.85, `cascade ${cascade} ms, disabled ${off} ms`);
  });

  it('engine.disableCascadeAttn is an engine option; a wrong type is refused naming it', () => {
    assert.equal(
      parseFidelityCase(systemPromptCase({ disableCascadeAttn: true })).engine.disableCascadeAttn,
      true,
    );
    assert.throws(() => parseFidelityCase(systemPromptCase({ disableCascadeAttn: 'yes' as never })), {
      code: 'SY_ERR_INVALID_CONFIG',
      message: /disableCascadeAttn/,
    });
  });
});
