/**
 * Terminal tables for twin runs: one run's summary, and one row per policy when comparing. The
 * functions are pure and return text; the caller decides colour (pass `process.stdout.isTTY`).
 */

import Table from 'cli-table3';
import { fmtMs, fmtNumber, fmtPct, fmtQty, fmtSeconds, fmtSi, fmtTarget } from '../../stats/format.ts';
import { formatBatchJobs } from './batch.ts';
import { gpuSecondsText, instancesText, type PoolFigures } from './pool.ts';
import type { ComparisonRow, LatencyStats, SimSummary, TailStats } from './types.ts';

/** Options shared by the table formatters. */
export interface TableOptions {
  /** ANSI colours for headers and the best value per column. Default false: plain text for pipes and files. */
  readonly color?: boolean;
}

/** Options for formatSummaryTable. */
export interface SummaryTableOptions extends TableOptions {
  /** Instances listed one per row before a "... N more" line (default 16; 0 hides the table). */
  readonly instanceRowsMax?: number;
  /**
   * A run under a control loop (autoscaler, multi-model placement, serverless, P/D pools): the
   * header names the summary's instances as the pool's slots and its GPUs, and the GPU-seconds line
   * prints what was billed beside the pool's ceiling (`gpuSeconds`). Undefined: a fixed cluster.
   */
  readonly pool?: PoolFigures | undefined;
}

const ANSI = {
  bold: '\u001b[1m',
  green: '\u001b[32m',
  cyan: '\u001b[36m',
  dim: '\u001b[2m',
  reset: '\u001b[0m',
};

function paint(text: string, code: string, color: boolean): string {
  return color ? `${code}${text}${ANSI.reset}` : text;
}

/**
 * A cli-table3 table in our style. cli-table3 colours headers red and borders grey unless told
 * not to, so without colour both style lists are emptied. A newline in a heading splits it over
 * two lines, which keeps the comparison table within 100 columns.
 */
function newTable(head: string[], color: boolean, rightFrom = 1): Table.Table {
  return new Table({
    head,
    colAligns: head.map((_, i) => (i >= rightFrom ? 'right' : 'left')),
    style: { head: color ? ['cyan'] : [], border: color ? ['grey'] : [], compact: true },
  });
}

function latencyRow(name: string, s: LatencyStats): string[] {
  return [name, fmtMs(s.mean), fmtMs(s.p50), fmtMs(s.p90), fmtMs(s.p99)];
}

/** A latency that may be +∞ (a percentile among rejected requests): '∞', else as fmtMs. */
export function fmtTailMs(x: number): string {
  return x === Number.POSITIVE_INFINITY ? '∞' : fmtMs(x);
}

function tailRow(name: string, s: TailStats): string[] {
  return [name, '', fmtTailMs(s.p50), fmtTailMs(s.p90), fmtTailMs(s.p99)];
}

/** Percentiles over completed and rejected requests, from the summary or, for older ones, completed only. */
function allTtft(s: SimSummary): TailStats {
  return s.ttftMsAll ?? { ...s.ttftMs, count: s.completed };
}
function allTpot(s: SimSummary): TailStats {
  return s.tpotMsAll ?? { ...s.tpotMs, count: s.completed };
}
function allE2e(s: SimSummary): TailStats {
  return s.e2eMsAll ?? { ...s.e2eMs, count: s.completed };
}

/**
 * A compact summary of one run: counts (online ones, with a line per offline batch job when there
 * are any), latency table, SLO attainment, throughput, cache and cost figures (for a pool, GPU-seconds
 * billed beside the pool's ceiling), simulator speed, then a per-instance table (the first
 * `instanceRowsMax` instances and a "... N more" line).
 */
export function formatSummaryTable(summary: SimSummary, options: SummaryTableOptions = {}): string {
  const color = options.color ?? false;
  const s = summary;
  const lines: string[] = [];
  lines.push(
    paint(
      `policy ${s.policy} · workload ${s.workload} · seed ${s.seed} · ${instancesText(s.instances, options.pool)}`,
      ANSI.bold,
      color,
    ),
  );
  const rejectedShare = s.requests > 0 ? ` (${fmtPct(s.rejected / s.requests)})` : '';
  // With batch jobs, the counts and every figure below but the instance table are online requests'.
  const batch = formatBatchJobs(s.batchJobs);
  lines.push(
    `${batch.length > 0 ? 'online ' : ''}requests ${fmtNumber(s.requests)} · completed ${fmtNumber(s.completed)} · rejected ${fmtNumber(s.rejected)}${rejectedShare}`,
    ...batch,
  );
  // Engine 400s say why: the run's lengths or engine size, not its policy, lost these (src/model/context.ts).
  const pastKvCache = s.refusedPastKvCache ?? 0;
  const pastContext = (s.failedByReason?.['upstream_4xx'] ?? 0) - pastKvCache;
  const causes = (
    [
      [pastContext, "prompt + output past the model's context"],
      [pastKvCache, 'prompt + output need more KV blocks than its cache holds'],
    ] as const
  ).filter(([n]) => n > 0);
  if (causes.length > 0) {
    // One cause reads "N of them refused by their engine: <cause>"; two give each its count.
    const why =
      causes.length === 1 ? causes[0]?.[1] : causes.map(([n, t]) => `${fmtNumber(n)} ${t}`).join(', ');
    lines.push(
      `${fmtNumber(pastContext + pastKvCache)} of them refused by their engine: ${why} ` +
        "(failed upstream_4xx, as the gateway counts an engine's 400)",
    );
  }

  const lat = newTable(['latency (ms)', 'mean', 'p50', 'p90', 'p99'], color);
  lat.push(
    latencyRow('TTFT', s.ttftMs),
    latencyRow('TPOT', s.tpotMs),
    latencyRow('ITL', s.itlMs),
    latencyRow('E2E', s.e2eMs),
    latencyRow('queue', s.queueMs),
  );
  if (s.rejected > 0) {
    // The same percentiles with each rejected request counted as +∞: what every client saw.
    lat.push(tailRow('TTFT all', allTtft(s)), tailRow('TPOT all', allTpot(s)), tailRow('E2E all', allE2e(s)));
  }
  lines.push(lat.toString());
  if (s.rejected > 0) {
    // The codes say why (a multi-model workload on a cluster that serves none of its models:
    // every request SY_ERR_NO_INSTANCE), which the counts alone left to the JSON.
    const codes = Object.entries(s.rejectedByCode ?? {})
      .filter(([, n]) => n > 0)
      .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))
      .map(([code, n]) => `${code} ${fmtNumber(n)}`);
    lines.push(
      paint(
        `"all" rows count the ${fmtNumber(s.rejected)} rejected requests as ∞ (an SLO miss)` +
          (codes.length > 0 ? `; rejected by code: ${codes.join(', ')}` : ''),
        ANSI.dim,
        color,
      ),
    );
  }

  const a = s.sloAttainment;
  lines.push(
    `SLO attainment: TTFT ≤ ${fmtTarget(s.slo.ttftMs)} ms ${fmtPct(a.ttft)} · ` +
      `TPOT ≤ ${fmtTarget(s.slo.tpotMs)} ms ${fmtPct(a.tpot)} · both ${paint(fmtPct(a.both), ANSI.bold, color)}`,
  );
  lines.push(
    `throughput ${fmtQty(s.throughputTokPerS)} tok/s · ${fmtQty(s.throughputReqPerS)} req/s · ` +
      `tokens in ${fmtSi(s.inputTokens)} out ${fmtSi(s.outputTokens)}`,
  );
  lines.push(
    `prefix hit rate ${fmtPct(s.prefixHitRateAll ?? s.prefixHitRate)} of all prompt tokens ` +
      `(${fmtPct(s.prefixHitRate)} of those looked up) · request preemptions ${fmtNumber(s.preemptions)}` +
      (options.pool === undefined ? ` · GPU-seconds ${fmtQty(s.gpuSeconds)}` : ''),
  );
  // A pool's gpuSeconds bills every slot for the whole run: printed as the ceiling, beside the bill.
  if (options.pool !== undefined) lines.push(gpuSecondsText(s, options.pool));
  const speedup = s.wallSeconds > 0 ? ` (${fmtSi(s.simulatedSeconds / s.wallSeconds)}× real time)` : '';
  lines.push(
    paint(
      `simulated ${fmtSeconds(s.simulatedSeconds)} · wall ${fmtSeconds(s.wallSeconds)} · ` +
        `${fmtSi(s.events)} events, ${fmtSi(s.eventsPerWallS)} events/s${speedup}`,
      ANSI.dim,
      color,
    ),
  );

  const rowsMax = options.instanceRowsMax ?? 16;
  if (rowsMax > 0 && s.perInstance.length > 0)
    lines.push(
      formatInstances(s, rowsMax, color, options.pool === undefined ? 'instances' : 'instance slots'),
    );
  return lines.join('\n');
}

function formatInstances(s: SimSummary, rowsMax: number, color: boolean, noun: string): string {
  const t = newTable(
    ['instance', 'gpu', 'model', 'tp', 'requests', 'util', 'KV mean', 'KV max', 'hit rate', 'req preempt'],
    color,
    3,
  );
  for (const p of s.perInstance.slice(0, rowsMax)) {
    t.push(instanceCells(p));
  }
  const more = s.perInstance.length - rowsMax;
  return more > 0 ? `${t.toString()}\n… ${fmtNumber(more)} more ${noun}` : t.toString();
}

/** Which way is better for a comparison column, for highlighting. */
type Better = 'low' | 'high' | 'none';

interface Column {
  readonly head: string;
  readonly better: Better;
  readonly value: (row: ComparisonRow) => number;
  readonly format: (x: number) => string;
}

/**
 * Every percentile and the hit rate are over all requests, rejected ones included (as +∞ latency,
 * printed '∞', and as prompts with no hit), so refusing the slowest requests cannot flatter a policy;
 * the rejected column stands beside them.
 */
const COMPARISON_COLUMNS: readonly Column[] = [
  { head: 'TTFT\np50 ms', better: 'low', value: (r) => allTtft(r.summary).p50, format: fmtTailMs },
  { head: 'TTFT\np99 ms', better: 'low', value: (r) => allTtft(r.summary).p99, format: fmtTailMs },
  { head: 'TPOT\np90 ms', better: 'low', value: (r) => allTpot(r.summary).p90, format: fmtTailMs },
  { head: 'E2E\np99 ms', better: 'low', value: (r) => allE2e(r.summary).p99, format: fmtTailMs },
  { head: 'SLO\nboth', better: 'high', value: (r) => r.summary.sloAttainment.both, format: fmtPct },
  {
    head: 'hit\nrate',
    better: 'high',
    value: (r) => r.summary.prefixHitRateAll ?? r.summary.prefixHitRate,
    format: fmtPct,
  },
  { head: 'rejected', better: 'low', value: (r) => r.summary.rejected, format: (x) => fmtNumber(x) },
];

const GOODPUT_COLUMN: Column = {
  head: 'goodput\nreq/s',
  better: 'high',
  value: (r) => r.goodputRps ?? Number.NaN,
  format: fmtQty,
};

/**
 * One row per policy: goodput (when any row has it), p50 and p99 TTFT, p90 TPOT, p99 E2E (each over
 * all requests, a rejected one as ∞), SLO attainment (both targets), prefix hit rate over all prompt
 * tokens, rejected requests. With colour on, the best value of
 * each column is green (ties all green); with it off the text is plain.
 */
export function formatComparisonTable(rows: readonly ComparisonRow[], options: TableOptions = {}): string {
  const color = options.color ?? false;
  const columns = rows.some((r) => r.goodputRps !== undefined)
    ? [GOODPUT_COLUMN, ...COMPARISON_COLUMNS]
    : COMPARISON_COLUMNS;
  const t = newTable(['policy', ...columns.map((c) => c.head)], color);
  const best = columns.map((c) => bestValue(rows.map(c.value), c.better));
  for (const row of rows) {
    t.push([
      row.name,
      ...columns.map((c, i) => {
        const v = c.value(row);
        const text = c.format(v);
        return rows.length > 1 && v === best[i] ? paint(text, ANSI.green, color) : text;
      }),
    ]);
  }
  return t.toString();
}

function bestValue(values: readonly number[], better: Better): number {
  const finite = values.filter(Number.isFinite);
  if (better === 'none' || finite.length === 0) return Number.NaN;
  return better === 'low' ? Math.min(...finite) : Math.max(...finite);
}

/** One instance's row of the per-instance table, formatted; shared by the terminal and HTML reports. */
export function instanceCells(p: SimSummary['perInstance'][number]): string[] {
  return [
    p.id,
    p.gpu,
    p.model,
    String(p.tp),
    fmtNumber(p.requests),
    fmtPct(p.utilization),
    fmtPct(p.kvUsageMean),
    fmtPct(p.kvUsageMax),
    fmtPct(p.prefixHitRate),
    fmtNumber(p.preemptions),
  ];
}
