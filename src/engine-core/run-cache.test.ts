import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { PrefixChain } from '../core/request.ts';
import type { GpuSpec, ModelSpec, PerfModel } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { engineBlockHashes } from './prefix.ts';
import { PrefixForest } from './prefix-forest.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest } from './types.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

/** Step time grows with context, so fused sub-steps all differ. */
const perf: PerfModel = {
  gpu: {} as GpuSpec,
  model: {} as ModelSpec,
  tp: 1,
  stepTimeMs: (s) => 0.7 + 0.013 * s.prefillTokens + 0.051 * s.decodeSeqs + 0.00037 * s.decodeContextTokens,
  prefillTimeMs: (tokens) => 1 + 0.01 * tokens,
  decodeStepTimeMs: (batch) => 1 + 0.05 * batch,
  kvBytesPerToken: () => 1,
  weightBytes: () => 1,
};

/** Everything the listener saw, in order. */
class Log implements EngineListener {
  readonly lines: string[] = [];
  onFirstToken(request: EngineRequest, nowMs: number): void {
    this.lines.push(`first ${request.id} ${nowMs}`);
  }
  onFinish(r: FinishedRequest): void {
    this.lines.push(
      `finish ${r.request.id} ${r.firstScheduledMs} ${r.finishMs} ${r.cachedPromptTokens} ${r.preemptions}`,
    );
  }
  onInterTokenLatency(gapMs: number, count: number): void {
    this.lines.push(`itl ${gapMs} ${count}`);
  }
  onReject(request: EngineRequest): void {
    this.lines.push(`reject ${request.id}`);
  }
}

interface Item {
  readonly id: string;
  readonly chain: PrefixChain;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly arrivalMs: number;
  readonly priority: number;
  readonly abortAtMs: number | null;
}

interface Workload {
  readonly config: EngineConfig;
  readonly numBlocks: number;
  readonly items: readonly Item[];
  /** Run-length requests carry engine hashes instead of a forest path. */
  readonly byHashes: boolean;
}

/** Ranges of `workloadArbOf`'s draws. */
interface WorkloadRanges {
  readonly maxNumSeqs: number;
  readonly numBlocks: readonly [number, number];
  readonly arrivalMsMax: number;
  readonly families: number;
  readonly requests: readonly [number, number];
  /** Prefix caching always on (else drawn). */
  readonly caching?: boolean;
  /** Least chain blocks every request shares with its family. */
  readonly branchAtMin?: number;
}

const workloadArbOf = (r: WorkloadRanges) =>
  fc
    .record({
      blockSize: fc.constantFrom(1, 2, 4, 16),
      maxNumSeqs: fc.integer({ min: 1, max: r.maxNumSeqs }),
      maxNumBatchedTokens: fc.integer({ min: 1, max: 96 }),
      enablePrefixCaching: r.caching === true ? fc.constant(true) : fc.boolean(),
      priority: fc.boolean(),
      numBlocks: fc.integer({ min: r.numBlocks[0], max: r.numBlocks[1] }),
      chainTokens: fc.constantFrom(1, 3, 4, 16, 32),
      byHashes: fc.boolean(),
      requests: fc.array(
        fc.record({
          inputTokens: fc.integer({ min: 1, max: 90 }),
          outputTokens: fc.integer({ min: 1, max: 40 }),
          arrivalMs: fc.integer({ min: 0, max: r.arrivalMsMax }),
          family: fc.integer({ min: 0, max: r.families - 1 }),
          // Where the chain leaves its family's (a branch), and how long it is.
          branchAt: fc.integer({ min: r.branchAtMin ?? 0, max: 10 }),
          branch: fc.integer({ min: 0, max: 2 }),
          chainBlocks: fc.integer({ min: 0, max: 12 }),
          priority: fc.integer({ min: -1, max: 1 }),
          abortAtMs: fc.option(fc.integer({ min: 0, max: 80 }), { freq: 6 }),
        }),
        { minLength: r.requests[0], maxLength: r.requests[1] },
      ),
    })
    .map(
      (w): Workload => ({
        config: {
          ...DEFAULT_ENGINE_CONFIG,
          blockSize: w.blockSize,
          maxNumSeqs: w.maxNumSeqs,
          maxNumBatchedTokens: w.maxNumBatchedTokens,
          enablePrefixCaching: w.enablePrefixCaching,
          schedulingPolicy: w.priority ? 'priority' : 'fcfs',
        },
        numBlocks: w.numBlocks,
        byHashes: w.byHashes,
        items: w.requests.map((r, i) => ({
          id: `r${i}`,
          // Chain values stand for their whole prefix, as trace and generator hashes do.
          chain: {
            blockTokens: w.chainTokens,
            hashes: Array.from({ length: r.chainBlocks }, (_, j) =>
              j < r.branchAt ? r.family * 1000 + j : r.family * 1000 + 100 * (r.branch + 1) + j,
            ),
          },
          inputTokens: r.inputTokens,
          outputTokens: r.outputTokens,
          arrivalMs: r.arrivalMs,
          priority: r.priority,
          abortAtMs: r.abortAtMs,
        })),
      }),
    );

const workloadArb = workloadArbOf({
  maxNumSeqs: 8,
  numBlocks: [1, 60],
  arrivalMsMax: 60,
  families: 3,
  requests: [1, 30],
});
/**
 * Crowds of one family arriving together into a roomy cache: steps of 8 or more sequences that
 * share a cached prefix, which report it (StepShape.commonPrefixTokens, cascade attention).
 */
const crowdArb = workloadArbOf({
  maxNumSeqs: 16,
  numBlocks: [200, 600],
  arrivalMsMax: 20,
  families: 1,
  requests: [16, 40],
  caching: true,
  branchAtMin: 2,
});

/**
 * Same-step duplicates: bursts of one family (mostly the whole chain shared) arriving at the same
 * few instants, so several requests behind one prompt are admitted in one step and hit the blocks
 * an earlier admission of that step registered; tiny pools included, so some are preempted.
 */
const burstArb = workloadArbOf({
  maxNumSeqs: 12,
  numBlocks: [4, 300],
  arrivalMsMax: 2,
  families: 2,
  requests: [4, 30],
  caching: true,
  branchAtMin: 6,
});

/**
 * What a KV store's lookup of `item` finds in the core now (`cachedPrefixTokens`), asked as the
 * host would in the core's mode.
 */
function probe(core: EngineCore, forest: PrefixForest | undefined, w: Workload, item: Item): number {
  const bs = w.config.blockSize;
  if (forest === undefined || w.byHashes) {
    return core.cachedPrefixTokens({ blockHashes: engineBlockHashes(item.chain, item.inputTokens, bs) });
  }
  const prefixPath = forest.path(item.chain, item.inputTokens);
  const tokens = core.cachedPrefixTokens({ blockHashes: [], prefixPath });
  forest.release(prefixPath);
  return tokens;
}

/**
 * Runs the workload as a fusing host would (the horizon is the next arrival or abort) and returns
 * the listener log plus what a host sees at every step boundary.
 */
function runWorkload(w: Workload, mode: 'blocks' | 'runs'): string[] {
  const log = new Log();
  const forest = mode === 'runs' ? new PrefixForest(w.config.blockSize) : undefined;
  const core = new EngineCore(w.config, perf, w.numBlocks, log, { prefixForest: forest });
  const bs = w.config.blockSize;
  const toRequest = (item: Item): EngineRequest => {
    const hashes = engineBlockHashes(item.chain, item.inputTokens, bs);
    const base = {
      id: item.id,
      inputTokens: item.inputTokens,
      outputTokens: item.outputTokens,
      arrivalMs: item.arrivalMs,
      priority: item.priority,
    };
    if (forest === undefined || w.byHashes) return { ...base, blockHashes: hashes };
    const prefixPath = forest.path(item.chain, item.inputTokens);
    assert.equal(prefixPath.blocks, hashes.length);
    return { ...base, blockHashes: [], prefixPath };
  };
  const arrivals = [...w.items].sort((a, b) => a.arrivalMs - b.arrivalMs);
  const aborts = w.items
    .filter((i) => i.abortAtMs !== null)
    .map((i) => [i.id, i.abortAtMs as number] as const)
    .sort((a, b) => a[1] - b[1]);
  let nowMs = 0;
  let next = 0;
  let nextAbort = 0;
  for (let steps = 0; ; steps++) {
    assert.ok(steps < 1e5, 'workload did not finish');
    while (next < arrivals.length && (arrivals[next] as Item).arrivalMs <= nowMs)
      core.add(toRequest(arrivals[next++] as Item), nowMs);
    while (nextAbort < aborts.length && (aborts[nextAbort] as readonly [string, number])[1] <= nowMs)
      core.abort((aborts[nextAbort++] as readonly [string, number])[0], nowMs);
    const horizon = Math.min(arrivals[next]?.arrivalMs ?? Infinity, aborts[nextAbort]?.[1] ?? Infinity);
    if (core.startStep(nowMs, horizon) === undefined) {
      if (!Number.isFinite(horizon)) break;
      nowMs = Math.max(nowMs, horizon);
      continue;
    }
    // Inside the step: what it registered is hit by its admissions but not yet computed.
    core.checkInvariants();
    const inFlight = w.items.length > 0 ? probe(core, forest, w, w.items[0] as Item) : 0;
    nowMs = core.stepEndMs;
    core.finishStep(nowMs);
    core.checkInvariants();
    log.lines.push(
      `@${nowMs} run ${core.running} wait ${core.waiting} used ${core.kvBlocksUsed} cachedFree ${core.kvBlocksCachedFree} ` +
        `pending ${core.pendingPrefillTokens} common ${core.lastStepShape.commonPrefixTokens} ` +
        `hits ${core.prefixHitTokens}/${core.prefixQueryTokens} probe ${inFlight} ` +
        `preempt ${core.preemptions}`,
    );
  }
  assert.equal(core.kvBlocksUsed, 0);
  if (forest !== undefined && !w.byHashes && !w.config.enablePrefixCaching) assert.equal(forest.nodeCount, 0);
  return log.lines;
}

test('property: the run-length cache gives the per-block pool results step for step', () => {
  let hits = 0;
  let preemptions = 0;
  fc.assert(
    fc.property(workloadArb, (w) => {
      const blocks = runWorkload(w, 'blocks');
      const runs = runWorkload(w, 'runs');
      assert.deepEqual(runs, blocks);
      const last = blocks.at(-1) ?? '';
      const m = / hits (\d+)\/\d+ probe \d+ preempt (\d+)$/.exec(last);
      if (m !== null) {
        hits += Number(m[1]);
        preemptions += Number(m[2]);
      }
    }),
    { numRuns: 600 },
  );
  // The generator must reach the interesting paths.
  assert.ok(hits > 0 && preemptions > 0, `hits ${hits}, preemptions ${preemptions}`);
});

test('property: both caches report the same common prefix at every step, crowds sharing one', () => {
  let commonSteps = 0;
  fc.assert(
    fc.property(crowdArb, (w) => {
      const blocks = runWorkload(w, 'blocks');
      assert.deepEqual(runWorkload(w, 'runs'), blocks);
      commonSteps += blocks.filter((line) => / common [1-9]/.test(line)).length;
    }),
    { numRuns: 200 },
  );
  assert.ok(commonSteps > 0, 'no step had a common prefix');
});

test('property: both caches agree step for step on bursts behind one prompt (same-step hits)', () => {
  let sameStepHits = 0;
  fc.assert(
    fc.property(burstArb, (w) => {
      const blocks = runWorkload(w, 'blocks');
      assert.deepEqual(runWorkload(w, 'runs'), blocks);
      // A step whose admissions hit what that same step computes: hits grow while the in-flight
      // probe (computed blocks only) stays below them.
      const first = blocks.find((line) => line.startsWith('@'));
      if (first !== undefined && !/ hits 0\//.test(first)) sameStepHits++;
    }),
    { numRuns: 300 },
  );
  assert.ok(sameStepHits > 0, 'no burst hit blocks its own first step registered');
});

test('a forest drops nodes once no path or cache uses them', () => {
  const forest = new PrefixForest(16);
  const log = new Log();
  const core = new EngineCore(DEFAULT_ENGINE_CONFIG, perf, 8, log, { prefixForest: forest });
  const chain: PrefixChain = { blockTokens: 32, hashes: [1, 2, 3] };
  const path = forest.path(chain, 96);
  assert.equal(path.blocks, 6);
  assert.equal(forest.nodeCount, 3);
  core.add({ id: 'a', inputTokens: 96, outputTokens: 2, arrivalMs: 0, blockHashes: [], prefixPath: path }, 0);
  let now = 0;
  while (core.startStep(now) !== undefined) {
    now = core.stepEndMs;
    core.finishStep(now);
  }
  // Finished: its blocks stay cached (5 of 6: one prompt token is always computed), so do the nodes.
  assert.equal(core.kvBlocksCachedFree, 6);
  assert.equal(forest.nodeCount, 3);
  // A request needing the whole pool evicts them all; the nodes go with the last cached block.
  core.add({ id: 'b', inputTokens: 120, outputTokens: 1, arrivalMs: now, blockHashes: [] }, now);
  while (core.startStep(now) !== undefined) {
    now = core.stepEndMs;
    core.finishStep(now);
  }
  assert.equal(core.kvBlocksCachedFree, 0);
  assert.equal(forest.nodeCount, 0);
});
