/**
 * Mooncake FAST'25 traces (Kimi): JSONL, one request per line with `timestamp` (ms from the start),
 * `input_length`, `output_length` and `hash_ids` (ids of 512-token prefix blocks; an equal id means
 * a reusable KV block). Gzip is handled by the caller (readTrace sniffs the magic bytes).
 */
import type { TraceRecord } from '../types.ts';
import {
  excerpt,
  limitStop,
  NO_HASH_IDS,
  nonBlankLines,
  sortByArrival,
  type TraceLine,
  type TraceReadLimit,
  type TraceWarn,
  traceParseError,
} from './text.ts';
import type { TraceReader } from './types.ts';

/** Tokens covered by one Mooncake hash id. */
export const MOONCAKE_BLOCK_TOKENS = 512;

function parseMooncake(text: string, file: string): TraceRecord[] {
  return parseMooncakeLines(nonBlankLines(text), file);
}

function parseMooncakeLines(
  lines: Iterable<TraceLine>,
  file: string,
  limit?: TraceReadLimit,
  warn?: TraceWarn,
): TraceRecord[] {
  const stop = limitStop(limit);
  const records: TraceRecord[] = [];
  let firstMs = 0;
  let stoppedEarly = false;
  for (const line of lines) {
    const hashIds = rowFields(line.text, line.number, file);
    if (records.length === 0) firstMs = row.timestamp;
    const arrivalMs = row.timestamp - firstMs;
    records.push({ arrivalMs, inputTokens: row.inputTokens, outputTokens: row.outputTokens, hashIds });
    if (stop(arrivalMs)) {
      stoppedEarly = true;
      break;
    }
  }
  if (records.length === 0) throw traceParseError(file, 1, 'empty file: expected JSON lines');
  return sortByArrival(records, file, 'timestamp', stoppedEarly, warn);
}

/**
 * The row just read: its timestamp and lengths, in one reused object (a row is read, copied into its
 * record and forgotten; the numbers keep the representation JSON.parse gave them).
 */
const row = { timestamp: 0, inputTokens: 0, outputTokens: 0 };

/**
 * One row's fields through JSON.parse, checked: timestamp, input and output lengths into `row`, the
 * hash ids returned. Throws SY_ERR_TRACE_PARSE naming `file:number`.
 */
function rowFields(text: string, number: number, file: string): readonly number[] {
  const fail = (what: string) => traceParseError(file, number, what);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw fail(`invalid JSON (${(err as Error).message}) in ${excerpt(text)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw fail(`expected a JSON object, got ${excerpt(text)}`);
  }
  const o = parsed as Record<string, unknown>;
  const timestamp = o['timestamp'];
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) {
    throw fail(
      `'timestamp' must be a non-negative number of ms, got ${excerpt(JSON.stringify(timestamp) ?? 'nothing')}`,
    );
  }
  // Checked in the order the fields were checked before: input, output, then the ids.
  const inputTokens = tokenField(o, 'input_length', fail);
  const outputTokens = tokenField(o, 'output_length', fail);
  const hashIds = hashIdsField(o['hash_ids'], fail);
  row.timestamp = timestamp;
  row.inputTokens = inputTokens;
  row.outputTokens = outputTokens;
  return hashIds;
}

// Bytes of the row shape the fast path reads (ASCII).
const SPACE = 0x20;
const COMMA = 0x2c;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const CR = 0x0d;
const LF = 0x0a;
const BRACKET_CLOSE = 0x5d;
const BRACE_CLOSE = 0x7d;
/** The keys in the order the Mooncake traces write them, each with its opening quote and colon. */
const KEY_TIMESTAMP = ascii('{"timestamp":');
const KEY_INPUT = ascii('"input_length":');
const KEY_OUTPUT = ascii('"output_length":');
const KEY_HASH_IDS = ascii('"hash_ids":');
/** Digits of the longest integer the fast path reads: 15 digits stay below 2^53, so exact. */
const FAST_DIGITS_MAX = 15;

function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/**
 * Reads a whole Mooncake file's bytes (already decompressed, no byte-order mark): the same records,
 * order, warnings and errors as `parseMooncakeLines` on the file's non-blank lines. Rows shaped as
 * the published traces write them (`{"timestamp": N, "input_length": N, "output_length": N,
 * "hash_ids": [N, ...]}`: those keys in that order, integers of up to 15 digits, spaces or none
 * around the separators) are read straight from the bytes, with no line string, no JSON.parse and
 * no per-row object but the record and its id list: most of what loading the trace cost. Any other
 * line (other key orders or keys, fractions, exponents, escapes, non-ASCII bytes, tabs, blank lines,
 * anything malformed) is decoded and goes through JSON.parse and the same checks as before, so what
 * the fast path does not recognise behaves exactly as it did.
 */
function parseMooncakeBytes(bytes: Uint8Array, file: string, warn?: TraceWarn): TraceRecord[] {
  const records: TraceRecord[] = [];
  const ids: number[] = [];
  const end = bytes.length;
  let firstMs = 0;
  let number = 0;
  for (let from = 0; from < end; ) {
    let to = bytes.indexOf(LF, from);
    if (to < 0) to = end;
    number++;
    let hashIds: readonly number[];
    if (fastRow(bytes, from, to, ids)) {
      hashIds = ids.length === 0 ? NO_HASH_IDS : ids.slice();
    } else {
      let text = Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('utf8');
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (text.trim() === '') {
        from = to + 1;
        continue;
      }
      hashIds = rowFields(text, number, file);
    }
    if (records.length === 0) firstMs = row.timestamp;
    const arrivalMs = row.timestamp - firstMs;
    records.push({ arrivalMs, inputTokens: row.inputTokens, outputTokens: row.outputTokens, hashIds });
    from = to + 1;
  }
  if (records.length === 0) throw traceParseError(file, 1, 'empty file: expected JSON lines');
  return sortByArrival(records, file, 'timestamp', false, warn);
}

/**
 * Reads one row of the published shape from `bytes[from, to)` into `row` and `ids` (emptied
 * first); false when the line is anything else (then nothing it wrote is used). Integers only, no
 * leading zeros (JSON has none), at most FAST_DIGITS_MAX digits.
 */
function fastRow(bytes: Uint8Array, from: number, to: number, ids: number[]): boolean {
  ids.length = 0;
  let at = skipSpaces(bytes, from, to);
  at = expectKey(bytes, at, to, KEY_TIMESTAMP);
  if (at < 0) return false;
  let start = at;
  at = intEnd(bytes, at, to);
  if (at < 0) return false;
  const timestamp = parseDigits(bytes, start, at);
  at = expectComma(bytes, at, to);
  if (at < 0) return false;
  at = expectKey(bytes, at, to, KEY_INPUT);
  if (at < 0) return false;
  start = at;
  at = intEnd(bytes, at, to);
  if (at < 0) return false;
  const inputTokens = parseDigits(bytes, start, at);
  at = expectComma(bytes, at, to);
  if (at < 0) return false;
  at = expectKey(bytes, at, to, KEY_OUTPUT);
  if (at < 0) return false;
  start = at;
  at = intEnd(bytes, at, to);
  if (at < 0) return false;
  const outputTokens = parseDigits(bytes, start, at);
  at = expectComma(bytes, at, to);
  if (at < 0) return false;
  at = expectKey(bytes, at, to, KEY_HASH_IDS);
  if (at < 0 || at >= to || bytes[at] !== 0x5b) return false;
  at = skipSpaces(bytes, at + 1, to);
  if (at < to && bytes[at] === BRACKET_CLOSE) at++;
  else {
    for (;;) {
      start = at;
      at = intEnd(bytes, at, to);
      if (at < 0) return false;
      ids.push(parseDigits(bytes, start, at));
      at = skipSpaces(bytes, at, to);
      if (at >= to) return false;
      const c = bytes[at];
      at++;
      if (c === BRACKET_CLOSE) break;
      if (c !== COMMA) return false;
      at = skipSpaces(bytes, at, to);
    }
  }
  at = skipSpaces(bytes, at, to);
  if (at >= to || bytes[at] !== BRACE_CLOSE) return false;
  // After the object: spaces and carriage returns only (JSON whitespace the slow path also allows).
  for (at++; at < to; at++) {
    const c = bytes[at];
    if (c !== SPACE && c !== CR) return false;
  }
  row.timestamp = timestamp;
  row.inputTokens = inputTokens;
  row.outputTokens = outputTokens;
  return true;
}

/**
 * Whether `line` (one line, no line break) takes the byte fast path of `parseBytes`; for tests,
 * which check that the published shape does (a line that does not still parses, the slow way).
 */
export function mooncakeFastPathReads(line: string): boolean {
  const bytes = Buffer.from(line, 'utf8');
  return fastRow(bytes, 0, bytes.length, []);
}

function skipSpaces(bytes: Uint8Array, at: number, to: number): number {
  while (at < to && bytes[at] === SPACE) at++;
  return at;
}

/** Past `key` and the spaces after it, or -1 when the bytes at `at` are not `key`. */
function expectKey(bytes: Uint8Array, at: number, to: number, key: Uint8Array): number {
  if (at + key.length > to) return -1;
  for (let i = 0; i < key.length; i++) if (bytes[at + i] !== key[i]) return -1;
  return skipSpaces(bytes, at + key.length, to);
}

/** Past the spaces, a comma and the spaces after it, or -1. */
function expectComma(bytes: Uint8Array, at: number, to: number): number {
  at = skipSpaces(bytes, at, to);
  if (at >= to || bytes[at] !== COMMA) return -1;
  return skipSpaces(bytes, at + 1, to);
}

/**
 * The index after the plain integer at `at`, or -1 when there is none, it has a leading zero, more
 * than FAST_DIGITS_MAX digits, or goes on as a fraction or exponent (those lines take the
 * JSON.parse path).
 */
function intEnd(bytes: Uint8Array, at: number, to: number): number {
  const start = at;
  while (at < to) {
    const c = bytes[at] as number;
    if (c < DIGIT_0 || c > DIGIT_9) break;
    at++;
  }
  const digits = at - start;
  if (digits === 0 || digits > FAST_DIGITS_MAX) return -1;
  if (digits > 1 && bytes[start] === DIGIT_0) return -1;
  if (at < to) {
    const c = bytes[at];
    if (c === 0x2e || c === 0x65 || c === 0x45) return -1;
  }
  return at;
}

/** The value of the decimal digits in `bytes[from, to)` (at most 15: exact). */
function parseDigits(bytes: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + ((bytes[i] as number) - DIGIT_0);
  return n;
}

function tokenField(o: Record<string, unknown>, key: string, fail: (what: string) => Error): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw fail(`'${key}' must be a non-negative integer, got ${excerpt(JSON.stringify(v) ?? 'nothing')}`);
  }
  return v;
}

/**
 * `hash_ids` is optional: absent or null (as pandas' `to_json` writes a missing list) means no
 * prefix identity; when present it must be ids.
 */
function hashIdsField(v: unknown, fail: (what: string) => Error): readonly number[] {
  if (v === undefined || v === null) return NO_HASH_IDS;
  if (!Array.isArray(v))
    throw fail(`'hash_ids' must be an array of integers, got ${excerpt(JSON.stringify(v))}`);
  if (v.length === 0) return NO_HASH_IDS;
  for (let i = 0; i < v.length; i++) {
    const id: unknown = v[i];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw fail(
        `'hash_ids'[${i}] must be a non-negative integer, got ${excerpt(JSON.stringify(id) ?? 'nothing')}`,
      );
    }
  }
  return v as number[];
}

function writeMooncake(records: readonly TraceRecord[]): string {
  const rows = records.map((r) =>
    JSON.stringify({
      timestamp: r.arrivalMs,
      input_length: r.inputTokens,
      output_length: r.outputTokens,
      hash_ids: r.hashIds,
    }),
  );
  return `${rows.join('\n')}\n`;
}

/** Reader for Mooncake JSONL traces (conversation, toolagent, the arXiv trace). */
export const mooncakeReader: TraceReader = {
  format: 'mooncake',
  blockTokens: MOONCAKE_BLOCK_TOKENS,
  parse: parseMooncake,
  parseLines: parseMooncakeLines,
  parseBytes: parseMooncakeBytes,
  write: writeMooncake,
};
