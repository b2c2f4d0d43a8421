/**
 * The fidelity report as text (one table, a row block per case row, then the summary) and as JSON.
 * Pure functions of the results: the same cases give byte-identical output.
 */
import Table from 'cli-table3';
import { fmtMs, fmtNumber } from '../../stats/format.ts';
import type { ClientComparison, FidelitySummary, Figure, RowComparison, Stat } from './compare.ts';
import type { CaseResult } from './run-case.ts';

const FIGURE_NAMES: Readonly<Record<Figure, string>> = {
  ttftMs: 'TTFT',
  perTokenMs: 'per-token',
  e2eMs: 'E2E',
};

/** A signed percentage with one decimal: +12.3%, -4.0%. */
export function fmtSignedPct(pct: number): string {
  if (!Number.isFinite(pct)) return pct > 0 ? '+∞' : '-';
  return `${pct >= 0 ? '+' : ''}${fmtNumber(pct, 1)}%`;
}

function yesNo(x: boolean): string {
  return x ? 'yes' : 'no';
}

const VERDICT = { agree: 'ok', 'twin-only': 'TWIN ONLY', 'real-only': 'real only' } as const;

/**
 * Lines per cli-table3 table the comparison is drawn in. cli-table3 lays a table out in time
 * quadratic in its rows (layout-manager.js, fillInTable checks each cell against every cell of every
 * row above it), so a 1,000-stage case's 4,400 lines took 1.6 s of CPU to draw, 2,000 stages' 5.9 s
 * (bench/fidelity-table.ts); drawn in pieces of this many lines it takes time linear in its lines.
 */
const TABLE_PIECE_LINES = 200;
/**
 * The longest table drawn as one: a piece is drawn twice (its widths, then its text), and below
 * about 2,000 lines the two ways take about as long (bench/fidelity-table.ts).
 */
const TABLE_ONE_PIECE_LINES_MAX = 2000;

/**
 * The comparison table: case, load, figure, measured, twin, error; a saturation line per row. A long
 * one is drawn in pieces of TABLE_PIECE_LINES with the columns' widths over all of them, and the
 * pieces' bodies joined under the first one's head: the same text as one table.
 */
export function formatFidelityTable(
  rows: readonly RowComparison[],
  options: { color?: boolean } = {},
): string {
  const lines = rows.flatMap(fidelityTableLines);
  const pieces: string[][][] = [];
  for (let i = 0; i < lines.length; i += TABLE_PIECE_LINES)
    pieces.push(lines.slice(i, i + TABLE_PIECE_LINES));
  const draw = (piece: readonly string[][], colWidths?: readonly number[]): Table.Table => {
    const table = fidelityTable(options, colWidths);
    for (const cells of piece) table.push(cells);
    return table;
  };
  if (lines.length <= TABLE_ONE_PIECE_LINES_MAX) return draw(lines).toString();
  // Drawn alone, a piece's columns are as wide as its own cells: cli-table3 writes those widths into
  // its options. The table's are the widest.
  const widths: number[] = [];
  for (const piece of pieces) {
    const table = draw(piece);
    table.toString();
    table.options.colWidths.forEach((w, k) => {
      widths[k] = Math.max(widths[k] ?? 0, w ?? 0);
    });
  }
  const out: string[] = [];
  let bottom = '';
  for (const [i, piece] of pieces.entries()) {
    // Top border, head and its rule; a line per body line (no cell wraps); the bottom border.
    const text = draw(piece, widths).toString().split('\n');
    const headLines = text.length - piece.length - 1;
    out.push(...text.slice(i === 0 ? 0 : headLines, -1));
    bottom = text.at(-1) ?? '';
  }
  out.push(bottom);
  return out.join('\n');
}

/**
 * An empty comparison table: its head, alignments and style, and its columns' widths when given
 * (else its cells'). Exported for tests and the bench.
 */
export function fidelityTable(options: { color?: boolean } = {}, colWidths?: readonly number[]): Table.Table {
  const color = options.color === true;
  return new Table({
    head: ['case', 'load', 'figure (ms)', 'measured', 'twin', 'error'],
    colAligns: ['left', 'left', 'left', 'right', 'right', 'right'],
    style: { head: color ? ['cyan'] : [], border: color ? ['grey'] : [], compact: true },
    ...(colWidths !== undefined ? { colWidths: [...colWidths] } : {}),
  });
}

/**
 * The lines of one case row in the comparison table, six cells each: its label and load on the
 * first, then a figure per line, throughput, the client's lines and saturation. Exported for tests
 * and the bench.
 */
export function fidelityTableLines(row: RowComparison): string[][] {
  const lines: string[][] = row.figures.map((f) => [
    `${FIGURE_NAMES[f.figure]} ${statName(f.stat)}`,
    fmtMs(f.measuredMs),
    fmtMs(f.predictedMs),
    `${fmtSignedPct(f.errorPct)}${row.excluded.includes(f.figure) ? ' (x)' : ''}`,
  ]);
  if (row.measuredThroughputRps !== undefined) {
    const m = row.measuredThroughputRps;
    lines.push([
      'throughput req/s',
      fmtMs(m),
      fmtMs(row.predictedThroughputRps),
      fmtSignedPct(((row.predictedThroughputRps - m) / m) * 100),
    ]);
  }
  if (row.client !== undefined) lines.push(...clientLines(row.client));
  lines.push([
    'saturated',
    yesNo(row.measuredSaturated),
    row.client !== undefined ? TWIN_STATE[row.client.twin] : yesNo(row.predictedSaturated),
    VERDICT[row.saturation],
  ]);
  return lines.map((cells, i) => [i === 0 ? row.label : '', i === 0 ? row.load : '', ...cells]);
}

const TWIN_STATE = { 'client-bound': 'client-bound', saturated: 'yes', no: 'no' } as const;

/** A capped row's client: its wait for a slot and the rate it sent at (the twin's; nothing measured). */
function clientLines(client: ClientComparison): string[][] {
  return [
    ['client wait mean', '-', fmtMs(client.waitMsMean), ''],
    ['client wait p90', '-', fmtMs(client.waitMsP90), ''],
    ['sent req/s', '-', fmtMs(client.sendRateRps), ''],
  ];
}

function statName(stat: Stat): string {
  return stat === 'p50' ? 'median' : stat;
}

/** `1 row`, `n rows`. */
function rowCount(n: number): string {
  return `${n} ${n === 1 ? 'row' : 'rows'}`;
}

/** The summary lines under the table. */
export function formatFidelitySummary(summary: FidelitySummary): string {
  const pct = (x: number | null, n: number) =>
    x === null ? 'n/a' : `${fmtNumber(x, 1)}% over ${rowCount(n)}`;
  return [
    `median |error|: TTFT ${pct(summary.ttftMedianAbsErrorPct, summary.ttftRows)}; ` +
      `per-token ${pct(summary.perTokenMedianAbsErrorPct, summary.perTokenRows)}; ` +
      `E2E ${pct(summary.e2eMedianAbsErrorPct, summary.e2eRows)} (mean where the source gives it, else median)`,
    `saturation: ${summary.twinOnlySaturations} of ${rowCount(summary.rows)} ` +
      `${summary.twinOnlySaturations === 1 ? 'saturates' : 'saturate'} in the twin only, ` +
      `${summary.realOnlySaturations} in reality only`,
    ...(summary.excludedFigures > 0
      ? [`(x): ${summary.excludedFigures} figures shown but left out of the medians; the case says why`]
      : []),
  ].join('\n');
}

/** Lines that need saying besides the table: sources, and requests the twin refused. */
export function formatCaseNotes(results: readonly CaseResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const { model, gpu, tp, instances } = r.setup;
    const engines = instances > 1 ? `, ${instances} instances` : '';
    lines.push(`${r.name}: ${model} on ${gpu}, TP ${tp}${engines}; ${r.source.engine}, ${r.source.url}`);
    if (r.failed > 0) lines.push(`  ${r.failed} requests refused or failed in the twin`);
    for (const row of r.rows) {
      const excluded = row.measured.excluded;
      if (excluded !== undefined)
        lines.push(`  (x) ${row.label} ${excluded.figures.join(', ')}: ${excluded.reason}`);
    }
  }
  return lines.join('\n');
}

/**
 * Everything as one JSON value: per case its source, the catalogue model and GPU it ran (`model`,
 * `gpu`, `tp`, `instances`) and its rows, then the summary.
 */
export function fidelityJson(
  results: readonly CaseResult[],
  rows: readonly RowComparison[],
  summary: FidelitySummary,
): unknown {
  const byLabel = new Map(rows.map((r) => [r.label, r]));
  return {
    cases: results.map((r) => ({
      name: r.name,
      source: r.source,
      ...r.setup,
      failed: r.failed,
      rows: r.rows.map((row) => ({ ...byLabel.get(row.label), predicted: row.predicted })),
    })),
    summary,
  };
}
