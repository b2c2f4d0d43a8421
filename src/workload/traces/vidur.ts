/**
 * Vidur's processed traces (microsoft/vidur `data/processed_traces`): CSV with `arrived_at`
 * (seconds from the first request), `num_prefill_tokens` and `num_decode_tokens`; extra columns are
 * ignored. Vidur's length-statistics files (e.g. `arxiv_summarization_stats_…csv`) have no
 * `arrived_at`: as a trace they fail with an error that says so, and `parseVidurLengths` (used by
 * `readTraceLengths` and the empirical length distribution) reads them as lengths only.
 */
import type { TraceRecord } from '../types.ts';
import {
  csvCell,
  excerpt,
  headerColumns,
  limitStop,
  NO_HASH_IDS,
  nonBlankLines,
  parseNonNegativeDecimal,
  parseTokenCount,
  sortByArrival,
  type TraceLine,
  type TraceReadLimit,
  type TraceWarn,
  traceParseError,
} from './text.ts';
import type { TraceReader } from './types.ts';

const ARRIVAL = 'arrived_at';
const PREFILL = 'num_prefill_tokens';
const DECODE = 'num_decode_tokens';

/**
 * Checks a Vidur header line: a length-statistics file (no arrival column) is refused as a trace.
 */
function checkVidurHeader(header: TraceLine, file: string, requireArrival: boolean): void {
  const names = header.text.split(',').map((c) => csvCell(c).toLowerCase());
  if (requireArrival && !names.includes(ARRIVAL) && names.includes(PREFILL)) {
    throw traceParseError(
      file,
      header.number,
      `no '${ARRIVAL}' column: this is a Vidur length-statistics file without arrival times; ` +
        `use it for lengths only (readTraceLengths, or an 'empirical' length distribution)`,
    );
  }
}

/**
 * Walks a Vidur CSV's lines: the header is checked, then `row` gets each data line with the
 * columns found. Stops when `row` returns true. Fails on an empty file or one without rows.
 */
function walkVidur<K extends string>(
  lines: Iterable<TraceLine>,
  file: string,
  requireArrival: boolean,
  required: readonly K[],
  row: (line: TraceLine, index: Record<K, number>, width: number) => boolean,
): void {
  let header: TraceLine | undefined;
  let columns: { readonly index: Record<K, number>; readonly width: number } | undefined;
  for (const line of lines) {
    if (header === undefined) {
      header = line;
      checkVidurHeader(header, file, requireArrival);
      continue;
    }
    columns ??= headerColumns(header, file, required, 'Vidur trace');
    if (row(line, columns.index, columns.width)) break;
  }
  if (header === undefined) throw traceParseError(file, 1, 'empty file: expected a Vidur CSV header');
  if (columns === undefined) throw traceParseError(file, header.number + 1, 'no records after the header');
}

function cellsOf(line: TraceLine, width: number, file: string): string[] {
  const cells = line.text.split(',');
  if (cells.length !== width) {
    throw traceParseError(
      file,
      line.number,
      `expected ${width} columns, got ${cells.length} in ${excerpt(line.text)}`,
    );
  }
  return cells;
}

function tokens(cells: readonly string[], at: number, name: string, file: string, line: number): number {
  const cell = cells[at] as string;
  const n = parseTokenCount(cell);
  if (n === undefined) {
    throw traceParseError(file, line, `${name} ${excerpt(cell)} is not a non-negative integer token count`);
  }
  return n;
}

function parseVidur(text: string, file: string): TraceRecord[] {
  return parseVidurLines(nonBlankLines(text), file);
}

function parseVidurLines(
  lines: Iterable<TraceLine>,
  file: string,
  limit?: TraceReadLimit,
  warn?: TraceWarn,
): TraceRecord[] {
  const stop = limitStop(limit);
  const records: TraceRecord[] = [];
  let firstMs = 0;
  let stoppedEarly = false;
  walkVidur(lines, file, true, [ARRIVAL, PREFILL, DECODE], (line, index, width) => {
    const cells = cellsOf(line, width, file);
    const arrivalCell = cells[index[ARRIVAL]] as string;
    const arrivalS = parseNonNegativeDecimal(arrivalCell);
    if (arrivalS === undefined) {
      throw traceParseError(
        file,
        line.number,
        `${ARRIVAL} ${excerpt(arrivalCell)} is not a non-negative number of seconds`,
      );
    }
    if (records.length === 0) firstMs = arrivalS * 1000;
    const arrivalMs = arrivalS * 1000 - firstMs;
    records.push({
      arrivalMs,
      inputTokens: tokens(cells, index[PREFILL], PREFILL, file, line.number),
      outputTokens: tokens(cells, index[DECODE], DECODE, file, line.number),
      hashIds: NO_HASH_IDS,
    });
    stoppedEarly = stop(arrivalMs);
    return stoppedEarly;
  });
  return sortByArrival(records, file, ARRIVAL, stoppedEarly, warn);
}

/**
 * Reads only the lengths of a Vidur CSV, with or without `arrived_at` (the arrival times, if any, are
 * ignored and every record gets arrivalMs 0). Takes the text, or its lines as they stream in.
 */
export function parseVidurLengths(text: string | Iterable<TraceLine>, file: string): TraceRecord[] {
  const records: TraceRecord[] = [];
  const lines = typeof text === 'string' ? nonBlankLines(text) : text;
  walkVidur(lines, file, false, [PREFILL, DECODE], (line, index, width) => {
    const cells = cellsOf(line, width, file);
    records.push({
      arrivalMs: 0,
      inputTokens: tokens(cells, index[PREFILL], PREFILL, file, line.number),
      outputTokens: tokens(cells, index[DECODE], DECODE, file, line.number),
      hashIds: NO_HASH_IDS,
    });
    return false;
  });
  return records;
}

function writeVidur(records: readonly TraceRecord[]): string {
  // String(x / 1000) is the shortest decimal that reads back to the same double.
  const rows = records.map((r) => `${String(r.arrivalMs / 1000)},${r.inputTokens},${r.outputTokens}`);
  return `${ARRIVAL},${PREFILL},${DECODE}\n${rows.join('\n')}\n`;
}

/** Reader for Vidur processed-trace CSVs (`splitwise_conv.csv` and friends). */
export const vidurReader: TraceReader = {
  format: 'vidur',
  blockTokens: undefined,
  parse: parseVidur,
  parseLines: parseVidurLines,
  write: writeVidur,
};
