/**
 * The load generator's metrics, as vLLM's `benchmark_serving` defines them:
 *
 * - TTFT: send to the first chunk with output text.
 * - ITL: the gap between consecutive chunks with output text (one sample per gap, over all requests).
 * - TPOT: per request, (E2E - TTFT) / (output tokens - 1); requests with one output token have none.
 * - E2E: send to the end of the response.
 * - Throughput: completed requests and their tokens over the run's duration (first scheduled send to
 *   the last response).
 * - Goodput (DistServe): completed requests meeting every given SLO (TTFT <= target, TPOT <= target;
 *   a request without a TPOT meets the TPOT target), per second of the run.
 *
 * Latency percentiles use src/twin/report's exact type-7 convention, the same as the twin's reports.
 */
import { GrowableFloat64 } from '../stats/growable.ts';
import { latencyStats } from '../stats/percentiles.ts';
import type { BenchSummary, ModelCounts, RequestRecord } from './types.ts';

/** TPOT of a request, or undefined when it has fewer than two output tokens or no TTFT. */
export function tpotMs(record: Pick<RequestRecord, 'ttftMs' | 'e2eMs' | 'outputTokens'>): number | undefined {
  const { ttftMs, e2eMs, outputTokens } = record;
  if (ttftMs === undefined || e2eMs === undefined || outputTokens < 2) return undefined;
  return (e2eMs - ttftMs) / (outputTokens - 1);
}

/** SLO targets; an undefined target is not checked. */
export interface SloTargets {
  readonly ttftMs: number | undefined;
  readonly tpotMs: number | undefined;
}

/** True when a completed request meets every given target. */
export function meetsSlo(record: RequestRecord, slo: SloTargets): boolean {
  if (!record.ok) return false;
  if (slo.ttftMs !== undefined && !(record.ttftMs !== undefined && record.ttftMs <= slo.ttftMs)) return false;
  if (slo.tpotMs !== undefined) {
    const tpot = tpotMs(record);
    if (tpot !== undefined && tpot > slo.tpotMs) return false;
  }
  return true;
}

/** The fields of a summary that describe the run rather than measure it. */
export type RunDescription = Pick<
  BenchSummary,
  'url' | 'endpoint' | 'model' | 'stream' | 'seed' | 'workload'
>;

/** Concurrency facts the runner gathered. */
export interface ConcurrencyFacts {
  readonly max: number;
  readonly overflow: 'wait' | 'drop';
  readonly peak: number;
  readonly overLimit: number;
}

/**
 * Collects request records as they finish and sums them into a BenchSummary. Latency samples live
 * in typed arrays; the records themselves are kept only when `keepRecords` (--save-requests).
 */
export class MetricsCollector {
  private readonly ttft = new GrowableFloat64();
  private readonly tpot = new GrowableFloat64();
  private readonly itl = new GrowableFloat64(4096);
  private readonly e2e = new GrowableFloat64();
  private readonly sendLag = new GrowableFloat64();
  private readonly failures = new Map<string, number>();
  /** Requests per model, for plans whose requests name their models (bounded by the models named). */
  private readonly byModel = new Map<string, { requests: number; completed: number; failed: number }>();
  private readonly records: RequestRecord[] = [];
  private completed = 0;
  private failed = 0;
  private sent = 0;
  private inputTokens = 0;
  private outputTokens = 0;
  private fromUsage = 0;
  private meeting = 0;

  constructor(
    private readonly slo: SloTargets,
    private readonly keepRecords: boolean,
  ) {}

  /** Requests recorded so far, completed and failed. */
  get done(): number {
    return this.completed + this.failed;
  }

  get failedCount(): number {
    return this.failed;
  }

  /** Adds one finished (or dropped) request. */
  add(record: RequestRecord): void {
    if (this.keepRecords) this.records.push(record);
    if (record.model !== undefined) this.countModel(record.model, record.ok);
    if (record.e2eMs !== undefined) {
      this.sent++;
      this.sendLag.push(Math.max(0, record.sentMs - record.scheduledMs));
    }
    if (!record.ok) {
      this.failed++;
      const reason = record.reason ?? 'unknown';
      this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
      return;
    }
    this.completed++;
    this.inputTokens += record.inputTokens;
    this.outputTokens += record.outputTokens;
    if (record.outputTokensFrom === 'usage') this.fromUsage++;
    if (record.ttftMs !== undefined) this.ttft.push(record.ttftMs);
    if (record.e2eMs !== undefined) this.e2e.push(record.e2eMs);
    const tpot = tpotMs(record);
    if (tpot !== undefined) this.tpot.push(tpot);
    for (const gap of record.itlMs) this.itl.push(gap);
    if (meetsSlo(record, this.slo)) this.meeting++;
  }

  private countModel(model: string, ok: boolean): void {
    let counts = this.byModel.get(model);
    if (counts === undefined) {
      counts = { requests: 0, completed: 0, failed: 0 };
      this.byModel.set(model, counts);
    }
    counts.requests++;
    if (ok) counts.completed++;
    else counts.failed++;
  }

  /** The summary of a run that lasted durationMs and scheduled `scheduled` requests. */
  summary(
    run: RunDescription,
    durationMs: number,
    scheduled: number,
    concurrency: ConcurrencyFacts,
  ): BenchSummary {
    const durationS = durationMs / 1000;
    const perS = (n: number): number => (durationS > 0 ? n / durationS : 0);
    const sloGiven = this.slo.ttftMs !== undefined || this.slo.tpotMs !== undefined;
    const failures: Record<string, number> = {};
    for (const [reason, n] of [...this.failures].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])))
      failures[reason] = n;
    return {
      ...run,
      durationS,
      requests: { scheduled, sent: this.sent, completed: this.completed, failed: this.failed },
      failures,
      ttftMs: latencyStats(this.ttft.view()),
      tpotMs: latencyStats(this.tpot.view()),
      itlMs: latencyStats(this.itl.view()),
      e2eMs: latencyStats(this.e2e.view()),
      throughput: {
        requestsPerS: perS(this.completed),
        outputTokensPerS: perS(this.outputTokens),
        totalTokensPerS: perS(this.inputTokens + this.outputTokens),
        inputTokens: this.inputTokens,
        outputTokens: this.outputTokens,
        outputTokensFromUsage: this.fromUsage,
      },
      goodput: sloGiven
        ? {
            sloTtftMs: this.slo.ttftMs,
            sloTpotMs: this.slo.tpotMs,
            requestsMeeting: this.meeting,
            attainment: scheduled > 0 ? this.meeting / scheduled : 0,
            requestsPerS: perS(this.meeting),
          }
        : undefined,
      concurrency: { ...concurrency, sendLagMs: latencyStats(this.sendLag.view()) },
      ...(this.byModel.size > 0 ? { models: modelTable(this.byModel) } : {}),
      ...(this.keepRecords ? { records: [...this.records].sort((a, b) => a.index - b.index) } : {}),
    };
  }
}

/** Per-model counts in model-name order, so the JSON is stable. */
function modelTable(
  byModel: ReadonlyMap<string, { requests: number; completed: number; failed: number }>,
): Record<string, ModelCounts> {
  const out: Record<string, ModelCounts> = {};
  for (const model of [...byModel.keys()].sort()) out[model] = { ...(byModel.get(model) as ModelCounts) };
  return out;
}
