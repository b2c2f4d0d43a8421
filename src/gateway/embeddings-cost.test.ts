import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHARS_PER_TOKEN } from '../core/text-prefix.ts';
import { EMBEDDING_INPUT_TOKENS_MAX } from '../engine-servers/embeddings.ts';
import { EMBEDDING_INPUT_TOKENS_COST_MAX, embeddingsCost } from './request-build.ts';

describe('embeddingsCost and the engines per-input bound', () => {
  it('is the bound the built-in engines refuse past', () => {
    assert.equal(EMBEDDING_INPUT_TOKENS_COST_MAX, EMBEDDING_INPUT_TOKENS_MAX);
  });

  it('charges an input past the bound no more than one at the bound (the engine refuses it, runs nothing)', () => {
    const at = EMBEDDING_INPUT_TOKENS_MAX;
    const huge = 'x'.repeat(1024 * 1024);
    assert.deepEqual(embeddingsCost(huge), { inputs: 1, tokens: at });
    assert.deepEqual(embeddingsCost('y'.repeat(at * CHARS_PER_TOKEN)), { inputs: 1, tokens: at });
    assert.deepEqual(embeddingsCost(['a', huge]), { inputs: 2, tokens: 16 + at });
    assert.deepEqual(embeddingsCost(new Array(at * 4).fill(7)), { inputs: 1, tokens: at });
    assert.deepEqual(embeddingsCost([[1], new Array(at + 1).fill(7)]), { inputs: 2, tokens: 16 + at });
  });
});
