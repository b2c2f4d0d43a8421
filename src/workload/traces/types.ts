import type { TraceFormat, TraceRecord } from '../types.ts';
import type { TraceLine, TraceReadLimit, TraceWarn } from './text.ts';

/**
 * One trace format: a parser from file text to records and a writer back to that format. Each
 * reader keeps to this narrow interface so one conformance suite covers them all.
 */
export interface TraceReader {
  readonly format: TraceFormat;
  /** Tokens per hash id when the format carries prefix ids; undefined otherwise. */
  readonly blockTokens: number | undefined;
  /**
   * Parses a whole (already decompressed) file. Records come back sorted by arrival (stably; rows
   * out of order in the file are sorted, not refused) with the earliest at 0. `file` names the source in errors (`SY_ERR_TRACE_PARSE`, `file:line: what`).
   */
  parse(text: string, file: string): TraceRecord[];
  /**
   * Parses a file's non-blank lines as they stream in (text.ts `fileLines`), stopping once `limit`
   * is met; same records and errors as `parse` on the lines read. `warn` gets one line when rows
   * were out of order (text.ts sortByArrival).
   */
  parseLines(
    lines: Iterable<TraceLine>,
    file: string,
    limit?: TraceReadLimit,
    warn?: TraceWarn,
  ): TraceRecord[];
  /**
   * Optional: parses a whole file's decompressed bytes (no byte-order mark) read in one go; the
   * same records, warnings and errors as `parseLines` on the file's non-blank lines without a
   * limit. readTrace uses it for a whole read of a small file (read.ts `readWhole`).
   */
  parseBytes?(bytes: Uint8Array, file: string, warn?: TraceWarn): TraceRecord[];
  /** Writes records in this format (used for fixtures and round-trip tests). */
  write(records: readonly TraceRecord[]): string;
}
