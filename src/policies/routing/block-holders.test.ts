import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { engineBlockHashes } from '../../engine/prefix.ts';
import { BlockHolderIndex, ChainCursor } from './block-holders.ts';

test('block holders: the lazy engine hashes equal engineBlockHashes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 12 }),
      fc.integer({ min: 1, max: 600 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 8000 }),
      (hashes, blockTokens, blockSize, inputTokens) => {
        const prefix = { blockTokens, hashes };
        const expected = engineBlockHashes(prefix, inputTokens, blockSize);
        const cursor = new ChainCursor().engineBlocks(prefix, inputTokens, blockSize);
        assert.equal(cursor.length, expected.length);
        for (const h of expected) assert.equal(cursor.next() >>> 0, h);
      },
    ),
  );
});

test('block holders: match agrees with a per-instance walk, holes and all', () => {
  type Op = [kind: 'add' | 'remove' | 'clear' | 'trim', slot: number, hash: number];
  const op = fc.tuple(
    fc.constantFrom<Op[0]>('add', 'add', 'add', 'remove', 'clear', 'trim'),
    fc.integer({ min: 0, max: 5 }),
    fc.integer({ min: 0, max: 7 }),
  );
  fc.assert(
    fc.property(
      fc.array(op, { maxLength: 80 }),
      fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 8 }),
      (ops, query) => {
        const index = new BlockHolderIndex();
        const naive: Set<number>[] = [];
        for (let s = 0; s < 6; s++) {
          index.register(`i${s}`);
          naive.push(new Set());
        }
        // Large hashes too, to exercise the int32 keys.
        const big = (h: number) => (h * 0x9e3779b1) >>> 0;
        for (const [kind, slot, hash] of ops) {
          const own = naive[slot] as Set<number>;
          if (kind === 'add') {
            index.add(slot, big(hash));
            own.delete(hash);
            own.add(hash);
          } else if (kind === 'remove') {
            index.remove(slot, big(hash));
            own.delete(hash);
          } else if (kind === 'clear') {
            index.clear(slot);
            own.clear();
          } else {
            index.trim(slot, hash);
            for (const h of own) if (own.size > hash) own.delete(h);
          }
        }
        const longest = index.match(query.map(big));
        let expectedLongest = 0;
        for (let s = 0; s < 6; s++) {
          let m = 0;
          while (m < query.length && (naive[s] as Set<number>).has(query[m] as number)) m++;
          assert.equal(index.matchedBlocks(s), m, `slot ${s}`);
          assert.equal(index.longestMatch(s, query.map(big)), m);
          assert.equal(index.size(s), (naive[s] as Set<number>).size);
          expectedLongest = Math.max(expectedLongest, m);
        }
        assert.equal(longest, expectedLongest);
        assert.equal(index.matchedBlocks(undefined), 0);
      },
    ),
    { numRuns: 500 },
  );
});

test('block holders: insertChain keeps each instance prefix-closed under its capacity', () => {
  const index = new BlockHolderIndex();
  const a = index.register('a');
  index.insertChain(a, [1, 2, 3, 4], 4, 6);
  index.insertChain(a, [1, 2, 7, 8], 4, 6);
  // Oldest to newest: 4, 3, 8, 7, 2, 1 (each insert touches its chain from the last block back).
  assert.equal(index.size(a), 6);
  index.insertChain(a, [9, 10], 2, 6);
  // Two more: the two oldest, 4 then 3 (children before parents), are evicted.
  assert.equal(index.longestMatch(a, [1, 2, 3, 4]), 2);
  assert.equal(index.longestMatch(a, [1, 2, 7, 8]), 4);
  assert.equal(index.longestMatch(a, [9, 10]), 2);
  assert.equal(index.slotOf('b'), undefined);
});

test('block holders: a long run shared by many instances is matched without visiting each holder', () => {
  const index = new BlockHolderIndex();
  const chain = Array.from({ length: 2000 }, (_, i) => (i * 2654435761) >>> 0);
  for (let s = 0; s < 500; s++) index.insertChain(index.register(`i${s}`), chain, 100 + (s % 3), 10_000);
  index.insertChain(index.register('deep'), chain, 2000, 10_000);
  assert.equal(index.match(chain), 2000);
  assert.equal(index.matchedBlocks(index.slotOf('i0')), 100);
  assert.equal(index.matchedBlocks(index.slotOf('i1')), 101);
  assert.equal(index.matchedBlocks(index.slotOf('i2')), 102);
  assert.equal(index.matchedBlocks(index.slotOf('deep')), 2000);
});

test('block holders: past the instance bound the least recently registered slot is recycled', () => {
  const index = new BlockHolderIndex(2);
  const a = index.register('a');
  const b = index.register('b');
  index.insertChain(a, [1, 2], 2, 10);
  index.insertChain(b, [1, 2, 3], 3, 10);
  index.register('a');
  const c = index.register('c');
  assert.equal(c, b, 'b was registered least recently');
  assert.equal(index.slotOf('b'), undefined);
  assert.equal(index.generation(c), 1);
  assert.equal(index.generation(a), 0);
  assert.equal(index.size(c), 0);
  assert.equal(index.match([1, 2, 3]), 2);
  assert.equal(index.matchedBlocks(index.slotOf('a')), 2);
  assert.equal(index.matchedBlocks(index.slotOf('c')), 0);
  assert.equal(index.slotCount, 2);
});
