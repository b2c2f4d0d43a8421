import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vllmSamplingOf } from './vllm-extras.ts';

test('ignore_eos is read as vLLM reads it: true asks, false and null do not, anything else is 400 naming it', () => {
  assert.deepEqual(vllmSamplingOf({ ignore_eos: true }), { ignoreEos: true });
  assert.deepEqual(vllmSamplingOf({ ignore_eos: false }), {});
  assert.deepEqual(vllmSamplingOf({ ignore_eos: null }), {});
  assert.deepEqual(vllmSamplingOf({ top_k: -1, ignore_eos: true }), { topK: 0, ignoreEos: true });
  for (const bad of ['yes', 1, {}])
    assert.throws(
      () => vllmSamplingOf({ ignore_eos: bad }),
      (e: Error & { code?: string; details?: unknown }) => {
        assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.match(e.message, /ignore_eos: expected true or false/);
        return true;
      },
    );
});
