import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CHAIN_ROOT, chainHash } from '../../core/hash.ts';
import { makeRequest, type Request } from '../../core/request.ts';
import { ApproxPrefixCache, PREFIX_SWEEP_EVERY_ROUTES } from './approx-prefix.ts';
import { testCluster } from './conformance.ts';

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

function req(id: string, hashes: readonly number[], blockTokens = 16): Request {
  return makeRequest({
    id,
    inputTokens: hashes.length * blockTokens,
    outputTokens: 1,
    arrivalMs: 0,
    prefix: { blockTokens, hashes },
  });
}

test('approx prefix: match agrees with a block-by-block walk on random chains', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 5 }), fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 8 })),
        { maxLength: 40 },
      ),
      fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 10 }),
      fc.integer({ min: 1, max: 12 }),
      (inserts, query, capacity) => {
        const cache = new ApproxPrefixCache({ capacityBlocks: capacity });
        const view = testCluster(6);
        cache.observe(view);
        for (const [k, [inst, tokens]] of inserts.entries())
          cache.learn(req(`r${k}`, chainOf(tokens)), `i${inst}`);
        const hashes = chainOf(query);
        const got = cache.match(hashes, view.instances);
        for (let i = 0; i < 6; i++) {
          assert.equal(got[i], cache.longestMatch(`i${i}`, hashes), `instance i${i}`);
          assert.ok(cache.size(`i${i}`) <= capacity);
        }
      },
    ),
  );
});

test('approx prefix: default capacity is the KV cache in chain blocks', () => {
  // 100 engine blocks of 16 tokens = 1,600 tokens = 3 chain blocks of 512 tokens.
  const view = testCluster(2, () => ({ kvBlocksTotal: 100, blockSize: 16 }));
  const cache = new ApproxPrefixCache();
  cache.observe(view);
  cache.learn(req('a', chainOf([1, 2, 3, 4, 5, 6]), 512), 'i0');
  assert.equal(cache.size('i0'), 3);
  assert.equal(cache.longestMatch('i0', chainOf([1, 2, 3, 4])), 3);
});

test('approx prefix: instances gone from the view are dropped on the next sweep', () => {
  const cache = new ApproxPrefixCache({ capacityBlocks: 100 });
  cache.observe(testCluster(3));
  cache.learn(req('a', chainOf([1, 2])), 'i2');
  assert.equal(cache.size('i2'), 2);
  cache.observe(testCluster(2));
  for (let r = 0; r < PREFIX_SWEEP_EVERY_ROUTES; r++) cache.learn(req(`b${r}`, chainOf([3])), 'i0');
  assert.equal(cache.size('i2'), 0);
  assert.equal(cache.instances(), 1);
});

test('approx prefix: AllBlocksCleared forgets an instance', () => {
  const cache = new ApproxPrefixCache({ capacityBlocks: 100 });
  cache.learn(req('a', chainOf([1, 2])), 'i0');
  cache.onKvEvent('i0', { type: 'AllBlocksCleared' });
  assert.equal(cache.size('i0'), 0);
});
