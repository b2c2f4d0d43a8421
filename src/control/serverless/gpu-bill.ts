/**
 * GPU-ms billed over closed intervals, each clipped at the run's end.
 *
 * A run's end is its last completion (the twin's `simulatedSeconds`), known only once the run is
 * over, while a keep-alive timer or a held request's deadline may stop an instance (or free a GPU
 * held by sleepers) after it. Every bill must end there, as the bills of what still holds GPUs at the
 * end do, and as the instance counts over time do: an interval that closes at or before a time the
 * run's end cannot precede (`settle`: a completion seen) is folded into one sum; the others wait in
 * a short list until the end is known.
 */

import { assert } from '../../core/assert.ts';

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
  /**
   * Intervals closed after `floorMs`. Bounded by the intervals closed since the latest completion
   * (`settle` folds the others): at the end of a run, the keep-alive tails after its last completion.
   */
  private readonly open: Interval[] = [];

  /** An interval of `gpus` GPUs held from `fromMs` to `toMs` ended. */
  close(fromMs: number, toMs: number, gpus: number): void {
    if (toMs <= fromMs || gpus <= 0) return;
    if (toMs <= this.floorMs) this.settledMs += (toMs - fromMs) * gpus;
    else this.open.push({ fromMs, toMs, gpus });
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

  /** GPU-ms of the closed intervals, each clipped at `endMs` (the run's end: no earlier than any `settle`). */
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
}
