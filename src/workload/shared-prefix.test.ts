import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Request } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import { parseWorkloadSpec } from './create.ts';
import { cachedLengthsLoader } from './lengths.ts';
import { sessionRequests, systemPromptRequests, ZipfSampler } from './shared-prefix.ts';
import type { WorkloadSpecOf } from './spec.ts';
import type { TwinRequest } from './types.ts';

const load = cachedLengthsLoader();

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function systemPrompts(over: object): WorkloadSpecOf<'system-prompts'> {
  return parseWorkloadSpec({
    kind: 'system-prompts',
    rateRps: 10,
    groups: 5,
    prefixTokens: 1000,
    suffix: { kind: 'uniform', lo: 0, hi: 400 },
    output: { kind: 'fixed', tokens: 10 },
    maxRequests: 600,
    ...over,
  }) as WorkloadSpecOf<'system-prompts'>;
}

function sessions(over: object): WorkloadSpecOf<'sessions'> {
  return parseWorkloadSpec({
    kind: 'sessions',
    sessionRateRps: 1,
    turns: { kind: 'uniform', lo: 2, hi: 8 },
    userTokens: { kind: 'uniform', lo: 1, hi: 200 },
    output: { kind: 'uniform', lo: 1, hi: 200 },
    thinkTimeMeanS: 5,
    maxRequests: 1000,
    ...over,
  }) as WorkloadSpecOf<'sessions'>;
}

/** The group of each request, recovered from its first block (all groups have a full first block here). */
function byGroup(rs: readonly Request[]): Map<number, Request[]> {
  const groups = new Map<number, Request[]>();
  for (const r of rs) {
    const key = r.prefix.hashes[0] as number;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return groups;
}

describe('system-prompt workload', () => {
  it('members of a group share exactly the full prefix blocks; groups share nothing', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 16, max: 3000 }),
        fc.constantFrom(1, 16, 64, 100),
        fc.nat(),
        (prefixTokens, blockTokens, seed) => {
          const spec = systemPrompts({ prefixTokens, blockTokens, maxRequests: 60 });
          const rs = [...systemPromptRequests(spec, new Rng(seed), load)];
          const shared = Math.floor(prefixTokens / blockTokens);
          for (const r of rs) {
            assert.equal(r.prefix.blockTokens, blockTokens);
            assert.equal(r.prefix.hashes.length, Math.floor(r.inputTokens / blockTokens));
            assert.ok(r.inputTokens >= prefixTokens);
          }
          const groups = [...byGroup(rs).values()];
          for (const members of groups) {
            for (let i = 1; i < members.length; i++) {
              const a = members[0] as Request;
              const b = members[i] as Request;
              const expected = Math.min(shared, a.prefix.hashes.length, b.prefix.hashes.length);
              assert.equal(commonPrefix(a.prefix.hashes, b.prefix.hashes), expected);
            }
          }
          for (let g = 1; g < groups.length; g++) {
            assert.equal(
              commonPrefix(groups[0]?.[0]?.prefix.hashes ?? [], groups[g]?.[0]?.prefix.hashes ?? []),
              0,
            );
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('picks groups with Zipf popularity', () => {
    const rs = [
      ...systemPromptRequests(systemPrompts({ maxRequests: 20_000, zipfExponent: 1 }), new Rng(3), load),
    ];
    const sizes = [...byGroup(rs).values()].map((m) => m.length).sort((a, b) => b - a);
    // 1/1 : 1/2 : … : 1/5 over H5 = 2.2833.
    assert.equal(sizes.length, 5);
    assert.ok(Math.abs((sizes[0] as number) / 20_000 - 1 / 2.2833) < 0.02);
    assert.ok(Math.abs((sizes[4] as number) / 20_000 - 1 / 5 / 2.2833) < 0.01);
  });

  it('Zipf exponent 0 is uniform and each draw is in range', () => {
    const z = new ZipfSampler(4, 0);
    const rng = new Rng(1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 40_000; i++) {
      const g = z.sample(rng);
      counts[g] = (counts[g] ?? 0) + 1;
    }
    assert.ok(counts.every((c) => Math.abs(c - 10_000) < 400));
  });

  it('different seeds give different prefixes', () => {
    const a = [...systemPromptRequests(systemPrompts({ maxRequests: 1 }), new Rng(1), load)];
    const b = [...systemPromptRequests(systemPrompts({ maxRequests: 1 }), new Rng(2), load)];
    assert.notEqual(a[0]?.prefix.hashes[0], b[0]?.prefix.hashes[0]);
  });
});

describe('session workload', () => {
  const rs = [...sessionRequests(sessions({}), new Rng(11), load)];
  const bySession = new Map<string, Request[]>();
  for (const r of rs) {
    assert.ok(r.sessionId !== undefined);
    bySession.set(r.sessionId, [...(bySession.get(r.sessionId) ?? []), r]);
  }

  it('yields turns in arrival order across overlapping sessions', () => {
    assert.equal(rs.length, 1000);
    for (let i = 1; i < rs.length; i++)
      assert.ok((rs[i] as Request).arrivalMs >= (rs[i - 1] as Request).arrivalMs);
    rs.forEach((r, i) => {
      assert.equal(r.id, `r${i}`);
    });
    assert.ok(bySession.size > 100);
    assert.ok([...bySession.values()].some((turns) => turns.length > 1));
  });

  it("turn n + 1's prompt and chain extend turn n's", () => {
    for (const turns of bySession.values()) {
      for (let n = 1; n < turns.length; n++) {
        const prev = turns[n - 1] as Request;
        const cur = turns[n] as Request;
        assert.ok(cur.inputTokens > prev.inputTokens + (prev as TwinRequest).trueOutputTokens);
        assert.ok(cur.arrivalMs >= prev.arrivalMs);
        assert.equal(cur.prefix.hashes.length, Math.floor(cur.inputTokens / 16));
        assert.deepEqual(cur.prefix.hashes.slice(0, prev.prefix.hashes.length), [...prev.prefix.hashes]);
      }
    }
  });

  it('different sessions share no blocks without a system prompt', () => {
    const firsts = [...bySession.values()].map((t) => t[0]?.prefix.hashes[0]).filter((h) => h !== undefined);
    assert.equal(new Set(firsts).size, firsts.length);
  });

  it('a system prompt is shared by every session, block for block', () => {
    const withSystem = [
      ...sessionRequests(sessions({ systemPromptTokens: 200, maxRequests: 300 }), new Rng(1), load),
    ];
    const first = withSystem[0]?.prefix.hashes ?? [];
    for (const r of withSystem) {
      const common = commonPrefix(first, r.prefix.hashes);
      assert.ok(common >= 12, `shares ${common} blocks`);
      if (r.sessionId !== withSystem[0]?.sessionId) assert.equal(common, 12);
    }
  });

  it('ends sessions before they outgrow contextTokensMax', () => {
    const spec = sessions({
      turns: { kind: 'fixed', tokens: 50 },
      contextTokensMax: 2000,
      maxRequests: 2000,
    });
    const out = [...sessionRequests(spec, new Rng(2), load)];
    assert.ok(out.every((r) => r.inputTokens + r.trueOutputTokens <= 2000));
    assert.ok(out.length === 2000);
  });
});
