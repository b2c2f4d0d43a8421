/** The summary of one twin run: what `--json` writes and the table and HTML report show. */

import type { LatencyStats } from '../../stats/percentiles.ts';
import type { ReliabilitySummary } from '../faults.ts';

export type { LatencyStats };

/** Percentiles over completed and rejected requests; +∞ where a percentile falls among the rejected. */
export interface TailStats {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** Requests behind the figures: completed + rejected. */
  readonly count: number;
}

/** A sampled time series: t in simulated seconds, one value array per instance. */
export interface InstanceSeries {
  readonly tS: readonly number[];
  /** Keyed by instance id. */
  readonly running: Readonly<Record<string, readonly number[]>>;
  readonly waiting: Readonly<Record<string, readonly number[]>>;
  readonly kvUsage: Readonly<Record<string, readonly number[]>>;
  /** Cluster-wide cumulative totals on their own time axis. Optional: older reports lack it. */
  readonly cluster?: ClusterSeries;
}

/**
 * Cumulative online counts since the start, sampled at `tS` (simulated seconds): differences of
 * neighbouring points are the rates drawn over time.
 */
export interface ClusterSeries {
  readonly tS: readonly number[];
  readonly completed: readonly number[];
  readonly rejected: readonly number[];
  /** Output tokens of completed requests. */
  readonly outputTokens: readonly number[];
  /** Requests that met both the TTFT and the TPOT SLO. */
  readonly sloMet: readonly number[];
}

/** One point of a goodput sweep as the report draws it. */
export interface GoodputSweepPoint {
  readonly rateRps: number;
  /** Fraction of requests meeting both SLOs at that rate (rejections count as misses). */
  readonly attainment: number;
}

/** Per-instance totals. */
export interface InstanceSummary {
  readonly id: string;
  readonly gpu: string;
  readonly model: string;
  readonly tp: number;
  readonly requests: number;
  /** Fraction of simulated time the instance was running a step. */
  readonly utilization: number;
  readonly kvUsageMean: number;
  readonly kvUsageMax: number;
  readonly prefixHitRate: number;
  readonly preemptions: number;
}

/** The whole summary. Wall-clock fields are `wallSeconds` and `eventsPerWallS` only. */
export interface SimSummary {
  readonly policy: string;
  readonly seed: number;
  readonly workload: string;
  readonly instances: number;
  readonly requests: number;
  readonly completed: number;
  readonly rejected: number;
  readonly ttftMs: LatencyStats;
  readonly tpotMs: LatencyStats;
  readonly itlMs: LatencyStats;
  readonly e2eMs: LatencyStats;
  readonly queueMs: LatencyStats;
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  /** Fractions of completed + rejected requests meeting the TTFT target, the TPOT target, both. */
  readonly sloAttainment: { readonly ttft: number; readonly tpot: number; readonly both: number };
  readonly throughputTokPerS: number;
  readonly throughputReqPerS: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly prefixHitRate: number;
  readonly preemptions: number;
  readonly gpuSeconds: number;
  readonly simulatedSeconds: number;
  /** Discrete events the twin processed (a fused run of decode steps is one). */
  readonly events: number;
  /**
   * Engine steps run on all instances, counting each decode step a fused step holds; the same
   * whether or not steps were fused. Optional: summaries from before it existed lack it.
   */
  readonly engineSteps?: number;
  readonly wallSeconds: number;
  readonly eventsPerWallS: number;
  readonly perInstance: readonly InstanceSummary[];
  /**
   * TTFT, TPOT and E2E percentiles over every online request judged (completed + rejected), a
   * rejected request counted as +∞ latency (it never got an answer, and it is an SLO miss): a policy
   * that refuses its slowest requests cannot look faster by it. A percentile that lands among the
   * rejected ones is +∞ in memory and `null` in JSON (tables print '∞'). `count` is completed +
   * rejected. Optional: summaries from before these fields lack them. The fields without `All`
   * (ttftMs, tpotMs, e2eMs) keep their meaning: completed requests only.
   */
  readonly ttftMsAll?: TailStats;
  readonly tpotMsAll?: TailStats;
  readonly e2eMsAll?: TailStats;
  /**
   * Prefix-cache hit tokens over every online prompt token that arrived, rejected prompts included
   * (prefixHitRate keeps its meaning: hits over the prompt tokens engines looked up).
   */
  readonly prefixHitRateAll?: number;
  /** Rejections by stable error code (admission, early rejection, capacity), when any. */
  readonly rejectedByCode?: Readonly<Record<string, number>>;
  /**
   * Requests the live gateway would count accepted and then failed, by its failure reason, when any:
   * a request held in the scale-from-zero buffer past its bound is `cold_start_timeout` (the
   * gateway's `failed{cold_start_timeout}`), one a fault run fails (engine crashed mid-stream,
   * retries spent) is `upstream` (`failed{upstream}`), one an engine refused on arrival because its
   * prompt plus output pass the model's context (src/model/context.ts), or whose whole KV needs more
   * blocks than the engine's cache holds, is `upstream_4xx` (the gateway relays the engine's 400 and
   * counts `failed{upstream_4xx}`); none is a rejection. They got no answer, so `rejected` (online
   * requests not served, the +∞ of the `All` tails) counts them too.
   */
  readonly failedByReason?: Readonly<Record<string, number>>;
  /**
   * Of `failedByReason.upstream_4xx`, the requests refused because their whole KV (prompt plus
   * output) needs more blocks than the engine's cache holds, when any; the rest passed the context.
   */
  readonly refusedPastKvCache?: number;
  /** Faults injected and what the reliability rules did about them; present only in fault runs. */
  readonly reliability?: ReliabilitySummary;
  /**
   * Wall time of the policy's decide calls in microseconds, sampled one in eight by the host. A
   * wall-clock field, like wallSeconds: it varies from run to run.
   */
  readonly decisionUs?: LatencyStats;
  /** Offline batch jobs run beside the online workload, when any. */
  readonly batchJobs?: readonly BatchJobSummary[];
}

/** Everything the HTML report draws: the summary plus raw samples for CDFs. */
export interface SimReportData {
  readonly summary: SimSummary;
  /** Per-request samples for CDFs (downsampled by the simulator to at most a few thousand). */
  readonly samples: {
    readonly ttftMs: readonly number[];
    readonly tpotMs: readonly number[];
    readonly e2eMs: readonly number[];
  };
  readonly series: InstanceSeries;
  /** Label in comparisons; defaults to `summary.policy`. Set it when two runs share a policy. */
  readonly name?: string;
  /** Requests per second that met both SLO targets, when the caller measured it. */
  readonly goodputRps?: number;
  /** The goodput sweep behind goodputRps: attainment at each arrival rate tried. */
  readonly goodputSweep?: {
    readonly targetAttainment: number;
    readonly points: readonly GoodputSweepPoint[];
  };
}

/** One policy's run in a comparison: the table, the JSON and the HTML report take a list of these. */
export interface ComparisonRow {
  readonly name: string;
  readonly summary: SimSummary;
  /** Requests per second that met both SLO targets, when the caller measured it. */
  readonly goodputRps?: number;
}

/** One offline batch job's outcome (OpenAI Batch states). */
export interface BatchJobSummary {
  readonly id: string;
  readonly status: 'in_progress' | 'completed' | 'expired';
  readonly total: number;
  readonly completed: number;
  readonly failed: number;
  readonly expired: number;
  readonly submittedS: number;
  readonly deadlineS: number;
  /** When its last request ended; -1 while any is open. */
  readonly finishedS: number;
  readonly withinWindow: boolean;
}
