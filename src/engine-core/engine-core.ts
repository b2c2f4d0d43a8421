import { AssertionError, assert } from '../core/assert.ts';
import { CASCADE_REQUESTS_MIN } from '../model/cascade.ts';
import type { PerfModel, StepShape } from '../model/types.ts';
import { BlockPool } from './block-pool.ts';
import { Deque } from './deque.ts';
import type { PrefixForest, PrefixPath } from './prefix-forest.ts';
import { RunCache, RunHold } from './run-cache.ts';
import {
  DECODE_MEMO_PAGE_BITS,
  type DecodeStepMemo,
  decodeStepMemo,
  NO_DECODE_MEMO_PAGE,
} from './step-memo.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest, KvEvent } from './types.ts';
import { PriorityWaitQueue, type WaitQueue } from './wait-queue.ts';

const WAITING = 0;
const RUNNING = 1;
const DONE = 2;
type SeqState = typeof WAITING | typeof RUNNING | typeof DONE;

/** The block table of a sequence that holds none (waiting, or finished). */
const NO_BLOCKS = new Int32Array(0);
/** `lastTokenMs` of a sequence that has sampled nothing yet. */
const NO_TOKEN_YET = Number.NEGATIVE_INFINITY;
/** Running slots allocated up front; they double as needed, up to maxNumSeqs. */
const SLOTS_INITIAL = 64;
/**
 * Most decode steps one fused step may hold (see `startStep`). It bounds the sub-step end times a
 * core keeps; past a few hundred the host's per-step cost is noise anyway.
 */
export const FUSED_STEPS_MAX = 4096;
/** Decode batches whose context could reach this many tokens within a fused step are not fused. */
const CONTEXT_FUSE_MAX = 2 ** 30;
const DECODE_MEMO_PAGE_MASK = (1 << DECODE_MEMO_PAGE_BITS) - 1;
/** `fuseDecodes`'s next allocating sub-step when none allocates (past any FUSED_STEPS_MAX). */
const NO_ALLOC = 0x7fffffff;

/** How a host sets up an EngineCore beyond its engine options. */
export interface EngineCoreOptions {
  /**
   * Keep the KV cache in runs over this forest's shared prefix paths (RunCache) instead of block by
   * block. Requests then may carry `prefixPath` (taken from this forest; the core hands it back when
   * the request leaves); one without gets a path of its `blockHashes`. No KV events in this mode.
   */
  readonly prefixForest?: PrefixForest | undefined;
  /**
   * Remember decode-only step times per perf model (DecodeStepMemo, shared by every core of the
   * model): the same times, from a table instead of the model, on a pure perf model. Default false.
   */
  readonly memoizeDecodeSteps?: boolean | undefined;
}

/**
 * One request's state inside the core. Token bookkeeping follows vLLM v1: `numTokens` is every
 * token known (prompt plus sampled output), `computed` is how many of them have KV in cache. A
 * sequence computes `numTokens - computed` tokens (chunked by the budget) and samples one new token
 * each time it catches up. Preemption resets `computed` to 0 and the whole of `numTokens` becomes
 * the prompt to recompute.
 *
 * While a sequence runs, its per-step fields live in the core's running slots (see EngineCore) and
 * the copies here are stale; they are current again once it leaves the running set.
 */
class Seq {
  readonly request: EngineRequest;
  readonly outputTokens: number;
  readonly hashCount: number;
  /** Run-length mode only: the request's prefix path and what the sequence holds of it. */
  readonly hold: RunHold | undefined;
  /** Blocks the request's largest KV needs (prompt plus all but the last output token). */
  readonly maxBlocks: number;
  state: SeqState = WAITING;
  numTokens: number;
  /** Tokens to prefill on the current admission; the sequence decodes once `computed` reaches it. */
  promptLen: number;
  produced = 0;
  computed = 0;
  /**
   * Physical blocks, in token order: a table from the core's BlockTables, taken on admission and
   * given back when the sequence lets go of its blocks, so only running sequences hold one.
   */
  blocks: Int32Array = NO_BLOCKS;
  /** When the core was given the request (`add`'s nowMs): under async scheduling, when the scheduler could first see it. */
  addedMs = 0;
  firstScheduledMs = -1;
  firstTokenMs = -1;
  /** When its last token was sampled; NO_TOKEN_YET before the first. */
  lastTokenMs = NO_TOKEN_YET;
  cachedPromptTokens = 0;
  preemptions = 0;
  /** Its import reservation was released before admission (a deadlock broken): it recomputes. */
  importDropped = false;

  /** Higher is more important (the 'priority' scheduling policy). */
  readonly priority: number;

  constructor(request: EngineRequest, maxBlocks: number, path: PrefixPath | undefined) {
    this.request = request;
    this.priority = request.priority ?? 0;
    this.outputTokens = request.outputTokens;
    this.hold = path === undefined ? undefined : new RunHold(path);
    this.hashCount = path === undefined ? request.blockHashes.length : path.blocks;
    this.numTokens = request.inputTokens;
    this.promptLen = request.inputTokens;
    this.maxBlocks = maxBlocks;
  }
}

/** A finished sequence's blocks kept for a transfer out (EngineRequest.holdKvAfterFinish). */
interface ExportHold {
  /** Its table (block-pool mode) or its run-cache hold, as when it ran. */
  readonly seq: Seq;
  /** Blocks it held when it finished (the slot's count). */
  readonly numBlocks: number;
}

/**
 * Recycled block tables in power-of-two sizes. A request's table used to be a fresh Int32Array,
 * which for a typical prompt is too big to live on V8's heap: a malloc and a finaliser per request,
 * 6% of a twin run. Only running sequences (and the one at the front of the waiting queue) hold
 * tables, so each size class caches at most `cachedMax` (maxNumSeqs) of them.
 */
class BlockTables {
  private readonly free: Int32Array[][] = [];

  constructor(private readonly cachedMax: number) {}

  /** A table of at least `length` entries (contents unspecified). */
  take(length: number): Int32Array {
    const sizeClass = length <= 1 ? 0 : 32 - Math.clz32(length - 1);
    const cached = this.free[sizeClass]?.pop();
    return cached ?? new Int32Array(1 << sizeClass);
  }

  /** Hands a table from `take` back. */
  give(table: Int32Array): void {
    if (table.length === 0) return;
    const sizeClass = 31 - Math.clz32(table.length);
    let list = this.free[sizeClass];
    if (list === undefined) {
      list = [];
      this.free[sizeClass] = list;
    }
    if (list.length < this.cachedMax) list.push(table);
  }
}

/**
 * A vLLM-like continuous-batching scheduler over paged KV blocks, as a pure state machine.
 *
 * Each step, like vLLM v1's scheduler: running sequences first, in admission order (a decode takes
 * one token of the budget, a sequence still in prefill its next chunk), preempting the most recently
 * admitted running sequence by recompute when a block is needed and none is free; then, if nothing
 * was preempted, waiting requests FCFS while the token budget, `maxNumSeqs` and free blocks allow,
 * with chunked prefill and a prefix-cache lookup on admission.
 *
 * Steps have two phases so a host can wait out their duration: `startStep` schedules and returns the
 * duration from the perf model, `finishStep` applies the results and calls the listener. The hot path
 * is O(batch) and allocates nothing except per request (its state and its FinishedRequest) and KV
 * events (only when the listener takes them).
 *
 * Running sequences live in slots: parallel typed arrays indexed by position in admission order
 * (`slotComputed[i]` and so on, with `slotSeq[i]` the Seq itself). Both step loops touch every
 * running sequence, and a twin host steps a hundred cores in turn, so the per-sequence fields a
 * step reads sit together in a few kilobytes instead of scattered over objects and their boxed
 * doubles (docs/benchmarks.md has the figures). A Seq's own copies are loaded into a slot on
 * admission and saved back when it leaves the running set (finish, preemption, abort).
 *
 * Prefix caching: a prompt block is hashed (becomes hittable; its BlockStored is published when
 * the step ends, below) when the step that fills it is scheduled, as vLLM's scheduler registers
 * full blocks in `allocate_slots`: a request admitted after it, in the same step or later, hits it
 * (the forward pass writes a layer's KV before that layer's attention reads it). Nothing can take
 * the block's KV away before the step runs: a preemption victim is never a sequence already
 * scheduled in the step (see `preempt`), and an abort mid-step leaves the step's work on the GPU,
 * so its blocks stay cached as in vLLM. Only blocks with an entry in `EngineRequest.blockHashes`
 * are cacheable; decode blocks never are.
 *
 * KV events are published when the step ends, not when it is scheduled: vLLM's block pool queues
 * them as it registers and evicts blocks, and the scheduler drains and publishes that queue in
 * `update_from_output`, after the forward pass. The events a step's scheduling causes (BlockRemoved
 * for evictions, BlockStored for registrations, in that order) are held and handed to the listener
 * at the start of `finishStep`; a subscriber never sees a prefix before the step computing it ends.
 * Events caused between steps (an import's reservation evicting) go out at once.
 *
 * Fused decode steps: a host that knows nothing outside the core can happen before some time (no
 * arrival, no abort, no one reading the core's signals) passes that time to `startStep` as a
 * horizon, and the core may then run several decode-only steps as one host-visible step, with the
 * same results as running them one by one. A sparse trace is mostly one sequence decoding alone,
 * hundreds of steps per request; fusing them is what lets a twin replay such a trace at tens of
 * thousands of requests per wall second (docs/benchmarks.md).
 *
 * Two KV caches, with the same results: by default the per-block `BlockPool` with a block table per
 * sequence (block ids, KV events); given a PrefixForest (EngineCoreOptions), a RunCache that keeps
 * blocks in runs over the forest's shared prefix paths, so a 12k-token prompt costs a few dozen
 * operations instead of a few thousand (no KV events, no block ids; see RunCache for the one way
 * its notion of "same block" differs).
 */
export class EngineCore {
  /** Inspection only (tests, debugging): the per-block pool; a 1-block stand-in in run-length mode. */
  readonly blockPool: BlockPool;
  /** The run-length cache, when the core runs over a PrefixForest. */
  private readonly runs: RunCache | undefined;
  private readonly forest: PrefixForest | undefined;
  /** Whichever of the two keeps the counts. */
  private readonly kv: BlockPool | RunCache;
  private readonly config: EngineConfig;
  /** Where step times come from: the perf model through its decode-step memo, or a pass-through. */
  private readonly stepTimes: DecodeStepMemo;
  private readonly listener: EngineListener;
  private readonly blockSize: number;
  private readonly caching: boolean;
  /**
   * Whether steps report their common prefix (prefix caching on, cascade attention not disabled,
   * and a perf model that may run it: PerfModel.cascadeAttention not false).
   */
  private readonly cascade: boolean;
  private readonly emitKv: boolean;
  /**
   * KV events caused since `startStep` began, published by finishStep (or by a startStep that
   * schedules nothing). At most two per pool block: within a step an evicted block stays allocated
   * (no second eviction) and a block is registered once.
   */
  private readonly kvHeld: KvEvent[] = [];
  /** Inside a step (from startStep to finishStep): KV events wait in `kvHeld`. */
  private holdingKv = false;

  /** Running sequences in admission order, `runCount` of them; slots past the count are stale. */
  private slotSeq: (Seq | undefined)[] = [];
  /**
   * The block table of the sequence in each slot (its `blocks`): reading it here instead of through
   * the Seq saves a cache miss on every block allocation, about a tenth of a 128-instance run.
   */
  private slotTable: Int32Array[] = [];
  private slotNumTokens: Float64Array = new Float64Array(0);
  private slotComputed: Float64Array = new Float64Array(0);
  private slotPromptLen: Float64Array = new Float64Array(0);
  /** Tokens scheduled in the step in flight (0 when not scheduled). */
  private slotStepTokens: Float64Array = new Float64Array(0);
  /** Output tokens still to sample. */
  private slotRemaining: Float64Array = new Float64Array(0);
  private slotLastTokenMs: Float64Array = new Float64Array(0);
  private slotNumBlocks: Int32Array = new Int32Array(0);
  /** Leading blocks already considered for the prefix cache (hashed, hit, or found duplicate). */
  private slotNumStored: Int32Array = new Int32Array(0);
  private slotHashCount: Int32Array = new Int32Array(0);
  private runCount = 0;
  private readonly waitQueue: WaitQueue<Seq>;
  private readonly byPriority: boolean;
  private readonly byId = new Map<string, Seq>();
  private readonly tables: BlockTables;
  /** Reused for every step; the perf model must not keep it. */
  private readonly shape: StepShape = {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: 0,
    decodeContextTokens: 0,
    commonPrefixTokens: 0,
  };

  private inFlight = false;
  private inFinish = false;
  private abortedInFinish = false;
  private stepStartMs = 0;
  /** When the step in flight ends (its last sub-step's end for a fused step); NaN when none. */
  private stepEndAtMs = Number.NaN;
  /** Decode steps in the step in flight: 1, or more for a fused step. */
  private fusedSteps = 1;
  /**
   * End time of each sub-step of the step in flight, in order (entries past `fusedSteps` are
   * stale). Grown on demand up to FUSED_STEPS_MAX, so a core that never fuses keeps it tiny.
   */
  private subStepEndMs: Float64Array = new Float64Array(16);
  /**
   * Doubles handed to a hot loop unboxed: [0] a called function's result, [1] the fused loop's
   * horizon (a parameter arrives tagged).
   */
  private readonly scratchMs = new Float64Array(2);
  /** End of the previous step; a sequence whose last token came then has a regular gap. */
  private prevStepEndMs = Number.NaN;

  /**
   * Blocks registered by the step in flight, whose KV exists only once it ends: `cachedPrefixTokens`
   * (a peer's answer to a KV store, which loads saved KV) stops at them, while admissions hit them.
   * Block-pool mode: the blocks, also marked in `storedInFlight`; run-length mode: per registration
   * its path, the positions [from, to) it registered, and those of them that were duplicates. All
   * at most one entry per running sequence (one registration each a step); cleared by finishStep.
   */
  private readonly inFlightBlocks: number[] = [];
  private readonly storedInFlight: Uint8Array;
  private readonly inFlightPaths: PrefixPath[] = [];
  private readonly inFlightFrom: number[] = [];
  private readonly inFlightTo: number[] = [];
  private readonly inFlightDups: (number[] | undefined)[] = [];
  private inFlightRuns = 0;

  private pendingPrefill = 0;
  /** Block-pool mode: the anonymous blocks import reservations hold (any of them serves any hold). */
  private readonly importBlocks: number[] = [];
  /** Blocks held for imported KV (P/D) by request id, taken back when it is admitted or aborted. */
  private importHolds: Map<string, number> | undefined;
  /** Finished requests whose blocks stay held for a transfer out (P/D prefill side), by request id. */
  private exportHolds: Map<string, ExportHold> | undefined;
  private prefixQueries = 0;
  private prefixHits = 0;
  private preemptCount = 0;
  private busyTotalMs = 0;
  private stepCount = 0;

  /**
   * @param config engine options; `numGpuBlocksOverride` is the host's business (it decides numBlocks).
   * @param perf predicts each step's duration from its StepShape.
   * @param numBlocks KV blocks in the pool, computed by the host from memory and the model's KV size.
   * @param listener the host's hooks.
   * @param options `prefixForest`: run the run-length cache over it (see the class comment).
   */
  constructor(
    config: EngineConfig,
    perf: PerfModel,
    numBlocks: number,
    listener: EngineListener,
    options: EngineCoreOptions = {},
  ) {
    assert(Number.isInteger(config.blockSize) && config.blockSize >= 1, `bad blockSize ${config.blockSize}`);
    assert(
      Number.isInteger(config.maxNumSeqs) && config.maxNumSeqs >= 1,
      `bad maxNumSeqs ${config.maxNumSeqs}`,
    );
    assert(
      Number.isInteger(config.maxNumBatchedTokens) && config.maxNumBatchedTokens >= 1,
      `bad maxNumBatchedTokens ${config.maxNumBatchedTokens}`,
    );
    this.config = config;
    this.stepTimes = decodeStepMemo(perf, options.memoizeDecodeSteps === true);
    this.listener = listener;
    this.blockSize = config.blockSize;
    this.caching = config.enablePrefixCaching;
    // A perf model that never runs cascade attention ignores the prefix: skip the walk (and so keep
    // the decode memo, which remembers only steps with no prefix).
    this.cascade =
      config.enablePrefixCaching && config.disableCascadeAttn !== true && perf.cascadeAttention !== false;
    this.emitKv = listener.onKvEvent !== undefined;
    this.tables = new BlockTables(config.maxNumSeqs);
    this.byPriority = config.schedulingPolicy === 'priority';
    this.waitQueue = this.byPriority ? new PriorityWaitQueue<Seq>((seq) => seq.priority) : new Deque<Seq>(64);
    this.growSlots(Math.min(SLOTS_INITIAL, config.maxNumSeqs));
    const forest = options.prefixForest;
    if (forest === undefined) {
      this.blockPool = new BlockPool(numBlocks, this.emitKv ? (hash) => this.emitRemoved(hash) : undefined);
      this.runs = undefined;
      this.kv = this.blockPool;
      this.storedInFlight = new Uint8Array(numBlocks);
    } else {
      assert(
        !this.emitKv,
        'the run-length KV cache emits no KV events: a listener that reads them needs the block pool',
      );
      assert(
        forest.blockSize === config.blockSize,
        `forest of ${forest.blockSize}-token blocks for ${config.blockSize}`,
      );
      this.blockPool = new BlockPool(1);
      this.storedInFlight = new Uint8Array(0);
      this.runs = new RunCache(numBlocks, forest);
      this.kv = this.runs;
    }
    this.forest = forest;
  }

  // ---- signals a router reads ----

  /** Running sequences. */
  get running(): number {
    return this.runCount;
  }
  /** Waiting requests (new and preempted). */
  get waiting(): number {
    return this.waitQueue.size;
  }
  /** KV blocks held by sequences; free cached blocks count as free, like vLLM's usage metric. */
  get kvBlocksUsed(): number {
    return this.kv.usedCount;
  }
  /** KV blocks in the pool. */
  get kvBlocksTotal(): number {
    return this.kv.numBlocks;
  }
  /** Free KV blocks that still hold a cached prefix (the LRU's blocks). */
  get kvBlocksCachedFree(): number {
    return this.runs !== undefined ? this.runs.cachedFreeCount : this.blockPool.cachedFreeCount;
  }
  /** kvBlocksUsed / kvBlocksTotal, in [0, 1]. */
  get kvUsage(): number {
    return this.kv.usedCount / this.kv.numBlocks;
  }
  /** Prompt tokens (including recompute after preemption) not yet computed, waiting plus running. */
  get pendingPrefillTokens(): number {
    return this.pendingPrefill;
  }
  /** Prompt tokens looked up in the prefix cache (first admission of each request). */
  get prefixQueryTokens(): number {
    return this.prefixQueries;
  }
  /** Prompt tokens served from the prefix cache (first admission of each request). */
  get prefixHitTokens(): number {
    return this.prefixHits;
  }
  /** prefixHitTokens / prefixQueryTokens, 0 before any query. */
  get prefixHitRate(): number {
    return this.prefixQueries === 0 ? 0 : this.prefixHits / this.prefixQueries;
  }
  /** Preemptions so far. */
  get preemptions(): number {
    return this.preemptCount;
  }
  /** A step is in flight (between startStep and finishStep). */
  get busy(): boolean {
    return this.inFlight;
  }
  /** Total time spent in steps, start to finish. */
  get busyMs(): number {
    return this.busyTotalMs;
  }
  /** Engine steps finished so far; a fused step counts as the decode steps it holds. */
  get steps(): number {
    return this.stepCount;
  }
  /**
   * When the step in flight ends: `startStep`'s nowMs plus the duration it returned, or for a
   * fused step its sub-steps' durations added one by one (NaN when no step is in flight). A host
   * should finish the step at exactly this time: for a fused step, nowMs + duration can differ from
   * the sum in the last bit, and every time the core reports must match the unfused run's.
   */
  get stepEndMs(): number {
    return this.stepEndAtMs;
  }
  /** Any request waiting or running: a host with a free core should call startStep. */
  get hasWork(): boolean {
    return this.runCount > 0 || this.waitQueue.size > 0;
  }

  // ---- requests ----

  /**
   * Enqueues a request at the back of the waiting queue. Returns false, after calling
   * `listener.onReject`, when its KV could never fit in the pool (see EngineRejectReason).
   */
  add(request: EngineRequest, nowMs: number): boolean {
    // Messages are built only on failure: `add` runs once per request of a million-request run.
    if (!(Number.isInteger(request.inputTokens) && request.inputTokens >= 1)) {
      throw new AssertionError(
        `request ${request.id}: inputTokens must be a positive integer, got ${request.inputTokens}`,
      );
    }
    if (!(Number.isInteger(request.outputTokens) && request.outputTokens >= 1)) {
      throw new AssertionError(
        `request ${request.id}: outputTokens must be a positive integer, got ${request.outputTokens}`,
      );
    }
    if (this.byId.has(request.id)) throw new AssertionError(`request ${request.id} added twice`);
    // The last output token is sampled, never fed back, so it needs no KV.
    const maxBlocks = Math.ceil((request.inputTokens + request.outputTokens - 1) / this.blockSize);
    if (maxBlocks > this.kv.numBlocks) {
      if (this.forest !== undefined && request.prefixPath !== undefined)
        this.forest.release(request.prefixPath);
      this.listener.onReject?.(request, 'kv-capacity', nowMs);
      return false;
    }
    const seq = new Seq(request, maxBlocks, this.pathOf(request));
    seq.addedMs = nowMs;
    this.byId.set(request.id, seq);
    this.waitQueue.pushBack(seq);
    this.pendingPrefill += seq.promptLen;
    return true;
  }

  /**
   * Removes a waiting or running request, freeing its blocks; no listener call. A request in the step
   * in flight loses that step's work, but the step still computes its KV (vLLM's forward pass is
   * already under way), so the prompt blocks registered when it was scheduled stay cached, and a
   * request that hit them in the same step keeps them. Returns false when the id is unknown or
   * already finished.
   */
  abort(requestId: string, _nowMs: number): boolean {
    const seq = this.byId.get(requestId);
    if (seq === undefined) return false;
    this.byId.delete(requestId);
    if (seq.state === WAITING) {
      this.releaseImport(requestId);
      this.waitQueue.remove(seq);
      this.pendingPrefill -= seq.promptLen - seq.computed;
      this.giveTable(seq);
      this.dropPath(seq);
    } else {
      const slot = this.slotOf(seq);
      const computed = this.slotComputed[slot]!;
      const promptLen = this.slotPromptLen[slot]!;
      if (computed < promptLen) this.pendingPrefill -= promptLen - computed;
      this.releaseBlocks(slot);
      this.dropPath(seq);
      this.slotStepTokens[slot] = 0;
      // Inside finishStep the compaction loop is walking the slots; it drops the sequence itself.
      if (this.inFinish) this.abortedInFinish = true;
      else this.removeRunning(slot);
    }
    seq.state = DONE;
    return true;
  }

  /**
   * Holds `blocks` free KV blocks for the request `requestId`, whose KV is about to arrive from
   * another instance (P/D: the decode side reserves before the transfer starts); false, holding
   * nothing, when fewer are free. The hold is taken back when that request is admitted (its blocks
   * then come out of it) or aborted, or by `releaseImport`.
   */
  reserveImport(requestId: string, blocks: number): boolean {
    assert(Number.isInteger(blocks) && blocks >= 0, `bad import reservation ${blocks}`);
    this.importHolds ??= new Map();
    const holds = this.importHolds;
    assert(!holds.has(requestId), `request ${requestId} reserved twice`);
    if (this.kv.freeCount < blocks) return false;
    if (this.runs !== undefined) this.runs.allocate(blocks);
    else for (let j = 0; j < blocks; j++) this.importBlocks.push(this.blockPool.allocate());
    holds.set(requestId, blocks);
    return true;
  }

  /** Gives back the blocks `reserveImport` held for `requestId`; false when it held none. */
  releaseImport(requestId: string): boolean {
    const blocks = this.importHolds?.get(requestId);
    if (blocks === undefined) return false;
    (this.importHolds as Map<string, number>).delete(requestId);
    if (this.runs !== undefined) this.runs.freeAnonymous(blocks);
    else for (let j = 0; j < blocks; j++) this.blockPool.release(this.importBlocks.pop() as number);
    return true;
  }

  /**
   * Frees the blocks a finished request with `holdKvAfterFinish` kept (P/D prefill side: the decode
   * side has read them), last to first as at any finish; false when it holds none.
   */
  releaseExport(requestId: string): boolean {
    const held = this.exportHolds?.get(requestId);
    if (held === undefined) return false;
    (this.exportHolds as Map<string, ExportHold>).delete(requestId);
    const { seq, numBlocks } = held;
    if (this.runs !== undefined) {
      this.runs.release(seq.hold!, numBlocks);
    } else {
      const pool = this.blockPool;
      for (let j = numBlocks - 1; j >= 0; j--) pool.release(seq.blocks[j]!);
    }
    this.giveTable(seq);
    this.dropPath(seq);
    return true;
  }

  /** Blocks finished requests hold for transfers out (`holdKvAfterFinish`), all together. */
  get exportHeldBlocks(): number {
    let n = 0;
    for (const held of this.exportHolds?.values() ?? []) n += held.numBlocks;
    return n;
  }

  /** The first waiting request (after the front) that arrived on blocks `reserveImport` holds for it. */
  private heldImportBehindFront(): Seq | undefined {
    const holds = this.importHolds;
    if (holds === undefined || holds.size === 0) return undefined;
    for (let i = 1; i < this.waitQueue.size; i++) {
      const seq = this.waitQueue.at(i) as Seq;
      if (holds.has(seq.request.id)) return seq;
    }
    return undefined;
  }

  /**
   * Releases the import reservations of waiting requests when no transfer out holds blocks either;
   * those requests then recompute their prompts (their imported tokens are dropped). True when one
   * was released.
   */
  private dropWaitingImports(): boolean {
    const holds = this.importHolds;
    if (holds === undefined || holds.size === 0 || (this.exportHolds?.size ?? 0) > 0) return false;
    let dropped = false;
    for (const id of [...holds.keys()]) {
      const seq = this.byId.get(id);
      if (seq === undefined) continue;
      this.releaseImport(id);
      seq.importDropped = true;
      dropped = true;
    }
    return dropped;
  }

  /** Blocks held by `reserveImport` and not yet taken back, all requests together. */
  get importReservedBlocks(): number {
    let n = 0;
    for (const blocks of this.importHolds?.values() ?? []) n += blocks;
    return n;
  }

  // ---- steps ----

  /**
   * Schedules the next batch and returns its duration, or undefined when there is nothing to run.
   *
   * `horizonMs` (default `nowMs`: never fuse) lets the core fuse decode steps. The host promises that
   * nothing outside the core happens before it: no `add`, no `abort`, no reading of the core's
   * signals, so the core's state in between is nobody's business. When the step scheduled now is
   * decode-only (no prefill chunk, nothing preempted or admitted: every running sequence decodes one
   * token) the core runs k >= 1 such steps as one, k the largest number such that
   * - no sequence finishes before the k-th (one may finish at it),
   * - the blocks the k steps need are free now; the core allocates them here, in the order the
   *   unfused steps would (so the same physical blocks and the same evictions), and when a waiting
   *   request was refused admission, or under the priority policy could preempt, it stops before
   *   the next step that allocates, since allocation and eviction change what fits,
   * - the k-th step ends strictly before `horizonMs`, every step's duration coming from the perf
   *   model with the context each sequence would have then,
   * - k <= FUSED_STEPS_MAX.
   * The returned duration covers all k steps; `stepEndMs` is their exact end, which the host should
   * pass to `finishStep`. That call then reports each sub-step as the unfused run would: the same
   * inter-token gaps and counts, finishes at the last sub-step's end, the same busy time and step
   * count. KV events of the allocations (BlockRemoved) are published at that finishStep instead of
   * at each sub-step's end: same events, same order within the core.
   */
  startStep(nowMs: number, horizonMs: number = nowMs): number | undefined {
    assert(!this.inFlight, 'startStep while a step is in flight');
    assert(!this.inFinish, 'startStep from a listener hook inside finishStep');
    const shape = this.shape;
    shape.prefillSeqs = 0;
    shape.prefillTokens = 0;
    shape.prefillAttentionPairs = 0;
    shape.decodeSeqs = 0;
    shape.decodeContextTokens = 0;
    shape.commonPrefixTokens = 0;

    // vLLM publishes a step's KV events after its forward pass (see the class doc).
    if (this.emitKv) this.holdingKv = true;
    let budget = this.config.maxNumBatchedTokens;
    let scheduled = 0;
    let preempted = false;
    if (this.byPriority) this.preemptForPriority();
    const numTokens = this.slotNumTokens;
    const computedOf = this.slotComputed;
    const numBlocks = this.slotNumBlocks;
    const bs = this.blockSize;

    for (let i = 0; i < this.runCount && budget > 0; i++) {
      const computed = computedOf[i]!;
      const want = numTokens[i]! - computed;
      const n = want < budget ? want : budget;
      // The common case, blocks already in hand, is tested here without a call.
      if (computed + n > numBlocks[i]! * bs && !this.ensureBlocks(i, computed + n)) {
        // Recompute preemption, vLLM's policy: evict the most recently admitted until this one fits.
        let fits = false;
        while (!fits) {
          const victim = --this.runCount;
          this.preempt(victim);
          preempted = true;
          if (victim === i) break;
          fits = this.ensureBlocks(i, computed + n);
        }
        if (!fits) break;
      }
      this.schedule(i, n);
      budget -= n;
      scheduled++;
    }

    // Like vLLM, admit nothing in a step that had to preempt (it would only thrash), unless the step
    // would otherwise be empty.
    let heldForNextStep = false;
    if (!preempted || scheduled === 0) {
      const maxSeqs = this.config.maxNumSeqs;
      const seenByMs = this.admissionCutoffMs(nowMs, scheduled);
      while (budget > 0 && this.runCount < maxSeqs && this.waitQueue.size > 0) {
        const front = this.waitQueue.peekFront()!;
        if (front.addedMs > seenByMs) {
          heldForNextStep = true;
          break;
        }
        let n = this.admit(front, budget, nowMs);
        if (n === 0) {
          // The front does not fit, but a request whose KV blocks are already held for it (an
          // import) needs no free block: it goes first, as vLLM's decode side schedules a request
          // whose remote KV has landed in blocks it allocated before the transfer. Without this,
          // a preempted request at the front could wait forever on blocks those holds keep.
          const ready = this.heldImportBehindFront();
          if (ready === undefined) break;
          this.waitQueue.remove(ready);
          this.waitQueue.pushFront(ready);
          n = this.admit(ready, budget, nowMs);
          if (n === 0) break;
        }
        budget -= n;
        scheduled++;
      }
    }

    if (scheduled === 0 && !heldForNextStep && this.runCount === 0 && this.dropWaitingImports()) {
      // Waiting requests refused while holding imports, and nothing running or in transfer out to
      // free blocks: they would wait on each other's holds for good. They recompute instead.
      return this.startStep(nowMs, horizonMs);
    }
    if (scheduled === 0) {
      // Blocks held for imports still in transfer come back when those requests arrive: the engine
      // idles until then. Otherwise work that cannot be scheduled would wait forever.
      // Likewise blocks a finished request holds for its transfer out come back when it ends.
      assert(
        !this.hasWork || (this.importHolds?.size ?? 0) > 0 || (this.exportHolds?.size ?? 0) > 0,
        'requests present but nothing schedulable',
      );
      // No step runs: whatever admission evicted is published now.
      if (this.emitKv) this.publishKv();
      return undefined;
    }
    if (this.cascade && scheduled >= CASCADE_REQUESTS_MIN)
      shape.commonPrefixTokens = this.commonPrefixTokens();
    const durationMs = this.stepTimes.stepTimeMs(shape);
    // Tested before formatting: printing a double costs more than the rest of a small step.
    if (!(durationMs >= 0 && durationMs < Number.POSITIVE_INFINITY)) {
      throw new AssertionError(`perf model returned step time ${durationMs}`);
    }
    this.inFlight = true;
    this.stepStartMs = nowMs;
    const endMs = nowMs + durationMs;
    this.stepEndAtMs = endMs;
    this.fusedSteps = 1;
    // Decode-only: every running sequence scheduled (prefillSeqs 0 also means none was admitted,
    // since an admission always has a prompt token to compute) and nothing preempted.
    // A request held back by async scheduling joins the next step: no fusing past it.
    if (
      horizonMs > endMs &&
      !preempted &&
      !heldForNextStep &&
      shape.prefillSeqs === 0 &&
      shape.decodeSeqs === this.runCount
    ) {
      // Whether a waiting request's fate depends on the free blocks: the admission loop ran and
      // was refused (it was entered), or under the priority policy a waiting request may preempt
      // once blocks run short. Then the fused steps must not allocate.
      const waitingWatchesBlocks =
        this.waitQueue.size > 0 &&
        (this.byPriority || (budget > 0 && this.runCount < this.config.maxNumSeqs));
      // The priority check runs before a step's allocations; the next step would run it after
      // this one's, so ask now and keep the step alone if it would preempt.
      const k =
        this.byPriority && waitingWatchesBlocks && this.priorityWantsPreemption()
          ? 1
          : this.fuseDecodes(endMs, horizonMs, waitingWatchesBlocks);
      if (k > 1) {
        this.fusedSteps = k;
        this.stepEndAtMs = this.subStepEndMs[k - 1]!;
        return this.stepEndAtMs - nowMs;
      }
    }
    return durationMs;
  }

  /**
   * The latest `add` time a waiting request may have and still join the step starting at `nowMs`.
   * Under async scheduling a busy engine (a step ended at `nowMs` and this one already holds
   * running sequences) decided this step's batch when the previous step started, so only requests
   * added by then are in it; an idle engine, or one with nothing else to run, takes any request.
   */
  private admissionCutoffMs(nowMs: number, scheduled: number): number {
    if (!this.config.asyncScheduling || scheduled === 0 || this.prevStepEndMs !== nowMs) {
      return Number.POSITIVE_INFINITY;
    }
    return this.stepStartMs;
  }

  /**
   * Applies the step in flight: prefill progress, sampled tokens, finishes, listener calls. For a
   * fused step, `nowMs` is the end of its last sub-step (`stepEndMs`); the earlier sub-steps end at
   * the times `startStep` computed, and are reported as such.
   */
  finishStep(nowMs: number): void {
    assert(this.inFlight, 'finishStep without startStep');
    this.inFlight = false;
    this.stepEndAtMs = Number.NaN;
    // The step's KV now exists: what it registered is computed for every reader.
    if (this.inFlightBlocks.length > 0) this.clearStoredInFlight();
    this.inFlightRuns = 0;
    // Published before any finish is reported, as vLLM publishes before returning the step's outputs.
    if (this.emitKv) this.publishKv();
    // All but the last sub-step of a fused step first; the last one is an ordinary step below.
    if (this.fusedSteps > 1) this.finishFusedPrefix();
    this.busyTotalMs += nowMs - this.stepStartMs;
    this.stepCount++;
    const prevEndMs = this.prevStepEndMs;
    const listener = this.listener;
    const seqs = this.slotSeq;
    const numTokensOf = this.slotNumTokens;
    const computedOf = this.slotComputed;
    const promptLenOf = this.slotPromptLen;
    const stepTokensOf = this.slotStepTokens;
    const remainingOf = this.slotRemaining;
    const lastTokenMsOf = this.slotLastTokenMs;
    let regularGaps = 0;
    let kept = 0;

    this.inFinish = true;
    try {
      const count = this.runCount;
      for (let i = 0; i < count; i++) {
        // Only a listener hook aborts, so the Seq's state needs reading only after one did.
        if (this.abortedInFinish && seqs[i]!.state !== RUNNING) continue;
        const n = stepTokensOf[i]!;
        if (n > 0) {
          stepTokensOf[i] = 0;
          const computed = computedOf[i]! + n;
          if (computed - n < promptLenOf[i]!) this.pendingPrefill -= n;
          computedOf[i] = computed;
          const numTokens = numTokensOf[i]!;
          if (computed === numTokens) {
            // Catching up samples one token (the step that ends the prompt samples the first).
            const remaining = remainingOf[i]! - 1;
            remainingOf[i] = remaining;
            numTokensOf[i] = numTokens + 1;
            const lastTokenMs = lastTokenMsOf[i]!;
            if (lastTokenMs === NO_TOKEN_YET) {
              const seq = seqs[i]!;
              seq.firstTokenMs = nowMs;
              listener.onFirstToken?.(seq.request, nowMs);
            } else if (lastTokenMs === prevEndMs) {
              regularGaps++;
            } else {
              listener.onInterTokenLatency?.(nowMs - lastTokenMs, 1);
            }
            lastTokenMsOf[i] = nowMs;
            if (remaining === 0) {
              this.finish(i, nowMs);
              continue;
            }
          }
        }
        // A hook above may have aborted this very sequence.
        if (this.abortedInFinish && seqs[i]!.state !== RUNNING) continue;
        if (kept !== i) this.moveSlot(i, kept);
        kept++;
      }
      // Sequences admitted by no one (hooks only add to waiting) cannot appear past `count`.
      this.runCount = kept;
    } finally {
      this.inFinish = false;
    }
    if (this.abortedInFinish) {
      // A hook aborted a sequence the loop had already kept.
      this.abortedInFinish = false;
      let w = 0;
      for (let i = 0; i < this.runCount; i++) {
        if (seqs[i]!.state !== RUNNING) continue;
        if (w !== i) this.moveSlot(i, w);
        w++;
      }
      this.runCount = w;
    }
    if (regularGaps > 0) listener.onInterTokenLatency?.(nowMs - prevEndMs, regularGaps);
    this.prevStepEndMs = nowMs;
  }

  /**
   * Calls `fn` for each running sequence, in slot order, with its request and the output tokens it
   * has sampled so far: what a host that streams tokens (the built-in `sim` engine server) reads
   * after each step. O(running), allocates nothing; `fn` must not call into the core.
   */
  forEachRunning(fn: (request: EngineRequest, producedTokens: number) => void): void {
    const seqs = this.slotSeq;
    const remainingOf = this.slotRemaining;
    for (let i = 0; i < this.runCount; i++) {
      const seq = seqs[i]!;
      fn(seq.request, seq.outputTokens - remainingOf[i]!);
    }
  }

  // ---- inspection (tests, debugging) ----

  /** The shape of the last scheduled step. Reused: copy it to keep it. */
  get lastStepShape(): Readonly<StepShape> {
    return this.shape;
  }

  /** A running request's physical blocks, or undefined when it is not running. For tests. */
  blocksOf(requestId: string): number[] | undefined {
    assert(this.runs === undefined, 'blocksOf: the run-length cache has no block ids');
    const seq = this.byId.get(requestId);
    if (seq === undefined || seq.state !== RUNNING) return undefined;
    return Array.from(seq.blocks.subarray(0, this.slotNumBlocks[this.slotOf(seq)]));
  }

  /**
   * Checks the pool's invariants and that every block's ref count equals the number of running
   * sequences holding it. O(numBlocks + blocks held); for tests.
   */
  checkInvariants(): void {
    this.blockPool.checkInvariants();
    this.runs?.checkInvariants();
    const refs = new Int32Array(this.blockPool.numBlocks);
    let pending = 0;
    for (let i = 0; i < this.runCount; i++) {
      const seq = this.slotSeq[i]!;
      const computed = this.slotComputed[i]!;
      const numBlocks = this.slotNumBlocks[i]!;
      const promptLen = this.slotPromptLen[i]!;
      assert(seq.state === RUNNING, `non-running ${seq.request.id} in the running list`);
      assert(numBlocks * this.blockSize >= computed, `${seq.request.id} computed past its blocks`);
      assert(computed <= this.slotNumTokens[i]!, `${seq.request.id} computed past its tokens`);
      assert(
        this.inFlight || this.slotStepTokens[i] === 0,
        `${seq.request.id} has tokens of a finished step`,
      );
      const remaining = this.slotRemaining[i]!;
      assert(remaining >= 1 && remaining <= seq.outputTokens, `${seq.request.id}: ${remaining} tokens to go`);
      assert(this.slotTable[i] === seq.blocks, `${seq.request.id}: slot and Seq disagree on its table`);
      const stored = this.checkStored(i);
      if (this.runs === undefined) {
        assert(numBlocks <= seq.blocks.length, `${seq.request.id} holds more blocks than its table`);
        for (let j = 0; j < numBlocks; j++) refs[seq.blocks[j]!]!++;
      } else {
        const hold = seq.hold!;
        assert(hold.done === stored, `${seq.request.id}: hold at ${hold.done}, ${stored} blocks stored`);
        assert(
          hold.done - hold.dupBlocks <= numBlocks,
          `${seq.request.id} holds more cached blocks than blocks`,
        );
      }
      if (computed < promptLen) pending += promptLen - computed;
    }
    assert(this.runCount <= this.config.maxNumSeqs, `running ${this.runCount} > maxNumSeqs`);
    assert(
      this.inFlight || (this.inFlightBlocks.length === 0 && this.inFlightRuns === 0),
      'blocks registered in flight outlive their step',
    );
    assert(
      this.inFlight || (!this.holdingKv && this.kvHeld.length === 0),
      `${this.kvHeld.length} KV events held outside a step`,
    );
    let marked = 0;
    for (let b = 0; b < this.storedInFlight.length; b++) marked += this.storedInFlight[b]!;
    assert(
      marked === this.inFlightBlocks.length,
      `${marked} blocks marked in flight, ${this.inFlightBlocks.length} listed`,
    );
    for (let i = 0; i < this.waitQueue.size; i++) {
      const seq = this.waitQueue.at(i)!;
      assert(seq.state === WAITING && seq.computed === 0, `waiting ${seq.request.id} holds KV`);
      pending += seq.promptLen - seq.computed;
    }
    // Import reservations and transfers out hold their blocks too. A reservation belongs to a request
    // whose KV is still in transfer (not added yet) or that waits for its first admission.
    let reserved = 0;
    for (const [id, blocks] of this.importHolds ?? []) {
      const seq = this.byId.get(id);
      assert(
        seq === undefined || (seq.state === WAITING && seq.preemptions === 0),
        `${id} holds an import reservation past its admission`,
      );
      reserved += blocks;
    }
    if (this.runs === undefined)
      assert(
        reserved === this.importBlocks.length,
        `${reserved} blocks reserved, ${this.importBlocks.length} held`,
      );
    for (const b of this.importBlocks) refs[b]!++;
    if (this.runs === undefined)
      for (const { seq, numBlocks } of this.exportHolds?.values() ?? [])
        for (let j = 0; j < numBlocks; j++) refs[seq.blocks[j]!]!++;
    for (let b = 0; b < refs.length; b++) {
      assert(
        refs[b] === this.blockPool.refCount(b),
        `block ${b}: ${refs[b]} holders, ref count ${this.blockPool.refCount(b)}`,
      );
    }
    assert(
      pending === this.pendingPrefill,
      `pendingPrefillTokens ${this.pendingPrefill}, recount ${pending}`,
    );
    assert(this.byId.size === this.runCount + this.waitQueue.size, 'id index out of step with the queues');
  }

  /**
   * Checks what the sequence in `slot` has registered in the prefix cache: every prompt block its
   * computed and scheduled tokens fill (registration happens at scheduling), and in the block pool
   * each such block under its own hash or a duplicate (unhashed), every later block unhashed.
   * Returns the count. A decoding sequence may lag (a fused step schedules only its first sub-step)
   * when its hashes run past its prompt's full blocks.
   */
  private checkStored(slot: number): number {
    const seq = this.slotSeq[slot]!;
    const stored = this.slotNumStored[slot]!;
    const filled = Math.floor((this.slotComputed[slot]! + this.slotStepTokens[slot]!) / this.blockSize);
    const expected = this.caching ? Math.min(filled, this.slotHashCount[slot]!) : 0;
    const decoding = this.slotComputed[slot]! >= this.slotPromptLen[slot]!;
    assert(
      stored === expected || (decoding && stored < expected),
      `${seq.request.id}: ${stored} blocks stored, ${expected} filled`,
    );
    if (this.runs !== undefined) return stored;
    const pool = this.blockPool;
    const hashes = seq.request.blockHashes;
    for (let j = 0; j < this.slotNumBlocks[slot]!; j++) {
      const hash = pool.hashOf(seq.blocks[j]!);
      const ok = j < stored ? hash === undefined || hash === hashes[j] : hash === undefined;
      assert(ok, `${seq.request.id}: block ${j} hashed ${hash}, ${stored} stored`);
    }
    return stored;
  }

  // ---- internals ----

  /**
   * The priority policy: while the most important waiting request cannot get a running slot or the
   * blocks of its first chunk, and the least important running sequence matters less, preempt that
   * one (recompute, to the front of its own level). This runs before anything is scheduled, so no
   * scheduled work is thrown away, and it does not count as the thrashing preemption that blocks
   * admission for a step: it exists to admit.
   */
  private preemptForPriority(): void {
    while (this.priorityWantsPreemption()) this.preempt(--this.runCount);
  }

  /**
   * Whether the most important waiting request should preempt the least important running
   * sequence: it matters more and lacks a running slot or the blocks of its first chunk. Also asked
   * by startStep before fusing, as the next unfused step would ask it.
   */
  private priorityWantsPreemption(): boolean {
    const head = this.waitQueue.peekFront();
    if (head === undefined || this.runCount === 0) return false;
    const last = this.slotSeq[this.runCount - 1]!;
    if (last.priority >= head.priority) return false;
    const needsSlot = this.runCount >= this.config.maxNumSeqs;
    // Conservative: ignores prefix-cache hits, which can only lower the need.
    const chunk = Math.min(head.numTokens, this.config.maxNumBatchedTokens);
    return needsSlot || Math.ceil(chunk / this.blockSize) > this.kv.freeCount;
  }

  /**
   * Keeps the running set ordered by priority, highest first (FCFS within a level), so budget and
   * preemption both favour the important: moves the sequence just admitted into `slot` up past the
   * less important ones. Uses the spare slot at the end of the arrays as scratch.
   */
  private placeByPriority(slot: number): void {
    const seq = this.slotSeq[slot]!;
    let to = slot;
    while (to > 0 && this.slotSeq[to - 1]!.priority < seq.priority) to--;
    if (to === slot) return;
    const scratch = this.slotSeq.length - 1;
    this.moveSlot(slot, scratch);
    for (let i = slot; i > to; i--) this.moveSlot(i - 1, i);
    this.moveSlot(scratch, to);
    this.slotSeq[scratch] = undefined;
  }

  /**
   * Tries to admit the front waiting sequence with a budget of `budget` tokens; returns the tokens
   * scheduled, 0 when its blocks do not fit (it stays at the front: FCFS, no skipping).
   */
  private admit(seq: Seq, budget: number, nowMs: number): number {
    const bs = this.blockSize;
    // vLLM keeps at least one token to compute so the step has logits to sample from.
    const cap = this.caching ? Math.min(seq.hashCount, Math.floor((seq.numTokens - 1) / bs)) : 0;
    const runs = this.runs;
    let hits = 0;
    let hitsFree = 0;
    let blocks: Int32Array = NO_BLOCKS;
    if (runs !== undefined) {
      if (cap > 0) {
        hits = runs.match(seq.hold!, cap);
        hitsFree = runs.lastMatchFree;
      }
    } else {
      // A sequence refused here keeps its table for the next try: it stays at the front.
      if (seq.blocks.length === 0) seq.blocks = this.tables.take(seq.maxBlocks);
      blocks = seq.blocks;
      const pool = this.blockPool;
      const hashes = seq.request.blockHashes;
      while (hits < cap) {
        const block = pool.lookup(hashes[hits]!);
        if (block < 0) break;
        if (pool.isCachedFree(block)) hitsFree++;
        blocks[hits++] = block;
      }
    }
    let computed = hits * bs;
    const imported = seq.request.importedTokens;
    // Blocks `reserveImport` holds for this request: free to it, and to no one else.
    let held = 0;
    const importing = imported !== undefined && seq.preemptions === 0 && !seq.importDropped;
    if (importing) {
      held = this.importHolds?.get(seq.request.id) ?? 0;
      computed = Math.max(computed, Math.min(imported, seq.numTokens - 1));
    }
    const want = seq.numTokens - computed;
    const n = Math.min(want, budget);
    const newBlocks = Math.ceil((computed + n) / bs) - hits;
    // Hits on free cached blocks leave the free pool, so they cannot also serve as new blocks.
    // Refused, the request keeps its hold: its imported KV stays loaded while it waits (vLLM keeps
    // the blocks it allocated for a remote load), so its imported tokens may still be skipped later.
    if (this.kv.freeCount + held - hitsFree < newBlocks) return 0;
    // Its reserved blocks go back to the free pool just before the allocation below takes them again.
    if (importing && this.importHolds !== undefined) this.releaseImport(seq.request.id);

    this.waitQueue.popFront();
    if (runs !== undefined) {
      if (hits > 0) runs.commit(seq.hold!);
      runs.allocate(newBlocks);
    } else {
      const pool = this.blockPool;
      for (let j = 0; j < hits; j++) pool.touch(blocks[j]!);
      for (let j = 0; j < newBlocks; j++) blocks[hits + j] = pool.allocate();
    }
    // Imported tokens are not prefix-cache hits: the cache counters see only the hits.
    seq.cachedPromptTokens = hits * bs;
    this.pendingPrefill -= computed;
    if (seq.firstScheduledMs < 0) {
      seq.firstScheduledMs = nowMs;
      this.prefixQueries += seq.numTokens;
      this.prefixHits += hits * bs;
    }
    seq.state = RUNNING;
    const slot = this.runCount++;
    // One slot more than maxNumSeqs: the spare is placeByPriority's scratch.
    if (slot + 1 >= this.slotSeq.length) this.growSlots(Math.min(2 * (slot + 1), this.config.maxNumSeqs + 1));
    this.slotSeq[slot] = seq;
    this.slotTable[slot] = blocks;
    this.slotNumTokens[slot] = seq.numTokens;
    this.slotComputed[slot] = computed;
    this.slotPromptLen[slot] = seq.promptLen;
    this.slotStepTokens[slot] = 0;
    this.slotRemaining[slot] = seq.outputTokens - seq.produced;
    this.slotLastTokenMs[slot] = seq.lastTokenMs;
    this.slotNumBlocks[slot] = hits + newBlocks;
    this.slotNumStored[slot] = hits;
    this.slotHashCount[slot] = seq.hashCount;
    this.schedule(slot, n);
    if (this.byPriority) this.placeByPriority(slot);
    return n;
  }

  /**
   * Extends the decode-only step just scheduled (ending at `firstEndMs`) by as many further decode
   * steps as `startStep`'s rules allow, allocating their blocks; returns the number of steps k and
   * leaves their end times in `subStepEndMs[0..k)` and the last one's shape in `shape`.
   *
   * Sub-step j (1-based) of sequence i computes its token `computed + j`, so it needs a new block
   * when that passes `numBlocks * blockSize`: at most one block per sequence per sub-step. With no
   * finish and no free in between, the unfused steps would find every block they need free iff the
   * total fits `freeCount` now, so no preemption is skipped.
   */
  private fuseDecodes(firstEndMs: number, horizonMs: number, waitingWatchesBlocks: boolean): number {
    const n = this.runCount;
    const bs = this.blockSize;
    const computedOf = this.slotComputed;
    const numBlocksOf = this.slotNumBlocks;
    const remainingOf = this.slotRemaining;
    let kMax = FUSED_STEPS_MAX;
    // The first sub-step that needs a block for some sequence. Both kept as small integers (token
    // counts, read from Float64Arrays, would make them doubles compared every sub-step).
    let nextAlloc = NO_ALLOC;
    for (let i = 0; i < n; i++) {
      const remaining = remainingOf[i]! | 0;
      if (remaining < kMax) kMax = remaining;
      const alloc = (numBlocksOf[i]! * bs - computedOf[i]! + 1) | 0;
      if (alloc < nextAlloc) nextAlloc = alloc;
    }
    if (kMax < 2) return 1;
    // The context is kept as a 31-bit integer below; a batch past a billion tokens is not fused.
    if (this.shape.decodeContextTokens + kMax * n >= CONTEXT_FUSE_MAX) return 1;
    if (this.subStepEndMs.length < kMax) this.growSubSteps(kMax);
    const ends = this.subStepEndMs;
    const shape = this.shape;
    const stepTimes = this.stepTimes;
    const scratch = this.scratchMs;
    ends[0] = firstEndMs;
    // Read back from the typed array, not taken from the parameter: seeded with a tagged argument,
    // the loop's running end time was kept tagged and every sub-step boxed a new heap number (16
    // bytes each, 60 MB of the Mooncake replay's 123 MB allocated). The value is the same double.
    let endMs = ends[0]!;
    // The horizon likewise: as the tagged parameter, every sub-step tested whether it was a small
    // integer or a heap number before comparing.
    scratch[1] = horizonMs;
    const horizon = scratch[1]!;
    let k = 1;
    // The shape's context, kept in a small-integer local: stored into an object field or passed as a
    // double, it was a new heap number on every sub-step of millions.
    let contextTokens = shape.decodeContextTokens | 0;
    // The memo's page for the current contexts, read here without a call in the common case.
    // NO_DECODE_MEMO_PAGE (all NaN) where the memo has none, so the loop reads a page every time.
    let page: Float64Array = NO_DECODE_MEMO_PAGE;
    let pageIndex = -1;
    // The sub-steps run the same sequences over the same shared blocks, so the common prefix is
    // the first one's throughout (it is below every sequence's computed tokens: see
    // `commonPrefixTokens`). The memo's pages are not keyed by it: such a run asks the model.
    const remembered = shape.commonPrefixTokens === 0;
    // In locals: read as the imported binding, the page size was loaded (and checked for its
    // temporal dead zone) on every sub-step. Contexts stay below 2^30, so `>>` is `>>>` here, and
    // keeps the page index a small integer (`>>>` made it a double, converted every sub-step).
    const pageBits = DECODE_MEMO_PAGE_BITS;
    const pageMask = DECODE_MEMO_PAGE_MASK;
    // Each pass runs a stretch of sub-steps in a tight loop without calls (the compiler then keeps
    // its locals in registers and its array checks out of the loop), then one sub-step in full:
    // the one that left the stretch, for a new page, a memo miss or an allocation.
    while (k < kMax) {
      // The stretch: sub-steps the current page times, that allocate nothing (j below nextAlloc)
      // and end before the horizon; exactly what the full step below does for them.
      const stop = nextAlloc - 1 < kMax ? nextAlloc - 1 : kMax;
      let reachedHorizon = false;
      while (k < stop) {
        const context = (contextTokens + n) | 0;
        if (context >> pageBits !== pageIndex) break;
        const durationMs = page[context & pageMask]!;
        if (Number.isNaN(durationMs)) break;
        const nextEndMs = endMs + durationMs;
        if (!(nextEndMs < horizon)) {
          reachedHorizon = true;
          break;
        }
        ends[k] = nextEndMs;
        endMs = nextEndMs;
        contextTokens = context;
        k++;
      }
      if (reachedHorizon || k >= kMax) break;
      // One sub-step in full. The rare paths (a memo miss, a sub-step that allocates) are calls,
      // so that the stretch above keeps its locals in registers.
      const j = k + 1;
      // Every sequence's context is one token longer than in the previous sub-step.
      contextTokens = (contextTokens + n) | 0;
      if (remembered && contextTokens >> pageBits !== pageIndex) {
        pageIndex = contextTokens >> pageBits;
        page = stepTimes.pageFor(n, contextTokens) ?? NO_DECODE_MEMO_PAGE;
      }
      let durationMs = page[contextTokens & pageMask]!;
      // A page holds only times that passed the check (step-memo.ts), so only a miss is checked.
      if (Number.isNaN(durationMs)) {
        // Through a Float64Array: merged with the page's unboxed read, the call's boxed result
        // made the compiler box every sub-step's duration (a heap number each, millions a run).
        this.missedSubStepMs(contextTokens);
        durationMs = scratch[0]!;
      }
      // Summed one by one, as a host adding each unfused step's duration would.
      const nextEndMs = endMs + durationMs;
      if (!(nextEndMs < horizon)) {
        contextTokens = (contextTokens - n) | 0;
        break;
      }
      if (j === nextAlloc) {
        nextAlloc = this.allocateSubStep(j, waitingWatchesBlocks);
        if (nextAlloc < 0) {
          contextTokens = (contextTokens - n) | 0;
          break;
        }
      }
      ends[k] = nextEndMs;
      endMs = nextEndMs;
      k = j;
    }
    // The last sub-step's shape, as `lastStepShape` shows it.
    shape.decodeContextTokens = contextTokens;
    return k;
  }

  /**
   * The perf model's time for a decode sub-step at `contextTokens` total context (the memo missed),
   * left in `scratchMs[0]`; refuses an invalid time.
   */
  private missedSubStepMs(contextTokens: number): void {
    const durationMs = this.stepTimes.decodeStepTimeMs(this.shape, contextTokens);
    if (!(durationMs >= 0 && durationMs < Number.POSITIVE_INFINITY)) {
      throw new AssertionError(`perf model returned step time ${durationMs}`);
    }
    this.scratchMs[0] = durationMs;
  }

  /**
   * Allocates the blocks fused sub-step j needs (one for each sequence whose token `computed + j`
   * passes its blocks) and returns the next sub-step that needs one (NO_ALLOC: none); -1, allocating
   * nothing, when the step must stop before j: blocks are short, or a waiting request watches them.
   */
  private allocateSubStep(j: number, waitingWatchesBlocks: boolean): number {
    const n = this.runCount;
    const bs = this.blockSize;
    const computedOf = this.slotComputed;
    const numBlocksOf = this.slotNumBlocks;
    let need = 0;
    for (let i = 0; i < n; i++) if (computedOf[i]! + j > numBlocksOf[i]! * bs) need++;
    if (waitingWatchesBlocks || need > this.kv.freeCount) return -1;
    // Anonymous blocks: which sequence gets which evicted block does not matter.
    const runs = this.runs;
    if (runs !== undefined) runs.allocate(need);
    // In slot order, as the unfused step's scheduling loop would allocate them.
    let nextAlloc = NO_ALLOC;
    for (let i = 0; i < n; i++) {
      let have = numBlocksOf[i]!;
      if (computedOf[i]! + j > have * bs) {
        if (runs === undefined) this.slotTable[i]![have] = this.blockPool.allocate();
        numBlocksOf[i] = ++have;
      }
      const alloc = (have * bs - computedOf[i]! + 1) | 0;
      if (alloc < nextAlloc) nextAlloc = alloc;
    }
    return nextAlloc;
  }

  /**
   * Applies sub-steps 1 to k-1 of the fused step in flight, reporting them as the unfused steps
   * would have: each sequence's first gap (regular, or its own after a resume), then one batched
   * gap per sub-step; busy time and step count per sub-step, so their sums are the same floats.
   * It leaves the core as if the last sub-step had just started, for finishStep's ordinary pass.
   */
  private finishFusedPrefix(): void {
    // Hooks run here as inside finishStep: they may abort or add, never start a step.
    this.inFinish = true;
    try {
      this.applyFusedPrefix();
    } finally {
      this.inFinish = false;
    }
  }

  private applyFusedPrefix(): void {
    const k = this.fusedSteps;
    this.fusedSteps = 1;
    const ends = this.subStepEndMs;
    const n = this.runCount;
    const listener = this.listener;
    const prevEndMs = this.prevStepEndMs;
    const firstEndMs = ends[0]!;
    const lastStartMs = ends[k - 2]!;
    const advance = k - 1;
    const numTokensOf = this.slotNumTokens;
    const computedOf = this.slotComputed;
    const remainingOf = this.slotRemaining;
    const lastTokenMsOf = this.slotLastTokenMs;
    let regularGaps = 0;
    for (let i = 0; i < n; i++) {
      // Every sequence in a fused step decodes, so it has sampled a token before.
      const lastTokenMs = lastTokenMsOf[i]!;
      if (lastTokenMs === prevEndMs) regularGaps++;
      else listener.onInterTokenLatency?.(firstEndMs - lastTokenMs, 1);
      computedOf[i] = computedOf[i]! + advance;
      numTokensOf[i] = numTokensOf[i]! + advance;
      remainingOf[i] = remainingOf[i]! - advance;
      lastTokenMsOf[i] = lastStartMs;
    }
    if (regularGaps > 0) listener.onInterTokenLatency?.(firstEndMs - prevEndMs, regularGaps);
    let busyMs = this.busyTotalMs + (firstEndMs - this.stepStartMs);
    if (listener.onInterTokenGaps !== undefined) {
      if (advance > 1) listener.onInterTokenGaps(ends, 1, advance, n);
      for (let j = 1; j < advance; j++) busyMs += ends[j]! - ends[j - 1]!;
    } else {
      for (let j = 1; j < advance; j++) {
        const gapMs = ends[j]! - ends[j - 1]!;
        listener.onInterTokenLatency?.(gapMs, n);
        busyMs += gapMs;
      }
    }
    this.busyTotalMs = busyMs;
    this.stepCount += advance;
    this.prevStepEndMs = lastStartMs;
    this.stepStartMs = lastStartMs;
  }

  /** Grows the sub-step end times to at least `length` entries (at most FUSED_STEPS_MAX). */
  private growSubSteps(length: number): void {
    let capacity = this.subStepEndMs.length;
    while (capacity < length) capacity *= 2;
    this.subStepEndMs = new Float64Array(Math.min(capacity, FUSED_STEPS_MAX));
  }

  /** Copies the running sequence's fields back into its Seq as it leaves the running set. */
  private save(slot: number): Seq {
    const seq = this.slotSeq[slot]!;
    seq.numTokens = this.slotNumTokens[slot]!;
    seq.computed = this.slotComputed[slot]!;
    seq.promptLen = this.slotPromptLen[slot]!;
    seq.produced = seq.outputTokens - this.slotRemaining[slot]!;
    seq.lastTokenMs = this.slotLastTokenMs[slot]!;
    return seq;
  }

  /** Moves a running sequence from slot `from` to slot `to` (compaction; `to` is stale). */
  private moveSlot(from: number, to: number): void {
    this.slotSeq[to] = this.slotSeq[from];
    this.slotTable[to] = this.slotTable[from]!;
    this.slotNumTokens[to] = this.slotNumTokens[from]!;
    this.slotComputed[to] = this.slotComputed[from]!;
    this.slotPromptLen[to] = this.slotPromptLen[from]!;
    this.slotStepTokens[to] = this.slotStepTokens[from]!;
    this.slotRemaining[to] = this.slotRemaining[from]!;
    this.slotLastTokenMs[to] = this.slotLastTokenMs[from]!;
    this.slotNumBlocks[to] = this.slotNumBlocks[from]!;
    this.slotNumStored[to] = this.slotNumStored[from]!;
    this.slotHashCount[to] = this.slotHashCount[from]!;
  }

  /** The slot of a running sequence. O(running); for aborts and tests, never per step. */
  private slotOf(seq: Seq): number {
    // During finishStep, slots between the kept prefix and the loop's position are stale copies,
    // but a sequence's live slot always comes before any stale copy of it.
    const slot = this.slotSeq.indexOf(seq);
    assert(slot >= 0 && slot < this.runCount, `${seq.request.id} has no running slot`);
    return slot;
  }

  /** Resizes the slot arrays to `capacity` (at least the running count). */
  private growSlots(capacity: number): void {
    const f64 = (old: Float64Array): Float64Array => {
      const next = new Float64Array(capacity);
      next.set(old.subarray(0, Math.min(old.length, capacity)));
      return next;
    };
    const i32 = (old: Int32Array): Int32Array => {
      const next = new Int32Array(capacity);
      next.set(old.subarray(0, Math.min(old.length, capacity)));
      return next;
    };
    this.slotSeq.length = capacity;
    this.slotTable.length = capacity;
    this.slotNumTokens = f64(this.slotNumTokens);
    this.slotComputed = f64(this.slotComputed);
    this.slotPromptLen = f64(this.slotPromptLen);
    this.slotStepTokens = f64(this.slotStepTokens);
    this.slotRemaining = f64(this.slotRemaining);
    this.slotLastTokenMs = f64(this.slotLastTokenMs);
    this.slotNumBlocks = i32(this.slotNumBlocks);
    this.slotNumStored = i32(this.slotNumStored);
    this.slotHashCount = i32(this.slotHashCount);
  }

  /**
   * Records `n` tokens of the sequence in `slot` in this step's shape, and registers the prompt
   * blocks they fill in the prefix cache now, as vLLM's `allocate_slots` does (`cache_blocks` up to
   * `min(computed + new, num_tokens)` before the forward pass): a request scheduled after this one,
   * in this step or a later one, hits them. Each layer writes the step's KV before its attention
   * reads it, so a same-step hit reads what this step computes.
   */
  private schedule(slot: number, n: number): void {
    this.slotStepTokens[slot] = n;
    const shape = this.shape;
    const computed = this.slotComputed[slot]!;
    if (this.caching && this.slotNumStored[slot]! < this.slotHashCount[slot]!) {
      this.storeFullBlocks(slot, computed + n);
    }
    if (computed < this.slotPromptLen[slot]!) {
      shape.prefillSeqs++;
      shape.prefillTokens += n;
      shape.prefillAttentionPairs += n * computed + (n * (n + 1)) / 2;
    } else {
      shape.decodeSeqs++;
      shape.decodeContextTokens += this.slotNumTokens[slot]!;
    }
  }

  /**
   * The step's common prefix as vLLM's model runner computes it for cascade attention: the leading
   * blocks of a running sequence whose ref count equals the number of sequences holding KV (running,
   * plus finished ones holding theirs for a transfer out: vLLM's `req_to_blocks`), times the block
   * size, capped by the fewest tokens any scheduled sequence had computed before the step and
   * rounded down to whole blocks (`get_num_common_prefix_blocks`,
   * `_compute_cascade_attn_prefix_len`). Shared blocks are cached
   * prompt blocks every holder hit or stored; the cap binds in a step that computes them (blocks
   * are registered when scheduled, so same-step sequences share blocks none has computed yet).
   *
   * Asked only for steps of CASCADE_REQUESTS_MIN or more sequences, below which no engine uses the
   * prefix: a lone sequence shares every block with itself and the walk would cost O(blocks) a step.
   * Otherwise it stops at the first block not shared, usually the first.
   *
   * A request whose KV is in transfer in (`reserveImport`) is not counted: its hold is anonymous
   * blocks and no reference on a cached block, so counting it would make no block shared by all.
   * vLLM's decode side counts it (it is in `req_to_blocks`) but also holds references on its local
   * prefix-cache hits from then on, so the two agree when its prompt starts with the prefix; when it
   * does not, vLLM finds no common prefix for those steps and the core still does.
   */
  private commonPrefixTokens(): number {
    const holders = this.runCount + (this.exportHolds?.size ?? 0);
    const bs = this.blockSize;
    const numBlocks = this.slotNumBlocks[0]!;
    let shared = 0;
    if (this.runs !== undefined) {
      shared = this.runs.sharedPrefixBlocks(this.slotSeq[0]!.hold!, holders, numBlocks);
    } else {
      const pool = this.blockPool;
      const table = this.slotTable[0]!;
      while (shared < numBlocks && pool.refCount(table[shared]!) === holders) shared++;
    }
    if (shared === 0) return 0;
    let computedMin = Number.POSITIVE_INFINITY;
    const stepTokensOf = this.slotStepTokens;
    const computedOf = this.slotComputed;
    for (let i = 0; i < this.runCount; i++) {
      if (stepTokensOf[i]! > 0 && computedOf[i]! < computedMin) computedMin = computedOf[i]!;
    }
    const prefix = shared * bs;
    return prefix < computedMin ? prefix : Math.floor(computedMin / bs) * bs;
  }

  /**
   * Makes sure the sequence in `slot` holds blocks for its first `tokens` tokens; false (and no
   * change) if too few are free.
   */
  private ensureBlocks(slot: number, tokens: number): boolean {
    const have = this.slotNumBlocks[slot]!;
    if (tokens <= have * this.blockSize) return true;
    const need = Math.ceil(tokens / this.blockSize) - have;
    if (this.kv.freeCount < need) return false;
    if (this.runs !== undefined) {
      this.runs.allocate(need);
    } else {
      const pool = this.blockPool;
      const blocks = this.slotTable[slot]!;
      for (let j = 0; j < need; j++) blocks[have + j] = pool.allocate();
    }
    this.slotNumBlocks[slot] = have + need;
    return true;
  }

  /**
   * Recompute preemption of the last running sequence (in `slot`, already dropped from the count):
   * free everything and requeue at the front with all tokens as the prompt.
   */
  private preempt(slot: number): void {
    const seq = this.save(slot);
    // Victims come from the end of the running set, past the scheduling loop's position, so none was
    // scheduled in this step: every block it registered was computed by an earlier step, and stays a
    // valid cached block for whoever hits it.
    assert(this.slotStepTokens[slot] === 0, `preempting ${seq.request.id} after scheduling it`);
    if (seq.computed < seq.promptLen) this.pendingPrefill -= seq.promptLen - seq.computed;
    this.releaseBlocks(slot);
    seq.computed = 0;
    seq.promptLen = seq.numTokens;
    this.pendingPrefill += seq.promptLen;
    seq.state = WAITING;
    seq.preemptions++;
    this.preemptCount++;
    this.waitQueue.pushFront(seq);
  }

  private finish(slot: number, nowMs: number): void {
    const seq = this.save(slot);
    if (seq.request.holdKvAfterFinish === true) {
      this.holdExport(slot, seq);
    } else {
      this.releaseBlocks(slot);
      this.dropPath(seq);
    }
    seq.state = DONE;
    this.byId.delete(seq.request.id);
    const result: FinishedRequest = {
      request: seq.request,
      arrivalMs: seq.request.arrivalMs,
      firstScheduledMs: seq.firstScheduledMs,
      firstTokenMs: seq.firstTokenMs,
      finishMs: nowMs,
      cachedPromptTokens: seq.cachedPromptTokens,
      preemptions: seq.preemptions,
    };
    this.listener.onFinish(result);
  }

  /** Keeps the finished sequence's blocks (and prefix path) for `releaseExport`; the slot lets go of them. */
  private holdExport(slot: number, seq: Seq): void {
    this.exportHolds ??= new Map();
    assert(!this.exportHolds.has(seq.request.id), `request ${seq.request.id} holds its KV twice`);
    this.exportHolds.set(seq.request.id, { seq, numBlocks: this.slotNumBlocks[slot]! });
    this.slotNumBlocks[slot] = 0;
    this.slotNumStored[slot] = 0;
  }

  /**
   * Frees the blocks of the sequence in `slot` last to first, as vLLM does: the tail of a prompt is
   * the least likely to be shared, so it enters the LRU first and is evicted first.
   */
  private releaseBlocks(slot: number): void {
    if (this.runs !== undefined) {
      this.runs.release(this.slotSeq[slot]!.hold!, this.slotNumBlocks[slot]!);
    } else {
      const pool = this.blockPool;
      const blocks = this.slotTable[slot]!;
      for (let j = this.slotNumBlocks[slot]! - 1; j >= 0; j--) pool.release(blocks[j]!);
    }
    this.slotNumBlocks[slot] = 0;
    this.slotNumStored[slot] = 0;
    this.giveTable(this.slotSeq[slot]!);
  }

  /** Run-length mode: hands the sequence's prefix path back to the forest as it leaves the core. */
  private dropPath(seq: Seq): void {
    if (seq.hold !== undefined) this.forest!.release(seq.hold.path);
  }

  /** The prefix path a request brings in run-length mode (undefined in per-block mode). */
  private pathOf(request: EngineRequest): PrefixPath | undefined {
    const forest = this.forest;
    if (forest === undefined) return undefined;
    return request.prefixPath ?? forest.pathOfHashes(request.blockHashes);
  }

  /** Returns the sequence's block table to the recycler; it holds no blocks by then. */
  private giveTable(seq: Seq): void {
    this.tables.give(seq.blocks);
    seq.blocks = NO_BLOCKS;
  }

  /**
   * Hashes the prompt blocks of the sequence in `slot` that its first `tokens` tokens fill (those
   * computed plus those just scheduled), emitting BlockStored for the new ones, as vLLM's
   * `cache_full_blocks` does when the scheduler allocates them.
   */
  private storeFullBlocks(slot: number, tokens: number): void {
    const numStored = this.slotNumStored[slot]!;
    const full = Math.min(Math.floor(tokens / this.blockSize), this.slotHashCount[slot]!);
    if (full <= numStored) return;
    const seq = this.slotSeq[slot]!;
    if (this.runs !== undefined) {
      const hold = seq.hold!;
      const dupBlocks = hold.dupBlocks;
      this.runs.store(hold, full);
      this.noteInFlightRun(hold, numStored, full, dupBlocks);
      this.slotNumStored[slot] = full;
      return;
    }
    const hashes = seq.request.blockHashes;
    const blocks = this.slotTable[slot]!;
    const pool = this.blockPool;
    const marks = this.storedInFlight;
    let run: number[] | undefined;
    let runParent: number | undefined;
    for (let j = numStored; j < full; j++) {
      const hash = hashes[j]!;
      const block = blocks[j]!;
      if (pool.store(block, hash)) {
        marks[block] = 1;
        this.inFlightBlocks.push(block);
        if (!this.emitKv) continue;
        if (run === undefined) {
          run = [];
          runParent = j > 0 ? hashes[j - 1] : undefined;
        }
        run.push(hash);
      } else if (run !== undefined) {
        // A duplicate breaks the run: each BlockStored names one contiguous chain.
        this.emitStored(run, runParent);
        run = undefined;
      }
    }
    if (run !== undefined) this.emitStored(run, runParent);
    this.slotNumStored[slot] = full;
  }

  /** Unmarks the blocks the step that just ended registered. */
  private clearStoredInFlight(): void {
    const blocks = this.inFlightBlocks;
    const marks = this.storedInFlight;
    for (let i = 0; i < blocks.length; i++) marks[blocks[i]!] = 0;
    blocks.length = 0;
  }

  /**
   * Run-length mode: records that the step in flight registers positions [from, to) of the hold's
   * path (`dupBlocksBefore`: its duplicate count before, so new duplicates, not computed here, are
   * known).
   */
  private noteInFlightRun(hold: RunHold, from: number, to: number, dupBlocksBefore: number): void {
    let dups: number[] | undefined;
    if (hold.dupBlocks !== dupBlocksBefore) {
      dups = [];
      const all = hold.dups!;
      for (let d = 0; d < all.length; d += 2) {
        const lo = Math.max(all[d]!, from);
        const hi = Math.min(all[d + 1]!, to);
        if (lo < hi) dups.push(lo, hi);
      }
    }
    const r = this.inFlightRuns++;
    this.inFlightPaths[r] = hold.path;
    this.inFlightFrom[r] = from;
    this.inFlightTo[r] = to;
    this.inFlightDups[r] = dups;
  }

  /**
   * Run-length mode: of the first `hits` positions of `path` (all cached), how many lead up to the
   * first one the step in flight registers, i.e. whose KV exists now. The query reaches a
   * registered position only through the same forest node as the registering path, and paths share
   * leading nodes, so each registration is compared over the two paths' common nodes.
   */
  private computedPrefix(path: PrefixPath, hits: number): number {
    const forest = this.forest!;
    const nodes = path.nodes;
    for (let r = 0; r < this.inFlightRuns; r++) {
      const from = this.inFlightFrom[r]!;
      const to = Math.min(this.inFlightTo[r]!, hits);
      if (from >= to) continue;
      const other = this.inFlightPaths[r]!.nodes;
      for (let j = 0; j < nodes.length && j < other.length && nodes[j] === other[j]; j++) {
        const first = forest.firstBlockOf(nodes[j]!);
        const end = first + forest.sizeOfNode(nodes[j]!);
        if (end <= from) continue;
        if (first >= to) break;
        const p = firstNotIn(Math.max(first, from), Math.min(end, to), this.inFlightDups[r]);
        if (p >= 0) {
          hits = p;
          break;
        }
      }
    }
    return hits;
  }

  private emitStored(hashes: number[], parentHash: number | undefined): void {
    this.emit({ type: 'BlockStored', hashes, parentHash });
  }

  private emitRemoved(hash: number): void {
    this.emit({ type: 'BlockRemoved', hashes: [hash] });
  }

  /** Hands an event to the listener, or holds it for the end of the step being scheduled or run. */
  private emit(event: KvEvent): void {
    if (this.holdingKv) this.kvHeld.push(event);
    else this.listener.onKvEvent!(event);
  }

  /** Ends holding: hands the held KV events to the listener in the order they were caused. */
  private publishKv(): void {
    this.holdingKv = false;
    const held = this.kvHeld;
    if (held.length === 0) return;
    const listener = this.listener;
    for (let i = 0; i < held.length; i++) listener.onKvEvent!(held[i]!);
    held.length = 0;
  }

  /** Drops the sequence in `slot` from the running set, keeping the order of the rest. */
  private removeRunning(slot: number): void {
    for (let i = slot + 1; i < this.runCount; i++) this.moveSlot(i, i - 1);
    this.runCount--;
  }

  /**
   * Leading prompt tokens of `request` whose KV this core's prefix cache holds now (in use or free
   * cached), in whole blocks: what a peer answers a KV store's lookup with. Blocks the step in
   * flight registered (its own admissions hit them) are not counted until it ends: a store loads
   * KV that was saved, and theirs is still being computed. Read only: no hit is
   * taken, no LRU position or ref count changes, and the request need not be in this core. In
   * run-length mode it reads `prefixPath` (else a path of `blockHashes`, handed back here); 0 with
   * prefix caching off.
   */
  cachedPrefixTokens(request: Pick<EngineRequest, 'blockHashes' | 'prefixPath'>): number {
    if (!this.caching) return 0;
    const runs = this.runs;
    if (runs !== undefined) {
      const given = request.prefixPath;
      const path = given ?? this.forest!.pathOfHashes(request.blockHashes);
      // `match` only fills the scratch `commit` reads, and every commit follows its own match.
      let hits = path.blocks > 0 ? runs.match(new RunHold(path), path.blocks) : 0;
      if (hits > 0 && this.inFlightRuns > 0) hits = this.computedPrefix(path, hits);
      if (given === undefined) this.forest!.release(path);
      return hits * this.blockSize;
    }
    const hashes = request.blockHashes;
    const pool = this.blockPool;
    const marks = this.storedInFlight;
    let hits = 0;
    for (; hits < hashes.length; hits++) {
      const block = pool.lookup(hashes[hits]!);
      if (block < 0 || marks[block] === 1) break;
    }
    return hits * this.blockSize;
  }
}

/** The first position in [lo, hi) outside the ascending [lo, hi) pairs `ranges`, or -1. */
function firstNotIn(lo: number, hi: number, ranges: readonly number[] | undefined): number {
  let p = lo;
  if (ranges !== undefined) {
    for (let d = 0; d < ranges.length && p < hi; d += 2) {
      if (ranges[d]! <= p && p < ranges[d + 1]!) p = ranges[d + 1]!;
    }
  }
  return p < hi ? p : -1;
}
