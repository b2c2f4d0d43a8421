/**
 * Reading a trace from disk: resolve `sample:` names, read the bytes, gunzip when the magic bytes
 * say so, pick the format (given, or detected from the first line, then the extension) and parse.
 */
import { readFileSync, statSync } from 'node:fs';
import { SwitchyardError } from '../../core/errors.ts';
import type { Trace, TraceFormat, TraceRecord } from '../types.ts';
import { azureReader } from './azure.ts';
import { mooncakeReader } from './mooncake.ts';
import { resolveTraceRef } from './samples.ts';
import {
  csvCell,
  decodeTraceBytes,
  formatBytes,
  nonBlankLines,
  TRACE_TEXT_BYTES_MAX,
  traceParseError,
  traceTooLargeError,
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
  const first = nonBlankLines(text.slice(0, 64 * 1024))[0];
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
  if (first === undefined && text.trim() === '')
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
 * Reads a file's bytes, turning a missing file into SY_ERR_NOT_FOUND. A file over the text bound is
 * refused before it is read (gzip compresses, so a compressed file over it decompresses over it).
 */
function readBytes(path: string, ref: string): Buffer {
  try {
    const size = statSync(path).size;
    if (size > TRACE_TEXT_BYTES_MAX)
      throw traceTooLargeError(path, `${formatBytes(size)} on disk`, TRACE_TEXT_BYTES_MAX);
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR')
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `trace ${path} is a folder, not a file`, {
        param: 'trace',
        path,
      });
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

/** Parses trace text already in memory; `file` names it in errors and in `Trace.source`. */
export function parseTrace(text: string, file: string, format?: TraceFormat): Trace {
  const fmt = format ?? detectTraceFormat(text, file);
  const reader = TRACE_READERS[fmt];
  return { source: file, format: fmt, blockTokens: reader.blockTokens, records: reader.parse(text, file) };
}

/**
 * Reads a trace from a path or a bundled sample (`sample:azure-conv`, `sample:mooncake-conversation`).
 * Plain or gzipped (detected by magic bytes). Arrival times are relative to the first record and
 * non-decreasing; rows out of order are rejected rather than sorted. Errors: SY_ERR_UNKNOWN_NAME
 * (sample), SY_ERR_NOT_FOUND (file), SY_ERR_TRACE_PARSE (`file:line: what`).
 */
export function readTrace(pathOrSample: string, format?: TraceFormat): Trace {
  const { path, format: sampleFormat } = resolveTraceRef(pathOrSample);
  const text = decodeTraceBytes(readBytes(path, pathOrSample), path);
  const trace = parseTrace(text, path, format ?? sampleFormat);
  return { ...trace, source: pathOrSample };
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
  const text = decodeTraceBytes(readBytes(path, pathOrSample), path);
  const fmt = format ?? sampleFormat ?? detectTraceFormat(text, path);
  const records: readonly TraceRecord[] =
    fmt === 'vidur' ? parseVidurLengths(text, path) : TRACE_READERS[fmt].parse(text, path);
  return records;
}
