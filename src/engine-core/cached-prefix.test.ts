import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GpuSpec, ModelSpec, PerfModel } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { PrefixForest } from './prefix-forest.ts';
import type { EngineConfig, EngineRequest, FinishedRequest } from './types.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

/** EngineCore.cachedPrefixTokens: a peer's read-only answer to "how much of this prompt do you hold". */

const PERF: PerfModel = {
  gpu: {} as GpuSpec,
  model: {} as ModelSpec,
  tp: 1,
  stepTimeMs: (shape) => 1 + 0.01 * shape.prefillTokens + 0.05 * shape.decodeSeqs,
  prefillTimeMs: (tokens) => 1 + 0.01 * tokens,
  decodeStepTimeMs: (batch) => 1 + 0.05 * batch,
  kvBytesPerToken: () => 1,
  weightBytes: () => 1,
};

const CONFIG: EngineConfig = { ...DEFAULT_ENGINE_CONFIG, asyncScheduling: false, blockSize: 16 };

function core(mode: 'pool' | 'runs', blocks: number, done: FinishedRequest[], config = CONFIG): EngineCore {
  const forest = mode === 'runs' ? new PrefixForest(16) : undefined;
  return new EngineCore(config, PERF, blocks, { onFinish: (r) => done.push(r) }, { prefixForest: forest });
}

function request(id: string, hashes: number[], extraTokens = 10): EngineRequest {
  return {
    id,
    inputTokens: hashes.length * 16 + extraTokens,
    outputTokens: 2,
    arrivalMs: 0,
    blockHashes: hashes,
  };
}

function drain(engine: EngineCore, t0 = 0): number {
  let t = t0;
  for (;;) {
    if (engine.startStep(t) === undefined) return t;
    t = engine.stepEndMs;
    engine.finishStep(t);
    engine.checkInvariants();
  }
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

for (const mode of ['pool', 'runs'] as const) {
  test(`${mode}: the cached prefix, whole blocks, in use or free, up to the first miss`, () => {
    const engine = core(mode, 64, []);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: range(1, 10) }), 0, 'nothing cached yet');
    engine.add(request('a', range(1, 10)), 0);
    drain(engine);
    assert.equal(engine.kvBlocksUsed, 0);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: range(1, 10) }), 160);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: [...range(1, 6), 99, 7, 8] }), 96);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: [99, ...range(1, 9)] }), 0);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: range(1, 14) }), 160, 'no more than it holds');
    // Blocks in use count as well.
    engine.add(request('b', [...range(1, 4), ...range(50, 4)]), 1000);
    engine.startStep(1000);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: [...range(1, 4), ...range(50, 4)] }), 64);
  });

  test(`${mode}: asking changes nothing: a later admission and eviction are those of a core never asked`, () => {
    const asked = core(mode, 24, []);
    const plain = core(mode, 24, []);
    const doneAsked: FinishedRequest[] = [];
    const donePlain: FinishedRequest[] = [];
    const a = core(mode, 24, doneAsked);
    const p = core(mode, 24, donePlain);
    for (const [engine, query] of [
      [asked, true],
      [plain, false],
      [a, true],
      [p, false],
    ] as const) {
      engine.add(request('x', range(1, 8)), 0);
      let t = drain(engine);
      engine.add(request('y', range(100, 8)), t);
      t = drain(engine, t);
      const free = engine.kvBlocksCachedFree;
      if (query) {
        assert.equal(engine.cachedPrefixTokens({ blockHashes: range(1, 8) }), 128);
        assert.equal(engine.kvBlocksCachedFree, free);
        assert.equal(engine.kvBlocksUsed, 0);
      }
      // 13 new blocks in a pool of 24 with 8 truly free and 16 cached free: 5 evictions from the LRU.
      engine.add(request('z', range(200, 12), 5), t);
      drain(engine, t);
    }
    for (const hashes of [range(1, 8), range(100, 8), range(200, 12)]) {
      assert.equal(
        asked.cachedPrefixTokens({ blockHashes: hashes }),
        plain.cachedPrefixTokens({ blockHashes: hashes }),
      );
    }
    assert.equal(asked.cachedPrefixTokens({ blockHashes: range(100, 8) }), 128, 'y, freed last, survives');
    // x was freed first, last block first: z's 5 evictions took x's last 5 blocks, its first 3 stay.
    assert.equal(asked.cachedPrefixTokens({ blockHashes: range(1, 8) }), 48, 'x evicted from its tail');
    a.add(request('w', range(100, 8)), 1e6);
    p.add(request('w', range(100, 8)), 1e6);
    drain(a, 1e6);
    drain(p, 1e6);
    assert.deepEqual(
      doneAsked.map((r) => [r.request.id, r.cachedPromptTokens, r.firstTokenMs]),
      donePlain.map((r) => [r.request.id, r.cachedPromptTokens, r.firstTokenMs]),
    );
  });

  test(`${mode}: prefix caching off: nothing is held`, () => {
    const engine = core(mode, 64, [], { ...CONFIG, enablePrefixCaching: false });
    engine.add(request('a', range(1, 10)), 0);
    drain(engine);
    assert.equal(engine.cachedPrefixTokens({ blockHashes: range(1, 10) }), 0);
  });
}

test("runs: a request given as a forest path is read from that path, which stays the caller's", () => {
  const forest = new PrefixForest(16);
  const engine = new EngineCore(CONFIG, PERF, 64, { onFinish: () => {} }, { prefixForest: forest });
  engine.add(request('a', range(1, 10)), 0);
  drain(engine);
  const path = forest.pathOfHashes(range(1, 10));
  assert.equal(engine.cachedPrefixTokens({ blockHashes: [], prefixPath: path }), 160);
  const nodes = forest.nodeCount;
  forest.release(path);
  assert.ok(forest.nodeCount <= nodes);
});
