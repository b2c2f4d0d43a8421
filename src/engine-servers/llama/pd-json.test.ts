import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseJsonObject } from './pd.ts';

test('the llama P/D fronts pass a body that is not UTF-8 through as it came (the inner server answers 400)', () => {
  const body = (content: Buffer) =>
    Buffer.concat([
      Buffer.from('{"kv_transfer_params":{"do_remote_decode":true},"prompt":"caf'),
      content,
      Buffer.from('"}'),
    ]);
  assert.equal(parseJsonObject(body(Buffer.from([0xe9]))), undefined);
  assert.deepEqual(parseJsonObject(body(Buffer.from('é'))), {
    kv_transfer_params: { do_remote_decode: true },
    prompt: 'café',
  });
});
