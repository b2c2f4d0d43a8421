import type { PerfModel, StepShape } from '../model/types.ts';

/** Decode batches up to this many sequences are remembered; larger ones are rare and varied. */
export const DECODE_MEMO_SEQS_MAX = 8;
/** Entries per page of remembered times: 4096 consecutive context lengths (32 KiB). */
export const DECODE_MEMO_PAGE_BITS = 12;
const PAGE_BITS = DECODE_MEMO_PAGE_BITS;
const PAGE_SIZE = 1 << PAGE_BITS;
/** Total context tokens past this are not remembered (pages are indexed by context / PAGE_SIZE). */
const CONTEXT_TOKENS_MAX = 1 << 26;
/** Pages one memo holds at most, over all batch sizes: its bound (32 MiB). */
export const DECODE_MEMO_PAGES_MAX = 1024;
/**
 * A page with no times (all NaN), never written: what a reader takes where `pageFor` has none, so
 * its loop reads a Float64Array every time instead of testing for undefined.
 */
export const NO_DECODE_MEMO_PAGE: Float64Array = new Float64Array(PAGE_SIZE).fill(Number.NaN);

/**
 * Decode-only step times of one perf model, remembered by (sequences, total context tokens).
 *
 * A sparse trace is mostly one or two sequences decoding, and a fused decode step asks the perf model
 * for every sub-step's time: millions of calls in a run, each tens of nanoseconds plus a boxed
 * result, most for shapes some earlier request already had (a 12k-token prompt decodes through
 * contexts other prompts decoded through). A perf model is pure (model/types.ts), so the remembered
 * double is the one it would return: results do not change. Every core of one perf model shares
 * one memo (`decodeStepMemo`).
 */
export class DecodeStepMemo {
  private readonly perf: PerfModel;
  /** pages[seqs][context >>> PAGE_BITS]: times, NaN where not yet asked. */
  private readonly pages: (Float64Array | undefined)[][] = [];
  private pageCount = 0;
  private readonly pagesMax: number;
  /**
   * Every time leaves through a Float64Array read, so an inlined caller gets an unboxed double on
   * every path (a model's own return value is a boxed number: merged with table reads, it boxed
   * those too, two heap numbers per fused sub-step).
   */
  private readonly out = new Float64Array(1);

  /**
   * @param perf the model asked on a miss.
   * @param pagesMax pages to remember at most; 0 asks the model every time (a pass-through).
   */
  constructor(perf: PerfModel, pagesMax: number = DECODE_MEMO_PAGES_MAX) {
    this.perf = perf;
    this.pagesMax = pagesMax;
    for (let s = 0; s <= DECODE_MEMO_SEQS_MAX; s++) this.pages.push([]);
  }

  /** `perf.stepTimeMs(shape)`, remembered when the step is decode-only and small. */
  stepTimeMs(shape: StepShape): number {
    const seqs = shape.decodeSeqs;
    const context = shape.decodeContextTokens;
    // A step whose sequences share a prefix may run cascade attention: its time depends on the
    // prefix too, which the pages are not keyed by, so it is asked every time.
    if (
      shape.prefillSeqs !== 0 ||
      shape.prefillTokens !== 0 ||
      shape.prefillAttentionPairs !== 0 ||
      shape.commonPrefixTokens !== 0 ||
      seqs > DECODE_MEMO_SEQS_MAX ||
      !(context >= 0 && context < CONTEXT_TOKENS_MAX && (context | 0) === context)
    ) {
      this.out[0] = this.perf.stepTimeMs(shape);
      return this.out[0] as number;
    }
    const byPage = this.pages[seqs] as (Float64Array | undefined)[];
    const p = context >>> PAGE_BITS;
    let page = byPage[p];
    if (page === undefined) {
      if (this.pageCount >= this.pagesMax) {
        this.out[0] = this.perf.stepTimeMs(shape);
        return this.out[0] as number;
      }
      page = new Float64Array(PAGE_SIZE).fill(Number.NaN);
      byPage[p] = page;
      this.pageCount++;
    }
    const i = context & (PAGE_SIZE - 1);
    if (Number.isNaN(page[i])) {
      this.out[0] = this.perf.stepTimeMs(shape);
      const t = this.out[0] as number;
      // Only a time every caller would accept is kept: a page's reader may skip the check, and an
      // invalid time is asked again (and refused again) on every step that needs it.
      if (!(t >= 0 && t < Number.POSITIVE_INFINITY)) return t;
      page[i] = t;
    }
    return page[i] as number;
  }

  /**
   * The page of remembered times for decode steps of `seqs` sequences around `contextTokens` (entry
   * `contextTokens & (2^DECODE_MEMO_PAGE_BITS - 1)`, NaN where not yet asked), created when the
   * bound allows; undefined for a pass-through, a page the bound refuses, or a context out of range.
   * Only for shapes without a common prefix (the caller checks): the pages are not keyed by it.
   * The fused-decode loop reads it directly: a call per sub-step cost a boxed number each.
   */
  pageFor(seqs: number, contextTokens: number): Float64Array | undefined {
    if (seqs > DECODE_MEMO_SEQS_MAX || !(contextTokens >= 0 && contextTokens < CONTEXT_TOKENS_MAX))
      return undefined;
    const byPage = this.pages[seqs] as (Float64Array | undefined)[];
    const p = contextTokens >>> PAGE_BITS;
    let page = byPage[p];
    if (page === undefined && this.pageCount < this.pagesMax) {
      page = new Float64Array(PAGE_SIZE).fill(Number.NaN);
      byPage[p] = page;
      this.pageCount++;
    }
    return page;
  }

  /**
   * The time of a decode-only step of `shape.decodeSeqs` sequences (shape's prefill fields 0) at
   * `contextTokens` total context, without writing the shape unless the model must be asked: the
   * fused-decode loop keeps the context in a local. A shape with a common prefix is never remembered.
   */
  decodeStepTimeMs(shape: StepShape, contextTokens: number): number {
    const seqs = shape.decodeSeqs;
    if (
      seqs <= DECODE_MEMO_SEQS_MAX &&
      shape.commonPrefixTokens === 0 &&
      contextTokens < CONTEXT_TOKENS_MAX &&
      (contextTokens | 0) === contextTokens
    ) {
      const page = this.pages[seqs]?.[contextTokens >>> PAGE_BITS];
      if (page !== undefined) {
        const t = page[contextTokens & (PAGE_SIZE - 1)] as number;
        if (!Number.isNaN(t)) return t;
      }
    }
    return this.missed(shape, contextTokens);
  }

  /** The slow half of `decodeStepTimeMs`, kept out of it so that it inlines. */
  private missed(shape: StepShape, contextTokens: number): number {
    shape.decodeContextTokens = contextTokens;
    return this.stepTimeMs(shape);
  }
}

const memos = new WeakMap<PerfModel, DecodeStepMemo>();
const passThroughs = new WeakMap<PerfModel, DecodeStepMemo>();

/** The memo shared by every core of `perf`; with `remember` false, a pass-through that asks it every time. */
export function decodeStepMemo(perf: PerfModel, remember = true): DecodeStepMemo {
  const table = remember ? memos : passThroughs;
  let memo = table.get(perf);
  if (memo === undefined) {
    memo = new DecodeStepMemo(perf, remember ? DECODE_MEMO_PAGES_MAX : 0);
    table.set(perf, memo);
  }
  return memo;
}
