import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contextOverflow, fitsContext } from './context.ts';

test('a request fits when prompt + max_tokens reaches the context exactly; one token more does not', () => {
  assert.equal(fitsContext(4096, 4000, 96), true);
  assert.equal(fitsContext(4096, 4000, 97), false);
  assert.deepEqual(contextOverflow(4096, 4000, 97), {
    requestedTokens: 4097,
    completionTokens: 97,
    param: 'max_tokens',
  });
});

test('without max_tokens the prompt must leave room for one token; a prompt that fills it blames the prompt', () => {
  assert.equal(fitsContext(4096, 4095, undefined), true);
  assert.equal(fitsContext(4096, 4096, undefined), false);
  assert.deepEqual(contextOverflow(4096, 4096, undefined), {
    requestedTokens: 4097,
    completionTokens: 1,
    param: 'prompt',
  });
  // A prompt past the context is the prompt's fault, whatever max_tokens says.
  assert.equal(fitsContext(4096, 5000, 1), false);
  assert.equal(contextOverflow(4096, 5000, 1).param, 'prompt');
});
