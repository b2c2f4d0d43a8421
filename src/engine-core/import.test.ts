import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GpuSpec, ModelSpec, PerfModel, StepShape } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { PrefixForest } from './prefix-forest.ts';
import type { EngineConfig, EngineRequest, FinishedRequest } from './types.ts';
import { DEFAULT_ENGINE_CONFIG } from './types.ts';

/** Imported KV (P/D decode side): reservations and the admission that skips the prompt's prefill. */

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

const CONFIG: EngineConfig = { ...DEFAULT_ENGINE_CONFIG, asyncScheduling: false, blockSize: 16 };

function core(
  blocks: number,
  mode: 'pool' | 'runs',
  shapes: StepShape[],
  done: FinishedRequest[],
): EngineCore {
  const forest = mode === 'runs' ? new PrefixForest(16) : undefined;
  return new EngineCore(
    CONFIG,
    perf(shapes),
    blocks,
    { onFinish: (r) => done.push(r) },
    { prefixForest: forest },
  );
}

function imported(id: string, inputTokens: number, outputTokens: number): EngineRequest {
  return { id, inputTokens, outputTokens, arrivalMs: 0, blockHashes: [], importedTokens: inputTokens - 1 };
}

function drain(engine: EngineCore): number {
  let t = 0;
  while (engine.hasWork) {
    const d = engine.startStep(t);
    if (d === undefined) break;
    t = engine.stepEndMs;
    engine.finishStep(t);
    engine.checkInvariants();
  }
  return t;
}

for (const mode of ['pool', 'runs'] as const) {
  test(`${mode}: an imported request computes one prompt token, then decodes`, () => {
    const shapes: StepShape[] = [];
    const done: FinishedRequest[] = [];
    const engine = core(64, mode, shapes, done);
    assert.equal(engine.reserveImport('a', 7), true);
    assert.equal(engine.importReservedBlocks, 7);
    assert.equal(engine.kvBlocksUsed, 7);
    engine.add(imported('a', 100, 5), 0);
    drain(engine);
    assert.equal(done.length, 1);
    assert.equal(done[0]?.cachedPromptTokens, 0, 'imported tokens are not prefix-cache hits');
    assert.equal(Math.max(...shapes.map((s) => s.prefillTokens)), 1);
    assert.equal(shapes.length, 5, 'one step per output token');
    assert.equal(engine.importReservedBlocks, 0);
    assert.equal(engine.kvBlocksUsed, 0);
  });

  test(`${mode}: a reservation fails, holding nothing, when too few blocks are free`, () => {
    const engine = core(10, mode, [], []);
    assert.equal(engine.reserveImport('a', 8), true);
    assert.equal(engine.reserveImport('b', 3), false);
    assert.equal(engine.importReservedBlocks, 8);
    assert.equal(engine.releaseImport('a'), true);
    assert.equal(engine.releaseImport('a'), false);
    assert.equal(engine.reserveImport('b', 3), true);
    engine.checkInvariants();
  });

  test(`${mode}: reserved blocks stay held while others run, and serve their import`, () => {
    const shapes: StepShape[] = [];
    const done: FinishedRequest[] = [];
    const engine = core(10, mode, shapes, done);
    assert.equal(engine.reserveImport('a', 7), true);
    // 48 prompt tokens take the 3 blocks left; the 7 reserved are not theirs to take.
    engine.add({ id: 'b', inputTokens: 48, outputTokens: 1, arrivalMs: 0, blockHashes: [] }, 0);
    engine.add(imported('a', 100, 1), 0);
    assert.notEqual(engine.startStep(0), undefined);
    assert.equal(engine.kvBlocksUsed, 10);
    assert.equal(engine.running, 2);
    engine.finishStep(engine.stepEndMs);
    engine.checkInvariants();
    assert.deepEqual(done.map((r) => r.request.id).sort(), ['a', 'b']);
    assert.deepEqual(
      shapes.map((s) => s.prefillTokens),
      [49],
    );
  });

  test(`${mode}: aborting a waiting import gives its reservation back`, () => {
    const engine = core(10, mode, [], []);
    assert.equal(engine.reserveImport('a', 7), true);
    engine.add(imported('a', 100, 2), 0);
    engine.abort('a', 0);
    assert.equal(engine.importReservedBlocks, 0);
    assert.equal(engine.kvBlocksUsed, 0);
    engine.checkInvariants();
  });

  test(`${mode}: a finished request with holdKvAfterFinish keeps its blocks until releaseExport`, () => {
    const done: FinishedRequest[] = [];
    const engine = core(10, mode, [], done);
    // 100 prompt tokens + 1 sampled: 7 blocks of 16, kept after the one-token request ends.
    engine.add(
      { id: 'p', inputTokens: 100, outputTokens: 1, arrivalMs: 0, blockHashes: [], holdKvAfterFinish: true },
      0,
    );
    drain(engine);
    assert.equal(done.length, 1);
    assert.equal(engine.exportHeldBlocks, 7);
    assert.equal(engine.kvBlocksUsed, 7);
    engine.checkInvariants();
    // The held blocks are not free: a 64-token prompt (4 blocks) waits, the engine idling.
    engine.add({ id: 'q', inputTokens: 64, outputTokens: 2, arrivalMs: 0, blockHashes: [] }, 1);
    assert.equal(engine.startStep(1), undefined);
    assert.equal(engine.waiting, 1);
    assert.equal(engine.releaseExport('p'), true);
    assert.equal(engine.releaseExport('p'), false);
    assert.equal(engine.exportHeldBlocks, 0);
    assert.equal(engine.kvBlocksUsed, 0);
    engine.checkInvariants();
    drain(engine);
    assert.deepEqual(
      done.map((r) => r.request.id),
      ['p', 'q'],
    );
  });

  test(`${mode}: an import refused admission keeps its reservation, and its tokens are skipped later`, () => {
    const shapes: StepShape[] = [];
    const done: FinishedRequest[] = [];
    const engine = core(12, mode, shapes, done);
    // b runs on 4 blocks (5 after its first token) and grows to 7.
    engine.add({ id: 'b', inputTokens: 64, outputTokens: 40, arrivalMs: 0, blockHashes: [] }, 0);
    engine.startStep(0);
    engine.finishStep(engine.stepEndMs);
    // a's 64-token prefix arrived into 4 reserved blocks; its 160-token prompt needs 10.
    assert.equal(engine.reserveImport('a', 4), true);
    engine.add(
      { id: 'a', inputTokens: 160, outputTokens: 2, arrivalMs: 0, blockHashes: [], importedTokens: 64 },
      1,
    );
    const usedByB = engine.kvBlocksUsed - 4;
    engine.startStep(engine.stepEndMs);
    engine.finishStep(engine.stepEndMs);
    engine.checkInvariants();
    assert.equal(engine.waiting, 1);
    assert.equal(engine.importReservedBlocks, 4);
    assert.ok(engine.kvBlocksUsed >= usedByB + 4, `used ${engine.kvBlocksUsed}: the reservation is counted`);
    shapes.length = 0;
    drain(engine);
    assert.deepEqual(done.map((r) => r.request.id).sort(), ['a', 'b']);
    assert.equal(engine.importReservedBlocks, 0);
    // a prefilled only what was not imported.
    const prefilled = shapes.reduce((sum, s) => sum + s.prefillTokens, 0);
    assert.equal(prefilled, 160 - 64);
  });

  test(`${mode}: imports refused while nothing runs recompute instead of waiting on each other`, () => {
    const shapes: StepShape[] = [];
    const done: FinishedRequest[] = [];
    const engine = core(12, mode, shapes, done);
    // Two 160-token prompts (10 blocks each), 4 blocks reserved for each: neither fits beside the other's hold.
    for (const id of ['a', 'c']) {
      assert.equal(engine.reserveImport(id, 4), true);
      engine.add(
        { id, inputTokens: 160, outputTokens: 2, arrivalMs: 0, blockHashes: [], importedTokens: 64 },
        0,
      );
    }
    drain(engine);
    assert.deepEqual(done.map((r) => r.request.id).sort(), ['a', 'c']);
    assert.equal(engine.importReservedBlocks, 0);
    assert.equal(engine.kvBlocksUsed, 0);
    // Their reservations were dropped, so both prompts were computed in full.
    assert.equal(
      shapes.reduce((sum, s) => sum + s.prefillTokens, 0),
      2 * 160,
    );
    engine.checkInvariants();
  });
}
