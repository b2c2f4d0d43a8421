import type { Slo } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { GrowableFloat64 } from '../stats/growable.ts';
import { LatencyHistogram, latencyStats, latencyStatsSorted } from '../stats/percentiles.ts';
import type { SimInstance } from './cluster.ts';
import type { InstanceSummary, SimReportData, SimSummary, TailStats } from './report/types.ts';

/** What the summary needs to know about the run besides the counters. */
export interface SummaryContext {
  readonly policy: string;
  readonly seed: number;
  readonly workload: string;
  readonly slo: Slo;
}

/** Per-request and aggregate counters of one run. */
export class RunMetrics {
  requests = 0;
  rejected = 0;
  completed = 0;
  inputTokens = 0;
  outputTokens = 0;
  preemptions = 0;
  nowMs = 0;
  lastFinishMs = 0;
  ttftOk = 0;
  tpotOk = 0;
  bothOk = 0;
  /** Batch-job (offline) requests: counted apart so online SLO figures stay online. */
  batchCompleted = 0;
  batchRejected = 0;
  batchOutputTokens = 0;
  readonly ttft = new GrowableFloat64(4096);
  readonly tpot = new GrowableFloat64(4096);
  readonly e2e = new GrowableFloat64(4096);
  readonly queueing = new GrowableFloat64(4096);
  readonly itl = new LatencyHistogram();
  private sorted: { ttft?: Float64Array; tpot?: Float64Array; e2e?: Float64Array } = {};

  finish(result: FinishedRequest, slo: Slo): void {
    const output = result.request.outputTokens;
    const ttftMs = result.firstTokenMs - result.arrivalMs;
    const tpotMs = output > 1 ? (result.finishMs - result.firstTokenMs) / (output - 1) : 0;
    this.completed++;
    this.outputTokens += output;
    this.preemptions += result.preemptions;
    this.ttft.push(ttftMs);
    this.tpot.push(tpotMs);
    this.e2e.push(result.finishMs - result.arrivalMs);
    this.queueing.push(result.firstScheduledMs - result.arrivalMs);
    const ttftMet = ttftMs <= slo.ttftMs;
    const tpotMet = tpotMs <= slo.tpotMs;
    if (ttftMet) this.ttftOk++;
    if (tpotMet) this.tpotOk++;
    if (ttftMet && tpotMet) this.bothOk++;
    if (result.finishMs > this.lastFinishMs) this.lastFinishMs = result.finishMs;
  }

  /** An offline batch request finished: it counts toward throughput and GPU work, not online SLOs. */
  batchFinished(result: FinishedRequest): void {
    this.batchCompleted++;
    this.batchOutputTokens += result.request.outputTokens;
    if (result.finishMs > this.lastFinishMs) this.lastFinishMs = result.finishMs;
  }

  sortedTtft(): Float64Array {
    this.sorted.ttft ??= Float64Array.from(this.ttft.view()).sort();
    return this.sorted.ttft;
  }
  sortedTpot(): Float64Array {
    this.sorted.tpot ??= Float64Array.from(this.tpot.view()).sort();
    return this.sorted.tpot;
  }
  sortedE2e(): Float64Array {
    this.sorted.e2e ??= Float64Array.from(this.e2e.view()).sort();
    return this.sorted.e2e;
  }

  summarize(
    options: SummaryContext,
    instances: readonly SimInstance[],
    events: number,
    wallSeconds: number,
  ): SimSummary {
    const simulatedMs = this.lastFinishMs;
    const simulatedSeconds = simulatedMs / 1000;
    const judged = this.completed + this.rejected;
    let hitTokens = 0;
    let queryTokens = 0;
    let gpuSeconds = 0;
    let engineSteps = 0;
    const perInstance: InstanceSummary[] = instances.map((instance) => {
      // Over every start of the instance (a restart under an autoscaler brings a new engine).
      const engine = instance.engineTotals;
      hitTokens += engine.prefixHitTokens;
      queryTokens += engine.prefixQueryTokens;
      gpuSeconds += instance.tp * simulatedSeconds;
      engineSteps += engine.steps;
      return {
        id: instance.id,
        gpu: instance.gpu,
        model: instance.model,
        tp: instance.tp,
        requests: instance.routed,
        utilization: simulatedMs > 0 ? Math.min(1, engine.busyMs / simulatedMs) : 0,
        kvUsageMean: instance.kvUsageSamples > 0 ? instance.kvUsageSum / instance.kvUsageSamples : 0,
        kvUsageMax: instance.kvUsageMax,
        prefixHitRate: engine.prefixHitRate,
        preemptions: engine.preemptions,
      };
    });
    const itl = this.itl;
    return {
      policy: options.policy,
      seed: options.seed,
      workload: options.workload,
      instances: instances.length,
      requests: this.requests,
      completed: this.completed,
      rejected: this.rejected,
      ttftMs: latencyStatsSorted(this.sortedTtft()),
      tpotMs: latencyStatsSorted(this.sortedTpot()),
      itlMs: {
        mean: itl.mean(),
        p50: itl.percentile(0.5),
        p90: itl.percentile(0.9),
        p99: itl.percentile(0.99),
      },
      e2eMs: latencyStatsSorted(this.sortedE2e()),
      queueMs: latencyStats(this.queueing.view()),
      ttftMsAll: tailWithRejected(this.sortedTtft(), this.rejected),
      tpotMsAll: tailWithRejected(this.sortedTpot(), this.rejected),
      e2eMsAll: tailWithRejected(this.sortedE2e(), this.rejected),
      slo: { ttftMs: options.slo.ttftMs, tpotMs: options.slo.tpotMs },
      sloAttainment: {
        ttft: judged > 0 ? this.ttftOk / judged : 0,
        tpot: judged > 0 ? this.tpotOk / judged : 0,
        both: judged > 0 ? this.bothOk / judged : 0,
      },
      throughputTokPerS: simulatedSeconds > 0 ? this.outputTokens / simulatedSeconds : 0,
      throughputReqPerS: simulatedSeconds > 0 ? this.completed / simulatedSeconds : 0,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      prefixHitRate: queryTokens > 0 ? hitTokens / queryTokens : 0,
      // Every arrived online prompt token is the denominator: a rejected prompt is a 0% hit.
      prefixHitRateAll: this.inputTokens > 0 ? Math.min(1, hitTokens / this.inputTokens) : 0,
      preemptions: this.preemptions,
      gpuSeconds,
      simulatedSeconds,
      events,
      engineSteps,
      wallSeconds,
      eventsPerWallS: wallSeconds > 0 ? events / wallSeconds : 0,
      perInstance,
    };
  }
}

/**
 * Percentiles of `completed` sorted latencies followed by `rejected` requests at +∞ (type-7
 * interpolation, as quantileSorted; an interpolation that touches a +∞ is +∞).
 */
export function tailWithRejected(sorted: ArrayLike<number>, rejected: number): TailStats {
  const completed = sorted.length;
  const count = completed + rejected;
  const at = (q: number): number => {
    if (count === 0) return 0;
    const rank = q * (count - 1);
    const lo = Math.floor(rank);
    const hi = rank > lo ? lo + 1 : lo;
    if (hi >= completed) return Number.POSITIVE_INFINITY;
    const vLo = sorted[lo] as number;
    return vLo + (rank - lo) * ((sorted[hi] as number) - vLo);
  };
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), count };
}

/**
 * Samples per-instance running, waiting and KV usage over time. When the series grows past its
 * bound it keeps every other point and doubles the interval, so memory stays bounded however long
 * the run.
 */
export class SeriesRecorder {
  intervalMs = 1000;
  private readonly tS: number[] = [];
  private readonly running: number[][];
  private readonly waiting: number[][];
  private readonly kv: number[][];

  constructor(
    private readonly instances: readonly SimInstance[],
    private readonly pointsMax: number,
  ) {
    this.running = instances.map(() => []);
    this.waiting = instances.map(() => []);
    this.kv = instances.map(() => []);
  }

  sample(nowMs: number): void {
    this.tS.push(nowMs / 1000);
    for (let i = 0; i < this.instances.length; i++) {
      const instance = this.instances[i] as SimInstance;
      // The engine's own signals, not the (possibly stale) view a policy sees.
      const kvUsage = instance.engine.kvUsage;
      (this.running[i] as number[]).push(instance.engine.running);
      // A request fetching its prefix from a KV store is in vLLM's waiting queue (as the scraped
      // view counts it) though the twin hands it to the engine only once the fetch ends.
      (this.waiting[i] as number[]).push(instance.engine.waiting + instance.fetching);
      (this.kv[i] as number[]).push(kvUsage);
      instance.kvUsageSum += kvUsage;
      instance.kvUsageSamples++;
      if (kvUsage > instance.kvUsageMax) instance.kvUsageMax = kvUsage;
    }
    if (this.tS.length >= this.pointsMax) this.decimate();
  }

  private decimate(): void {
    const keepEven = (xs: number[]): void => {
      let w = 0;
      for (let r = 0; r < xs.length; r += 2) xs[w++] = xs[r] as number;
      xs.length = w;
    };
    keepEven(this.tS);
    for (const xs of this.running) keepEven(xs);
    for (const xs of this.waiting) keepEven(xs);
    for (const xs of this.kv) keepEven(xs);
    this.intervalMs *= 2;
  }

  result(): SimReportData['series'] {
    const byId = (rows: number[][]): Record<string, number[]> =>
      Object.fromEntries(this.instances.map((instance, i) => [instance.id, rows[i] as number[]]));
    return { tS: this.tS, running: byId(this.running), waiting: byId(this.waiting), kvUsage: byId(this.kv) };
  }
}
