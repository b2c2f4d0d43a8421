import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BlockPool } from './block-pool.ts';

test('allocation takes truly free blocks before evicting cached ones', () => {
  const evicted: number[] = [];
  const pool = new BlockPool(3, (h) => evicted.push(h));
  const a = pool.allocate();
  const b = pool.allocate();
  assert.equal(pool.store(a, 100), true);
  pool.release(a);
  pool.release(b);
  assert.equal(pool.cachedFreeCount, 1);
  assert.equal(pool.freeCount, 3);
  // Two truly free blocks (the never-used one and b) go first.
  const x = pool.allocate();
  const y = pool.allocate();
  assert.notEqual(x, a);
  assert.notEqual(y, a);
  assert.deepEqual(evicted, []);
  assert.equal(pool.lookup(100), a);
  assert.equal(pool.allocate(), a);
  assert.deepEqual(evicted, [100]);
  assert.equal(pool.lookup(100), -1);
  pool.checkInvariants();
});

test('LRU evicts the least recently freed cached block; a hit revives it', () => {
  const evicted: number[] = [];
  const pool = new BlockPool(4, (h) => evicted.push(h));
  const blocks = [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()];
  blocks.forEach((b, i) => {
    pool.store(b, 10 + i);
  });
  // Freed in the order 2, 0, 3, 1.
  for (const i of [2, 0, 3, 1]) pool.release(blocks[i]!);
  // A hit on hash 10 (block 0) takes it out of the LRU; released again, it becomes most recent.
  const hit = pool.lookup(10);
  assert.equal(hit, blocks[0]);
  pool.touch(hit);
  assert.equal(pool.refCount(hit), 1);
  assert.equal(pool.freeCount, 3);
  pool.release(hit);
  pool.checkInvariants();
  for (let i = 0; i < 4; i++) pool.allocate();
  assert.deepEqual(evicted, [12, 13, 11, 10]);
  assert.equal(pool.freeCount, 0);
  pool.checkInvariants();
});

test('store refuses a hash another block already holds', () => {
  const pool = new BlockPool(2);
  const a = pool.allocate();
  const b = pool.allocate();
  assert.equal(pool.store(a, 7), true);
  assert.equal(pool.store(b, 7), false);
  assert.equal(pool.hashOf(b), undefined);
  pool.release(b);
  pool.release(a);
  assert.equal(pool.cachedFreeCount, 1);
  pool.checkInvariants();
});

test('random allocate/store/touch/release keeps the pool consistent', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 })), { maxLength: 200 }),
      (numBlocks, ops) => {
        const pool = new BlockPool(numBlocks);
        const held: number[] = [];
        for (const [kind, arg] of ops) {
          if (kind === 0 && pool.freeCount > 0) {
            held.push(pool.allocate());
          } else if (kind === 1 && held.length > 0) {
            const b = held[arg % held.length]!;
            if (pool.hashOf(b) === undefined) pool.store(b, arg);
          } else if (kind === 2) {
            const b = pool.lookup(arg);
            if (b >= 0) {
              pool.touch(b);
              held.push(b);
            }
          } else if (kind === 3 && held.length > 0) {
            pool.release(held.splice(arg % held.length, 1)[0]!);
          }
          pool.checkInvariants();
          assert.equal(pool.usedCount, new Set(held).size);
        }
        for (const b of held) pool.release(b);
        pool.checkInvariants();
        assert.equal(pool.freeCount, numBlocks);
      },
    ),
  );
});

test('hash index: lookups agree with a Map through stores and evictions, colliding keys included', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      // Keys from a small set so stores collide and duplicate; floats, negatives and large uint32s
      // take the index's non-uint32 hashing path as well as its common one.
      fc.array(
        fc.tuple(
          fc.integer({ min: 0, max: 3 }),
          fc.constantFrom(0, 1, 2, 3, 17, 33, 65, 2 ** 31, 2 ** 32 - 1, -1, -0.5, 1.5, 1e300, 12345.678),
          fc.nat(),
        ),
        { maxLength: 300 },
      ),
      (numBlocks, ops) => {
        const evicted: number[] = [];
        const pool = new BlockPool(numBlocks, (hash) => evicted.push(hash));
        const model = new Map<number, number>();
        const held: number[] = [];
        for (const [kind, key, pick] of ops) {
          if (kind === 0 && pool.freeCount > 0) {
            evicted.length = 0;
            const b = pool.allocate();
            for (const hash of evicted) model.delete(hash);
            held.push(b);
          } else if (kind === 1 && held.length > 0) {
            const b = held[pick % held.length]!;
            if (pool.hashOf(b) === undefined) {
              const fresh = !model.has(key);
              assert.equal(pool.store(b, key), fresh);
              if (fresh) model.set(key, b);
            }
          } else if (kind === 2 && held.length > 0) {
            pool.release(held.splice(pick % held.length, 1)[0]!);
          } else if (kind === 3) {
            const b = pool.lookup(key);
            assert.equal(b, model.get(key) ?? -1);
            if (b >= 0) {
              pool.touch(b);
              held.push(b);
            }
          }
          assert.equal(pool.hashedCount, model.size);
          for (const [hash, block] of model) assert.equal(pool.lookup(hash), block);
        }
        pool.checkInvariants();
      },
    ),
    { numRuns: 300 },
  );
});

test('hash index: a full pool of hashed blocks stays reachable after evicting any of them', () => {
  const numBlocks = 1000;
  const pool = new BlockPool(numBlocks);
  const blocks: number[] = [];
  // Sequential small ids, as Mooncake hash_ids are, exercise clustering in the probe runs.
  for (let i = 0; i < numBlocks; i++) {
    const b = pool.allocate();
    assert.equal(pool.store(b, i), true);
    blocks.push(b);
  }
  for (const b of blocks) pool.release(b);
  // Evict the older half (LRU order), then check the rest are all still found.
  for (let i = 0; i < numBlocks / 2; i++) pool.allocate();
  for (let i = 0; i < numBlocks; i++) {
    assert.equal(pool.lookup(i), i < numBlocks / 2 ? -1 : blocks[i]);
  }
  pool.checkInvariants();
});
