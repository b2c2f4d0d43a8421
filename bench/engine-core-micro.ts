/**
 * Micro-benchmark of the engine core's step loop (not a test). Two cases:
 * - decode-heavy: a full batch of long generations, counting sequence-steps per wall second;
 * - churn: a stream of short requests with shared prefixes and a pool small enough to preempt,
 *   counting requests per wall second through one core; with the per-block pool (with and without
 *   KV events) and with the run-length cache over a prefix forest, each request's prefix identity
 *   (block hashes, or a forest path) built as it is added.
 * Run: node --import tsx bench/engine-core-micro.ts
 */

import { parseArgs } from 'node:util';
import { scriptArgs } from '../scripts/script-args.ts';
import type { PrefixChain } from '../src/core/request.ts';
import { EngineCore } from '../src/engine-core/engine-core.ts';
import { engineBlockHashes } from '../src/engine-core/prefix.ts';
import { PrefixForest } from '../src/engine-core/prefix-forest.ts';
import type { EngineListener, EngineRequest } from '../src/engine-core/types.ts';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine-core/types.ts';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../src/model/types.ts';

// No options: before, --help (or any flag) went unread and ran the whole bench.
scriptArgs(
  'engine-core-micro',
  `Usage: node --import tsx bench/engine-core-micro.ts

The engine core's step loop alone, with a fake perf model: sequence-steps per wall second with a
full decode batch, and requests per wall second through a stream of short requests with shared
prefixes (per-block pool with and without KV events, run-length cache), with and without
preemption. No options.

Options:
  -h, --help   this text`,
  () => parseArgs({ options: {} }),
);

const perf: PerfModel = {
  gpu: {} as GpuSpec,
  model: {} as ModelSpec,
  tp: 1,
  stepTimeMs: (s: StepShape) => 1 + 0.01 * s.prefillTokens + 0.05 * s.decodeSeqs,
  prefillTimeMs: (t: number) => 1 + 0.01 * t,
  decodeStepTimeMs: (b: number) => 1 + 0.05 * b,
  kvBytesPerToken: () => 1,
  weightBytes: () => 1,
};

function decodeHeavy(batch: number, wallMs: number): number {
  let finished = 0;
  const listener: EngineListener = {
    onFinish: () => {
      finished++;
    },
    onInterTokenLatency: () => {},
  };
  const core = new EngineCore({ ...DEFAULT_ENGINE_CONFIG, maxNumSeqs: batch }, perf, 200_000, listener);
  let id = 0;
  const add = (nowMs: number) =>
    core.add(
      { id: `d${id++}`, inputTokens: 512, outputTokens: 2000, arrivalMs: nowMs, blockHashes: [] },
      nowMs,
    );
  for (let i = 0; i < batch; i++) add(0);
  let nowMs = 0;
  let seqSteps = 0;
  const t0 = performance.now();
  let steps = 0;
  while (performance.now() - t0 < wallMs) {
    for (let k = 0; k < 1000; k++) {
      nowMs += core.startStep(nowMs)!;
      seqSteps += core.lastStepShape.decodeSeqs + core.lastStepShape.prefillSeqs;
      core.finishStep(nowMs);
      while (core.running + core.waiting < batch) add(nowMs);
      steps++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  console.log(
    `decode-heavy batch ${batch}: ${steps} steps, ${(seqSteps / s / 1e6).toFixed(2)} M seq-steps/s, ${((s / steps) * 1e6).toFixed(2)} us/step, ${finished} finished`,
  );
  return seqSteps / s;
}

type ChurnCache = 'blocks+events' | 'blocks' | 'runs';

function churn(requests: number, numBlocks: number, cache: ChurnCache): void {
  let finished = 0;
  const listener: EngineListener = {
    onFinish: () => {
      finished++;
    },
    onFirstToken: () => {},
    onInterTokenLatency: () => {},
  };
  if (cache === 'blocks+events') listener.onKvEvent = () => {};
  const forest = cache === 'runs' ? new PrefixForest(DEFAULT_ENGINE_CONFIG.blockSize) : undefined;
  const core = new EngineCore(DEFAULT_ENGINE_CONFIG, perf, numBlocks, listener, { prefixForest: forest });
  const reqs: (Omit<EngineRequest, 'blockHashes'> & { chain: PrefixChain })[] = [];
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let i = 0; i < requests; i++) {
    const inputTokens = 200 + Math.floor(rand() * 1800);
    const family = Math.floor(rand() * 20);
    // A shared 1024-token system prompt per family, then tokens unique to the request.
    const chain = { blockTokens: 512, hashes: [family, family * 7 + 1, 1000 + i, 2000 + i] };
    reqs.push({
      id: `c${i}`,
      inputTokens,
      outputTokens: 20 + Math.floor(rand() * 300),
      arrivalMs: i * 5,
      chain,
    });
  }
  const toEngine = (r: (typeof reqs)[number]): EngineRequest =>
    forest === undefined
      ? { ...r, blockHashes: engineBlockHashes(r.chain, r.inputTokens, 16) }
      : { ...r, blockHashes: [], prefixPath: forest.path(r.chain, r.inputTokens) };
  const t0 = performance.now();
  let nowMs = 0;
  let next = 0;
  let steps = 0;
  while (finished < requests) {
    while (next < requests && reqs[next]!.arrivalMs <= nowMs) core.add(toEngine(reqs[next++]!), nowMs);
    const d = core.startStep(nowMs);
    if (d === undefined) {
      nowMs = reqs[next]!.arrivalMs;
      continue;
    }
    nowMs += d;
    core.finishStep(nowMs);
    steps++;
  }
  const s = (performance.now() - t0) / 1000;
  console.log(
    `churn (${numBlocks} blocks, ${cache}): ${requests} requests in ${s.toFixed(2)} s wall (${Math.round(requests / s)} req/s), ${steps} steps, ` +
      `${core.preemptions} preemptions, prefix hit rate ${core.prefixHitRate.toFixed(3)}, mean batch ${(requests / steps).toFixed(2)} finishes/step`,
  );
}

decodeHeavy(256, 500);
decodeHeavy(256, 2000);
decodeHeavy(32, 2000);
for (const numBlocks of [20_000, 3_000]) {
  for (const cache of ['blocks+events', 'blocks', 'runs'] as const) churn(200_000, numBlocks, cache);
}
