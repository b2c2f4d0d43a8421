import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  estimateTokens,
  renderChat,
  TEXT_BLOCK_CHARS,
  TEXT_BLOCK_TOKENS,
  textPrefixChain,
  tokenPrefixChain,
} from './text-prefix.ts';

describe('textPrefixChain', () => {
  it('hashes only full blocks', () => {
    assert.equal(textPrefixChain('x'.repeat(TEXT_BLOCK_CHARS - 1)).hashes.length, 0);
    assert.equal(textPrefixChain('x'.repeat(TEXT_BLOCK_CHARS * 3 + 5)).hashes.length, 3);
    assert.equal(textPrefixChain('').blockTokens, TEXT_BLOCK_TOKENS);
  });

  it('shares exactly the blocks of a common prefix', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 0, maxLength: 400 }), fc.string(), fc.string(), (shared, a, b) => {
        const ca = textPrefixChain(shared + a).hashes;
        const cb = textPrefixChain(shared + b).hashes;
        const full = Math.floor(shared.length / TEXT_BLOCK_CHARS);
        for (let i = 0; i < full; i++) assert.equal(ca[i], cb[i]);
      }),
    );
  });

  it('a different first block changes every later hash (it is a chain)', () => {
    const tail = 'y'.repeat(TEXT_BLOCK_CHARS * 2);
    const a = textPrefixChain('a'.repeat(TEXT_BLOCK_CHARS) + tail).hashes;
    const b = textPrefixChain('b'.repeat(TEXT_BLOCK_CHARS) + tail).hashes;
    assert.equal(a.length, 3);
    for (let i = 0; i < 3; i++) assert.notEqual(a[i], b[i]);
  });

  it('respects maxBlocks', () => {
    assert.equal(textPrefixChain('z'.repeat(TEXT_BLOCK_CHARS * 10), 4).hashes.length, 4);
  });
});

describe('tokenPrefixChain', () => {
  it('matches on shared id blocks and differs after', () => {
    const base = Array.from({ length: 40 }, (_, i) => i);
    const other = [...base.slice(0, 20), ...base.slice(20).map((v) => v + 1000)];
    const a = tokenPrefixChain(base).hashes;
    const b = tokenPrefixChain(other).hashes;
    assert.equal(a.length, 2);
    assert.equal(a[0], b[0]);
    assert.notEqual(a[1], b[1]);
  });

  it('distinguishes ids that differ only in high bytes', () => {
    const a = tokenPrefixChain(new Array(16).fill(1)).hashes[0];
    const b = tokenPrefixChain(new Array(16).fill(1 + 65536)).hashes[0];
    assert.notEqual(a, b);
  });
});

describe('renderChat and estimateTokens', () => {
  it('renders a longer conversation as an extension of the shorter one', () => {
    const turn1 = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'hi' },
    ];
    const turn2 = [...turn1, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'more' }];
    assert.ok(renderChat(turn2).startsWith(renderChat(turn1)));
    assert.notEqual(renderChat(turn1), renderChat([{ role: 'user', content: 'hi' }]));
  });

  it('estimates about four characters per token', () => {
    assert.equal(estimateTokens(''), 0);
    assert.equal(estimateTokens('abcde'), 2);
    assert.equal(estimateTokens('x'.repeat(400)), 100);
  });
});
