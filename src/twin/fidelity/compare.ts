/**
 * Measured against predicted: the signed error of every figure a case gives, the saturation
 * verdicts side by side, and the summary over all rows (median absolute error of TTFT and of the
 * per-token time, and how many rows the twin saturates that the real engine did not).
 */
import type { LatencyFigures } from './case.ts';
import type { FigureStats } from './observe.ts';
import type { CaseResult, CaseRow } from './run-case.ts';

/** The latencies a case can give. */
export const FIGURES = ['ttftMs', 'perTokenMs', 'e2eMs'] as const;
export type Figure = (typeof FIGURES)[number];
/** The statistics a figure can give, in table order. */
export const STATS = ['mean', 'p50', 'p90', 'p95', 'p99'] as const;
export type Stat = (typeof STATS)[number];

/** One figure of one row. */
export interface FigureComparison {
  readonly figure: Figure;
  readonly stat: Stat;
  readonly measuredMs: number;
  readonly predictedMs: number;
  /** (predicted - measured) / measured, in percent: + when the twin is slower than reality. */
  readonly errorPct: number;
}

/**
 * The saturation verdicts: `twin-only` is the failure the harness exists to catch (the twin queues
 * without bound where the real engine kept up); `real-only` the opposite.
 */
export type SaturationVerdict = 'agree' | 'twin-only' | 'real-only';

/**
 * How a capped row ended up in the twin: `client-bound` when its client queue grew (the engine held
 * at most the cap and could not keep up with the offered rate at it), else `saturated` when the
 * engine's own queue grew below the cap, else `no`.
 */
export type CappedTwinState = 'client-bound' | 'saturated' | 'no';

/** The client side of a row with `maxConcurrency`, as the table and JSON show it. */
export interface ClientComparison {
  readonly maxConcurrency: number;
  /** Mean and p90 of send − scheduled time (ms): how long requests waited for a slot. */
  readonly waitMsMean: number;
  readonly waitMsP90: number;
  /** Requests sent per second, against the offered rate in the row's load. */
  readonly sendRateRps: number;
  readonly twin: CappedTwinState;
}

/** One row compared. */
export interface RowComparison {
  readonly label: string;
  readonly load: string;
  readonly figures: readonly FigureComparison[];
  readonly measuredSaturated: boolean;
  readonly predictedSaturated: boolean;
  readonly saturation: SaturationVerdict;
  readonly measuredThroughputRps: number | undefined;
  readonly predictedThroughputRps: number;
  /** Figures kept out of the summary medians (shown, marked), and why. */
  readonly excluded: readonly Figure[];
  readonly excludedReason?: string;
  /**
   * Rows with a client cap only. Their verdict takes `client-bound` as falling behind the offered
   * load: a measured `saturated: true` there means the run fell behind its rate, whichever queue grew.
   */
  readonly client?: ClientComparison;
}

/** The summary over every row of every case. */
export interface FidelitySummary {
  readonly rows: number;
  /** Median of |error| of the headline TTFT figure (the mean where given, else the median), percent; null with no row giving one. */
  readonly ttftMedianAbsErrorPct: number | null;
  /** The same for the per-token time. */
  readonly perTokenMedianAbsErrorPct: number | null;
  /** The same for E2E (shown for reference; the targets are on TTFT and per-token time). */
  readonly e2eMedianAbsErrorPct: number | null;
  /** How many rows entered each median. */
  readonly ttftRows: number;
  readonly perTokenRows: number;
  readonly e2eRows: number;
  /** Rows where the twin saturated (or, capped, was client-bound) and the measurement did not. */
  readonly twinOnlySaturations: number;
  readonly realOnlySaturations: number;
  /** Figures (of every row) a case keeps out of the medians. */
  readonly excludedFigures: number;
}

/** Signed error in percent. */
export function errorPct(measured: number, predicted: number): number {
  return ((predicted - measured) / measured) * 100;
}

/** Compares one row: every statistic the measurement gives, for every figure. */
export function compareRow(row: CaseRow): RowComparison {
  const figures: FigureComparison[] = [];
  for (const figure of FIGURES) {
    const measured: LatencyFigures | undefined = row.measured[figure];
    if (measured === undefined) continue;
    const predicted: FigureStats = row.predicted[figure];
    for (const stat of STATS) {
      const m = measured[stat];
      if (m === undefined) continue;
      figures.push({
        figure,
        stat,
        measuredMs: m,
        predictedMs: predicted[stat],
        errorPct: errorPct(m, predicted[stat]),
      });
    }
  }
  const measuredSaturated = row.measured.saturated;
  const predictedSaturated = row.predicted.saturated;
  const client = clientComparison(row);
  const twinBehind = client === undefined ? predictedSaturated : client.twin !== 'no';
  const saturation: SaturationVerdict =
    measuredSaturated === twinBehind ? 'agree' : twinBehind ? 'twin-only' : 'real-only';
  return {
    label: row.label,
    load: row.load,
    figures,
    measuredSaturated,
    predictedSaturated,
    saturation,
    measuredThroughputRps: row.measured.throughputRps,
    predictedThroughputRps: row.predicted.throughputRps,
    excluded: row.measured.excluded?.figures ?? [],
    ...(row.measured.excluded !== undefined ? { excludedReason: row.measured.excluded.reason } : {}),
    ...(client !== undefined ? { client } : {}),
  };
}

function clientComparison(row: CaseRow): ClientComparison | undefined {
  const client = row.predicted.client;
  if (client === undefined) return undefined;
  const twin: CappedTwinState = client.clientBound
    ? 'client-bound'
    : row.predicted.saturated
      ? 'saturated'
      : 'no';
  return {
    maxConcurrency: client.maxConcurrency,
    waitMsMean: client.waitMs.mean,
    waitMsP90: client.waitMs.p90,
    sendRateRps: client.sendRateRps,
    twin,
  };
}

/**
 * The figure a row is summarised by: its mean where the source gives one, else its median; none
 * where the case excludes that figure from the summary.
 */
export function headline(row: RowComparison, figure: Figure): FigureComparison | undefined {
  if (row.excluded.includes(figure)) return undefined;
  const of = row.figures.filter((f) => f.figure === figure);
  return of.find((f) => f.stat === 'mean') ?? of.find((f) => f.stat === 'p50');
}

/** The median of a list (mean of the middle two for an even count); null for none. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Every row of every case compared, and the summary. */
export function compareAll(results: readonly CaseResult[]): {
  rows: RowComparison[];
  summary: FidelitySummary;
} {
  const rows = results.flatMap((r) => r.rows.map(compareRow));
  const abs = (figure: Figure) =>
    rows.flatMap((row) => {
      const h = headline(row, figure);
      return h === undefined ? [] : [Math.abs(h.errorPct)];
    });
  const ttft = abs('ttftMs');
  const perToken = abs('perTokenMs');
  const e2e = abs('e2eMs');
  return {
    rows,
    summary: {
      rows: rows.length,
      ttftMedianAbsErrorPct: median(ttft),
      perTokenMedianAbsErrorPct: median(perToken),
      e2eMedianAbsErrorPct: median(e2e),
      ttftRows: ttft.length,
      perTokenRows: perToken.length,
      e2eRows: e2e.length,
      twinOnlySaturations: rows.filter((r) => r.saturation === 'twin-only').length,
      realOnlySaturations: rows.filter((r) => r.saturation === 'real-only').length,
      excludedFigures: rows.reduce(
        (n, r) => n + r.figures.filter((f) => r.excluded.includes(f.figure)).length,
        0,
      ),
    },
  };
}
