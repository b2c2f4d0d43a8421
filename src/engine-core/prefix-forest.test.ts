import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { engineBlockHashes } from './prefix.ts';
import { PrefixForest, type PrefixPath } from './prefix-forest.ts';

/** The node and place of each engine block of a path. */
function places(forest: PrefixForest, path: PrefixPath): string[] {
  const out: string[] = [];
  for (const node of path.nodes) {
    const first = forest.firstBlockOf(node);
    for (let sub = 0; sub < forest.sizeOfNode(node) && first + sub < path.blocks; sub++)
      out.push(`${node}/${sub}`);
  }
  return out;
}

test('property: paths name the same blocks alike exactly where engineBlockHashes agree', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 64 }),
      fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 0, maxLength: 10 }),
      fc.integer({ min: 0, max: 10 }),
      fc.integer({ min: 1, max: 900 }),
      fc.integer({ min: 1, max: 900 }),
      (blockTokens, blockSize, chain, shared, inputA, inputB) => {
        // Chain values stand for their prefix: a second chain equal on `shared` blocks, then its own.
        const other = chain.map((h, i) => (i < shared ? h : 1000 + h + i));
        const forest = new PrefixForest(blockSize);
        const a = forest.path({ blockTokens, hashes: chain }, inputA);
        const b = forest.path({ blockTokens, hashes: other }, inputB);
        const ha = engineBlockHashes({ blockTokens, hashes: chain }, inputA, blockSize);
        const hb = engineBlockHashes({ blockTokens, hashes: other }, inputB, blockSize);
        const pa = places(forest, a);
        const pb = places(forest, b);
        assert.equal(pa.length, ha.length);
        assert.equal(pb.length, hb.length);
        for (let e = 0; e < Math.min(ha.length, hb.length); e++)
          assert.equal(pa[e] === pb[e], ha[e] === hb[e]);
        // Exact ids are distinct per place and stable while the nodes live.
        const ids = forest.blockIds(a);
        assert.equal(new Set(ids).size, ids.length);
        assert.deepEqual(forest.blockIds(forest.path({ blockTokens, hashes: chain }, inputA)), ids);
      },
    ),
  );
});

test('a released path leaves the forest empty; a shared prefix stays while one path holds it', () => {
  const forest = new PrefixForest(16);
  const a = forest.path({ blockTokens: 512, hashes: [7, 8, 9] }, 1500);
  const b = forest.path({ blockTokens: 512, hashes: [7, 8, 10] }, 1536);
  assert.equal(a.blocks, 93);
  assert.equal(b.blocks, 96);
  assert.equal(a.nodes[1], b.nodes[1]);
  assert.notEqual(a.nodes[2], b.nodes[2]);
  assert.equal(forest.nodeCount, 4);
  forest.release(a);
  assert.equal(forest.nodeCount, 3);
  forest.release(b);
  assert.equal(forest.nodeCount, 0);
});

test('engine hashes given as they are make a path of one-block nodes', () => {
  const forest = new PrefixForest(16);
  const path = forest.pathOfHashes([5, 6, 7]);
  assert.equal(path.blocks, 3);
  assert.deepEqual(
    path.nodes.map((n) => [forest.firstBlockOf(n), forest.sizeOfNode(n)]),
    [
      [0, 1],
      [1, 1],
      [2, 1],
    ],
  );
  assert.equal(forest.pathOfHashes([5, 6]).nodes[1], path.nodes[1]);
});
