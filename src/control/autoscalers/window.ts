/**
 * Helpers the autoscalers share: counting instances by phase and averaging over a trailing window
 * of time. Pure functions of their inputs.
 */
import type { ControlObservation, TrafficWindow } from '../types.ts';

/** Instances in phase `ready` (taking requests): the count Knative's and AIBrix's rate limits use. */
export function readyCount(observation: ControlObservation): number {
  let n = 0;
  for (const i of observation.instances) if (i.phase === 'ready') n++;
  return n;
}

/** Instances asked for and not on their way out (pending, starting, ready): what holding still means. */
export function activeCount(observation: ControlObservation): number {
  let n = 0;
  for (const i of observation.instances) if (i.phase !== 'draining') n++;
  return n;
}

/**
 * The time-weighted mean of `signal` over the traffic windows that overlap (nowMs - spanMs, nowMs];
 * NaN when none does. Each window weighs by the part of it inside the span, so a partial history
 * (the first ticks after start) averages over what there is, as Knative does before its window fills.
 */
export function trailingMean(
  history: readonly TrafficWindow[],
  nowMs: number,
  spanMs: number,
  signal: (w: TrafficWindow) => number,
): number {
  const fromMs = nowMs - spanMs;
  let weighted = 0;
  let weightMs = 0;
  // Newest last: walk back and stop at the first window wholly before the span.
  for (let i = history.length - 1; i >= 0; i--) {
    const w = history[i] as TrafficWindow;
    if (w.endMs <= fromMs) break;
    const overlapMs = Math.min(w.endMs, nowMs) - Math.max(w.startMs, fromMs);
    const v = signal(w);
    if (overlapMs <= 0 || !Number.isFinite(v)) continue;
    weighted += v * overlapMs;
    weightMs += overlapMs;
  }
  return weightMs > 0 ? weighted / weightMs : Number.NaN;
}

/** A value recorded at a host time. */
export interface TimedValue {
  readonly atMs: number;
  readonly value: number;
}

/**
 * The most values a `TrailingWindow` holds: an hour of 1 s ticks. Loops' spans are at most an hour
 * and hosts tick every second or slower, so this only bites on a misconfigured host, where the
 * window then covers its newest values.
 */
export const TRAILING_WINDOW_VALUES_MAX = 3600;

/**
 * A trailing window of timed values kept by a loop (engine signals, past recommendations, which a
 * traffic window does not carry). Holds only the values inside its span, and at most
 * TRAILING_WINDOW_VALUES_MAX of them.
 */
export class TrailingWindow {
  private values: TimedValue[] = [];

  constructor(private readonly spanMs: number) {}

  /** Records `value` at `atMs` and forgets what fell out of (atMs - spanMs, atMs]. */
  record(atMs: number, value: number): void {
    this.values.push({ atMs, value });
    const fromMs = atMs - this.spanMs;
    let drop = 0;
    while (drop < this.values.length && (this.values[drop] as TimedValue).atMs <= fromMs) drop++;
    // The newest value always stays, even with a zero span: it is the window's present.
    if (drop >= this.values.length) drop = this.values.length - 1;
    drop = Math.max(drop, this.values.length - TRAILING_WINDOW_VALUES_MAX);
    if (drop > 0) this.values = this.values.slice(drop);
  }

  /** Forgets every value (what it held no longer describes the present). */
  clear(): void {
    this.values = [];
  }

  /** Mean of the values held; NaN when empty. */
  mean(): number {
    if (this.values.length === 0) return Number.NaN;
    let s = 0;
    for (const v of this.values) s += v.value;
    return s / this.values.length;
  }

  max(): number {
    let m = Number.NEGATIVE_INFINITY;
    for (const v of this.values) m = Math.max(m, v.value);
    return m;
  }

  min(): number {
    let m = Number.POSITIVE_INFINITY;
    for (const v of this.values) m = Math.min(m, v.value);
    return m;
  }

  get size(): number {
    return this.values.length;
  }
}
