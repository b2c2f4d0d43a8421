import { assert } from '../core/assert.ts';
import type { PerfModel, StepShape } from '../model/types.ts';
import { BlockPool } from './block-pool.ts';
import { Deque } from './deque.ts';
import type { EngineConfig, EngineListener, EngineRequest, FinishedRequest, KvEvent } from './types.ts';

const WAITING = 0;
const RUNNING = 1;
const DONE = 2;
type SeqState = typeof WAITING | typeof RUNNING | typeof DONE;

/**
 * One request's state inside the core. Token bookkeeping follows vLLM v1: `numTokens` is every
 * token known (prompt plus sampled output), `computed` is how many of them have KV in cache. A
 * sequence computes `numTokens - computed` tokens (chunked by the budget) and samples one new token
 * each time it catches up. Preemption resets `computed` to 0 and the whole of `numTokens` becomes
 * the prompt to recompute.
 */
class Seq {
  readonly request: EngineRequest;
  readonly outputTokens: number;
  readonly hashCount: number;
  state: SeqState = WAITING;
  numTokens: number;
  /** Tokens to prefill on the current admission; the sequence decodes once `computed` reaches it. */
  promptLen: number;
  produced = 0;
  computed = 0;
  /** Physical blocks, in token order; sized for the request's largest KV so it never grows. */
  readonly blocks: Int32Array;
  numBlocks = 0;
  /** Leading blocks already considered for the prefix cache (hashed, hit, or found duplicate). */
  numStored = 0;
  /** Tokens scheduled in the step in flight (0 when not scheduled). */
  stepTokens = 0;
  firstScheduledMs = -1;
  firstTokenMs = -1;
  lastTokenMs = -1;
  cachedPromptTokens = 0;
  preemptions = 0;

  constructor(request: EngineRequest, maxBlocks: number) {
    this.request = request;
    this.outputTokens = request.outputTokens;
    this.hashCount = request.blockHashes.length;
    this.numTokens = request.inputTokens;
    this.promptLen = request.inputTokens;
    this.blocks = new Int32Array(maxBlocks);
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
 * Prefix caching: a prompt block is hashed (becomes hittable, BlockStored) at the end of the step
 * that completes it, never before its KV exists. Only blocks with an entry in
 * `EngineRequest.blockHashes` are cacheable; decode blocks never are.
 */
export class EngineCore {
  /** Inspection only (tests, debugging): the block pool. */
  readonly blockPool: BlockPool;
  private readonly config: EngineConfig;
  private readonly perf: PerfModel;
  private readonly listener: EngineListener;
  private readonly blockSize: number;
  private readonly caching: boolean;
  private readonly emitKv: boolean;

  /** Running sequences in admission order, `runCount` of them; slots past the count are stale. */
  private readonly runList: Seq[] = [];
  private runCount = 0;
  private readonly waitQueue = new Deque<Seq>(64);
  private readonly byId = new Map<string, Seq>();
  /** Reused for every step; the perf model must not keep it. */
  private readonly shape: StepShape = {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: 0,
    decodeContextTokens: 0,
  };

  private inFlight = false;
  private inFinish = false;
  private abortedInFinish = false;
  private stepStartMs = 0;
  /** End of the previous step; a sequence whose last token came then has a regular gap. */
  private prevStepEndMs = Number.NaN;

  private pendingPrefill = 0;
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
   */
  constructor(config: EngineConfig, perf: PerfModel, numBlocks: number, listener: EngineListener) {
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
    this.perf = perf;
    this.listener = listener;
    this.blockSize = config.blockSize;
    this.caching = config.enablePrefixCaching;
    this.emitKv = listener.onKvEvent !== undefined;
    this.blockPool = new BlockPool(numBlocks, this.emitKv ? (hash) => this.emitRemoved(hash) : undefined);
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
    return this.blockPool.usedCount;
  }
  /** KV blocks in the pool. */
  get kvBlocksTotal(): number {
    return this.blockPool.numBlocks;
  }
  /** kvBlocksUsed / kvBlocksTotal, in [0, 1]. */
  get kvUsage(): number {
    return this.blockPool.usedCount / this.blockPool.numBlocks;
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
  /** Steps finished so far. */
  get steps(): number {
    return this.stepCount;
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
    assert(
      Number.isInteger(request.inputTokens) && request.inputTokens >= 1,
      `request ${request.id}: inputTokens must be a positive integer, got ${request.inputTokens}`,
    );
    assert(
      Number.isInteger(request.outputTokens) && request.outputTokens >= 1,
      `request ${request.id}: outputTokens must be a positive integer, got ${request.outputTokens}`,
    );
    assert(!this.byId.has(request.id), `request ${request.id} added twice`);
    // The last output token is sampled, never fed back, so it needs no KV.
    const maxBlocks = Math.ceil((request.inputTokens + request.outputTokens - 1) / this.blockSize);
    if (maxBlocks > this.blockPool.numBlocks) {
      this.listener.onReject?.(request, 'kv-capacity', nowMs);
      return false;
    }
    const seq = new Seq(request, maxBlocks);
    this.byId.set(request.id, seq);
    this.waitQueue.pushBack(seq);
    this.pendingPrefill += seq.promptLen;
    return true;
  }

  /**
   * Removes a waiting or running request, freeing its blocks; no listener call. A request in the step
   * in flight loses that step's work. Returns false when the id is unknown or already finished.
   */
  abort(requestId: string, _nowMs: number): boolean {
    const seq = this.byId.get(requestId);
    if (seq === undefined) return false;
    this.byId.delete(requestId);
    if (seq.state === WAITING) {
      this.waitQueue.remove(seq);
      this.pendingPrefill -= seq.promptLen - seq.computed;
    } else {
      if (seq.computed < seq.promptLen) this.pendingPrefill -= seq.promptLen - seq.computed;
      this.releaseBlocks(seq);
      seq.stepTokens = 0;
      // Inside finishStep the compaction loop is walking the list; it drops the sequence itself.
      if (this.inFinish) this.abortedInFinish = true;
      else this.removeRunning(seq);
    }
    seq.state = DONE;
    return true;
  }

  // ---- steps ----

  /**
   * Schedules the next batch and returns its duration, or undefined when there is nothing to run.
   */
  startStep(nowMs: number): number | undefined {
    assert(!this.inFlight, 'startStep while a step is in flight');
    assert(!this.inFinish, 'startStep from a listener hook inside finishStep');
    const shape = this.shape;
    shape.prefillSeqs = 0;
    shape.prefillTokens = 0;
    shape.prefillAttentionPairs = 0;
    shape.decodeSeqs = 0;
    shape.decodeContextTokens = 0;

    let budget = this.config.maxNumBatchedTokens;
    let scheduled = 0;
    let preempted = false;
    const list = this.runList;

    for (let i = 0; i < this.runCount && budget > 0; i++) {
      const seq = list[i]!;
      const want = seq.numTokens - seq.computed;
      const n = Math.min(want, budget);
      if (!this.ensureBlocks(seq, seq.computed + n)) {
        // Recompute preemption, vLLM's policy: evict the most recently admitted until this one fits.
        let fits = false;
        while (!fits) {
          const victim = list[--this.runCount]!;
          this.preempt(victim);
          preempted = true;
          if (victim === seq) break;
          fits = this.ensureBlocks(seq, seq.computed + n);
        }
        if (!fits) break;
      }
      this.schedule(seq, n);
      budget -= n;
      scheduled++;
    }

    // Like vLLM, admit nothing in a step that had to preempt (it would only thrash), unless the step
    // would otherwise be empty.
    if (!preempted || scheduled === 0) {
      const maxSeqs = this.config.maxNumSeqs;
      while (budget > 0 && this.runCount < maxSeqs && this.waitQueue.size > 0) {
        const n = this.admit(this.waitQueue.peekFront()!, budget, nowMs);
        if (n === 0) break;
        budget -= n;
        scheduled++;
      }
    }

    if (scheduled === 0) {
      assert(!this.hasWork, 'requests present but nothing schedulable');
      return undefined;
    }
    const durationMs = this.perf.stepTimeMs(shape);
    assert(durationMs >= 0 && Number.isFinite(durationMs), `perf model returned step time ${durationMs}`);
    this.inFlight = true;
    this.stepStartMs = nowMs;
    return durationMs;
  }

  /** Applies the step in flight: prefill progress, sampled tokens, finishes, listener calls. */
  finishStep(nowMs: number): void {
    assert(this.inFlight, 'finishStep without startStep');
    this.inFlight = false;
    this.busyTotalMs += nowMs - this.stepStartMs;
    this.stepCount++;
    const prevEndMs = this.prevStepEndMs;
    const list = this.runList;
    const listener = this.listener;
    let regularGaps = 0;
    let kept = 0;

    this.inFinish = true;
    try {
      const count = this.runCount;
      for (let i = 0; i < count; i++) {
        const seq = list[i]!;
        if (seq.state !== RUNNING) continue;
        const n = seq.stepTokens;
        if (n > 0) {
          seq.stepTokens = 0;
          if (seq.computed < seq.promptLen) this.pendingPrefill -= n;
          seq.computed += n;
          if (this.caching && seq.numStored < seq.hashCount) this.storeFullBlocks(seq);
          if (seq.computed === seq.numTokens) {
            // Catching up samples one token (the step that ends the prompt samples the first).
            seq.produced++;
            seq.numTokens++;
            if (seq.firstTokenMs < 0) {
              seq.firstTokenMs = nowMs;
              listener.onFirstToken?.(seq.request, nowMs);
            } else if (seq.lastTokenMs === prevEndMs) {
              regularGaps++;
            } else {
              listener.onInterTokenLatency?.(nowMs - seq.lastTokenMs, 1);
            }
            seq.lastTokenMs = nowMs;
            if (seq.produced === seq.outputTokens) {
              this.finish(seq, nowMs);
              continue;
            }
          }
        }
        // A hook above may have aborted this very sequence.
        if (seq.state === RUNNING) list[kept++] = seq;
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
        const seq = list[i]!;
        if (seq.state === RUNNING) list[w++] = seq;
      }
      this.runCount = w;
    }
    if (regularGaps > 0) listener.onInterTokenLatency?.(nowMs - prevEndMs, regularGaps);
    this.prevStepEndMs = nowMs;
  }

  // ---- inspection (tests, debugging) ----

  /** The shape of the last scheduled step. Reused: copy it to keep it. */
  get lastStepShape(): Readonly<StepShape> {
    return this.shape;
  }

  /** A running request's physical blocks, or undefined when it is not running. For tests. */
  blocksOf(requestId: string): number[] | undefined {
    const seq = this.byId.get(requestId);
    if (seq === undefined || seq.state !== RUNNING) return undefined;
    return Array.from(seq.blocks.subarray(0, seq.numBlocks));
  }

  /**
   * Checks the pool's invariants and that every block's ref count equals the number of running
   * sequences holding it. O(numBlocks + blocks held); for tests.
   */
  checkInvariants(): void {
    this.blockPool.checkInvariants();
    const refs = new Int32Array(this.blockPool.numBlocks);
    let pending = 0;
    for (let i = 0; i < this.runCount; i++) {
      const seq = this.runList[i]!;
      assert(seq.state === RUNNING, `non-running ${seq.request.id} in the running list`);
      assert(seq.numBlocks * this.blockSize >= seq.computed, `${seq.request.id} computed past its blocks`);
      assert(seq.computed <= seq.numTokens, `${seq.request.id} computed past its tokens`);
      for (let j = 0; j < seq.numBlocks; j++) refs[seq.blocks[j]!]!++;
      if (seq.computed < seq.promptLen) pending += seq.promptLen - seq.computed;
    }
    assert(this.runCount <= this.config.maxNumSeqs, `running ${this.runCount} > maxNumSeqs`);
    for (let i = 0; i < this.waitQueue.size; i++) {
      const seq = this.waitQueue.at(i)!;
      assert(seq.state === WAITING && seq.numBlocks === 0, `waiting ${seq.request.id} holds blocks`);
      pending += seq.promptLen - seq.computed;
    }
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

  // ---- internals ----

  /**
   * Tries to admit the front waiting sequence with a budget of `budget` tokens; returns the tokens
   * scheduled, 0 when its blocks do not fit (it stays at the front: FCFS, no skipping).
   */
  private admit(seq: Seq, budget: number, nowMs: number): number {
    const bs = this.blockSize;
    const pool = this.blockPool;
    let hits = 0;
    let hitsFree = 0;
    if (this.caching) {
      // vLLM keeps at least one token to compute so the step has logits to sample from.
      const cap = Math.min(seq.hashCount, Math.floor((seq.numTokens - 1) / bs));
      const hashes = seq.request.blockHashes;
      while (hits < cap) {
        const block = pool.lookup(hashes[hits]!);
        if (block < 0) break;
        if (pool.isCachedFree(block)) hitsFree++;
        seq.blocks[hits++] = block;
      }
    }
    const computed = hits * bs;
    const want = seq.numTokens - computed;
    const n = Math.min(want, budget);
    const newBlocks = Math.ceil((computed + n) / bs) - hits;
    // Hits on free cached blocks leave the free pool, so they cannot also serve as new blocks.
    if (pool.freeCount - hitsFree < newBlocks) return 0;

    this.waitQueue.popFront();
    for (let j = 0; j < hits; j++) pool.touch(seq.blocks[j]!);
    for (let j = 0; j < newBlocks; j++) seq.blocks[hits + j] = pool.allocate();
    seq.numBlocks = hits + newBlocks;
    seq.numStored = hits;
    seq.computed = computed;
    seq.cachedPromptTokens = computed;
    this.pendingPrefill -= computed;
    if (seq.firstScheduledMs < 0) {
      seq.firstScheduledMs = nowMs;
      this.prefixQueries += seq.numTokens;
      this.prefixHits += computed;
    }
    seq.state = RUNNING;
    this.runList[this.runCount++] = seq;
    this.schedule(seq, n);
    return n;
  }

  /** Records `n` tokens of `seq` in this step's shape. */
  private schedule(seq: Seq, n: number): void {
    seq.stepTokens = n;
    const shape = this.shape;
    if (seq.computed < seq.promptLen) {
      shape.prefillSeqs++;
      shape.prefillTokens += n;
      shape.prefillAttentionPairs += n * seq.computed + (n * (n + 1)) / 2;
    } else {
      shape.decodeSeqs++;
      shape.decodeContextTokens += seq.numTokens;
    }
  }

  /** Makes sure `seq` holds blocks for its first `tokens` tokens; false (and no change) if too few are free. */
  private ensureBlocks(seq: Seq, tokens: number): boolean {
    const have = seq.numBlocks;
    if (tokens <= have * this.blockSize) return true;
    const need = Math.ceil(tokens / this.blockSize) - have;
    const pool = this.blockPool;
    if (pool.freeCount < need) return false;
    for (let j = 0; j < need; j++) seq.blocks[have + j] = pool.allocate();
    seq.numBlocks = have + need;
    return true;
  }

  /** Recompute preemption: free everything and requeue at the front with all tokens as the prompt. */
  private preempt(seq: Seq): void {
    assert(seq.stepTokens === 0, `preempting ${seq.request.id} after scheduling it`);
    if (seq.computed < seq.promptLen) this.pendingPrefill -= seq.promptLen - seq.computed;
    this.releaseBlocks(seq);
    seq.computed = 0;
    seq.promptLen = seq.numTokens;
    this.pendingPrefill += seq.promptLen;
    seq.state = WAITING;
    seq.preemptions++;
    this.preemptCount++;
    this.waitQueue.pushFront(seq);
  }

  private finish(seq: Seq, nowMs: number): void {
    this.releaseBlocks(seq);
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

  /**
   * Frees a sequence's blocks last to first, as vLLM does: the tail of a prompt is the least likely to
   * be shared, so it enters the LRU first and is evicted first.
   */
  private releaseBlocks(seq: Seq): void {
    const pool = this.blockPool;
    for (let j = seq.numBlocks - 1; j >= 0; j--) pool.release(seq.blocks[j]!);
    seq.numBlocks = 0;
    seq.numStored = 0;
  }

  /** Hashes the sequence's prompt blocks that its computed tokens have just filled. */
  private storeFullBlocks(seq: Seq): void {
    const full = Math.min(Math.floor(seq.computed / this.blockSize), seq.hashCount);
    if (full <= seq.numStored) return;
    const hashes = seq.request.blockHashes;
    const pool = this.blockPool;
    let run: number[] | undefined;
    let runParent: number | undefined;
    for (let j = seq.numStored; j < full; j++) {
      const hash = hashes[j]!;
      if (pool.store(seq.blocks[j]!, hash)) {
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
    seq.numStored = full;
  }

  private emitStored(hashes: number[], parentHash: number | undefined): void {
    const event: KvEvent = { type: 'BlockStored', hashes, parentHash };
    this.listener.onKvEvent!(event);
  }

  private emitRemoved(hash: number): void {
    this.listener.onKvEvent!({ type: 'BlockRemoved', hashes: [hash] });
  }

  private removeRunning(seq: Seq): void {
    const list = this.runList;
    let w = 0;
    for (let i = 0; i < this.runCount; i++) {
      const s = list[i]!;
      if (s !== seq) list[w++] = s;
    }
    this.runCount = w;
  }
}
