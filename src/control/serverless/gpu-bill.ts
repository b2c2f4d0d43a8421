/**
 * GPU-ms billed over closed intervals, each clipped at the run's end.
 *
 * A run's end is the later of its last completion (the twin's `simulatedSeconds`) and the
 * workload's declared end (`billedUntilS`, src/twin/workload-end.ts), known only once the run is
 * over, while a keep-alive timer or a held request's deadline may stop an instance (or free a GPU
 * held by sleepers) after it. Every bill must end there, as the bills of what still holds GPUs at the
 * end do, and as the instance counts over time do: an interval that closes at or before a time the
 * run's end cannot precede (`settle`: a completion seen) is folded into one sum; the others wait in
 * a list until the end is known.
 *
 * That list is bounded: a pool that never completes a request (every request of its model times
 * out) settles nothing, while its instances may start and stop all run long. Past
 * OPEN_INTERVALS_MAX intervals the earliest-closing half is billed whole, and `foldedThroughMs`
 * remembers the latest close so billed. The bill stays exact as long as the run ends at or after
 * that time. It ends earlier only when more than OPEN_INTERVALS_MAX / 2 of one pool's intervals close
 * after the run's last completion (each a start and a stop with no request completed anywhere after
 * them): the intervals billed whole are then not clipped, and the bill is an upper bound, over by at
 * most what they held past the end (a run must not fail for it). A host that knows a completion of
 * any model (`settle` with the twin's latest completion, as the serverless host does each tick)
 * keeps the list short.
 */

import { assert } from '../../core/assert.ts';

/** Closed intervals a bill keeps unsettled at most (see the module comment). */
export const OPEN_INTERVALS_MAX = 1024;

/** One closed interval not yet known to end before the run does. */
interface Interval {
  readonly fromMs: number;
  readonly toMs: number;
  readonly gpus: number;
}

/** GPU-ms of closed intervals, clipped at the run's end (see the module comment). */
export class GpuBill {
  private settledMs = 0;
  /** A time the run's end is known not to precede: the latest completion seen. */
  private floorMs = 0;
  /** The latest close billed whole because the list was full: the run must not end before it. */
  private foldedMs = Number.NEGATIVE_INFINITY;
  /**
   * Intervals closed after `floorMs`, at most OPEN_INTERVALS_MAX: the intervals closed since the
   * latest completion (`settle` folds the others), at the end of a run the keep-alive tails after its
   * last completion.
   */
  private open: Interval[] = [];

  /** An interval of `gpus` GPUs held from `fromMs` to `toMs` ended. */
  close(fromMs: number, toMs: number, gpus: number): void {
    if (toMs <= fromMs || gpus <= 0) return;
    if (toMs <= this.floorMs) this.settledMs += (toMs - fromMs) * gpus;
    else {
      this.open.push({ fromMs, toMs, gpus });
      if (this.open.length > OPEN_INTERVALS_MAX) this.foldEarliest();
    }
  }

  /** Bills the earliest-closing half of the list whole (the list is full; see the module comment). */
  private foldEarliest(): void {
    // Stable: equal closes keep their order, so the sum is the same on every run.
    const byClose = [...this.open].sort((a, b) => a.toMs - b.toMs);
    const half = OPEN_INTERVALS_MAX / 2;
    for (const i of byClose.slice(0, half)) {
      this.settledMs += (i.toMs - i.fromMs) * i.gpus;
      if (i.toMs > this.foldedMs) this.foldedMs = i.toMs;
    }
    this.open = byClose.slice(half);
  }

  /** The run's end is at or after `atMs` (a completion at `atMs`): intervals closed by then are billed whole. */
  settle(atMs: number): void {
    if (atMs <= this.floorMs) return;
    this.floorMs = atMs;
    let w = 0;
    for (const i of this.open) {
      if (i.toMs <= atMs) this.settledMs += (i.toMs - i.fromMs) * i.gpus;
      else this.open[w++] = i;
    }
    this.open.length = w;
  }

  /**
   * GPU-ms of the closed intervals, each clipped at `endMs` (the run's end: no earlier than any
   * `settle`). Exact when `endMs` is at or after `foldedThroughMs`; before it, an upper bound (the
   * intervals billed whole stay whole; see the module comment).
   */
  totalMs(endMs: number): number {
    assert(endMs >= this.floorMs, `the run's end ${endMs} ms precedes a completion at ${this.floorMs} ms`);
    let ms = this.settledMs;
    for (const i of this.open) ms += Math.max(0, Math.min(i.toMs, endMs) - i.fromMs) * i.gpus;
    return ms;
  }

  /** Intervals not yet settled (for tests). */
  get unsettled(): number {
    return this.open.length;
  }

  /** The latest close billed whole because the list was full (-Infinity when none was). */
  get foldedThroughMs(): number {
    return this.foldedMs;
  }
}
