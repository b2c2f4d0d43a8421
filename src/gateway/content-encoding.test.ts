import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contentEncodingRefusal } from './content-encoding.ts';

test('a plain body passes: no header, an empty one, identity in any case', () => {
  for (const header of [undefined, '', 'identity', ' Identity ', 'identity, identity'])
    assert.equal(contentEncodingRefusal(header), undefined, String(header));
});

test('any other coding is 415 SY_ERR_UNSUPPORTED_MEDIA_TYPE naming it', () => {
  for (const [header, named] of [
    ['gzip', 'gzip'],
    ['GZIP', 'gzip'],
    ['br', 'br'],
    ['identity, deflate', 'deflate'],
  ] as const) {
    const e = contentEncodingRefusal(header);
    assert.equal(e?.code, 'SY_ERR_UNSUPPORTED_MEDIA_TYPE', header);
    assert.equal(e.status, 415);
    assert.match(e.message, new RegExp(`'${named}'`));
    assert.equal(e.toJSON().error.param, 'content-encoding');
  }
});
