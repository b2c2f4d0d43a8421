/**
 * Vidur's processed traces (microsoft/vidur `data/processed_traces`): CSV with `arrived_at`
 * (seconds from the first request), `num_prefill_tokens` and `num_decode_tokens`; extra columns are
 * ignored. Vidur's length-statistics files (e.g. `arxiv_summarization_stats_…csv`) have no
 * `arrived_at`: as a trace they fail with an error that says so, and `parseVidurLengths` (used by
 * `readTraceLengths` and the empirical length distribution) reads them as lengths only.
 */
import type { TraceRecord } from '../types.ts';
import {
  checkOrder,
  csvCell,
  excerpt,
  headerColumns,
  NO_HASH_IDS,
  nonBlankLines,
  parseNonNegativeDecimal,
  parseTokenCount,
  type TraceLine,
  traceParseError,
} from './text.ts';
import type { TraceReader } from './types.ts';

const ARRIVAL = 'arrived_at';
const PREFILL = 'num_prefill_tokens';
const DECODE = 'num_decode_tokens';

function vidurRows(
  text: string,
  file: string,
  requireArrival: boolean,
): { readonly rows: readonly TraceLine[]; readonly header: TraceLine } {
  const lines = nonBlankLines(text);
  const header = lines[0];
  if (header === undefined) throw traceParseError(file, 1, 'empty file: expected a Vidur CSV header');
  const names = header.text.split(',').map((c) => csvCell(c).toLowerCase());
  if (requireArrival && !names.includes(ARRIVAL) && names.includes(PREFILL)) {
    throw traceParseError(
      file,
      header.number,
      `no '${ARRIVAL}' column: this is a Vidur length-statistics file without arrival times; ` +
        `use it for lengths only (readTraceLengths, or an 'empirical' length distribution)`,
    );
  }
  if (lines.length < 2) throw traceParseError(file, header.number + 1, 'no records after the header');
  return { rows: lines.slice(1), header };
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
  const { rows, header } = vidurRows(text, file, true);
  const { index, width } = headerColumns(header, file, [ARRIVAL, PREFILL, DECODE], 'Vidur trace');
  const records: TraceRecord[] = [];
  let firstMs = 0;
  let previousMs = 0;
  for (const line of rows) {
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
    checkOrder(file, line.number, previousMs, arrivalMs, ARRIVAL);
    previousMs = arrivalMs;
    records.push({
      arrivalMs,
      inputTokens: tokens(cells, index[PREFILL], PREFILL, file, line.number),
      outputTokens: tokens(cells, index[DECODE], DECODE, file, line.number),
      hashIds: NO_HASH_IDS,
    });
  }
  return records;
}

/**
 * Reads only the lengths of a Vidur CSV, with or without `arrived_at` (the arrival times, if any, are
 * ignored and every record gets arrivalMs 0).
 */
export function parseVidurLengths(text: string, file: string): TraceRecord[] {
  const { rows, header } = vidurRows(text, file, false);
  const { index, width } = headerColumns(header, file, [PREFILL, DECODE], 'Vidur trace');
  return rows.map((line) => {
    const cells = cellsOf(line, width, file);
    return {
      arrivalMs: 0,
      inputTokens: tokens(cells, index[PREFILL], PREFILL, file, line.number),
      outputTokens: tokens(cells, index[DECODE], DECODE, file, line.number),
      hashIds: NO_HASH_IDS,
    };
  });
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
  write: writeVidur,
};
