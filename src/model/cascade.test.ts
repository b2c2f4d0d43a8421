import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CASCADE_PREFIX_TOKENS_MIN, CASCADE_REQUESTS_MIN, usesCascadeAttention } from './cascade.ts';
import { gpuSpec } from './gpus.ts';
import { perfModelFor } from './perf.ts';
import type { StepShape } from './types.ts';

/** `seqs` sequences decoding at 805 tokens of context each, `prefix` of them shared by all. */
function decodeStep(seqs: number, prefix: number): StepShape {
  return {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: seqs,
    decodeContextTokens: seqs * 805,
    commonPrefixTokens: prefix,
  };
}

const H100 = gpuSpec('h100');
const mha = { headsPerGpu: 32, kvHeadsPerGpu: 32, smCount: H100.smCount, alibi: false };
const gqa = { headsPerGpu: 32, kvHeadsPerGpu: 8, smCount: H100.smCount, alibi: false };

describe('usesCascadeAttention (vLLM use_cascade_attention)', () => {
  it('needs a prefix of 256 tokens and 8 requests', () => {
    assert.equal(CASCADE_PREFIX_TOKENS_MIN, 256);
    assert.equal(CASCADE_REQUESTS_MIN, 8);
    assert.equal(usesCascadeAttention(256, 8, true, mha), true);
    assert.equal(usesCascadeAttention(240, 64, true, mha), false);
    assert.equal(usesCascadeAttention(512, 7, true, mha), false);
    assert.equal(usesCascadeAttention(512, 64, true, { ...mha, alibi: true }), false);
  });

  it('always for MHA or a batch with a prefill chunk; by the wave count for a GQA decode batch', () => {
    // 8 decodes of a GQA model: cascade 32 CTAs, 1 wave x 4 tiles = 4; FlashDecoding
    // ceil(8 * 8 * 4 / 132) = 2 waves: FlashDecoding wins.
    assert.equal(usesCascadeAttention(512, 8, true, gqa), false);
    // 16 decodes tie (4 against ceil(512 / 132) = 4): strictly less is required.
    assert.equal(usesCascadeAttention(512, 16, true, gqa), false);
    assert.equal(usesCascadeAttention(512, 17, true, gqa), true);
    // A prefill chunk in the batch: FlashDecoding is not used, so cascade is.
    assert.equal(usesCascadeAttention(512, 8, false, gqa), true);
    assert.equal(usesCascadeAttention(512, 8, true, mha), true);
    // Fewer SMs make FlashDecoding's waves longer: 17 decodes on a 58-SM L4 still use cascade.
    assert.equal(usesCascadeAttention(512, 17, true, { ...gqa, smCount: 58 }), true);
  });

  it('every catalogue GPU has its SM count', () => {
    const sms = ['a100-40gb', 'a100-80gb', 'h100', 'h200', 'l40s', 'l4', 'a10g', 'a40'].map(
      (id) => gpuSpec(id).smCount,
    );
    assert.deepEqual(sms, [108, 108, 132, 132, 142, 58, 80, 84]);
  });
});

describe('the operator step model with cascade attention', () => {
  const llama2 = perfModelFor('h100', 'llama-2-7b', 1, 'vllm', { maxNumSeqs: 128 });
  const llama3 = perfModelFor('h100', 'llama-3.1-8b', 1, 'vllm', { maxNumSeqs: 128 });

  it('64 sequences of 805 tokens sharing 512 decode faster than sharing nothing', () => {
    const plain = llama2.stepTimeMs(decodeStep(64, 0));
    const shared = llama2.stepTimeMs(decodeStep(64, 512));
    // Llama-2-7B reads 512 KiB of KV a token: 512 shared tokens of 64 sequences are 16 GiB a step
    // over 32 layers read once instead of 64 times.
    assert.ok(shared < plain * 0.8, `shared ${shared} ms, plain ${plain} ms`);
    // GQA too, where vLLM's wave count picks cascade (64 requests).
    assert.ok(llama3.stepTimeMs(decodeStep(64, 512)) < llama3.stepTimeMs(decodeStep(64, 0)));
  });

  it('a prefix under 256 tokens, or fewer than 8 sequences, leaves the step as it was', () => {
    assert.equal(llama2.stepTimeMs(decodeStep(64, 240)), llama2.stepTimeMs(decodeStep(64, 0)));
    assert.equal(llama2.stepTimeMs(decodeStep(7, 512)), llama2.stepTimeMs(decodeStep(7, 0)));
  });

  it('follows the MHA / GQA heuristic: 8 decodes of a GQA model keep FlashDecoding', () => {
    const o2 = llama2.operators!;
    const o3 = llama3.operators!;
    assert.equal(o2.usesCascade(decodeStep(8, 512), 8), true);
    assert.equal(o3.usesCascade(decodeStep(8, 512), 8), false);
    assert.notEqual(llama2.stepTimeMs(decodeStep(8, 512)), llama2.stepTimeMs(decodeStep(8, 0)));
    assert.equal(llama3.stepTimeMs(decodeStep(8, 512)), llama3.stepTimeMs(decodeStep(8, 0)));
    assert.equal(o3.usesCascade(decodeStep(17, 512), 17), true);
  });

  it('moves prefill chunks’ prefix pairs to the prefix kernel, and the terms still add up', () => {
    const o = llama3.operators!;
    // 9 chunks of 200 tokens, each after 600 computed tokens of which 512 are shared.
    const chunks: StepShape = {
      prefillSeqs: 9,
      prefillTokens: 1800,
      prefillAttentionPairs: 9 * (200 * 600 + (200 * 201) / 2),
      decodeSeqs: 0,
      decodeContextTokens: 0,
      commonPrefixTokens: 512,
    };
    const b = o.stepBreakdownMs(chunks);
    const plain = o.stepBreakdownMs({ ...chunks, commonPrefixTokens: 0 });
    assert.ok(b.cascadeAttentionMs > 0 && plain.cascadeAttentionMs === 0);
    assert.ok(b.prefillAttentionMs < plain.prefillAttentionMs);
    const parts =
      b.gemmMs +
      b.elementwiseMs +
      b.allReduceMs +
      b.prefillAttentionMs +
      b.decodeAttentionMs +
      b.cascadeAttentionMs;
    assert.ok(Math.abs(parts - b.gpuMs) < 1e-9);
    assert.ok(Math.abs(b.stepMs - o.stepTimeMs(chunks)) < 1e-9);
  });

  it('an engine without cascade attention (legacy-2023) and an ALiBi model ignore the prefix', () => {
    const legacy = perfModelFor('a100-80gb', 'llama-2-7b', 1, 'legacy-2023');
    assert.equal(legacy.stepTimeMs(decodeStep(64, 512)), legacy.stepTimeMs(decodeStep(64, 0)));
    const bloom = perfModelFor('h100', 'bloom-176b', 8);
    assert.equal(bloom.stepTimeMs(decodeStep(64, 512)), bloom.stepTimeMs(decodeStep(64, 0)));
  });

  it('the classic roofline (GPUs without an operator table) reads the prefix once too', () => {
    const l40s = perfModelFor('l40s', 'llama-2-7b', 1);
    assert.equal(l40s.operators, undefined);
    assert.ok(l40s.stepTimeMs(decodeStep(64, 512)) < l40s.stepTimeMs(decodeStep(64, 0)) * 0.8);
    assert.equal(l40s.stepTimeMs(decodeStep(64, 240)), l40s.stepTimeMs(decodeStep(64, 0)));
  });
});
