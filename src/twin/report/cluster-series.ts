/**
 * Cluster-wide running totals sampled over simulated time, for the report's "over time" charts
 * (throughput, rejections, SLO attainment). Totals are cumulative so that halving the points when
 * the series grows too long (every other sample kept) loses resolution but never loses counts: the
 * report differences neighbouring points into rates.
 */
import type { ClusterSeries } from './types.ts';

/** The cumulative online counters at one instant. */
export interface ClusterTotals {
  readonly completed: number;
  readonly rejected: number;
  readonly outputTokens: number;
  readonly sloMet: number;
}

/** Records ClusterTotals at each sample tick, keeping at most `pointsMax` points. */
export class ClusterSeriesRecorder {
  private readonly tS: number[] = [];
  private readonly completed: number[] = [];
  private readonly rejected: number[] = [];
  private readonly outputTokens: number[] = [];
  private readonly sloMet: number[] = [];

  constructor(private readonly pointsMax: number) {}

  /** Records the totals at `nowMs`; past `pointsMax` points, every other one is dropped. */
  sample(nowMs: number, totals: ClusterTotals): void {
    this.tS.push(nowMs / 1000);
    this.completed.push(totals.completed);
    this.rejected.push(totals.rejected);
    this.outputTokens.push(totals.outputTokens);
    this.sloMet.push(totals.sloMet);
    if (this.tS.length >= this.pointsMax) this.decimate();
  }

  private decimate(): void {
    for (const xs of [this.tS, this.completed, this.rejected, this.outputTokens, this.sloMet]) {
      let w = 0;
      for (let r = 0; r < xs.length; r += 2) xs[w++] = xs[r] as number;
      xs.length = w;
    }
  }

  result(): ClusterSeries {
    return {
      tS: this.tS,
      completed: this.completed,
      rejected: this.rejected,
      outputTokens: this.outputTokens,
      sloMet: this.sloMet,
    };
  }
}
