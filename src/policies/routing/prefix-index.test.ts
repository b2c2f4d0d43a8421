import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PrefixIndex } from './prefix-index.ts';

test('prefix index: longest leading match per instance, only on truly shared blocks', () => {
  const index = new PrefixIndex();
  index.insert('a', [1, 2, 3, 4], 100);
  index.insert('b', [1, 2, 9], 100);
  assert.equal(index.longestMatch('a', [1, 2, 3, 7]), 3);
  assert.equal(index.longestMatch('b', [1, 2, 3, 7]), 2);
  assert.equal(index.longestMatch('a', [5, 1, 2]), 0);
  const m = index.matchAll([1, 2, 3, 4, 5]);
  assert.equal(m.matched[index.slot('a')], 4);
  assert.equal(m.matched[index.slot('b')], 2);
  assert.equal(index.matchAll([8]).slots.length, 0);
});

test('prefix index: LRU per instance evicts the least recently used blocks, children first', () => {
  const index = new PrefixIndex();
  index.insert('a', [1, 2, 3], 4);
  index.insert('a', [7, 8], 4); // capacity 4: evicts 3 (the oldest child), keeps 1, 2
  assert.equal(index.size('a'), 4);
  assert.equal(index.longestMatch('a', [1, 2, 3]), 2);
  assert.equal(index.longestMatch('a', [7, 8]), 2);
  index.remove('a', 7);
  assert.equal(index.longestMatch('a', [7, 8]), 0);
  index.clear('a');
  assert.equal(index.size('a'), 0);
});

test('prefix index: matchAll agrees with longestMatch on random chains', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 4 }), fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 6 })),
        {
          maxLength: 30,
        },
      ),
      fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 6 }),
      fc.integer({ min: 1, max: 8 }),
      (inserts, query, capacity) => {
        const index = new PrefixIndex();
        for (const [inst, chain] of inserts) index.insert(`i${inst}`, chain, capacity);
        const m = index.matchAll(query);
        for (let k = 0; k < 5; k++) {
          const id = `i${k}`;
          const expected = index.longestMatch(id, query);
          const got = index.size(id) === 0 && expected === 0 ? 0 : m.matched[index.slot(id)];
          assert.equal(got, expected, `instance ${id}`);
          assert.ok(index.size(id) <= capacity);
        }
      },
    ),
  );
});
