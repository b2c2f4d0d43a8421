/**
 * Reading a trace from disk: resolve `sample:` names, read the bytes, gunzip when the magic bytes
 * say so, pick the format (given, or detected from the first line, then the extension) and parse.
 */
import { readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { SwitchyardError } from '../../core/errors.ts';
import type { Trace, TraceFormat, TraceRecord } from '../types.ts';
import { azureReader } from './azure.ts';
import { mooncakeReader } from './mooncake.ts';
import { resolveTraceRef } from './samples.ts';
import {
  csvCell,
  fileLines,
  formatBytes,
  isGzip,
  nonBlankLines,
  TRACE_LINE_CHARS_MAX,
  TRACE_TEXT_BYTES_MAX,
  type TraceLine,
  type TraceReadLimit,
  type TraceWarn,
  traceParseError,
} from './text.ts';
import type { TraceReader } from './types.ts';
import { parseVidurLengths, vidurReader } from './vidur.ts';

/** Every reader, by format. */
export const TRACE_READERS: Readonly<Record<TraceFormat, TraceReader>> = {
  azure: azureReader,
  mooncake: mooncakeReader,
  vidur: vidurReader,
};

/** The formats readTrace understands. */
export const TRACE_FORMATS: readonly TraceFormat[] = Object.keys(TRACE_READERS) as TraceFormat[];

/**
 * Guesses a format from the first non-blank line (a JSON object means Mooncake; the CSV header names
 * decide between Azure and Vidur), falling back to the file extension.
 */
export function detectTraceFormat(text: string, file: string): TraceFormat {
  return detectFromFirstLine(nonBlankLines(text.slice(0, 64 * 1024))[0], file);
}

/** detectTraceFormat on a file's first non-blank line (undefined: the file has none). */
function detectFromFirstLine(first: TraceLine | undefined, file: string): TraceFormat {
  if (first !== undefined) {
    const head = first.text.trim();
    if (head.startsWith('{')) return 'mooncake';
    if (head.startsWith('['))
      throw traceParseError(
        file,
        first.number,
        'a JSON array: a Mooncake trace is JSON lines, one request object per line ' +
          "(jq -c '.[]' FILE > FILE.jsonl converts an array)",
      );
    const names = head.split(',').map((c) => csvCell(c).toLowerCase());
    if (names.includes('contexttokens') || names.includes('generatedtokens')) return 'azure';
    if (names.includes('num_prefill_tokens') || names.includes('arrived_at')) return 'vidur';
  }
  if (/\.jsonl(\.gz)?$/i.test(file)) return 'mooncake';
  if (first === undefined)
    throw traceParseError(
      file,
      1,
      'empty file: no header and no records (a trace needs at least one request)',
    );
  throw traceParseError(
    file,
    first?.number ?? 1,
    // No command-line flag sets the format (sim's --trace takes a path only): the workload block's
    // `format` key does, in a sim config or a bench --workload file.
    `cannot tell the trace format from the header or the extension; set the workload's format to one of ` +
      `${TRACE_FORMATS.join(', ')} in a workload block (sim --config, bench --workload <file>: workload: {kind: trace, trace: <file>, format: azure}), ` +
      'or give a Mooncake trace a .jsonl name',
  );
}

/**
 * Checks a trace file before it is read, turning a missing file into SY_ERR_NOT_FOUND. A file over
 * the text bound is refused before it is read (gzip compresses, so a compressed file over it
 * decompresses over it), unless the read is `limited`: a run that replays only the file's start
 * (--requests, --duration) streams it and stops there, and the reading itself fails once it passes
 * the bound (fileLines), so a week-long trace's first hour replays without cutting the file first.
 */
function checkFile(path: string, ref: string, read: 'replay' | 'limited' | 'lengths'): void {
  try {
    const stat = statSync(path);
    if (stat.isDirectory())
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `trace ${path} is a folder, not a file`, {
        param: 'trace',
        path,
      });
    if (stat.size > TRACE_TEXT_BYTES_MAX && read !== 'limited')
      throw traceParseError(
        path,
        1,
        `${formatBytes(stat.size)} on disk; a trace is read whole, at most ${formatBytes(TRACE_TEXT_BYTES_MAX)} of text: ` +
          // Only a replay can stop early; lengths are read from the whole file.
          (read === 'replay'
            ? 'replay its start (--requests N or --duration S stop the reading there) or '
            : 'use ') +
          'a slice of it (e.g. the header and the first rows: head -n 2000001 FILE > part.csv)',
      );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new SwitchyardError(
        'SY_ERR_NOT_FOUND',
        `trace file not found: ${path}${ref === path ? '' : ` (${ref})`}`,
        {
          param: 'trace',
          path,
        },
      );
    }
    throw err;
  }
}

/**
 * A file's non-blank lines as they stream in, and the format: the one given, else detected from
 * the first line (read ahead and put back).
 */
function openLines(
  path: string,
  format: TraceFormat | undefined,
): { readonly lines: Iterable<TraceLine>; readonly format: TraceFormat } {
  const it = fileLines(path, path);
  if (format !== undefined) return { lines: it, format };
  const head = it.next();
  const first = head.done === true ? undefined : head.value;
  let fmt: TraceFormat;
  try {
    fmt = detectFromFirstLine(first, path);
  } catch (err) {
    it.return();
    throw err;
  }
  function* all(): Generator<TraceLine, void, undefined> {
    try {
      if (first !== undefined) yield first;
      yield* it;
    } finally {
      it.return();
    }
  }
  return { lines: all(), format: fmt };
}

/** Parses trace text already in memory; `file` names it in errors and in `Trace.source`. */
export function parseTrace(text: string, file: string, format?: TraceFormat): Trace {
  const fmt = format ?? detectTraceFormat(text, file);
  const reader = TRACE_READERS[fmt];
  return { source: file, format: fmt, blockTokens: reader.blockTokens, records: reader.parse(text, file) };
}

/**
 * Reads a trace from a path or a bundled sample (`sample:azure-conv`, `sample:mooncake-conversation`).
 * Plain or gzipped (detected by magic bytes), streamed: with a `limit` the reading stops once the
 * records the run replays are in (rows after them are neither read nor checked). Records come
 * back sorted by arrival, the earliest at 0: rows out of order in the file are sorted stably (equal
 * stamps keep file order) and `warn` (default: once per message on stderr, after `warning: `) gets one line saying how
 * many and how far back. Errors: SY_ERR_UNKNOWN_NAME (sample), SY_ERR_NOT_FOUND (file),
 * SY_ERR_TRACE_PARSE (`file:line: what`).
 */
export function readTrace(
  pathOrSample: string,
  format?: TraceFormat,
  limit?: TraceReadLimit,
  warn: TraceWarn = warnOnceOnStderr,
): Trace {
  const { path, format: sampleFormat } = resolveTraceRef(pathOrSample);
  checkFile(path, pathOrSample, isLimited(limit) ? 'limited' : 'replay');
  const whole = isLimited(limit) ? undefined : readWhole(path);
  if (whole !== undefined) {
    const fmt = format ?? sampleFormat ?? detectFromFirstLine(firstNonBlankLine(whole), path);
    const reader = TRACE_READERS[fmt];
    const records =
      reader.parseBytes !== undefined
        ? reader.parseBytes(whole, path, warn)
        : reader.parseLines(nonBlankLines(whole.toString('utf8')), path, limit, warn);
    return { source: pathOrSample, format: fmt, blockTokens: reader.blockTokens, records };
  }
  const { lines, format: fmt } = openLines(path, format ?? sampleFormat);
  const reader = TRACE_READERS[fmt];
  const records = reader.parseLines(lines, path, limit, warn);
  return { source: pathOrSample, format: fmt, blockTokens: reader.blockTokens, records };
}

/**
 * Most bytes of text a whole read takes in one go: a file this small (plain, or gzip inflating to
 * this) is read and inflated at once instead of streamed. No line in it can pass the streamed
 * reader's line bound (TRACE_LINE_CHARS_MAX, in characters, which are at most its bytes), so the
 * two reads see the same lines; a larger file streams as before.
 */
const WHOLE_READ_BYTES_MAX = TRACE_LINE_CHARS_MAX;

/**
 * A regular file's text bytes, read whole (gunzipped in this thread when the magic bytes say gzip,
 * a UTF-8 byte-order mark dropped), or undefined when it should stream instead: not a regular file
 * (a pipe is read as it comes, with the gzip reader's wait bound), over WHOLE_READ_BYTES_MAX of
 * text, or gzip data zlib refuses (the streamed read then reports it as it always has). For the
 * Mooncake conversation trace (3 MB of text) this replaces a worker thread and some 185 hand-overs
 * of 16 KB pieces with one inflate, and lets the reader parse bytes instead of line strings.
 */
function readWhole(path: string): Buffer | undefined {
  const stat = statSync(path);
  if (!stat.isFile() || stat.size > WHOLE_READ_BYTES_MAX) return undefined;
  let bytes = readFileSync(path);
  if (isGzip(bytes)) {
    try {
      bytes = gunzipSync(bytes, { maxOutputLength: WHOLE_READ_BYTES_MAX });
    } catch {
      return undefined;
    }
  } else if (bytes.length > WHOLE_READ_BYTES_MAX) return undefined;
  return bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
    ? bytes.subarray(3)
    : bytes;
}

/** The first non-blank line of a whole read's bytes (as fileLines numbers and trims it), if any. */
function firstNonBlankLine(bytes: Buffer): TraceLine | undefined {
  let number = 0;
  for (let from = 0; from <= bytes.length; ) {
    let to = bytes.indexOf(0x0a, from);
    if (to < 0) to = bytes.length;
    number++;
    let text = bytes.toString('utf8', from, to);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() !== '') return { text, number };
    from = to + 1;
  }
  return undefined;
}

/** Messages already written by warnOnceOnStderr; bounded, since a process reads few traces. */
const warned = new Set<string>();
const WARNED_MAX = 256;

/**
 * Writes a reader's warning to stderr once per process: one run reads its trace once per compared
 * policy or planner pass, and the user needs the line once.
 */
function warnOnceOnStderr(line: string): void {
  if (warned.has(line)) return;
  if (warned.size >= WARNED_MAX) warned.clear();
  warned.add(line);
  // On a terminal a progress bar may own the line: clear it first (as cli/progress.ts warnLine).
  process.stderr.write(`${process.stderr.isTTY === true ? '\r\x1b[K' : ''}warning: ${line}\n`);
}

/** Whether a read stops before the file's end: at a record count or an arrival time. */
function isLimited(limit: TraceReadLimit | undefined): boolean {
  if (limit === undefined) return false;
  return (
    (limit.maxRecords !== undefined && Number.isFinite(limit.maxRecords)) ||
    (limit.endMs !== undefined && Number.isFinite(limit.endMs))
  );
}

/** Input and output lengths of one request, without its arrival. */
export interface LengthPair {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/**
 * Reads only the request lengths of a trace, for empirical length distributions. Unlike readTrace
 * this also accepts Vidur's length-statistics CSVs that have no arrival column.
 */
export function readTraceLengths(pathOrSample: string, format?: TraceFormat): readonly LengthPair[] {
  const { path, format: sampleFormat } = resolveTraceRef(pathOrSample);
  checkFile(path, pathOrSample, 'lengths');
  const { lines, format: fmt } = openLines(path, format ?? sampleFormat);
  const records: readonly TraceRecord[] =
    fmt === 'vidur' ? parseVidurLengths(lines, path) : TRACE_READERS[fmt].parseLines(lines, path);
  return records;
}
