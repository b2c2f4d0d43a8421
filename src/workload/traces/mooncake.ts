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
    const fail = (what: string) => traceParseError(file, line.number, what);
    let row: unknown;
    try {
      row = JSON.parse(line.text);
    } catch (err) {
      throw fail(`invalid JSON (${(err as Error).message}) in ${excerpt(line.text)}`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw fail(`expected a JSON object, got ${excerpt(line.text)}`);
    }
    const o = row as Record<string, unknown>;
    const timestamp = o['timestamp'];
    if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) {
      throw fail(
        `'timestamp' must be a non-negative number of ms, got ${excerpt(JSON.stringify(timestamp) ?? 'nothing')}`,
      );
    }
    if (records.length === 0) firstMs = timestamp;
    const arrivalMs = timestamp - firstMs;
    records.push({
      arrivalMs,
      inputTokens: tokenField(o, 'input_length', fail),
      outputTokens: tokenField(o, 'output_length', fail),
      hashIds: hashIdsField(o['hash_ids'], fail),
    });
    if (stop(arrivalMs)) {
      stoppedEarly = true;
      break;
    }
  }
  if (records.length === 0) throw traceParseError(file, 1, 'empty file: expected JSON lines');
  return sortByArrival(records, file, 'timestamp', stoppedEarly, warn);
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
  write: writeMooncake,
};
