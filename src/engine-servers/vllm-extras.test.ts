import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vllmSamplingOf } from './vllm-extras.ts';

test('ignore_eos is read as vLLM reads it: true asks, false and null do not, anything else is 400 naming it', () => {
  assert.deepEqual(vllmSamplingOf({ ignore_eos: true }, 'chat'), { ignoreEos: true });
  assert.deepEqual(vllmSamplingOf({ ignore_eos: false }, 'chat'), {});
  assert.deepEqual(vllmSamplingOf({ ignore_eos: null }, 'chat'), {});
  assert.deepEqual(vllmSamplingOf({ top_k: -1, ignore_eos: true }, 'chat'), { topK: 0, ignoreEos: true });
  for (const bad of ['yes', 1, {}])
    assert.throws(
      () => vllmSamplingOf({ ignore_eos: bad }, 'chat'),
      (e: Error & { code?: string; details?: unknown }) => {
        assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.match(e.message, /ignore_eos: expected true or false/);
        return true;
      },
    );
});

test('the chat rendering fields are read on chat bodies only, as vLLM has them only on chat', () => {
  const contradiction = { continue_final_message: true, add_generation_prompt: true };
  assert.throws(() => vllmSamplingOf(contradiction, 'chat'), /continue_final_message: cannot be true/);
  assert.throws(() => vllmSamplingOf({ add_generation_prompt: 'no' }, 'chat'), /add_generation_prompt/);
  assert.deepEqual(vllmSamplingOf({ add_generation_prompt: false }, 'chat'), {
    chatEnd: 'no-generation-prompt',
  });
  // vLLM's CompletionRequest has neither field and ignores them: served, and they change nothing.
  assert.deepEqual(vllmSamplingOf(contradiction, 'completion'), {});
  assert.deepEqual(
    vllmSamplingOf({ add_generation_prompt: 'no', continue_final_message: 1 }, 'completion'),
    {},
  );
  assert.deepEqual(vllmSamplingOf({ add_generation_prompt: false }, 'completion'), {});
  assert.deepEqual(vllmSamplingOf({ ...contradiction, ignore_eos: true }, 'completion'), { ignoreEos: true });
});
