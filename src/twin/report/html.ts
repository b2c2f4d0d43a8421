/**
 * The twin's HTML report: one self-contained file that opens from disk with no network. uPlot's
 * script and stylesheet are inlined from node_modules, the run data is inlined as JSON, the tables
 * are static HTML (readable without JavaScript) and a small script draws the charts.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { assert } from '../../core/assert.ts';
import { fmtMs, fmtNumber, fmtPct, fmtQty, fmtSeconds, fmtSi, fmtTarget } from '../../stats/format.ts';
import { batchFinishedText, batchSecondsText, batchStatusText } from './batch.ts';
import { CLIENT_JS } from './html-client.ts';
import { billedGpuSeconds, gpusGiving, instancesText, type PoolFigures, poolSpan } from './pool.ts';
import { type ControlledReportData, REPLICAS_CLIENT_JS, replicasSection, reportPool } from './replicas.ts';
import { instanceCells } from './table.ts';
import type { LatencyStats, SimReportData, SimSummary } from './types.ts';

/** Options for renderHtmlReport. */
export interface HtmlReportOptions {
  /** Page title and heading (default "Switchyard twin report"). */
  readonly title?: string;
  /** Extra settings shown in the header, in the order given (trace path, config file, flags). */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Instances drawn one line each in the time-series charts before only mean and max are added (default 16). */
  readonly instanceLinesMax?: number;
  /** Instances listed in each per-instance table before a "... N more" row (default 500). */
  readonly instanceRowsMax?: number;
}

interface Vendor {
  readonly js: string;
  readonly css: string;
}

let vendor: Vendor | undefined;

/** uPlot's minified script and stylesheet, read once from the installed package. */
function uplotVendor(): Vendor {
  if (vendor !== undefined) return vendor;
  const require = createRequire(import.meta.url);
  const js = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  const css = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  vendor = { js, css };
  return vendor;
}

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * JSON for a `<script type="application/json">` element. Every `<` becomes `\u003c`, so neither
 * `</script` nor `<!--` can appear and end or confuse the element; JSON.parse reads it back
 * unchanged. U+2028 and U+2029 are escaped too, for readers that treat them as line ends.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * Script text safe to inline in a `<script>` element: `</script` is written `<\/script`, which
 * means the same inside JavaScript strings, regexes and comments, the only places it can occur.
 */
function inlineScript(js: string): string {
  assert(!js.includes('<!--'), 'inline script contains <!--');
  return js.replace(/<\/script/gi, '<\\/script');
}

function inlineStyle(css: string): string {
  assert(!/<\/style/i.test(css), 'inline stylesheet contains </style');
  return css;
}

const PAGE_CSS = `
:root { --fg: #1d2330; --muted: #5b6475; --line: #dde1e8; --zebra: #f6f7f9; --accent: #1f6feb; --good: #137333; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; color: var(--muted); font-weight: 600; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 18px; color: var(--muted); margin: 0; padding: 0; list-style: none; }
.meta b { color: var(--fg); font-weight: 600; }
table.t { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0 8px; }
table.t th, table.t td { padding: 4px 7px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
table.t th { font-weight: 600; background: var(--zebra); vertical-align: bottom; }
table.t th:first-child, table.t td:first-child, table.t td.l, table.t th.l { text-align: left; }
table.t tbody tr:nth-child(even) { background: #fbfbfc; }
td.best { color: var(--good); font-weight: 700; }
td.flag { color: #8a4b00; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .s { color: var(--muted); font-size: 12px; }
.grid.cdf { grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px 24px; }
.grid.three { grid-template-columns: repeat(auto-fit, minmax(400px, 1fr)); }
.chart { min-width: 0; overflow: hidden; }
.chart-title { font-weight: 600; margin: 0 0 4px; }
.note { color: var(--muted); font-size: 12px; margin: 4px 0; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
.scroll { overflow-x: auto; }
.uplot .u-legend { font-size: 12px; text-align: left; }
.uplot .u-legend .u-series { padding: 0 6px; }
noscript { color: #a40000; }
.note.flag { color: #8a4b00; }
.bars { display: flex; flex-direction: column; gap: 6px; padding-top: 8px; }
.bar-row { display: grid; grid-template-columns: minmax(90px, max-content) 1fr max-content; gap: 8px; align-items: center; }
.bar-name { font-weight: 600; }
.bar-track { background: var(--zebra); height: 14px; border-radius: 2px; }
.bar { display: block; height: 14px; border-radius: 2px; }
.bar-value { font-variant-numeric: tabular-nums; }
.bar-codes { color: var(--muted); font-size: 12px; margin: -4px 0 0 8px; }
`;

function metaItem(key: string, value: string): string {
  return `<li>${escapeHtml(key)} <b>${escapeHtml(value)}</b></li>`;
}

function runName(run: SimReportData, i: number): string {
  return run.name ?? (run.summary.policy || `run ${i + 1}`);
}

/** Distinct values of one field across runs, joined: one value when all runs agree. */
function distinct(runs: readonly SimReportData[], pick: (s: SimSummary) => string): string {
  return [...new Set(runs.map((r) => pick(r.summary)))].join(' | ');
}

/**
 * What the runs of a comparison differ by: their autoscaler when every run had one and all share
 * one routing policy (`sim --autoscaler a,b`), else their policy.
 */
function comparedBy(runs: readonly ControlledReportData[]): 'autoscaler' | 'policy' {
  const byAutoscaler =
    runs.every((r) => r.control !== undefined) && new Set(runs.map((r) => r.summary.policy)).size === 1;
  return byAutoscaler ? 'autoscaler' : 'policy';
}

function header(runs: readonly ControlledReportData[], title: string, options: HtmlReportOptions): string {
  const items: string[] = [];
  if (runs.length > 1 && comparedBy(runs) === 'autoscaler') {
    items.push(
      metaItem(
        'policy',
        distinct(runs, (s) => s.policy),
      ),
    );
    items.push(metaItem('autoscalers', runs.map(runName).join(', ')));
  } else if (runs.length === 1)
    items.push(
      metaItem(
        'policy',
        distinct(runs, (s) => s.policy),
      ),
    );
  else items.push(metaItem('policies', runs.map(runName).join(', ')));
  items.push(
    metaItem(
      'workload',
      distinct(runs, (s) => s.workload),
    ),
  );
  items.push(
    metaItem(
      'seed',
      distinct(runs, (s) => String(s.seed)),
    ),
  );
  // A controlled run's instances are its pool's slots, on the GPUs named beside them.
  items.push(
    metaItem(
      'instances',
      [...new Set(runs.map((r) => instancesText(r.summary.instances, reportPool(r))))].join(' | '),
    ),
  );
  items.push(
    metaItem(
      'requests',
      distinct(runs, (s) => fmtNumber(s.requests)),
    ),
  );
  items.push(
    metaItem(
      'SLO',
      distinct(runs, (s) => `TTFT ≤ ${fmtTarget(s.slo.ttftMs)} ms, TPOT ≤ ${fmtTarget(s.slo.tpotMs)} ms`),
    ),
  );
  items.push(
    metaItem(
      'simulated',
      distinct(runs, (s) => fmtSeconds(s.simulatedSeconds)),
    ),
  );
  for (const [k, v] of Object.entries(options.settings ?? {})) items.push(metaItem(k, String(v)));
  return `<header><h1>${escapeHtml(title)}</h1><ul class="meta">${items.join('')}</ul></header>`;
}

function card(key: string, value: string, sub = ''): string {
  const s = sub === '' ? '' : `<div class="s">${escapeHtml(sub)}</div>`;
  return `<div class="card"><div class="k">${escapeHtml(key)}</div><div class="v">${escapeHtml(value)}</div>${s}</div>`;
}

function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  classes?: readonly string[][],
): string {
  // A newline in a heading breaks it over two lines, to keep wide comparison tables narrow.
  const th = head.map((h) => `<th>${escapeHtml(h).replace(/\n/g, '<br>')}</th>`).join('');
  const body = rows
    .map((row, i) => {
      const cells = row.map((c, j) => {
        const cls = classes?.[i]?.[j];
        return cls ? `<td class="${cls}">${escapeHtml(c)}</td>` : `<td>${escapeHtml(c)}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('');
  return `<div class="scroll"><table class="t"><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function latencyTable(s: SimSummary): string {
  const row = (name: string, l: LatencyStats) => [
    name,
    fmtMs(l.mean),
    fmtMs(l.p50),
    fmtMs(l.p90),
    fmtMs(l.p99),
  ];
  return table(
    ['latency (ms)', 'mean', 'p50', 'p90', 'p99'],
    [
      row('TTFT', s.ttftMs),
      row('TPOT', s.tpotMs),
      row('ITL', s.itlMs),
      row('E2E', s.e2eMs),
      row('queue', s.queueMs),
    ],
  );
}

/** Under one run's latency table: the percentiles leave rejected requests out; the p99s with them. */
function singleRejectedNote(s: SimSummary): string {
  const all =
    s.ttftMsAll !== undefined && s.e2eMsAll !== undefined
      ? ` Counting each as an unbounded latency: TTFT p99 ${fmtTail(s.ttftMsAll.p99)}, E2E p99 ${fmtTail(s.e2eMsAll.p99)}.`
      : '';
  return `<p class="note flag">Completed requests only: ${fmtNumber(s.rejected)} rejected requests are left out.${escapeHtml(all)}</p>`;
}

/**
 * The GPU-seconds card: the summary's figure for a fixed cluster; for a pool, GPU-seconds billed,
 * with the summary's gpuSeconds (every slot for the whole run) beneath as the pool's ceiling.
 */
function gpuSecondsCard(s: SimSummary, pool: PoolFigures | undefined): string {
  if (pool === undefined) return card('GPU-seconds', fmtQty(s.gpuSeconds));
  const span = poolSpan(s, pool);
  const giving = gpusGiving(pool, span.seconds);
  const of = pool.shared ? `of ${fmtQty(giving.gpuSeconds)} on ${giving.text}; ` : '';
  const to = span.seconds > s.simulatedSeconds ? `, to ${fmtSeconds(span.seconds)}` : '';
  return card(
    'GPU-seconds billed',
    fmtQty(billedGpuSeconds(pool)),
    `${of}pool ceiling ${fmtQty(span.ceilingGpuSeconds)} (all ${fmtNumber(s.instances)} slots, whole run${to})`,
  );
}

/** Offline batch jobs, one row each (their requests are not in the online figures); empty without. */
function batchTable(s: SimSummary): string {
  const jobs = s.batchJobs ?? [];
  if (jobs.length === 0) return '';
  const rows = jobs.map((j) => [
    j.id,
    batchStatusText(j),
    fmtNumber(j.total),
    fmtNumber(j.completed),
    fmtNumber(j.failed),
    fmtNumber(j.expired),
    batchSecondsText(j.submittedS),
    batchFinishedText(j),
    batchSecondsText(j.deadlineS),
  ]);
  return (
    '<h3>Batch jobs</h3>' +
    table(
      ['job', 'status', 'requests', 'completed', 'failed', 'expired', 'submitted', 'finished', 'deadline'],
      rows,
      rows.map(() => ['', 'l']),
    ) +
    '<p class="note">Offline requests: not in the request counts, latencies, SLO attainment or throughput ' +
    'above, which are online requests only; the per-instance table counts them.</p>'
  );
}

function summaryCards(s: SimSummary, pool?: PoolFigures): string {
  const rejected = s.requests > 0 ? `${fmtPct(s.rejected / s.requests)} of requests` : '';
  const speedup = s.wallSeconds > 0 ? `${fmtSi(s.simulatedSeconds / s.wallSeconds)}× real time` : '';
  return `<div class="cards">${[
    card(
      'completed',
      fmtNumber(s.completed),
      `of ${fmtNumber(s.requests)} ${(s.batchJobs?.length ?? 0) > 0 ? 'online ' : ''}requests`,
    ),
    card('rejected', fmtNumber(s.rejected), rejected),
    card('SLO attainment, both', fmtPct(s.sloAttainment.both), 'TTFT and TPOT targets met'),
    card('SLO attainment, TTFT', fmtPct(s.sloAttainment.ttft), `TTFT ≤ ${fmtTarget(s.slo.ttftMs)} ms`),
    card('SLO attainment, TPOT', fmtPct(s.sloAttainment.tpot), `TPOT ≤ ${fmtTarget(s.slo.tpotMs)} ms`),
    card('throughput', `${fmtQty(s.throughputTokPerS)} tok/s`, `${fmtQty(s.throughputReqPerS)} req/s`),
    card('tokens', `${fmtSi(s.inputTokens)} in`, `${fmtSi(s.outputTokens)} out`),
    card('prefix hit rate', fmtPct(s.prefixHitRate)),
    // The engines' request preemptions (KV ran out, or a higher priority came): not instances preempted.
    card('request preemptions', fmtNumber(s.preemptions), 'by the engines, each recomputed'),
    gpuSecondsCard(s, pool),
    card('simulated', fmtSeconds(s.simulatedSeconds), `${fmtSi(s.events)} events`),
    card(
      'wall',
      fmtSeconds(s.wallSeconds),
      `${fmtSi(s.eventsPerWallS)} events/s${speedup ? `, ${speedup}` : ''}`,
    ),
  ].join('')}</div>`;
}

function instanceTable(s: SimSummary, rowsMax: number): string {
  const rows = s.perInstance.slice(0, rowsMax).map(instanceCells);
  const more = s.perInstance.length - rowsMax;
  const note = more > 0 ? `<p class="note">… ${fmtNumber(more)} more instances not listed</p>` : '';
  const left = rows.map(() => ['', 'l', 'l']);
  return (
    table(
      ['instance', 'gpu', 'model', 'tp', 'requests', 'util', 'KV mean', 'KV max', 'hit rate', 'req preempt'],
      rows,
      left,
    ) + note
  );
}

interface CompareColumn {
  readonly head: string;
  readonly better: 'low' | 'high';
  readonly value: (r: SimReportData) => number;
  readonly format: (x: number) => string;
}

const COMPARE_COLUMNS: readonly CompareColumn[] = [
  { head: 'TTFT\nmean', better: 'low', value: (r) => r.summary.ttftMs.mean, format: fmtMs },
  { head: 'TTFT\np50', better: 'low', value: (r) => r.summary.ttftMs.p50, format: fmtMs },
  { head: 'TTFT\np99', better: 'low', value: (r) => r.summary.ttftMs.p99, format: fmtMs },
  { head: 'TPOT\nmean', better: 'low', value: (r) => r.summary.tpotMs.mean, format: fmtMs },
  { head: 'TPOT\np99', better: 'low', value: (r) => r.summary.tpotMs.p99, format: fmtMs },
  { head: 'E2E\np50', better: 'low', value: (r) => r.summary.e2eMs.p50, format: fmtMs },
  { head: 'E2E\np99', better: 'low', value: (r) => r.summary.e2eMs.p99, format: fmtMs },
  { head: 'SLO\nTTFT', better: 'high', value: (r) => r.summary.sloAttainment.ttft, format: fmtPct },
  { head: 'SLO\nTPOT', better: 'high', value: (r) => r.summary.sloAttainment.tpot, format: fmtPct },
  { head: 'SLO\nboth', better: 'high', value: (r) => r.summary.sloAttainment.both, format: fmtPct },
  { head: 'output\ntok/s', better: 'high', value: (r) => r.summary.throughputTokPerS, format: fmtQty },
  { head: 'hit\nrate', better: 'high', value: (r) => r.summary.prefixHitRate, format: fmtPct },
  { head: 'req preempt', better: 'low', value: (r) => r.summary.preemptions, format: (x) => fmtNumber(x) },
  { head: 'rejected', better: 'low', value: (r) => r.summary.rejected, format: (x) => fmtNumber(x) },
];

/** A latency percentile for a cell: ∞ where it falls among rejected requests. */
function fmtTail(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return ms === Number.POSITIVE_INFINITY ? '∞' : fmtMs(ms);
}

/** Columns of p99 over completed + rejected requests (rejected as ∞), for summaries that carry them. */
const ALL_COLUMNS: readonly CompareColumn[] = [
  {
    head: 'TTFT p99\nall',
    better: 'low',
    value: (r) => r.summary.ttftMsAll?.p99 ?? Number.NaN,
    format: fmtTail,
  },
  {
    head: 'E2E p99\nall',
    better: 'low',
    value: (r) => r.summary.e2eMsAll?.p99 ?? Number.NaN,
    format: fmtTail,
  },
];

/** Whether any run rejected requests: its completed-only latency figures then need a flag. */
function anyRejected(runs: readonly SimReportData[]): boolean {
  return runs.some((r) => r.summary.rejected > 0);
}

/** The note that flags completed-only latency figures, naming who rejected how many. */
function rejectedNote(runs: readonly SimReportData[], withAll: boolean): string {
  const who = runs
    .map((r, i) => ({ name: runName(r, i), n: r.summary.rejected }))
    .filter((x) => x.n > 0)
    .map((x) => `${x.name} ${fmtNumber(x.n)}`)
    .join(', ');
  return (
    `<p class="note flag">* Completed requests only: rejected requests (${escapeHtml(who)}) never got an ` +
    'answer and are left out, so a policy that rejects its slowest requests looks faster there.' +
    (withAll
      ? ' The “all” columns count each rejection as an unbounded latency (∞ where the percentile falls among them).'
      : '') +
    '</p>'
  );
}

function comparisonTable(runs: readonly ControlledReportData[]): string {
  const goodput: CompareColumn = {
    head: 'goodput\nreq/s',
    better: 'high',
    value: (r) => r.goodputRps ?? Number.NaN,
    format: fmtQty,
  };
  const flag = anyRejected(runs);
  const withAll = flag && runs.some((r) => r.summary.ttftMsAll !== undefined);
  const columns = [
    ...(runs.some((r) => r.goodputRps !== undefined) ? [goodput] : []),
    ...COMPARE_COLUMNS.slice(0, 7),
    ...(withAll ? ALL_COLUMNS : []),
    ...COMPARE_COLUMNS.slice(7),
  ];
  // A completed-only latency of a run that rejected requests is flagged, and never marked best.
  const flagged = (c: CompareColumn, r: SimReportData) =>
    r.summary.rejected > 0 && /^(TTFT|TPOT|E2E)\n/.test(c.head);
  const best = columns.map((c) => {
    const vs = runs
      .filter((r) => !flagged(c, r))
      .map(c.value)
      .filter(Number.isFinite);
    if (vs.length === 0) return Number.NaN;
    return c.better === 'low' ? Math.min(...vs) : Math.max(...vs);
  });
  const rows = runs.map((r, i) => [
    runName(r, i),
    ...columns.map((c) => `${c.format(c.value(r))}${flagged(c, r) ? ' *' : ''}`),
  ]);
  const classes = runs.map((r) => [
    '',
    ...columns.map((c, j) => (flagged(c, r) ? 'flag' : c.value(r) === best[j] ? 'best' : '')),
  ]);
  return (
    table([comparedBy(runs), ...columns.map((c) => c.head)], rows, classes) +
    '<p class="note">Latencies in ms. The best value in each column is in bold green.</p>' +
    (flag ? rejectedNote(runs, withAll) : '')
  );
}

/**
 * Rejected requests per run as horizontal bars (static HTML, readable without JavaScript), with the
 * share of requests and the rejection codes when the summary has them.
 */
function rejectedFigure(runs: readonly SimReportData[]): string {
  const max = Math.max(1, ...runs.map((r) => r.summary.rejected));
  const rows = runs
    .map((r, i) => {
      const s = r.summary;
      const share = s.requests > 0 ? s.rejected / s.requests : 0;
      // Held requests that failed (the gateway's failed{reason}) are not served either: shown beside.
      const codes = [
        ...Object.entries(s.rejectedByCode ?? {}).map(([code, n]) => `${code}: ${fmtNumber(n)}`),
        ...Object.entries(s.failedByReason ?? {}).map(([reason, n]) => `failed ${reason}: ${fmtNumber(n)}`),
      ].join(', ');
      // A zero draws no bar; any rejection at least a visible sliver.
      const widthPct = s.rejected > 0 ? Math.max(0.5, (100 * s.rejected) / max).toFixed(1) : '0';
      return (
        `<div class="bar-row"><span class="bar-name">${escapeHtml(runName(r, i))}</span>` +
        `<span class="bar-track"><span class="bar" style="width:${widthPct}%;background:${paletteColor(i)}"></span></span>` +
        `<span class="bar-value">${fmtNumber(s.rejected)} (${fmtPct(share)})</span></div>` +
        (codes === '' ? '' : `<div class="bar-codes">${escapeHtml(codes)}</div>`)
      );
    })
    .join('');
  return `<div><p class="chart-title">Rejected requests</p><div class="bars">${rows}</div></div>`;
}

/** The charts' colour of run `i` (the client script uses the same palette). */
function paletteColor(i: number): string {
  return PALETTE[i % PALETTE.length] as string;
}

const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#ad494a',
  '#637939',
  '#8c6d31',
  '#7b4173',
  '#3182bd',
];

/** The goodput sweep's curve: attainment against arrival rate, one line per run that was swept. */
function goodputSection(runs: readonly SimReportData[]): string {
  const swept = runs.filter((r) => r.goodputSweep !== undefined);
  if (swept.length === 0) return '';
  const targets = [...new Set(swept.map((r) => fmtPct(r.goodputSweep?.targetAttainment ?? 0)))].join(' | ');
  return (
    '<section><h2>Goodput sweep</h2>' +
    `<p class="note">Share of requests meeting both SLOs (a rejection is a miss) at each arrival rate the sweep ` +
    `tried; goodput is the highest rate at or above the target (${escapeHtml(targets)}, dashed), drawn as a large ring.</p>` +
    `<div class="grid">${chartBox('goodput-sweep', 'SLO attainment against arrival rate')}</div></section>`
  );
}

/** Cluster-wide series over time, one line per run: throughput, rejections, attainment, load. */
function clusterSection(runs: readonly SimReportData[]): string {
  const totals = runs.some((r) => r.series.cluster !== undefined);
  return (
    '<section><h2>Cluster over time</h2>' +
    '<p class="note">One line per policy. Rates are averaged over a trailing window of about 2% of the run; ' +
    'running and waiting are summed over instances, KV usage is their mean.</p><div class="grid">' +
    (totals
      ? chartBox('cl-throughput', 'Output throughput (tok/s, completed requests)') +
        chartBox('cl-rejected', 'Rejections per second') +
        chartBox('cl-slo', 'Finished requests meeting both SLOs (%)')
      : '') +
    chartBox('cl-running', 'Running requests, cluster total') +
    chartBox('cl-waiting', 'Waiting requests, cluster total') +
    chartBox('cl-kv', 'KV-cache usage, cluster mean') +
    '</div></section>'
  );
}

function chartBox(id: string, title: string): string {
  return `<div><p class="chart-title">${escapeHtml(title)}</p><div class="chart" id="${id}"></div></div>`;
}

function instancesSection(run: SimReportData, i: number, linesMax: number, multi: boolean): string {
  const n = Object.keys(run.series.running).length;
  const note =
    n > linesMax
      ? `<p class="note">Showing ${fmtNumber(linesMax)} of ${fmtNumber(n)} instances, plus the mean and maximum across all of them.</p>`
      : '';
  const title = multi ? `Instances over time: ${escapeHtml(runName(run, i))}` : 'Instances over time';
  return (
    `<section><h2>${title}</h2>${note}<div class="grid three">` +
    chartBox(`ts-${i}-running`, 'Running requests') +
    chartBox(`ts-${i}-waiting`, 'Waiting requests') +
    chartBox(`ts-${i}-kv`, 'KV-cache usage') +
    '</div></section>'
  );
}

/**
 * Renders one or more twin runs as one self-contained HTML page: header with workload and settings,
 * summary (one run) or comparison table (several), latency CDFs with one line per run, and per
 * run the running, waiting and KV-usage series per instance. `runs` is inlined as JSON unchanged,
 * so its size drives the file's: keep samples to a few thousand and series to a few hundred points.
 */
export function renderHtmlReport(
  runs: readonly ControlledReportData[],
  options: HtmlReportOptions = {},
): string {
  assert(runs.length > 0, 'renderHtmlReport needs at least one run');
  const title = options.title ?? 'Switchyard twin report';
  const linesMax = options.instanceLinesMax ?? 16;
  const rowsMax = options.instanceRowsMax ?? 500;
  const multi = runs.length > 1;
  const { js, css } = uplotVendor();

  const summary = multi
    ? `<section><h2>Comparison</h2>${comparisonTable(runs)}${runs
        .map(
          (r, i) =>
            `<details><summary>${escapeHtml(runName(r, i))}: details</summary>${summaryCards(r.summary, reportPool(r))}` +
            `${latencyTable(r.summary)}${batchTable(r.summary)}${instanceTable(r.summary, rowsMax)}</details>`,
        )
        .join('')}</section>`
    : `<section><h2>Summary</h2>${summaryCards(runs[0]!.summary, reportPool(runs[0]!))}${latencyTable(runs[0]!.summary)}` +
      (anyRejected(runs) ? singleRejectedNote(runs[0]!.summary) : '') +
      batchTable(runs[0]!.summary) +
      `<details><summary>Per-instance table (${fmtNumber(runs[0]!.summary.perInstance.length)})</summary>` +
      `${instanceTable(runs[0]!.summary, rowsMax)}</details></section>`;

  const cdfFlag = anyRejected(runs)
    ? '<p class="note flag">The curves cover completed requests only: rejected requests (right) are not in them.</p>'
    : '';
  const cdfs =
    '<section><h2>Latency distributions</h2>' +
    '<p class="note"><label><input type="checkbox" id="cdf-log" checked> log-scale latency axis</label> · ' +
    'drag across a chart to zoom, double-click to reset; hover for values.</p>' +
    cdfFlag +
    '<div class="grid cdf">' +
    chartBox('cdf-ttft', 'Time to first token (CDF)') +
    chartBox('cdf-tpot', 'Time per output token (CDF)') +
    chartBox('cdf-e2e', 'End-to-end latency (CDF)') +
    rejectedFigure(runs) +
    '</div></section>';

  const payload = { title, instanceLinesMax: linesMax, runs };
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${inlineStyle(css)}</style>`,
    `<style>${PAGE_CSS}</style>`,
    '</head><body><main>',
    header(runs, title, options),
    '<noscript><p>The charts need JavaScript; the tables above and below do not.</p></noscript>',
    summary,
    goodputSection(runs),
    cdfs,
    clusterSection(runs),
    // Autoscaled runs: replicas and offered load over time (nothing otherwise).
    replicasSection(runs),
    runs.map((r, i) => instancesSection(r, i, linesMax, multi)).join(''),
    '</main>',
    `<script type="application/json" id="sy-data">${jsonForScript(payload)}</script>`,
    `<script>${inlineScript(js)}</script>`,
    `<script>${inlineScript(CLIENT_JS)}</script>`,
    // Only a page with autoscaled runs carries the replicas script.
    runs.some((r) => r.control !== undefined) ? `<script>${inlineScript(REPLICAS_CLIENT_JS)}</script>` : '',
    '</body></html>',
    '',
  ].join('\n');
}
