/**
 * The gateway hashes every prompt with core's `textPrefixChain`, which is written for speed (code
 * units copied into a typed array, four blocks hashed side by side). Its values must stay exactly
 * those of the plain definition: FNV-1a over each block's UTF-16 code units, chained with
 * `chainHash`. The sim engine and the KV-event policies compute the same chains.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CHAIN_ROOT, chainHash } from '../core/hash.ts';
import { ChatChainWriter, renderChat, TEXT_BLOCK_CHARS, textPrefixChain } from '../core/text-prefix.ts';

function reference(text: string, maxBlocks = 1 << 16): number[] {
  const count = Math.min(Math.floor(text.length / TEXT_BLOCK_CHARS), maxBlocks);
  const out: number[] = [];
  let parent = CHAIN_ROOT;
  for (let b = 0; b < count; b++) {
    let h = 0x811c9dc5;
    for (let i = b * TEXT_BLOCK_CHARS; i < (b + 1) * TEXT_BLOCK_CHARS; i++)
      h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    parent = chainHash(parent, h >>> 0);
    out.push(parent);
  }
  return out;
}

describe('textPrefixChain (fast) equals the plain definition', () => {
  it('on any text, lone surrogates included, with and without maxBlocks', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 1200 }),
          fc.string({ unit: 'binary', maxLength: 1200 }),
          fc
            .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 1200 })
            .map((a) => String.fromCharCode(...a)),
        ),
        fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
        (text, maxBlocks) => {
          assert.deepEqual(textPrefixChain(text, maxBlocks).hashes, reference(text, maxBlocks));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('on texts longer than its scratch space, and after them on short ones', () => {
    const long = Array.from({ length: 30_000 }, (_, i) =>
      String.fromCharCode(32 + ((i * 7919) % 60000)),
    ).join('');
    assert.deepEqual(textPrefixChain(long).hashes, reference(long));
    const short = `${'abc'.repeat(100)}\u00e9\u{1f600}`;
    assert.deepEqual(textPrefixChain(short).hashes, reference(short));
    const rope = `${'x'.repeat(100)}${long.slice(5, 9000)}${'y'.repeat(77)}`;
    assert.deepEqual(textPrefixChain(rope).hashes, reference(rope));
  });
});

describe('ChatChainWriter', () => {
  it('gives the length and chain of renderChat then textPrefixChain, growing past its scratch space', () => {
    const writer = new ChatChainWriter();
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            role: fc.constantFrom('system', 'user', 'assistant', 'x'),
            content: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 3000 })),
          }),
          { maxLength: 8 },
        ),
        (messages) => {
          writer.reset();
          for (const m of messages) {
            writer.startMessage(m.role);
            writer.append(m.content);
            writer.endMessage();
          }
          const text = renderChat(messages);
          assert.equal(writer.length, text.length);
          assert.deepEqual(writer.chain(), textPrefixChain(text));
          assert.deepEqual(writer.chain(3), textPrefixChain(text, 3));
        },
      ),
      { numRuns: 200 },
    );
  });
});
