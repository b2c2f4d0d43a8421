import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { perfModelFor } from '../model/perf.ts';
import type { PerfModel, StepShape } from '../model/types.ts';
import { EngineCore } from './engine-core.ts';
import { PrefixForest } from './prefix-forest.ts';
import { DEFAULT_ENGINE_CONFIG, type EngineConfig, type EngineRequest } from './types.ts';

type Mode = 'blocks' | 'runs';
const MODES: readonly Mode[] = ['blocks', 'runs'];
const BLOCK = 16;
/** 32 shared blocks: a 512-token system prompt. */
const SHARED = Array.from({ length: 32 }, (_, k) => 1_000 + k);

/** A prompt of `tokens` tokens: the shared blocks first (when `shared`), then blocks of its own. */
function prompt(id: number, tokens: number, shared: boolean, outputTokens = 40): EngineRequest {
  const full = Math.floor(tokens / BLOCK);
  const hashes: number[] = [];
  for (let k = 0; k < full; k++)
    hashes.push(shared && k < SHARED.length ? SHARED[k]! : 100_000 * (id + 1) + k);
  return { id: `r${id}`, inputTokens: tokens, outputTokens, arrivalMs: 0, blockHashes: hashes };
}

/** The model's step time, recording each step's shape (a fused step asks once per sub-step). */
function recording(inner: PerfModel, shapes: StepShape[]): PerfModel {
  return {
    gpu: inner.gpu,
    model: inner.model,
    tp: inner.tp,
    stepTimeMs(shape) {
      shapes.push({ ...shape });
      return inner.stepTimeMs(shape);
    },
    prefillTimeMs: (t, c) => inner.prefillTimeMs(t, c),
    decodeStepTimeMs: (b, c) => inner.decodeStepTimeMs(b, c),
    kvBytesPerToken: () => inner.kvBytesPerToken(),
    weightBytes: () => inner.weightBytes(),
  };
}

interface Run {
  readonly shapes: StepShape[];
  readonly finishMs: Map<string, number>;
}

/**
 * A leader prefills alone (so its prompt blocks are cached), then `followers` arrive together and
 * run to the end. Llama-2-7B on one H100; horizon Infinity lets the core fuse decode steps.
 */
function run(
  mode: Mode,
  followers: readonly EngineRequest[],
  options: {
    overrides?: Partial<EngineConfig>;
    perf?: PerfModel;
    fuse?: boolean;
    memo?: boolean;
    leader?: EngineRequest;
    /** Blocks `reserveImport` holds (a P/D transfer in, never arriving) before the followers come. */
    importBlocks?: number;
  } = {},
): Run {
  const shapes: StepShape[] = [];
  const finishMs = new Map<string, number>();
  const perf = options.perf ?? recording(perfModelFor('h100', 'llama-2-7b', 1), shapes);
  const config: EngineConfig = { ...DEFAULT_ENGINE_CONFIG, asyncScheduling: false, ...options.overrides };
  const core = new EngineCore(
    config,
    perf,
    8192,
    { onFinish: (r) => finishMs.set(r.request.id, r.finishMs) },
    {
      prefixForest: mode === 'runs' ? new PrefixForest(BLOCK) : undefined,
      memoizeDecodeSteps: options.memo === true,
    },
  );
  core.add(options.leader ?? prompt(0, 805, true, 30), 0);
  let now = 0;
  assert.ok(core.startStep(now) !== undefined);
  now = core.stepEndMs;
  core.finishStep(now);
  if (options.importBlocks !== undefined) assert.ok(core.reserveImport('incoming', options.importBlocks));
  for (const r of followers) core.add(r, now);
  while (core.hasWork) {
    if (core.startStep(now, options.fuse === true ? Number.POSITIVE_INFINITY : now) === undefined) break;
    now = core.stepEndMs;
    core.finishStep(now);
    core.checkInvariants();
  }
  return { shapes, finishMs };
}

const followers = (n: number, tokens = 805): EngineRequest[] =>
  Array.from({ length: n }, (_, i) => prompt(i + 1, tokens, true));

describe('EngineCore: the common prefix of a step (cascade attention)', () => {
  for (const mode of MODES) {
    it(`${mode}: 10 sequences sharing a cached 512-token prompt report 512 while 8 or more run`, () => {
      const { shapes } = run(mode, followers(9));
      // The leader's own prefill: a lone sequence, nothing asked.
      assert.equal(shapes[0]!.commonPrefixTokens, 0);
      // The followers' admission: they hit 32 blocks the leader holds, so they have computed exactly
      // 512 tokens before the step: the cap by the fewest computed tokens is met, not exceeded.
      assert.equal(shapes[1]!.prefillSeqs, 9);
      assert.equal(shapes[1]!.commonPrefixTokens, 512);
      for (const s of shapes.slice(1)) {
        const seqs = s.prefillSeqs + s.decodeSeqs;
        assert.equal(s.commonPrefixTokens, seqs >= 8 ? 512 : 0, `step of ${seqs} sequences`);
      }
      // The leader finishes first (30 tokens against 40 each): the 9 followers still share.
      assert.ok(shapes.some((s) => s.decodeSeqs === 9 && s.commonPrefixTokens === 512));
    });

    it(`${mode}: a KV import in flight does not turn the prefix off (its hold is no holder)`, () => {
      // P/D decode side: one request's 805-token prompt (51 blocks) is in transfer in meanwhile.
      const { shapes } = run(mode, followers(9), { importBlocks: 51 });
      assert.equal(shapes[1]!.prefillSeqs, 9);
      for (const s of shapes.slice(1)) {
        const seqs = s.prefillSeqs + s.decodeSeqs;
        assert.equal(s.commonPrefixTokens, seqs >= 8 ? 512 : 0, `step of ${seqs} sequences`);
      }
    });

    it(`${mode}: a follower whose whole prompt is the shared blocks recomputes its last one: 31 blocks`, () => {
      // vLLM keeps one token to compute, so a 512-token prompt hits 31 blocks and computes block 31
      // into a block of its own (the cached copy is the leader's): only 31 blocks are common.
      const { shapes } = run(mode, [...followers(8), prompt(9, 512, true)]);
      assert.equal(shapes[1]!.commonPrefixTokens, 496);
      assert.ok(shapes.slice(1).every((s) => s.commonPrefixTokens === 496 || s.decodeSeqs < 8));
    });

    it(`${mode}: 0 with 7 sequences, with prefix caching off, and with disableCascadeAttn`, () => {
      assert.ok(run(mode, followers(6)).shapes.every((s) => s.commonPrefixTokens === 0));
      const noCache = run(mode, followers(9), { overrides: { enablePrefixCaching: false } });
      assert.ok(noCache.shapes.every((s) => s.commonPrefixTokens === 0));
      const disabled = run(mode, followers(9), { overrides: { disableCascadeAttn: true } });
      assert.ok(disabled.shapes.every((s) => s.commonPrefixTokens === 0));
      // Nothing shared: the same lengths with prompts of their own.
      const unique = Array.from({ length: 9 }, (_, i) => prompt(i + 1, 805, false));
      assert.ok(run(mode, unique).shapes.every((s) => s.commonPrefixTokens === 0));
    });
  }

  it('both KV modes report the same prefix at every step', () => {
    const mixed = [...followers(8), prompt(9, 512, true), prompt(10, 300, false)];
    const prefixes = MODES.map((mode) => run(mode, mixed).shapes.map((s) => s.commonPrefixTokens));
    assert.deepEqual(prefixes[0], prefixes[1]);
    // The unshared sequence holds none of the blocks: nothing is common while it runs.
    assert.ok(prefixes[0]!.every((p) => p === 0));
  });

  for (const mode of MODES) {
    it(`${mode}: a perf model that never runs cascade (legacy-2023) gets no prefix, the same times, and the memo`, () => {
      const legacy = perfModelFor('h100', 'llama-2-7b', 1, 'legacy-2023');
      assert.equal(legacy.cascadeAttention, false);
      assert.equal(perfModelFor('h100', 'llama-2-7b', 1).cascadeAttention, true);
      assert.equal(perfModelFor('h100', 'bloom-176b', 8).cascadeAttention, false, 'ALiBi');
      // Counting calls; `told` says the model never runs cascade, the other wrapper does not say.
      const counted = (told: boolean) => {
        const shapes: StepShape[] = [];
        const perf = recording(legacy, shapes);
        return { shapes, perf: told ? { ...perf, cascadeAttention: false } : perf };
      };
      const told = counted(true);
      const silent = counted(false);
      const a = run(mode, followers(7), { perf: told.perf, fuse: true, memo: true });
      const b = run(mode, followers(7), { perf: silent.perf, fuse: true, memo: true });
      assert.ok(told.shapes.every((s) => s.commonPrefixTokens === 0));
      assert.ok(
        silent.shapes.some((s) => s.commonPrefixTokens === 512),
        'the silent one walks',
      );
      assert.deepEqual(a.finishMs, b.finishMs);
      // The same run again on each model: the shared decode memo answers the 8-sequence decode steps
      // for the model that said it never runs cascade; the other is asked for them again.
      const [toldFirst, silentFirst] = [told.shapes.length, silent.shapes.length];
      const again = run(mode, followers(7), { perf: told.perf, fuse: true, memo: true });
      assert.deepEqual(again.finishMs, a.finishMs);
      run(mode, followers(7), { perf: silent.perf, fuse: true, memo: true });
      const toldAgain = told.shapes.length - toldFirst;
      const silentAgain = silent.shapes.length - silentFirst;
      assert.ok(toldAgain < silentAgain, `${toldAgain} vs ${silentAgain} calls`);
    });

    it(`${mode}: fused decode steps keep the unfused times, and the decode memo is not fooled by the prefix`, () => {
      // 8 sequences (the memo remembers batches of up to 8): a run sharing nothing fills the shared
      // memo with non-cascade times at the very contexts the shared run then decodes through.
      const memoised = perfModelFor('h100', 'llama-2-7b', 1);
      const unique = Array.from({ length: 7 }, (_, i) => prompt(i + 1, 805, false));
      const leaderUnique = prompt(0, 805, false, 30);
      const plain = run(mode, unique, { perf: memoised, fuse: true, memo: true, leader: leaderUnique });
      const shared = run(mode, followers(7), { perf: memoised, fuse: true, memo: true });
      const shapes: StepShape[] = [];
      const reference = run(mode, followers(7), {
        perf: recording(perfModelFor('h100', 'llama-2-7b', 1), shapes),
      });
      assert.ok(shapes.some((s) => s.decodeSeqs === 8 && s.commonPrefixTokens === 512));
      assert.deepEqual(shared.finishMs, reference.finishMs);
      // And cascade attention made a difference: the shared run's last finish differs from the plain one's.
      assert.notEqual(shared.finishMs.get('r1'), plain.finishMs.get('r1'));
    });
  }
});
