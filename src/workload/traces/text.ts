/**
 * Shared helpers for the trace readers: decoding file bytes (plain or gzip), walking lines with
 * their 1-based numbers, strict number parsing and the one parse-error constructor, so every
 * reader reports `file:line: what` the same way.
 */
import { constants as bufferConstants } from 'node:buffer';
import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { gunzipSync } from 'node:zlib';
import { SwitchyardError } from '../../core/errors.ts';
import type { TraceRecord } from '../types.ts';
import { GUNZIP_PIECE_WAIT_MS, GunzipPieces, GunzipTimeoutError } from './gunzip-stream.ts';

/** Largest decompressed trace we accept; V8 strings top out near 512 MiB anyway. */
export const TRACE_BYTES_MAX = 512 * 1024 * 1024;

/**
 * Most bytes of text one trace file may hold: a file is read whole into one string, which V8 caps
 * just under 512 MiB (buffer.constants.MAX_STRING_LENGTH, in UTF-16 units; traces are ASCII).
 */
export const TRACE_TEXT_BYTES_MAX = Math.min(TRACE_BYTES_MAX, bufferConstants.MAX_STRING_LENGTH);

/** The one error for a trace over the size bound, with what to do about it. */
export function traceTooLargeError(file: string, what: string, maxBytes: number): SwitchyardError {
  return traceParseError(
    file,
    1,
    `${what}; a trace is read whole, at most ${formatBytes(maxBytes)} of text: ` +
      'replay a slice of it (e.g. the header and the first rows: head -n 2000001 FILE > part.csv)',
  );
}

/** `536,870,888 bytes (512 MiB)`: exact, and readable. */
export function formatBytes(bytes: number): string {
  return `${bytes.toLocaleString('en-US')} bytes (${Math.round(bytes / 2 ** 20).toLocaleString('en-US')} MiB)`;
}

/** Error for a malformed trace line: names the file, the 1-based line and what was wrong. */
export function traceParseError(file: string, line: number, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_TRACE_PARSE', `${file}:${line}: ${what}`, { file, line });
}

/** True when the bytes start with the gzip magic number (1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Gunzips a trace file's bytes: more than `maxBytes` of output fails with one line saying so, damaged
 * data as a parse error at line 1.
 */
function gunzipTrace(bytes: Uint8Array, file: string, maxBytes: number): Buffer {
  try {
    return gunzipSync(bytes, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      throw traceTooLargeError(file, `decompresses to more than ${formatBytes(maxBytes)}`, maxBytes);
    throw traceParseError(file, 1, `corrupt gzip data (${(err as Error).message})`);
  }
}

/**
 * Turns file bytes into text, gunzipping when the gzip magic is present (the extension is not
 * trusted). More than `maxBytes` of text (plain or decompressed) fails with one line saying so,
 * not with V8's string-length error.
 */
export function decodeTraceBytes(bytes: Uint8Array, file: string, maxBytes = TRACE_TEXT_BYTES_MAX): string {
  let raw = bytes;
  if (isGzip(bytes)) raw = gunzipTrace(bytes, file, maxBytes);
  else if (raw.byteLength > maxBytes) {
    throw traceTooLargeError(file, `${formatBytes(raw.byteLength)} of text`, maxBytes);
  }
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
  // A UTF-8 byte-order mark would otherwise glue itself to the first header name.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** One non-blank line of a file, without its line ending. */
export interface TraceLine {
  readonly text: string;
  /** 1-based physical line number, for error messages. */
  readonly number: number;
}

/**
 * The non-blank lines of a text, LF or CRLF. Blank lines (a trailing newline, an empty last line)
 * are skipped rather than rejected: they carry no record and editors add them freely.
 */
export function nonBlankLines(text: string): TraceLine[] {
  const out: TraceLine[] = [];
  const parts = text.split('\n');
  for (let i = 0; i < parts.length; i++) {
    let s = parts[i] as string;
    if (s.endsWith('\r')) s = s.slice(0, -1);
    if (s.trim() === '') continue;
    out.push({ text: s, number: i + 1 });
  }
  return out;
}

/**
 * Longest line a streamed trace may hold, in characters: a Mooncake row of a million-token prompt
 * lists about 2,000 hash ids (some 16 KB), so a line past this is no trace row; the bound keeps a
 * file without line breaks from being gathered into one string of up to the whole text bound.
 */
export const TRACE_LINE_CHARS_MAX = 16 * 2 ** 20;

/** Bytes read from the file per step of a streaming read. */
const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * The non-blank lines of a file, read a chunk at a time, with the same numbering, BOM and CRLF
 * handling as `decodeTraceBytes` + `nonBlankLines`. A caller that stops iterating early stops the
 * reading: memory follows the lines kept, not the file. A gzip file (by the magic bytes) streams
 * the same way, decompressed a piece at a time (gunzip-stream.ts), so its memory and an early stop
 * are a plain file's too. Reading past `maxBytes` of text (plain or decompressed) fails, naming the
 * line it reached; a gzip piece that does not come within `gunzipWaitMs` fails with SY_ERR_TIMEOUT
 * (not as corrupt data: what was read was sound).
 */
export function* fileLines(
  path: string,
  file: string,
  maxBytes = TRACE_TEXT_BYTES_MAX,
  gunzipWaitMs = GUNZIP_PIECE_WAIT_MS,
): Generator<TraceLine, void, undefined> {
  const fd = openSync(path, 'r');
  let gunzip: GunzipPieces | undefined;
  try {
    const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let n = readSync(fd, chunk, 0, chunk.length, null);
    let at = 0;
    if (isGzip(chunk.subarray(0, n))) gunzip = new GunzipPieces(path, gunzipWaitMs);
    /** The next piece of text bytes (empty at the end). */
    const next = (): Buffer => {
      let piece: Buffer;
      if (gunzip !== undefined) {
        try {
          piece = gunzip.next();
        } catch (err) {
          if (err instanceof GunzipTimeoutError)
            throw new SwitchyardError(
              'SY_ERR_TIMEOUT',
              `${file}:${number + 1}: no decompressed text came for ${err.waitMs / 1000} s, the bound on ` +
                "one wait for the gzip reader's next piece: its worker stopped or its reads of the file " +
                'block (a pipe or network file that sends nothing); the data read so far was sound. ' +
                'Retry, or decompress the file first (gunzip -k FILE) and replay the plain file',
              { file, line: number + 1, waitMs: err.waitMs },
            );
          throw traceParseError(file, number + 1, `corrupt gzip data (${(err as Error).message})`);
        }
      } else piece = chunk.subarray(0, n);
      at += piece.length;
      // Only a read that stops early opens a file over the bound (read.ts checkFile), or a gzip
      // file whose text is: its rows ran past it.
      if (at > maxBytes)
        throw traceParseError(
          file,
          number + 1,
          `the rows this run replays go on past the first ${formatBytes(maxBytes)} of the file${gunzip !== undefined ? "'s decompressed text" : ''}, the most of a trace's text ` +
            'that is read: replay fewer --requests or a shorter --duration, or cut the file (e.g. head -n 2000001 FILE > part.csv)',
        );
      return piece;
    };
    const decoder = new StringDecoder('utf8');
    let rest = '';
    let number = 0;
    let bomChecked = false;
    for (;;) {
      const raw = next();
      const done = raw.length === 0;
      let text = rest + (done ? decoder.end() : decoder.write(raw));
      // A UTF-8 byte-order mark would otherwise glue itself to the first header name.
      if (!bomChecked && text.length > 0) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        bomChecked = true;
      }
      let from = 0;
      // The carried part holds no line break: look for one only in what came after it, so a long
      // line costs one scan, not one per chunk it spans.
      for (let nl = text.indexOf('\n', rest.length); nl >= 0; nl = text.indexOf('\n', from)) {
        number++;
        let s = text.slice(from, nl);
        from = nl + 1;
        if (s.endsWith('\r')) s = s.slice(0, -1);
        if (s.trim() !== '') yield { text: s, number };
      }
      rest = text.slice(from);
      if (rest.length > TRACE_LINE_CHARS_MAX)
        throw traceParseError(
          file,
          number + 1,
          `no line break in ${formatBytes(rest.length)}: a trace holds one request per line, ` +
            `none longer than ${TRACE_LINE_CHARS_MAX / 2 ** 20} MiB; is this a trace file?`,
        );
      if (done) break;
      if (gunzip === undefined) n = readSync(fd, chunk, 0, chunk.length, null);
    }
    number++;
    if (rest.endsWith('\r')) rest = rest.slice(0, -1);
    if (rest.trim() !== '') yield { text: rest, number };
  } finally {
    gunzip?.close();
    closeSync(fd);
  }
}

/**
 * A CSV cell's value: trimmed, and without one pair of surrounding double quotes (spreadsheets and
 * some CSV writers quote every cell; the trace formats hold no commas or quotes inside a cell).
 */
export function csvCell(cell: string): string {
  const s = cell.trim();
  return s.length >= 2 && s.charCodeAt(0) === 34 && s.charCodeAt(s.length - 1) === 34
    ? s.slice(1, -1).trim()
    : s;
}

/** Digits, optionally with a fraction of zeros: pandas writes an integer column that held a gap as `374.0`. */
const INT_RE = /^\d+(?:\.0*)?$/;
const DECIMAL_RE = /^\d+(?:\.\d*)?(?:[eE][-+]?\d+)?$/;

/**
 * A token count: a non-negative safe integer written in plain digits (`374`, or `374.0` as pandas
 * writes a float column), or undefined; a fraction that is not zero (`374.5`) is no count.
 */
export function parseTokenCount(cell: string): number | undefined {
  const s = csvCell(cell);
  if (!INT_RE.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A non-negative finite decimal (e.g. `4.314579`, `1e-3`), or undefined. */
export function parseNonNegativeDecimal(cell: string): number | undefined {
  const s = csvCell(cell);
  if (!DECIMAL_RE.test(s)) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** Shortens a line for an error message so a huge JSON row does not flood the terminal. */
export function excerpt(s: string, maxChars = 80): string {
  return s.length <= maxChars ? `'${s}'` : `'${s.slice(0, maxChars)}…'`;
}

/**
 * Maps header names (case-insensitive, trimmed) to column indices, failing with the header's line
 * when a required column is missing.
 */
export function headerColumns<K extends string>(
  header: TraceLine,
  file: string,
  required: readonly K[],
  what: string,
): { readonly index: Record<K, number>; readonly width: number } {
  const names = header.text.split(',').map((c) => csvCell(c).toLowerCase());
  const index = {} as Record<K, number>;
  const missing: string[] = [];
  for (const key of required) {
    const at = names.indexOf(key.toLowerCase());
    if (at < 0) missing.push(key);
    index[key] = at;
  }
  if (missing.length > 0) {
    throw traceParseError(
      file,
      header.number,
      `${what} header must name columns ${required.join(', ')}; missing ${missing.join(', ')} in ${excerpt(header.text)}`,
    );
  }
  return { index, width: names.length };
}

/** Called with one human-readable line when a read had to fix something up (rows out of order). */
export type TraceWarn = (line: string) => void;

/**
 * Puts records read in file order into arrival order, stably (rows on one stamp keep their file
 * order), and rebases arrivals so the earliest is 0. Real traces often have jittered or per-client
 * interleaved stamps; a replay must still work, so the rows are sorted rather than refused, and
 * `warn` gets one line saying how many rows stepped back (below the latest stamp before them) and
 * by how much at most. `stoppedEarly`: the read stopped at a --requests/--duration point, so rows
 * further on in the file were not read; one stamped inside the window is then not replayed, and
 * the line says so. `field` names the column or key the time comes from. Deterministic: same rows,
 * same result. Returns `records` itself when it is already in order.
 */
export function sortByArrival(
  records: TraceRecord[],
  file: string,
  field: string,
  stoppedEarly: boolean,
  warn?: TraceWarn,
): TraceRecord[] {
  let latest = Number.NEGATIVE_INFINITY;
  let outOfOrder = 0;
  let maxBackMs = 0;
  for (const r of records) {
    if (r.arrivalMs < latest) {
      outOfOrder++;
      maxBackMs = Math.max(maxBackMs, latest - r.arrivalMs);
    } else {
      latest = r.arrivalMs;
    }
  }
  if (outOfOrder === 0) return records;
  // Array.prototype.sort is stable (ES2019), so equal stamps keep file order.
  const sorted = records.slice().sort((a, b) => a.arrivalMs - b.arrivalMs);
  const base = (sorted[0] as TraceRecord).arrivalMs;
  const rebased = base === 0 ? sorted : sorted.map((r) => ({ ...r, arrivalMs: r.arrivalMs - base }));
  warn?.(
    `trace ${file}: ${outOfOrder} ${outOfOrder === 1 ? 'row was' : 'rows were'} out of order ` +
      `(up to ${formatBack(maxBackMs)} back); replayed sorted by ${field}` +
      (stoppedEarly
        ? '; the read stopped at the --requests/--duration point, so a row further on in the file stamped before it is not replayed'
        : ''),
  );
  return rebased;
}

/** A step back in time for the out-of-order warning: ms under a second, else seconds. */
function formatBack(ms: number): string {
  if (ms < 1000) return `${Number(ms.toPrecision(3))} ms`;
  return `${Number((ms / 1000).toPrecision(3))} s`;
}

/** Frozen empty hash-id list shared by every record of a format without prefix ids. */
export const NO_HASH_IDS: readonly number[] = Object.freeze([]) as readonly number[];

/**
 * What a run needs of a trace, so a reader can stop early: the records up to the `maxRecords`-th
 * arriving at or after `startMs`, or up to the first arriving at or after `endMs` (both in ms from
 * the first record). The kept records replay exactly as the whole file's would (trace-source.ts
 * slices the same way). Rows after the stop are not read, so they are not checked either.
 */
export interface TraceReadLimit {
  readonly startMs?: number;
  readonly endMs?: number;
  readonly maxRecords?: number;
}

/**
 * A per-read predicate: called with each kept record's arrival (after it is kept), true once the
 * limit is met. Without a limit it is never true. At least one record is always kept.
 */
export function limitStop(limit: TraceReadLimit | undefined): (arrivalMs: number) => boolean {
  if (limit === undefined) return () => false;
  const startMs = limit.startMs ?? 0;
  const endMs = limit.endMs ?? Number.POSITIVE_INFINITY;
  const maxRecords = limit.maxRecords ?? Number.POSITIVE_INFINITY;
  let inSlice = 0;
  return (arrivalMs) => {
    if (arrivalMs >= endMs) return true;
    if (arrivalMs >= startMs) inSlice++;
    return inSlice >= maxRecords;
  };
}
