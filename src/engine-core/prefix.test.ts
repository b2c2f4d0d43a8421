import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { engineBlockHashes, engineBlockHashesU32 } from './prefix.ts';

test('a 512-token chain block splits into 32 engine blocks of 16', () => {
  const hashes = engineBlockHashes({ blockTokens: 512, hashes: [1, 2, 3] }, 1400, 16);
  // Covered: min(1400, 1536) = 1400 tokens, 87 full blocks.
  assert.equal(hashes.length, 87);
  assert.equal(new Set(hashes).size, 87);
  assert.equal(engineBlockHashes({ blockTokens: 512, hashes: [1] }, 1400, 16).length, 32);
  assert.deepEqual(engineBlockHashes({ blockTokens: 512, hashes: [] }, 1400, 16), []);
  assert.deepEqual(engineBlockHashes({ blockTokens: 512, hashes: [1] }, 15, 16), []);
});

test('chains sharing k blocks share exactly the engine blocks that end inside them', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 64 }),
      fc.array(fc.integer({ min: 0, max: 1e6 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 0, max: 12 }),
      fc.integer({ min: 1, max: 900 }),
      (blockTokens, blockSize, chain, k, inputTokens) => {
        const shared = Math.min(k, chain.length);
        // A second chain equal on the first `shared` blocks and different after.
        const other = chain.map((h, i) => (i < shared ? h : h + 1e7 + i));
        const a = engineBlockHashes({ blockTokens, hashes: chain }, inputTokens, blockSize);
        const b = engineBlockHashes({ blockTokens, hashes: other }, inputTokens, blockSize);
        const expectedLength = Math.floor(Math.min(inputTokens, chain.length * blockTokens) / blockSize);
        assert.equal(a.length, expectedLength);
        assert.equal(b.length, expectedLength);
        const sharedEngine = Math.min(expectedLength, Math.floor((shared * blockTokens) / blockSize));
        for (let e = 0; e < expectedLength; e++) {
          if (e < sharedEngine) assert.equal(a[e], b[e], `block ${e} should match`);
          else assert.notEqual(a[e], b[e], `block ${e} should differ`);
        }
        // Deterministic.
        assert.deepEqual(engineBlockHashes({ blockTokens, hashes: chain }, inputTokens, blockSize), a);
      },
    ),
  );
});

test('a longer prompt extends the same chain', () => {
  const short = engineBlockHashes({ blockTokens: 8, hashes: [5, 6, 7, 8] }, 20, 4);
  const long = engineBlockHashes({ blockTokens: 8, hashes: [5, 6, 7, 8] }, 32, 4);
  assert.deepEqual(long.slice(0, short.length), short);
  assert.equal(long.length, 8);
});

test("engineBlockHashesU32 (the twin's per-block mode) holds the same hashes as engineBlockHashes", () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 40 }),
      fc.integer({ min: 1, max: 1024 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 30_000 }),
      (chain, blockTokens, blockSize, inputTokens) => {
        const prefix = { blockTokens, hashes: chain };
        const wide = engineBlockHashes(prefix, inputTokens, blockSize);
        const narrow = engineBlockHashesU32(prefix, inputTokens, blockSize);
        assert.ok(narrow instanceof Uint32Array);
        assert.deepEqual(Array.from(narrow), wide);
      },
    ),
  );
});
