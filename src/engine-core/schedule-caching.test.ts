import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../model/types.ts';
import { PrefixCacheIndex } from '../policies/routing/prefix-cache-index.ts';
import { EngineCore } from './engine-core.ts';
import { engineBlockHashes } from './prefix.ts';
import { PrefixForest } from './prefix-forest.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest, KvEvent } from './types.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

/**
 * Prompt blocks are registered in the prefix cache when the step that computes them is scheduled,
 * as vLLM's `allocate_slots` does: a request admitted after them, in the same step, hits them.
 */

function perf(shapes: StepShape[]): PerfModel {
  return {
    gpu: {} as GpuSpec,
    model: {} as ModelSpec,
    tp: 1,
    stepTimeMs(shape) {
      shapes.push({ ...shape });
      return 1 + 0.01 * shape.prefillTokens + 0.05 * shape.decodeSeqs;
    },
    prefillTimeMs: (tokens) => 1 + 0.01 * tokens,
    decodeStepTimeMs: (batch) => 1 + 0.05 * batch,
    kvBytesPerToken: () => 1,
    weightBytes: () => 1,
  };
}

const CONFIG: EngineConfig = {
  ...DEFAULT_ENGINE_CONFIG,
  asyncScheduling: false,
  blockSize: 16,
  maxNumSeqs: 16,
  maxNumBatchedTokens: 8192,
  enablePrefixCaching: true,
};

type Mode = 'pool' | 'runs';

function core(
  mode: Mode,
  numBlocks: number,
  listener: EngineListener,
  shapes: StepShape[] = [],
  config = CONFIG,
) {
  const forest = mode === 'runs' ? new PrefixForest(config.blockSize) : undefined;
  return new EngineCore(config, perf(shapes), numBlocks, listener, { prefixForest: forest });
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

/** `shared` leading blocks of a common prefix (hashes 1..), then `own` blocks of its own. */
function request(id: string, shared: number, own: number, outputTokens = 4): EngineRequest {
  return {
    id,
    inputTokens: (shared + own) * 16,
    outputTokens,
    arrivalMs: 0,
    blockHashes: [...range(1, shared), ...range(1000 * (Number(id.slice(1)) + 1), own)],
  };
}

/** Steps until idle, checking the invariants inside each step and after it. */
function drain(engine: EngineCore, t0 = 0): number {
  let t = t0;
  for (;;) {
    if (engine.startStep(t) === undefined) return t;
    engine.checkInvariants();
    t = engine.stepEndMs;
    engine.finishStep(t);
    engine.checkInvariants();
  }
}

for (const mode of ['pool', 'runs'] as const) {
  test(`${mode}: 10 requests behind one 512-token prefix admitted in one step compute it once`, () => {
    const finished: FinishedRequest[] = [];
    const shapes: StepShape[] = [];
    const engine = core(mode, 1000, { onFinish: (r) => finished.push(r) }, shapes);
    for (let i = 0; i < 10; i++) engine.add(request(`r${i}`, 32, 4), 0);
    drain(engine);
    // All ten in the first step: the prefix once, each request's own 64 tokens.
    assert.equal(shapes[0]!.prefillSeqs, 10);
    assert.equal(shapes[0]!.prefillTokens, 512 + 10 * 64);
    assert.equal(engine.prefixHitTokens, 9 * 512);
    assert.deepEqual(
      finished.map((r) => r.cachedPromptTokens).sort((a, b) => a - b),
      [0, ...Array(9).fill(512)],
    );
    // Cascade attention as vLLM's model runner finds it: none in the step computing the prefix
    // (capped by the fewest tokens computed before the step), all 512 tokens once it decodes.
    assert.equal(shapes[0]!.commonPrefixTokens, 0);
    assert.equal(shapes[1]!.decodeSeqs, 10);
    assert.equal(shapes[1]!.commonPrefixTokens, 512);
  });

  test(`${mode}: a chunked prompt's blocks are hit by a request admitted while it still prefills`, () => {
    const shapes: StepShape[] = [];
    const engine = core(mode, 1000, { onFinish: () => {} }, shapes, { ...CONFIG, maxNumBatchedTokens: 256 });
    engine.add(request('r0', 40, 0), 0);
    engine.add(request('r1', 40, 2), 0);
    // Steps 1 and 2: r0's first 512 tokens; no budget left for r1.
    for (let i = 0; i < 2; i++) {
      engine.startStep(i === 0 ? 0 : engine.stepEndMs);
      assert.equal(shapes[i]!.prefillSeqs, 1, 'r1 waits: the budget is spent');
      engine.finishStep(engine.stepEndMs);
    }
    // Step 3: r0's last 128 tokens, its blocks 32..40 registered as scheduled; r1 then hits all 40
    // blocks, 8 of them computed in this very step, and computes its own 32 tokens.
    engine.startStep(engine.stepEndMs);
    engine.checkInvariants();
    assert.equal(engine.prefixHitTokens, 640);
    assert.equal(shapes[2]!.prefillSeqs, 2);
    assert.equal(shapes[2]!.prefillTokens, 128 + 32);
    engine.finishStep(engine.stepEndMs);
    drain(engine, engine.stepEndMs);
  });

  test(`${mode}: an abort mid-step leaves the blocks it registered to the request that hit them`, () => {
    const finished: FinishedRequest[] = [];
    const engine = core(mode, 1000, { onFinish: (r) => finished.push(r) });
    engine.add(request('r0', 32, 1), 0);
    engine.add(request('r1', 32, 1), 0);
    const query = { blockHashes: range(1, 32) };
    engine.startStep(0);
    engine.checkInvariants();
    // Registered and hit, but not computed yet: a peer's store answer waits for the step.
    assert.equal(engine.prefixHitTokens, 512);
    assert.equal(engine.cachedPrefixTokens(query), 0);
    assert.ok(engine.abort('r0', 1));
    engine.checkInvariants();
    assert.equal(engine.cachedPrefixTokens(query), 0);
    engine.finishStep(engine.stepEndMs);
    engine.checkInvariants();
    assert.equal(engine.cachedPrefixTokens(query), 512);
    drain(engine, engine.stepEndMs);
    assert.deepEqual(
      finished.map((r) => [r.request.id, r.cachedPromptTokens]),
      [['r1', 512]],
    );
    // r0's own block went back unhashed-or-cached; everything is free again.
    assert.equal(engine.kvBlocksUsed, 0);
    assert.equal(engine.cachedPrefixTokens(request('r0', 32, 1)), 33 * 16);
  });

  test(`${mode}: a request preempted after registering its blocks re-hits them when re-admitted`, () => {
    const finished: FinishedRequest[] = [];
    // 10 blocks: two 4-block prompts, then decode blocks until the second one is preempted.
    const engine = core(mode, 10, { onFinish: (r) => finished.push(r) }, [], { ...CONFIG, maxNumSeqs: 2 });
    engine.add(request('r0', 0, 4, 60), 0);
    engine.add(request('r1', 0, 4, 30), 0);
    drain(engine);
    assert.ok(engine.preemptions >= 1, 'no preemption');
    const r1 = finished.find((r) => r.request.id === 'r1')!;
    assert.ok(r1.preemptions >= 1);
    // Its 4 prompt blocks were computed in the step that registered them and went to the LRU tail
    // first when it was preempted; r0's 7th and 8th blocks evicted the last two, and re-admitted it
    // hits the first two (its decoded tokens have no hash).
    assert.equal(r1.cachedPromptTokens, 32);
    assert.equal(finished.length, 2);
    assert.equal(engine.kvBlocksUsed, 0);
  });
}

/** A KV-event subscriber (the `kv-events` policies' index) fed by a block-pool core. */
class Subscriber implements EngineListener {
  readonly index = new PrefixCacheIndex({ capacity: { blocks: 1 << 20 } });
  readonly slot = this.index.register('i0');
  /** Events received so far. */
  received = 0;
  onFinish(): void {}
  onKvEvent(event: KvEvent): void {
    this.received++;
    this.index.applyKvEvent(this.slot, event);
  }
}

/** The subscriber's view is the pool's: the same hashed blocks, no more. */
function assertSameView(engine: EngineCore, sub: Subscriber): void {
  const pool = engine.blockPool;
  for (let b = 0; b < pool.numBlocks; b++) {
    const hash = pool.hashOf(b);
    if (hash !== undefined)
      assert.ok(sub.index.has(sub.slot, hash), `block ${b} (${hash}) unknown to the subscriber`);
  }
  assert.equal(sub.index.size(sub.slot), pool.hashedCount);
}

test('KV events: a subscriber sees the pool at every step end, none of a step before it ends, same-step duplicates included', () => {
  const arb = fc.record({
    numBlocks: fc.integer({ min: 8, max: 80 }),
    maxNumBatchedTokens: fc.integer({ min: 16, max: 400 }),
    requests: fc.array(
      fc.record({
        family: fc.integer({ min: 0, max: 1 }),
        sharedChain: fc.integer({ min: 0, max: 6 }),
        inputTokens: fc.integer({ min: 1, max: 160 }),
        outputTokens: fc.integer({ min: 1, max: 20 }),
        arrivalMs: fc.integer({ min: 0, max: 6 }),
        abortAtMs: fc.option(fc.integer({ min: 0, max: 30 }), { freq: 5 }),
      }),
      { minLength: 2, maxLength: 24 },
    ),
  });
  let hits = 0;
  fc.assert(
    fc.property(arb, (w) => {
      const sub = new Subscriber();
      const config = { ...CONFIG, maxNumSeqs: 8, maxNumBatchedTokens: w.maxNumBatchedTokens };
      const engine = new EngineCore(config, perf([]), w.numBlocks, sub);
      const reqs = w.requests.map((r, i) => ({
        request: {
          id: `r${i}`,
          inputTokens: r.inputTokens,
          outputTokens: r.outputTokens,
          arrivalMs: r.arrivalMs,
          blockHashes: engineBlockHashes(
            { blockTokens: 16, hashes: range(100 * r.family + 1, r.sharedChain) },
            r.inputTokens,
            16,
          ),
        },
        abortAtMs: r.abortAtMs,
      }));
      const added = new Set<string>();
      let t = 0;
      for (let steps = 0; steps < 10_000; steps++) {
        for (const r of reqs) {
          if (r.request.arrivalMs > t || added.has(r.request.id)) continue;
          added.add(r.request.id);
          engine.add(r.request, t);
        }
        const before = sub.received;
        if (engine.startStep(t) === undefined) {
          if (added.size === reqs.length && !engine.hasWork) break;
          // No step: whatever admission evicted is published at once.
          assertSameView(engine, sub);
          t++;
          continue;
        }
        engine.checkInvariants();
        // vLLM publishes a step's events after its forward pass: none while it is in flight.
        assert.equal(sub.received, before, 'KV events published before the step ended');
        const end = engine.stepEndMs;
        // Aborts land inside the step, as a client disconnect does.
        for (const r of reqs)
          if (r.abortAtMs !== null && r.abortAtMs >= t && r.abortAtMs < end)
            engine.abort(r.request.id, r.abortAtMs);
        engine.finishStep(end);
        engine.checkInvariants();
        assertSameView(engine, sub);
        t = Math.ceil(end);
      }
      assert.equal(engine.kvBlocksUsed, 0);
      hits += engine.prefixHitTokens;
    }),
    { numRuns: 200 },
  );
  assert.ok(hits > 0, 'no prefix hits');
});
