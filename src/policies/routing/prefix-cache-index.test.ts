import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CHAIN_ROOT, chainHash } from '../../core/hash.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { PrefixChain } from '../../core/request.ts';
import { engineBlockHashes } from '../../engine-core/prefix.ts';
import { testCluster } from './conformance.ts';
import { ChainCursor, PREFIX_INDEX_SWEEP_EVERY, PrefixCacheIndex } from './prefix-cache-index.ts';

/** A real chain: hash i identifies tokens 0..i. */
function chainOf(tokens: readonly number[]): number[] {
  const out: number[] = [];
  let h = CHAIN_ROOT;
  for (const t of tokens) {
    h = chainHash(h, t);
    out.push(h);
  }
  return out;
}

function prefix(hashes: readonly number[], blockTokens = 16): PrefixChain {
  return { blockTokens, hashes };
}

const stored = (hashes: readonly number[]): KvEvent => ({
  type: 'BlockStored',
  hashes,
  parentHash: undefined,
});
const removed = (hashes: readonly number[]): KvEvent => ({ type: 'BlockRemoved', hashes });
const cleared: KvEvent = { type: 'AllBlocksCleared' };

/** The brute force: per instance, its blocks in recency order (oldest first) in a plain Set. */
class Naive {
  readonly sets: Set<number>[] = [];
  constructor(instances: number) {
    for (let s = 0; s < instances; s++) this.sets.push(new Set());
  }
  touch(slot: number, hash: number): void {
    const own = this.sets[slot] as Set<number>;
    own.delete(hash);
    own.add(hash);
  }
  trim(slot: number, capacity: number): void {
    const own = this.sets[slot] as Set<number>;
    for (const h of own) if (own.size > capacity) own.delete(h);
  }
  learn(slot: number, hashes: readonly number[], capacity: number): void {
    for (let i = Math.min(hashes.length, capacity) - 1; i >= 0; i--) this.touch(slot, hashes[i] as number);
    this.trim(slot, capacity);
  }
  longest(slot: number, query: readonly number[]): number {
    const own = this.sets[slot] as Set<number>;
    let m = 0;
    while (m < query.length && own.has(query[m] as number)) m++;
    return m;
  }
}

test('prefix cache index: learned match agrees with the brute force on random chains, within capacity', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 5 }), fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 8 })),
        { maxLength: 40 },
      ),
      fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 10 }),
      fc.integer({ min: 1, max: 12 }),
      (learns, query, capacity) => {
        const index = new PrefixCacheIndex({ capacity: { blocks: capacity } });
        const naive = new Naive(6);
        for (let s = 0; s < 6; s++) index.register(`i${s}`);
        for (const [slot, tokens] of learns) {
          index.learn(slot, prefix(chainOf(tokens)));
          naive.learn(slot, chainOf(tokens), capacity);
        }
        assert.ok(index.prefixClosed);
        const hashes = chainOf(query);
        const longest = index.match(hashes);
        let expectedLongest = 0;
        for (let s = 0; s < 6; s++) {
          const expected = naive.longest(s, hashes);
          assert.equal(index.matchedBlocks(s), expected, `slot ${s}`);
          assert.equal(index.longestMatch(s, hashes), expected);
          assert.equal(index.size(s), (naive.sets[s] as Set<number>).size);
          assert.ok(index.size(s) <= capacity);
          expectedLongest = Math.max(expectedLongest, expected);
        }
        assert.equal(longest, expectedLongest);
        assert.equal(index.matchedBlocks(undefined), 0);
      },
    ),
    { numRuns: 300 },
  );
});

test('prefix cache index: KV-event match agrees with the brute force, holes and all', () => {
  type Op = [kind: 'store' | 'remove' | 'clear', slot: number, hash: number];
  const op = fc.tuple(
    fc.constantFrom<Op[0]>('store', 'store', 'store', 'remove', 'clear'),
    fc.integer({ min: 0, max: 5 }),
    fc.integer({ min: 0, max: 7 }),
  );
  fc.assert(
    fc.property(
      fc.array(op, { maxLength: 80 }),
      fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 8 }),
      fc.integer({ min: 1, max: 9 }),
      (ops, query, capacity) => {
        const index = new PrefixCacheIndex({ capacity: { blocks: capacity } });
        const naive = new Naive(6);
        for (let s = 0; s < 6; s++) index.register(`i${s}`);
        // Large hashes too, to exercise the int32 keys.
        const big = (h: number) => (h * 0x9e3779b1) >>> 0;
        for (const [kind, slot, hash] of ops) {
          if (kind === 'store') {
            index.applyKvEvent(slot, stored([big(hash)]));
            naive.touch(slot, hash);
            naive.trim(slot, capacity);
          } else if (kind === 'remove') {
            index.applyKvEvent(slot, removed([big(hash)]));
            (naive.sets[slot] as Set<number>).delete(hash);
          } else {
            index.applyKvEvent(slot, cleared);
            (naive.sets[slot] as Set<number>).clear();
          }
        }
        const longest = index.match(query.map(big));
        let expectedLongest = 0;
        for (let s = 0; s < 6; s++) {
          const expected = naive.longest(s, query);
          assert.equal(index.matchedBlocks(s), expected, `slot ${s}`);
          assert.equal(index.longestMatch(s, query.map(big)), expected);
          assert.equal(index.size(s), (naive.sets[s] as Set<number>).size);
          expectedLongest = Math.max(expectedLongest, expected);
        }
        assert.equal(longest, expectedLongest);
      },
    ),
    { numRuns: 500 },
  );
});

test('prefix cache index: the lazy engine hashes equal engineBlockHashes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 12 }),
      fc.integer({ min: 1, max: 600 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 8000 }),
      (hashes, blockTokens, blockSize, inputTokens) => {
        const chain = { blockTokens, hashes };
        const expected = engineBlockHashes(chain, inputTokens, blockSize);
        const cursor = new ChainCursor().engineBlocks(chain, inputTokens, blockSize);
        assert.equal(cursor.length, expected.length);
        for (const h of expected) assert.equal(cursor.next() >>> 0, h);
      },
    ),
  );
});

test('prefix cache index: a prompt matched through the cursor equals its KV events', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 1000 } });
  const chain = prefix(chainOf([1, 2, 3, 4, 5]), 64);
  const engine = engineBlockHashes(chain, 320, 16);
  index.applyKvEvent(index.register('a'), stored(engine.slice(0, 12)));
  index.applyKvEvent(index.register('b'), stored(engine));
  index.applyKvEvent(index.slotOf('b') as number, removed([engine[7] as number]));
  assert.equal(index.matchCursor(new ChainCursor().engineBlocks(chain, 320, 16)), 12);
  assert.equal(index.matchedBlocks(index.slotOf('a')), 12);
  assert.equal(index.matchedBlocks(index.slotOf('b')), 7);
});

test('prefix cache index: learning keeps each instance prefix-closed under its LRU capacity', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 6 } });
  const a = index.register('a');
  index.learn(a, prefix([1, 2, 3, 4]));
  index.learn(a, prefix([1, 2, 7, 8]));
  // Oldest to newest: 4, 3, 8, 7, 2, 1 (each learn touches its chain from the last block back).
  assert.equal(index.size(a), 6);
  index.learn(a, prefix([9, 10]));
  // Two more: the two oldest, 4 then 3 (children before parents), are evicted.
  assert.equal(index.longestMatch(a, [1, 2, 3, 4]), 2);
  assert.equal(index.longestMatch(a, [1, 2, 7, 8]), 4);
  assert.equal(index.longestMatch(a, [9, 10]), 2);
  assert.equal(index.match([1, 2, 7, 8, 11]), 4);
  assert.equal(index.slotOf('b'), undefined);
  assert.equal(index.size(undefined), 0);
});

test('prefix cache index: a chain longer than the capacity is learned from its first block', () => {
  const index = new PrefixCacheIndex({ capacity: { tokens: 48 } });
  const a = index.register('a');
  // 48 tokens of 16-token blocks: three.
  index.learn(a, prefix(chainOf([1, 2, 3, 4, 5])));
  assert.equal(index.size(a), 3);
  assert.equal(index.match(chainOf([1, 2, 3, 4, 5])), 3);
  // Of 8-token blocks, six.
  index.learn(a, prefix(chainOf([6, 7, 8, 9, 10, 11, 12]), 8));
  assert.equal(index.size(a), 6);
});

test('prefix cache index: a long run shared by many instances is matched without visiting each holder', () => {
  const chain = chainOf(Array.from({ length: 2000 }, (_, i) => i));
  const learned = new PrefixCacheIndex({ capacity: { blocks: 10_000 } });
  const events = new PrefixCacheIndex({ capacity: { blocks: 10_000 } });
  for (let s = 0; s < 500; s++) {
    learned.learn(learned.register(`i${s}`), prefix(chain.slice(0, 100 + (s % 3))));
    events.applyKvEvent(events.register(`i${s}`), stored(chain.slice(0, 100 + (s % 3))));
  }
  learned.learn(learned.register('deep'), prefix(chain));
  events.applyKvEvent(events.register('deep'), stored(chain));
  assert.ok(learned.prefixClosed);
  assert.ok(!events.prefixClosed);
  for (const index of [learned, events]) {
    assert.equal(index.match(chain), 2000);
    assert.equal(index.matchedBlocks(index.slotOf('i0')), 100);
    assert.equal(index.matchedBlocks(index.slotOf('i1')), 101);
    assert.equal(index.matchedBlocks(index.slotOf('i2')), 102);
    assert.equal(index.matchedBlocks(index.slotOf('deep')), 2000);
  }
});

test('prefix cache index: learned chains that break the chain contract fall back to the walk', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 100 } });
  // Hash 2 at position 1 under two different parents: the holder sets are not nested.
  index.learn(index.register('a'), prefix([1, 2]));
  index.learn(index.register('b'), prefix([3, 2]));
  assert.equal(index.match([1, 2]), 2);
  assert.equal(index.matchedBlocks(index.slotOf('a')), 2);
  assert.equal(index.matchedBlocks(index.slotOf('b')), 0);
});

test('prefix cache index: KV events add, remove and clear per instance', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 100 } });
  const a = index.register('a');
  const b = index.register('b');
  index.applyKvEvent(a, stored([1, 2, 3, 4]));
  index.applyKvEvent(b, stored([1, 2, 9]));
  assert.equal(index.match([1, 2, 3, 7]), 3);
  assert.equal(index.matchedBlocks(a), 3);
  assert.equal(index.matchedBlocks(b), 2);
  assert.equal(index.match([5, 1, 2]), 0);
  assert.equal(index.distinctBlocks, 5);
  index.applyKvEvent(a, removed([2]));
  index.match([1, 2, 3, 4]);
  assert.equal(index.matchedBlocks(a), 1, 'a hole at block 2 ends the match');
  assert.equal(index.matchedBlocks(b), 2);
  assert.ok(!index.has(a, 2));
  index.applyKvEvent(b, cleared);
  assert.equal(index.size(b), 0);
  assert.equal(index.match([1, 2]), 1);
  assert.equal(index.matchedBlocks(b), 0);
  assert.equal(index.distinctBlocks, 3);
});

test('prefix cache index: stored blocks past the bound evict the oldest stored first', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 3 } });
  const a = index.register('a');
  index.applyKvEvent(a, stored([1, 2, 3]));
  index.applyKvEvent(a, stored([1]));
  index.applyKvEvent(a, stored([4]));
  // 1 was stored again, so 2 is the oldest.
  assert.deepEqual(
    [1, 2, 3, 4].map((h) => index.has(a, h)),
    [true, false, true, true],
  );
});

test('prefix cache index: the kv-cache capacity is the instance KV cache, in chain or engine blocks', () => {
  // 100 engine blocks of 16 tokens = 1,600 tokens = 3 chain blocks of 512 tokens.
  const view = testCluster(2, () => ({ kvBlocksTotal: 100, blockSize: 16 }));
  const learned = new PrefixCacheIndex();
  learned.observe(view);
  const a = learned.register('i0');
  learned.learn(a, prefix(chainOf([1, 2, 3, 4, 5, 6]), 512));
  assert.equal(learned.size(a), 3);
  assert.equal(learned.longestMatch(a, chainOf([1, 2, 3, 4])), 3);
  const events = new PrefixCacheIndex({ capacity: 'kv-cache' });
  events.observe(view);
  const b = events.register('i1');
  events.applyKvEvent(b, stored(Array.from({ length: 150 }, (_, i) => i)));
  assert.equal(events.size(b), 100);
});

test('prefix cache index: instances gone from the observed view are dropped on the next sweep', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 100 } });
  index.observe(testCluster(3));
  const gone = index.register('i2');
  index.learn(gone, prefix(chainOf([1, 2])));
  assert.equal(index.size(gone), 2);
  index.observe(testCluster(2));
  for (let r = 0; r < PREFIX_INDEX_SWEEP_EVERY; r++) index.learn(index.register('i0'), prefix(chainOf([3])));
  assert.equal(index.slotOf('i2'), undefined);
  assert.equal(index.size(gone), 0);
  assert.equal(index.generation(gone), 1);
  assert.equal(index.instances, 1);
  assert.equal(index.match(chainOf([1, 2])), 0);
});

test('prefix cache index: past the instance bound the least recently registered slot is recycled', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 10 }, instancesMax: 2 });
  const a = index.register('a');
  const b = index.register('b');
  index.learn(a, prefix([1, 2]));
  index.learn(b, prefix([1, 2, 3]));
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
  assert.equal(index.instances, 2);
});

test('prefix cache index: match results survive the stamp counters wrapping', () => {
  const index = new PrefixCacheIndex({ capacity: { blocks: 10 } });
  index.learn(index.register('a'), prefix([1, 2, 3]));
  index.learn(index.register('b'), prefix([1]));
  // Stamps are int32: force both counters to the edge instead of running 2^31 matches.
  const stamps = index as unknown as { matchStamp: number; markStamp: number };
  stamps.matchStamp = 0x7ffffffe;
  stamps.markStamp = 0x7ffffffe;
  for (let r = 0; r < 3; r++) {
    assert.equal(index.match([1, 2, 3]), 3);
    assert.equal(index.matchedBlocks(index.slotOf('a')), 3);
    assert.equal(index.matchedBlocks(index.slotOf('b')), 1);
  }
});

test('ChainCursor: an exact chain is read as it is at its own block size, limited to full prompt blocks', () => {
  const prefix = { blockTokens: 16, hashes: [0xffffffff, 7, 0x80000000], exact: true };
  const read = (inputTokens: number, blockSize: number): number[] => {
    const c = new ChainCursor().engineBlocks(prefix, inputTokens, blockSize);
    return Array.from({ length: c.length }, () => c.next() >>> 0);
  };
  assert.deepEqual(read(48, 16), [0xffffffff, 7, 0x80000000]);
  assert.deepEqual(read(100, 16), [0xffffffff, 7, 0x80000000]);
  assert.deepEqual(read(47, 16), [0xffffffff, 7]);
  // The engine's hashes at 16 tokens say nothing about blocks of another size.
  assert.deepEqual(read(48, 32), []);
});
