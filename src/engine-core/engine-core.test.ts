import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../core/assert.ts';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { engineBlockHashes } from './prefix.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest, KvEvent } from './types.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

/** A stand-in perf model: a fixed overhead plus linear prefill and decode costs. */
function fakePerf(onStep?: (shape: StepShape) => void): PerfModel {
  return {
    gpu: {} as GpuSpec,
    model: {} as ModelSpec,
    tp: 1,
    stepTimeMs(shape) {
      onStep?.(shape);
      return 1 + 0.01 * shape.prefillTokens + 0.05 * shape.decodeSeqs;
    },
    prefillTimeMs: (tokens) => 1 + 0.01 * tokens,
    decodeStepTimeMs: (batch) => 1 + 0.05 * batch,
    kvBytesPerToken: () => 1,
    weightBytes: () => 1,
  };
}

/**
 * The synchronous scheduler unless a test says otherwise: most tests here script admissions step by
 * step; the async-scheduling tests below set `asyncScheduling` themselves.
 */
function config(overrides: Partial<EngineConfig>): EngineConfig {
  return { ...DEFAULT_ENGINE_CONFIG, asyncScheduling: false, ...overrides };
}

function req(
  id: string,
  inputTokens: number,
  outputTokens: number,
  arrivalMs = 0,
  blockHashes: number[] = [],
): EngineRequest {
  return { id, inputTokens, outputTokens, arrivalMs, blockHashes };
}

/** Everything the listener saw, in order. */
class Recorder implements EngineListener {
  readonly log: string[] = [];
  readonly finished = new Map<string, FinishedRequest>();
  readonly firstTokens = new Map<string, number>();
  readonly rejected: string[] = [];
  readonly kvEvents: KvEvent[] = [];
  readonly itlCalls: [number, number][] = [];
  itlTokens = 0;

  onFirstToken(request: EngineRequest, nowMs: number): void {
    assert.equal(this.firstTokens.has(request.id), false, `second first token for ${request.id}`);
    this.firstTokens.set(request.id, nowMs);
    this.log.push(`first ${request.id} ${nowMs}`);
  }
  onFinish(result: FinishedRequest): void {
    assert.equal(this.finished.has(result.request.id), false, `${result.request.id} finished twice`);
    this.finished.set(result.request.id, result);
    this.log.push(
      `finish ${result.request.id} ${result.finishMs} ${result.cachedPromptTokens} ${result.preemptions}`,
    );
  }
  onInterTokenLatency(gapMs: number, count: number): void {
    assert.ok(gapMs >= 0 && count >= 1);
    this.itlTokens += count;
    this.itlCalls.push([gapMs, count]);
    this.log.push(`itl ${gapMs} ${count}`);
  }
  onKvEvent(event: KvEvent): void {
    this.kvEvents.push(event);
    this.log.push(`kv ${JSON.stringify(event)}`);
  }
  onReject(request: EngineRequest): void {
    this.rejected.push(request.id);
    this.log.push(`reject ${request.id}`);
  }
}

/**
 * A Recorder that takes fused sub-steps' gaps through the batched hook, unrolling each batch into
 * the per-gap entries the plain hook would have logged: its log must match a plain Recorder's.
 */
class GapBatchRecorder extends Recorder {
  batches = 0;
  onInterTokenGaps(endsMs: Float64Array, from: number, to: number, count: number): void {
    assert.ok(from >= 1 && to > from && to <= endsMs.length, `gap batch [${from}, ${to})`);
    this.batches++;
    for (let j = from; j < to; j++) this.onInterTokenLatency(endsMs[j]! - endsMs[j - 1]!, count);
  }
}

interface DriveOptions {
  /** Abort these request ids when the clock first reaches the given time. */
  readonly aborts?: ReadonlyMap<string, number>;
  readonly shapes?: StepShape[];
  readonly maxSteps?: number;
  readonly startMs?: number;
}

/** Runs a workload to completion as a host would, checking invariants after every step. */
export function drive(
  core: EngineCore,
  requests: readonly EngineRequest[],
  options: DriveOptions = {},
): number {
  const arrivals = [...requests].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const aborts = [...(options.aborts ?? new Map<string, number>())].sort((a, b) => a[1] - b[1]);
  let nowMs = options.startMs ?? 0;
  let next = 0;
  let nextAbort = 0;
  let steps = 0;
  for (;;) {
    while (next < arrivals.length && arrivals[next]!.arrivalMs <= nowMs) core.add(arrivals[next++]!, nowMs);
    while (nextAbort < aborts.length && aborts[nextAbort]![1] <= nowMs)
      core.abort(aborts[nextAbort++]![0], nowMs);
    const durationMs = core.startStep(nowMs);
    if (durationMs === undefined) {
      if (next >= arrivals.length && nextAbort >= aborts.length) break;
      nowMs = Math.max(
        nowMs,
        Math.min(arrivals[next]?.arrivalMs ?? Infinity, aborts[nextAbort]?.[1] ?? Infinity),
      );
      continue;
    }
    assert.equal(core.busy, true);
    options.shapes?.push({ ...core.lastStepShape });
    nowMs += durationMs;
    core.finishStep(nowMs);
    core.checkInvariants();
    steps++;
    assert.ok(steps < (options.maxSteps ?? 1e6), 'workload did not finish');
  }
  return nowMs;
}

test('one request: prefill, first token, decode gaps, finish', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({}), fakePerf(), 100, rec);
  core.add(req('a', 100, 4, 0), 0);
  assert.equal(core.waiting, 1);
  assert.equal(core.pendingPrefillTokens, 100);
  const endMs = drive(core, []);
  const f = rec.finished.get('a')!;
  assert.equal(f.firstScheduledMs, 0);
  assert.equal(f.firstTokenMs, 2); // 1 + 0.01 * 100
  assert.equal(rec.itlTokens, 3);
  assert.equal(f.finishMs, endMs);
  assert.equal(core.steps, 4);
  assert.equal(core.busyMs, endMs);
  assert.equal(core.kvBlocksUsed, 0);
  assert.equal(core.running + core.waiting, 0);
  assert.equal(core.pendingPrefillTokens, 0);
});

test('a one-token output finishes on its prefill step', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({}), fakePerf(), 100, rec);
  drive(core, [req('a', 10, 1)]);
  const f = rec.finished.get('a')!;
  assert.equal(f.finishMs, f.firstTokenMs);
  assert.equal(core.steps, 1);
});

test('chunked prefill splits a long prompt across steps within the budget', () => {
  const rec = new Recorder();
  const shapes: StepShape[] = [];
  const core = new EngineCore(config({ maxNumBatchedTokens: 32 }), fakePerf(), 100, rec);
  drive(core, [req('a', 100, 2)], { shapes });
  assert.deepEqual(
    shapes.map((s) => [s.prefillTokens, s.decodeSeqs]),
    [
      [32, 0],
      [32, 0],
      [32, 0],
      [4, 0],
      [0, 1],
    ],
  );
  // Attention pairs of the second chunk: 32 new tokens after 32 cached.
  assert.equal(shapes[1]!.prefillAttentionPairs, 32 * 32 + (32 * 33) / 2);
  assert.equal(shapes[4]!.decodeContextTokens, 101);
  const f = rec.finished.get('a')!;
  assert.equal(f.firstTokenMs, 4 + 0.01 * 100);
});

test('FCFS: equal requests get first tokens in arrival order; decodes ride along new prefills', () => {
  const rec = new Recorder();
  const shapes: StepShape[] = [];
  const core = new EngineCore(config({ maxNumBatchedTokens: 40 }), fakePerf(), 100, rec);
  drive(core, [req('a', 30, 5, 0), req('b', 30, 5, 0), req('c', 30, 5, 0)], { shapes });
  const order = [...rec.firstTokens.entries()].sort((x, y) => x[1] - y[1]).map(([id]) => id);
  assert.deepEqual(order, ['a', 'b', 'c']);
  for (const s of shapes) assert.ok(s.prefillTokens + s.decodeSeqs <= 40);
  // Step 2 decodes a and continues b's prefill chunk.
  assert.equal(shapes[1]!.decodeSeqs, 1);
  assert.equal(shapes[1]!.prefillSeqs, 2);
});

test('maxNumSeqs caps the running set', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ maxNumSeqs: 2 }), fakePerf(), 100, rec);
  for (const id of ['a', 'b', 'c']) core.add(req(id, 10, 3), 0);
  core.startStep(0);
  assert.equal(core.running, 2);
  assert.equal(core.waiting, 1);
  core.finishStep(1);
  drive(core, []);
  assert.equal(rec.finished.size, 3);
});

test('decode gaps are reported once per step for the whole batch', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({}), fakePerf(), 100, rec);
  drive(core, [req('a', 8, 4), req('b', 8, 4), req('c', 8, 4)]);
  assert.equal(rec.itlTokens, 9);
  assert.deepEqual(
    rec.itlCalls.map(([, count]) => count),
    [3, 3, 3],
  );
  assert.ok(rec.itlCalls.every(([gap]) => Math.abs(gap - 1.15) < 1e-9));
});

test('prefix: a request sharing k blocks with a finished one hits exactly k blocks', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({}), fakePerf(), 100, rec);
  const base = [11, 12, 13, 14, 15, 16, 17, 18];
  drive(core, [req('a', 128, 2, 0, base)]);
  assert.equal(rec.finished.get('a')!.cachedPromptTokens, 0);
  for (const k of [0, 1, 3, 7]) {
    const hashes = base.map((h, i) => (i < k ? h : 1000 * (k + 1) + i));
    drive(core, [req(`k${k}`, 128, 2, 0, hashes)]);
    assert.equal(rec.finished.get(`k${k}`)!.cachedPromptTokens, k * 16, `k=${k}`);
  }
  // All 8 blocks cached, but vLLM always computes the prompt's last token: 7 blocks hit.
  drive(core, [req('full', 128, 2, 0, base)]);
  assert.equal(rec.finished.get('full')!.cachedPromptTokens, 112);
  // One token longer: all 8 hit.
  drive(core, [req('longer', 129, 2, 0, base)]);
  assert.equal(rec.finished.get('longer')!.cachedPromptTokens, 128);
  // Distinct hashes never hit.
  drive(core, [req('other', 128, 2, 0, [91, 92, 93, 94, 95, 96, 97, 98])]);
  assert.equal(rec.finished.get('other')!.cachedPromptTokens, 0);
  assert.ok(core.prefixHitTokens > 0);
  assert.equal(core.prefixHitRate, core.prefixHitTokens / core.prefixQueryTokens);
});

test('prefix: BlockStored events chain parent hashes; running requests share physical blocks', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ maxNumBatchedTokens: 32 }), fakePerf(), 100, rec);
  const hashes = [1, 2, 3, 4];
  core.add(req('a', 64, 50, 0, hashes), 0);
  // a's prefill in two chunks of 32: two events, the second's parent is the first's last hash.
  let nowMs = 0;
  for (let i = 0; i < 2; i++) {
    nowMs += core.startStep(nowMs)!;
    core.finishStep(nowMs);
  }
  assert.deepEqual(rec.kvEvents, [
    { type: 'BlockStored', hashes: [1, 2], parentHash: undefined },
    { type: 'BlockStored', hashes: [3, 4], parentHash: 2 },
  ]);
  core.add(req('b', 70, 50, nowMs, hashes), nowMs);
  const stepMs = core.startStep(nowMs)!;
  const blocksA = core.blocksOf('a')!;
  const blocksB = core.blocksOf('b')!;
  assert.deepEqual(blocksB.slice(0, 4), blocksA.slice(0, 4));
  for (const b of blocksA.slice(0, 4)) assert.equal(core.blockPool.refCount(b), 2);
  assert.notEqual(blocksB[4], blocksA[4]);
  core.checkInvariants();
  nowMs += stepMs;
  core.finishStep(nowMs);
  drive(core, [], { startMs: nowMs });
  assert.equal(rec.finished.get('b')!.cachedPromptTokens, 64);
  assert.equal(core.kvBlocksUsed, 0);
  // The four prompt blocks stay cached after both finish.
  assert.equal(core.blockPool.cachedFreeCount, 4);
});

test('prefix caching off: no hits, no events', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ enablePrefixCaching: false }), fakePerf(), 100, rec);
  drive(core, [req('a', 64, 2, 0, [1, 2, 3, 4])]);
  drive(core, [req('b', 64, 2, 0, [1, 2, 3, 4])]);
  assert.equal(rec.finished.get('b')!.cachedPromptTokens, 0);
  assert.equal(core.prefixHitTokens, 0);
  assert.deepEqual(rec.kvEvents, []);
  assert.equal(core.blockPool.hashedCount, 0);
});

test('LRU: allocation evicts the least recently freed cached block and emits BlockRemoved', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ blockSize: 4 }), fakePerf(), 4, rec);
  // Two one-block prompts, a then b, each freed at finish.
  drive(core, [req('a', 5, 1, 0, [100])]);
  drive(core, [req('b', 5, 1, 0, [200])]);
  assert.equal(core.blockPool.cachedFreeCount, 2);
  // Hit a again: it becomes the most recently used.
  drive(core, [req('a2', 5, 1, 0, [100])]);
  assert.equal(rec.finished.get('a2')!.cachedPromptTokens, 4);
  rec.kvEvents.length = 0;
  // Needs 3 blocks: two truly free, then evicts the LRU cached one (b's).
  drive(core, [req('big', 12, 1)]);
  assert.deepEqual(rec.kvEvents, [{ type: 'BlockRemoved', hashes: [200] }]);
  drive(core, [req('a3', 5, 1, 0, [100])]);
  assert.equal(rec.finished.get('a3')!.cachedPromptTokens, 4);
});

test('preemption by recompute: requests resume, keep their first-token time, finish with all tokens', () => {
  const rec = new Recorder();
  // 6 blocks of 4 tokens; three requests whose decodes outgrow the pool together.
  const core = new EngineCore(config({ blockSize: 4 }), fakePerf(), 6, rec);
  const reqs = [req('a', 6, 12), req('b', 6, 12), req('c', 6, 12)];
  drive(core, reqs);
  assert.ok(core.preemptions > 0);
  assert.equal(rec.finished.size, 3);
  assert.equal(rec.itlTokens, 3 * 11);
  let preempted = 0;
  for (const r of reqs) {
    const f = rec.finished.get(r.id)!;
    preempted += f.preemptions;
    assert.equal(f.firstTokenMs, rec.firstTokens.get(r.id));
    assert.ok(f.firstScheduledMs <= f.firstTokenMs && f.firstTokenMs < f.finishMs);
  }
  assert.equal(preempted, core.preemptions);
  // A just-resumed sequence's gap is reported on its own, longer than a regular step.
  assert.ok(rec.itlCalls.some(([gap, count]) => count === 1 && gap > 2));
});

test('a request that can never fit the pool is rejected, not looped on', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ blockSize: 16 }), fakePerf(), 4, rec);
  assert.equal(core.add(req('huge', 100, 1), 0), false);
  // Prompt fits but prompt plus output cannot.
  assert.equal(core.add(req('long-output', 60, 10), 0), false);
  // Exactly fits: 64 tokens of KV (the last output token needs none).
  assert.equal(core.add(req('fits', 60, 5), 0), true);
  assert.deepEqual(rec.rejected, ['huge', 'long-output']);
  drive(core, []);
  assert.deepEqual([...rec.finished.keys()], ['fits']);
  assert.equal(core.startStep(1000), undefined);
});

test('misuse is asserted', () => {
  const core = new EngineCore(config({}), fakePerf(), 10, new Recorder());
  assert.throws(() => core.finishStep(0), AssertionError);
  core.add(req('a', 10, 2), 0);
  core.startStep(0);
  assert.throws(() => core.startStep(0), AssertionError);
  assert.throws(() => core.add(req('a', 10, 2), 0), AssertionError);
  assert.throws(() => core.add(req('z', 0, 2), 0), AssertionError);
});

test('abort frees a waiting, a running and an in-flight request', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ maxNumSeqs: 2 }), fakePerf(), 20, rec);
  for (const id of ['a', 'b', 'c']) core.add(req(id, 20, 10), 0);
  const d = core.startStep(0)!;
  assert.equal(core.abort('c', 0), true); // waiting
  assert.equal(core.abort('b', 0), true); // in the step in flight
  assert.equal(core.abort('b', 0), false);
  core.finishStep(d);
  core.checkInvariants();
  assert.equal(core.running, 1);
  core.startStep(d);
  core.finishStep(2 * d);
  assert.equal(core.abort('a', 2 * d), true); // running
  core.checkInvariants();
  assert.equal(core.kvBlocksUsed, 0);
  assert.equal(core.pendingPrefillTokens, 0);
  assert.equal(core.startStep(3 * d), undefined);
  assert.equal(rec.finished.size, 0);
  assert.deepEqual([...rec.firstTokens.keys()], ['a']);
});

test('listener hooks may abort and add from inside finishStep', () => {
  const core: EngineCore = new EngineCore(config({}), fakePerf(), 50, {
    onFirstToken(request, nowMs) {
      if (request.id === 'b') {
        core.abort('a', nowMs);
        core.add(req('d', 5, 2), nowMs);
      }
    },
    onFinish() {},
  });
  for (const id of ['a', 'b', 'c']) core.add(req(id, 5, 3), 0);
  const endMs = drive(core, []);
  assert.ok(endMs > 0);
  assert.equal(core.running + core.waiting, 0);
});

interface Workload {
  readonly config: EngineConfig;
  readonly numBlocks: number;
  readonly requests: EngineRequest[];
  readonly aborts: Map<string, number>;
}

const workloadArb = fc
  .record({
    blockSize: fc.constantFrom(1, 2, 4, 16),
    maxNumSeqs: fc.integer({ min: 1, max: 8 }),
    maxNumBatchedTokens: fc.integer({ min: 1, max: 96 }),
    enablePrefixCaching: fc.boolean(),
    numBlocks: fc.integer({ min: 1, max: 40 }),
    chainTokens: fc.constantFrom(3, 4, 16, 32),
    requests: fc.array(
      fc.record({
        inputTokens: fc.integer({ min: 1, max: 80 }),
        outputTokens: fc.integer({ min: 1, max: 30 }),
        arrivalMs: fc.integer({ min: 0, max: 40 }),
        family: fc.integer({ min: 0, max: 2 }),
        sharedChainBlocks: fc.integer({ min: 0, max: 8 }),
        abortAtMs: fc.option(fc.integer({ min: 0, max: 60 }), { freq: 8 }),
      }),
      { minLength: 1, maxLength: 24 },
    ),
  })
  .map((w): Workload => {
    const aborts = new Map<string, number>();
    const requests = w.requests.map((r, i) => {
      const id = `r${i}`;
      if (r.abortAtMs !== null) aborts.set(id, r.abortAtMs);
      // Families share a chain; each request takes a prefix of its family's chain.
      const chain = Array.from({ length: r.sharedChainBlocks }, (_, j) => r.family * 100 + j);
      const blockHashes = engineBlockHashes(
        { blockTokens: w.chainTokens, hashes: chain },
        r.inputTokens,
        w.blockSize,
      );
      return req(id, r.inputTokens, r.outputTokens, r.arrivalMs, blockHashes);
    });
    return {
      config: config({
        blockSize: w.blockSize,
        maxNumSeqs: w.maxNumSeqs,
        maxNumBatchedTokens: w.maxNumBatchedTokens,
        enablePrefixCaching: w.enablePrefixCaching,
      }),
      numBlocks: w.numBlocks,
      requests,
      aborts,
    };
  });

function run(w: Workload, withAborts: boolean): { rec: Recorder; core: EngineCore; shapes: StepShape[] } {
  const rec = new Recorder();
  const shapes: StepShape[] = [];
  const core = new EngineCore(w.config, fakePerf(), w.numBlocks, rec);
  drive(core, w.requests, { shapes, aborts: withAborts ? w.aborts : new Map() });
  return { rec, core, shapes };
}

function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

test('property: random workloads (tiny pools included) complete with consistent blocks and budgets', () => {
  let preemptions = 0;
  let hitTokens = 0;
  fc.assert(
    fc.property(workloadArb, (w) => {
      const { rec, core, shapes } = run(w, false);
      const bs = w.config.blockSize;
      let outputTotal = 0;
      for (const r of w.requests) {
        const fits = Math.ceil((r.inputTokens + r.outputTokens - 1) / bs) <= w.numBlocks;
        if (!fits) {
          assert.ok(rec.rejected.includes(r.id));
          continue;
        }
        outputTotal += r.outputTokens;
        const f = rec.finished.get(r.id);
        assert.ok(f !== undefined, `${r.id} never finished`);
        assert.ok(r.arrivalMs <= f.firstScheduledMs);
        assert.ok(f.firstScheduledMs < f.firstTokenMs);
        assert.ok(f.firstTokenMs <= f.finishMs);
        assert.equal(f.firstTokenMs === f.finishMs, r.outputTokens === 1);
        assert.equal(f.cachedPromptTokens % bs, 0);
        if (!w.config.enablePrefixCaching) assert.equal(f.cachedPromptTokens, 0);
        if (f.preemptions === 0) {
          // Hits only on blocks truly shared with some other request, and never the whole prompt.
          let shared = 0;
          for (const o of w.requests) {
            if (o !== r) shared = Math.max(shared, commonPrefix(r.blockHashes, o.blockHashes));
          }
          assert.ok(f.cachedPromptTokens <= shared * bs);
          assert.ok(f.cachedPromptTokens <= r.inputTokens - 1);
        }
      }
      // Every output token was reported exactly once: a first token plus gaps.
      assert.equal(rec.firstTokens.size + rec.itlTokens, outputTotal);
      for (const s of shapes) {
        assert.ok(s.prefillTokens + s.decodeSeqs <= w.config.maxNumBatchedTokens);
        assert.ok(s.prefillSeqs + s.decodeSeqs <= w.config.maxNumSeqs);
        assert.ok(s.prefillSeqs + s.decodeSeqs >= 1);
      }
      assert.equal(core.kvBlocksUsed, 0);
      assert.equal(core.blockPool.freeCount, w.numBlocks);
      assert.equal(core.pendingPrefillTokens, 0);
      assert.equal(core.running + core.waiting, 0);
      assert.ok(core.prefixHitTokens <= core.prefixQueryTokens);
      preemptions += core.preemptions;
      hitTokens += core.prefixHitTokens;
    }),
    { numRuns: 300 },
  );
  // The generator must reach the interesting paths.
  assert.ok(preemptions > 0 && hitTokens > 0, `preemptions ${preemptions}, hit tokens ${hitTokens}`);
});

test('property: aborts at random times never leak blocks', () => {
  fc.assert(
    fc.property(workloadArb, (w) => {
      const { rec, core } = run(w, true);
      for (const r of w.requests) {
        const done = rec.finished.has(r.id) || rec.rejected.includes(r.id) || w.aborts.has(r.id);
        assert.ok(done, `${r.id} neither finished, rejected nor aborted`);
      }
      assert.equal(core.kvBlocksUsed, 0);
      assert.equal(core.pendingPrefillTokens, 0);
    }),
    { numRuns: 200 },
  );
});

test('property: deterministic: same workload, same listener log', () => {
  fc.assert(
    fc.property(workloadArb, (w) => {
      assert.deepEqual(run(w, true).rec.log, run(w, true).rec.log);
    }),
    { numRuns: 50 },
  );
});

test('a tiny pool forces preemption in random workloads', () => {
  let preemptions = 0;
  fc.assert(
    fc.property(workloadArb, (w) => {
      preemptions += run({ ...w, numBlocks: Math.max(4, Math.floor(w.numBlocks / 4)) }, false).core
        .preemptions;
    }),
    { numRuns: 100, seed: 7 },
  );
  assert.ok(preemptions > 0);
});

// ---- fused decode steps ----

/** A perf model whose decode time grows with context, so every sub-step's duration differs. */
function contextPerf(): PerfModel {
  return {
    ...fakePerf(),
    stepTimeMs: (shape) =>
      0.7 + 0.013 * shape.prefillTokens + 0.051 * shape.decodeSeqs + 0.00037 * shape.decodeContextTokens,
  };
}

/** What a host can observe at a step boundary. */
function snapshot(core: EngineCore, ids: readonly string[]): string {
  const blocks = ids.map((id) => core.blocksOf(id)?.join(',') ?? '-').join(' ');
  return `${core.running} ${core.waiting} ${core.kvBlocksUsed} ${core.pendingPrefillTokens} ${core.blockPool.cachedFreeCount} ${blocks}`;
}

interface HostRun {
  readonly rec: Recorder;
  readonly core: EngineCore;
  /** Snapshot at each step boundary, by time. */
  readonly boundaries: Map<number, string>;
  /** Steps the host saw (a fused step is one). */
  readonly hostSteps: number;
}

/**
 * Drives a core as the twin does: arrivals and aborts land at the first step boundary at or after
 * their time, and with `fuse` each step gets the next such time (or an extra barrier, standing for a
 * metrics sample) as its horizon. Without `fuse` the horizon is now: plain steps.
 */
function driveHost(
  w: Workload,
  fuse: boolean,
  barriers: readonly number[],
  perf: PerfModel,
  rec: Recorder = new Recorder(),
): HostRun {
  const core = new EngineCore(w.config, perf, w.numBlocks, rec);
  const arrivals = [...w.requests].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const aborts = [...w.aborts].sort((a, b) => a[1] - b[1]);
  const extra = [...barriers].sort((a, b) => a - b);
  const ids = w.requests.map((r) => r.id);
  const boundaries = new Map<number, string>();
  let nowMs = 0;
  let next = 0;
  let nextAbort = 0;
  let nextExtra = 0;
  let hostSteps = 0;
  for (;;) {
    while (next < arrivals.length && arrivals[next]!.arrivalMs <= nowMs) core.add(arrivals[next++]!, nowMs);
    while (nextAbort < aborts.length && aborts[nextAbort]![1] <= nowMs)
      core.abort(aborts[nextAbort++]![0], nowMs);
    while (nextExtra < extra.length && extra[nextExtra]! <= nowMs) nextExtra++;
    const barrier = Math.min(
      arrivals[next]?.arrivalMs ?? Infinity,
      aborts[nextAbort]?.[1] ?? Infinity,
      extra[nextExtra] ?? Infinity,
    );
    const durationMs = core.startStep(nowMs, fuse ? barrier : nowMs);
    if (durationMs === undefined) {
      if (next >= arrivals.length && nextAbort >= aborts.length) break;
      nowMs = Math.max(
        nowMs,
        Math.min(arrivals[next]?.arrivalMs ?? Infinity, aborts[nextAbort]?.[1] ?? Infinity),
      );
      continue;
    }
    const endMs = core.stepEndMs;
    if (!fuse) assert.equal(endMs, nowMs + durationMs);
    // A fused step ends strictly before the horizon; a plain one may cross it.
    if (fuse && core.lastStepShape.decodeSeqs > 0 && endMs >= barrier) {
      assert.equal(endMs, nowMs + durationMs, 'a step crossing the horizon is not fused');
    }
    nowMs = endMs;
    core.finishStep(nowMs);
    core.checkInvariants();
    boundaries.set(nowMs, snapshot(core, ids));
    hostSteps++;
    assert.ok(hostSteps < 1e6, 'workload did not finish');
  }
  return { rec, core, boundaries, hostSteps };
}

/** The listener log of one kind of entry, in order. */
function entries(rec: Recorder, ...kinds: string[]): string[] {
  return rec.log.filter((line) => kinds.some((k) => line.startsWith(`${k} `)));
}

test('fused: one sequence decoding alone runs its whole decode as one host step', () => {
  const w: Workload = {
    config: config({ blockSize: 16 }),
    numBlocks: 100,
    requests: [req('a', 100, 40)],
    aborts: new Map(),
  };
  const plain = driveHost(w, false, [], contextPerf());
  const fused = driveHost(w, true, [], contextPerf());
  assert.equal(plain.hostSteps, 40);
  // The prefill step, then 39 decode steps (crossing three block boundaries) fused into one.
  assert.equal(fused.hostSteps, 2);
  assert.equal(fused.core.steps, 40);
  assert.deepEqual(
    fused.rec.log,
    plain.rec.log.filter((l) => !l.startsWith('kv ')),
  );
  assert.equal(fused.core.busyMs, plain.core.busyMs);
  assert.equal(fused.rec.finished.get('a')!.finishMs, plain.rec.finished.get('a')!.finishMs);
  // Each sub-step's gap reported on its own, as the plain run does: 39 distinct gaps.
  assert.deepEqual(fused.rec.itlCalls, plain.rec.itlCalls);
  assert.equal(new Set(fused.rec.itlCalls.map(([gap]) => gap)).size, 39);
});

test('fused: the horizon bounds a fused step, which ends strictly before it', () => {
  const core = new EngineCore(config({}), contextPerf(), 100, new Recorder());
  core.add(req('a', 10, 1000), 0);
  let nowMs = core.startStep(0)!;
  core.finishStep(nowMs);
  const horizonMs = nowMs + 10;
  core.startStep(nowMs, horizonMs);
  const endMs = core.stepEndMs;
  assert.ok(endMs < horizonMs);
  const stepsBefore = core.steps;
  core.finishStep(endMs);
  const fusedSteps = core.steps - stepsBefore;
  assert.ok(fusedSteps > 1);
  // One more sub-step would have reached the horizon.
  const nextMs = core.startStep(endMs)!;
  assert.ok(endMs + nextMs >= horizonMs);
  nowMs = endMs + nextMs;
  core.finishStep(nowMs);
  // The default horizon (now) never fuses.
  assert.equal(core.steps, stepsBefore + fusedSteps + 1);
  assert.ok(Number.isNaN(core.stepEndMs));
});

test('fused: a sub-step ending exactly at the horizon is left out', () => {
  const perf: PerfModel = { ...fakePerf(), stepTimeMs: (shape) => (shape.prefillTokens > 0 ? 2 : 1) };
  const core = new EngineCore(config({}), perf, 100, new Recorder());
  core.add(req('a', 10, 20), 0);
  core.startStep(0, 7);
  assert.equal(core.stepEndMs, 2);
  core.finishStep(2);
  // Sub-steps would end at 3, 4, 5, 6, 7: the one at 7 may be an event of its own.
  assert.equal(core.startStep(2, 7), 4);
  assert.equal(core.stepEndMs, 6);
  core.finishStep(6);
  assert.equal(core.steps, 5);
});

test('fused: no fusing while a prefill chunk, a preemption or an admission is in the step', () => {
  const rec = new Recorder();
  const core = new EngineCore(config({ maxNumBatchedTokens: 32 }), contextPerf(), 100, rec);
  core.add(req('a', 8, 50), 0);
  let nowMs = core.startStep(0, Infinity)!;
  core.finishStep(nowMs);
  // b's long prompt is chunked over several steps; a decodes alongside, one step at a time.
  core.add(req('b', 100, 5), nowMs);
  for (let i = 0; i < 4; i++) {
    const before = core.steps;
    core.startStep(nowMs, Infinity);
    assert.ok(core.lastStepShape.prefillSeqs > 0);
    nowMs = core.stepEndMs;
    core.finishStep(nowMs);
    assert.equal(core.steps, before + 1);
  }
  // Both decode now: fused up to b's last token, which it samples at the fused step's end.
  core.startStep(nowMs, Infinity);
  nowMs = core.stepEndMs;
  core.finishStep(nowMs);
  assert.equal(rec.finished.get('b')?.finishMs, nowMs);
  assert.equal(rec.finished.has('a'), false);
});

test('property: fused and plain steps give the same finishes, tokens, gaps, blocks and events', () => {
  let fusedAny = 0;
  let batchedAny = 0;
  let preemptions = 0;
  fc.assert(
    fc.property(
      workloadArb,
      fc.boolean(),
      fc.array(fc.double({ min: 0, max: 400, noNaN: true }), { maxLength: 6 }),
      fc.option(fc.array(fc.integer({ min: -1, max: 2 }), { minLength: 24, maxLength: 24 })),
      (w, withAborts, barriers, priorities) => {
        // With priorities, the priority policy: waiting requests may preempt when blocks run short.
        const load: Workload = {
          ...w,
          config: priorities === null ? w.config : { ...w.config, schedulingPolicy: 'priority' },
          requests:
            priorities === null ? w.requests : w.requests.map((r, i) => ({ ...r, priority: priorities[i]! })),
          aborts: withAborts ? w.aborts : new Map<string, number>(),
        };
        const plain = driveHost(load, false, barriers, contextPerf());
        const fused = driveHost(load, true, barriers, contextPerf());
        // Finishes and first tokens with their times, in order; gaps with their counts, in order.
        assert.deepEqual(entries(fused.rec, 'first', 'finish'), entries(plain.rec, 'first', 'finish'));
        assert.deepEqual(fused.rec.itlCalls, plain.rec.itlCalls);
        // The batched gap hook reports the same gaps, in the same order among the other calls.
        const batching = new GapBatchRecorder();
        const batched = driveHost(load, true, barriers, contextPerf(), batching);
        assert.deepEqual(batched.rec.log, fused.rec.log);
        assert.equal(batched.core.busyMs, plain.core.busyMs);
        if (batching.batches > 0) batchedAny++;
        // The same KV events in the same order (evictions of a fused step come at its start).
        assert.deepEqual(fused.rec.kvEvents, plain.rec.kvEvents);
        assert.deepEqual(fused.rec.rejected, plain.rec.rejected);
        // Every boundary the fused host saw is one the plain host saw, in the same state.
        for (const [t, state] of fused.boundaries) assert.equal(state, plain.boundaries.get(t), `at ${t}`);
        assert.equal(fused.core.steps, plain.core.steps);
        assert.equal(fused.core.busyMs, plain.core.busyMs);
        assert.equal(fused.core.preemptions, plain.core.preemptions);
        assert.equal(fused.core.prefixHitTokens, plain.core.prefixHitTokens);
        assert.equal(fused.core.blockPool.cachedFreeCount, plain.core.blockPool.cachedFreeCount);
        assert.equal(fused.core.kvBlocksUsed, 0);
        if (fused.hostSteps < plain.hostSteps) fusedAny++;
        preemptions += plain.core.preemptions;
      },
    ),
    { numRuns: 400 },
  );
  // The generator must reach both fusing and preemption.
  assert.ok(fusedAny > 50 && preemptions > 0, `fused ${fusedAny} runs, ${preemptions} preemptions`);
  assert.ok(batchedAny > 50, `gap batches in ${batchedAny} runs`);
});

test('async scheduling: a request added while the engine is busy joins the step after next', () => {
  const perf: PerfModel = { ...fakePerf(), stepTimeMs: () => 10 };
  const firstStepWith = (asyncScheduling: boolean): number[] => {
    const rec = new Recorder();
    const core = new EngineCore(config({ asyncScheduling }), perf, 100, rec);
    core.add(req('a', 8, 20), 0);
    let nowMs = core.startStep(0)!; // a's prefill: [0, 10]
    core.finishStep(nowMs);
    nowMs += core.startStep(nowMs)!; // a decodes: [10, 20]; b arrives at 15, mid-step
    core.add(req('b', 8, 5, 15), 15);
    core.finishStep(nowMs);
    const admittedAt: number[] = [];
    for (let i = 0; i < 3; i++) {
      const stepMs = core.startStep(nowMs)!;
      if (core.lastStepShape.prefillSeqs > 0) admittedAt.push(nowMs);
      nowMs += stepMs;
      core.finishStep(nowMs);
    }
    return admittedAt;
  };
  // Synchronous: b's prefill runs in the step starting at 20. Async: the step at 20 was decided at
  // 10, before b arrived, so b's prefill starts at 30.
  assert.deepEqual(firstStepWith(false), [20]);
  assert.deepEqual(firstStepWith(true), [30]);
});

test('async scheduling: an idle engine, or one with nothing else to run, takes a request at once', () => {
  const perf: PerfModel = { ...fakePerf(), stepTimeMs: () => 10 };
  const core = new EngineCore(config({ asyncScheduling: true }), perf, 100, new Recorder());
  core.add(req('a', 8, 1), 0);
  let nowMs = core.startStep(0)!; // a prefills and finishes with its only token: [0, 10]
  core.add(req('b', 8, 3, 5), 5);
  core.finishStep(nowMs);
  // b arrived during a's step, but nothing else runs now: it is scheduled at 10, not held to 20.
  nowMs += core.startStep(nowMs)!;
  assert.equal(core.lastStepShape.prefillSeqs, 1);
  core.finishStep(nowMs);
  // An idle engine: c arrives at 100 and runs at once.
  assert.ok(drive(core, [], { startMs: nowMs }) < 100);
  core.add(req('c', 8, 2, 100), 100);
  assert.ok(core.startStep(100) !== undefined);
  assert.equal(core.lastStepShape.prefillSeqs, 1);
});

test('async scheduling: a held request stops decode steps from fusing past its admission', () => {
  const perf: PerfModel = { ...fakePerf(), stepTimeMs: () => 10 };
  const core = new EngineCore(config({ asyncScheduling: true }), perf, 100, new Recorder());
  core.add(req('a', 8, 50), 0);
  let nowMs = core.startStep(0)!;
  core.finishStep(nowMs);
  nowMs += core.startStep(nowMs)!; // [10, 20]
  core.add(req('b', 8, 5, 15), 15);
  core.finishStep(nowMs);
  // The step at 20 holds b back; with an open horizon it must still end after one sub-step.
  core.startStep(nowMs, Number.POSITIVE_INFINITY);
  assert.equal(core.stepEndMs, 30);
  core.finishStep(30);
  core.startStep(30, Number.POSITIVE_INFINITY);
  assert.equal(core.lastStepShape.prefillSeqs, 1);
});
