import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CHAIN_ROOT, chainHash } from '../../../core/hash.ts';
import { makeRequest, type Request } from '../../../core/request.ts';
import { Rng } from '../../../core/rng.ts';
import { runProfileConformance, runRoutingConformance, testCluster } from '../conformance.ts';
import { createProfilePolicy } from '../profile.ts';
import { createLlmd, LLMD_DEFAULTS, type LlmdParams, llmdProfile } from './llm-d.ts';

runRoutingConformance('llm-d', () => createLlmd());
runProfileConformance('llm-d', (extra) => createProfilePolicy('llm-d', llmdProfile(LLMD_DEFAULTS, extra)));

function prompt(id: string, family: number, shared: number, blocks: number): Request {
  const hashes: number[] = [];
  let h = CHAIN_ROOT;
  for (let i = 0; i < blocks; i++) {
    h = chainHash(h, i < shared ? family * 1_000_003 + i : 0x7000_0000 + id.length * 1000 + i);
    hashes.push(h);
  }
  return makeRequest({
    id,
    inputTokens: blocks * 16,
    maxTokens: 8,
    arrivalMs: 0,
    prefix: { blockTokens: 16, hashes },
  });
}

/** The llm-d formula written out independently of the profile machinery. */
function expectedTotals(
  waiting: readonly number[],
  kv: readonly number[],
  matchedBlocks: readonly number[],
  requestBlocks: number,
  p: LlmdParams,
): number[] {
  const max = Math.max(...waiting);
  const min = Math.min(...waiting);
  return waiting.map(
    (q, i) =>
      p.queueWeight * (max === min ? 1 : (max - q) / (max - min)) +
      p.kvUsageWeight * (1 - (kv[i] as number)) +
      p.prefixCacheWeight * ((matchedBlocks[i] as number) / requestBlocks),
  );
}

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if ((xs[i] as number) > (xs[best] as number)) best = i;
  return best;
}

test('llm-d: a long prefix match behind a long queue loses to an idle instance, as the formula says', () => {
  // i0 served 80 blocks of this family; it has a queue of 10 and half its KV cache in use.
  const waiting = [10, 0, 5];
  const kv = [0.5, 0.1, 0.3];
  const view = testCluster(3, (i) => ({ waiting: waiting[i] ?? 0, kvUsage: kv[i] ?? 0 }));
  const policy = createLlmd();
  policy.onRouted?.(prompt('seed', 1, 80, 80), 'i0', 0);
  // Totals: i0 = 2 x 0 + 2 x 0.5 + 3 x 0.8 = 3.4; i1 = 2 x 1 + 2 x 0.9 + 0 = 3.8; i2 = 1 + 1.4 = 2.4.
  const totals = expectedTotals(waiting, kv, [80, 0, 0], 100, LLMD_DEFAULTS);
  assert.deepEqual(
    totals.map((t) => Math.round(t * 1000) / 1000),
    [3.4, 3.8, 2.4],
  );
  assert.deepEqual(policy.decide(view, prompt('r', 1, 80, 100), new Rng(1)), {
    kind: 'route',
    instanceId: 'i1',
  });
  // A full match (3 x 1.0) on the same queued instance gives 4.0 > 3.8: the prefix wins.
  assert.deepEqual(policy.decide(view, prompt('r', 1, 80, 80), new Rng(1)), {
    kind: 'route',
    instanceId: 'i0',
  });
  // With the prefix weight at 0 the idle instance wins whatever the match.
  const noPrefix = createLlmd({ ...LLMD_DEFAULTS, prefixCacheWeight: 0 });
  noPrefix.onRouted?.(prompt('seed', 1, 80, 80), 'i0', 0);
  assert.deepEqual(noPrefix.decide(view, prompt('r', 1, 80, 80), new Rng(1)), {
    kind: 'route',
    instanceId: 'i1',
  });
});

test('llm-d: the choice is the argmax of the weighted formula on random views', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          waiting: fc.integer({ min: 0, max: 20 }),
          kv: fc.double({ min: 0, max: 1, noNaN: true }),
          served: fc.integer({ min: 0, max: 40 }),
        }),
        { minLength: 2, maxLength: 8 },
      ),
      fc.integer({ min: 1, max: 40 }),
      fc.record({
        queueWeight: fc.integer({ min: 0, max: 4 }),
        kvUsageWeight: fc.integer({ min: 0, max: 4 }),
        prefixCacheWeight: fc.integer({ min: 0, max: 4 }),
      }),
      (instances, requestBlocks, weights) => {
        const params: LlmdParams = { ...weights };
        const view = testCluster(instances.length, (i) => ({
          waiting: instances[i]?.waiting ?? 0,
          kvUsage: instances[i]?.kv ?? 0,
        }));
        const policy = createLlmd(params);
        instances.forEach((x, i) => {
          if (x.served > 0) policy.onRouted?.(prompt(`s${i}`, 1, x.served, x.served), `i${i}`, 0);
        });
        const matched = instances.map((x) => Math.min(x.served, requestBlocks));
        const totals = expectedTotals(
          instances.map((x) => x.waiting),
          instances.map((x) => x.kv),
          matched,
          requestBlocks,
          params,
        );
        const best = argmax(totals);
        const runnerUp = Math.max(...totals.filter((_, i) => i !== best));
        fc.pre((totals[best] as number) - runnerUp > 1e-9); // ties go to the seeded tie-break
        const d = policy.decide(view, prompt('r', 1, requestBlocks, requestBlocks), new Rng(1));
        assert.deepEqual(d, { kind: 'route', instanceId: `i${best}` });
      },
    ),
  );
});

test('llm-d: exact ties are broken by the seeded generator, over all tied instances', () => {
  const view = testCluster(4, () => ({ waiting: 0, kvUsage: 0.5 }));
  const policy = createLlmd();
  const seen = new Set<string>();
  for (let seed = 0; seed < 64; seed++) {
    const d = policy.decide(view, prompt('r', 3, 4, 4), new Rng(seed));
    if (d.kind === 'route') seen.add(d.instanceId);
  }
  assert.equal(seen.size, 4);
});
