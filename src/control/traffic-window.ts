/**
 * Host-neutral bookkeeping of `TrafficWindow`s: a host reports each request's arrival and end, and
 * closes a window every control interval. Both hosts use it: the twin's control host
 * (src/twin/control-host.ts) on its virtual clock, the live runner (./live-runner.ts) on the wall clock.
 *
 * Mean concurrency is exact under any report order within a window: the count at the window's start
 * plus the sum of the moves since, plain and weighted by (time - window start), integrate to
 * count x span + sum x span - weighted sum.
 */
import { LatencyHistogram } from '../stats/percentiles.ts';
import { CONTROL_HISTORY_MAX, type ServiceObjectives, type TrafficWindow } from './types.ts';

/** Counts one model's traffic into consecutive windows, keeping a bounded history of them. */
export class TrafficWindowAccumulator {
  private readonly windows: TrafficWindow[] = [];
  private windowStartMs: number;
  private arrivals = 0;
  private inputTokensSum = 0;
  private completions = 0;
  private outputTokensSum = 0;
  private failures = 0;
  private sloMet = 0;
  private tpotMsSum = 0;
  private readonly ttft = new LatencyHistogram();
  private inSystemAtStart = 0;
  private movesSum = 0;
  private movesWeightedMs = 0;

  /**
   * @param objectives what `sloAttainment` measures (neither target set: attainment is NaN)
   * @param startMs the first window's start on the host's clock
   * @param historyMax windows kept, oldest dropped first (default CONTROL_HISTORY_MAX)
   */
  constructor(
    private readonly objectives: ServiceObjectives,
    startMs: number,
    private readonly historyMax: number = CONTROL_HISTORY_MAX,
  ) {
    this.windowStartMs = startMs;
  }

  /** The closed windows, oldest first (the loops' `history`). */
  get history(): readonly TrafficWindow[] {
    return this.windows;
  }

  /** Requests arrived and not yet ended, now. */
  get inSystem(): number {
    return this.inSystemAtStart + this.movesSum;
  }

  /** A request with `inputTokens` prompt tokens arrived at `atMs`. */
  arrival(inputTokens: number, atMs: number): void {
    this.move(atMs, 1);
    this.arrivals++;
    this.inputTokensSum += inputTokens;
  }

  /** A request completed at `atMs` after its first token `ttftMs` from arrival. */
  completion(ttftMs: number, tpotMs: number, outputTokens: number, atMs: number): void {
    this.move(atMs, -1);
    this.completions++;
    this.outputTokensSum += outputTokens;
    this.ttft.record(ttftMs);
    this.tpotMsSum += tpotMs;
    const o = this.objectives;
    if (ttftMs <= (o.ttftMs ?? Number.POSITIVE_INFINITY) && tpotMs <= (o.tpotMs ?? Number.POSITIVE_INFINITY))
      this.sloMet++;
  }

  /** A request ended in an error or a rejection at `atMs`. */
  failure(atMs: number): void {
    this.move(atMs, -1);
    this.failures++;
  }

  /**
   * Ends the open window at `nowMs` with `queuedAtEnd` requests held at the host, keeps it in the
   * history and opens the next one.
   */
  close(nowMs: number, queuedAtEnd: number): TrafficWindow {
    const spanMs = nowMs - this.windowStartMs;
    const c = this.completions;
    const o = this.objectives;
    const window: TrafficWindow = {
      startMs: this.windowStartMs,
      endMs: nowMs,
      arrivals: this.arrivals,
      meanInputTokens: this.arrivals > 0 ? this.inputTokensSum / this.arrivals : Number.NaN,
      meanOutputTokens: c > 0 ? this.outputTokensSum / c : Number.NaN,
      completions: c,
      failures: this.failures,
      meanConcurrency:
        spanMs > 0
          ? this.inSystemAtStart + this.movesSum - this.movesWeightedMs / spanMs
          : this.inSystemAtStart + this.movesSum,
      queuedAtEnd,
      ttftMsP50: c > 0 ? this.ttft.percentile(0.5) : Number.NaN,
      ttftMsP90: c > 0 ? this.ttft.percentile(0.9) : Number.NaN,
      tpotMsMean: c > 0 ? this.tpotMsSum / c : Number.NaN,
      sloAttainment:
        c > 0 && (o.ttftMs !== undefined || o.tpotMs !== undefined) ? this.sloMet / c : Number.NaN,
    };
    this.windows.push(window);
    // O(n) per tick only once the history is full (a week of one-minute windows by default).
    if (this.windows.length > this.historyMax) this.windows.shift();
    this.windowStartMs = nowMs;
    this.arrivals = 0;
    this.inputTokensSum = 0;
    this.completions = 0;
    this.outputTokensSum = 0;
    this.failures = 0;
    this.sloMet = 0;
    this.tpotMsSum = 0;
    this.ttft.reset();
    this.inSystemAtStart += this.movesSum;
    this.movesSum = 0;
    this.movesWeightedMs = 0;
    return window;
  }

  private move(atMs: number, delta: number): void {
    this.movesSum += delta;
    this.movesWeightedMs += delta * (atMs - this.windowStartMs);
  }
}
