/**
 * Deterministic, diff-friendly JSON for twin summaries: keys in a fixed order (the order of the
 * SimSummary contract, then any later additions sorted by name) and floats rounded so that noise in
 * the last bits never shows up in a diff.
 */

import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ComparisonRow, SimSummary } from './types.ts';

/** A JSON value as written by these helpers. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/**
 * Significant digits kept for non-integer numbers: 12.3456789 ms becomes 12.3457 (0.1 us),
 * 0.987654321 becomes 0.987654. Far above what a twin run can claim, far below float noise.
 */
export const SIGNIFICANT_DIGITS = 6;

/**
 * Rounds `x` to `digits` significant digits. Integers pass unchanged (counts stay exact); -0 becomes
 * 0; NaN and infinities become null, which is what JSON.stringify would write anyway.
 */
export function roundFloat(x: number, digits = SIGNIFICANT_DIGITS): number | null {
  if (!Number.isFinite(x)) return null;
  if (Number.isInteger(x)) return x === 0 ? 0 : x;
  const r = Number(x.toPrecision(digits));
  return r === 0 ? 0 : r;
}

/** Key orders for the nested objects of a summary, as the contract in types.ts declares them. */
const LATENCY_KEYS = ['mean', 'p50', 'p90', 'p99', 'count'] as const;
const SLO_KEYS = ['ttftMs', 'tpotMs'] as const;
const ATTAINMENT_KEYS = ['ttft', 'tpot', 'both'] as const;
const INSTANCE_KEYS = [
  'id',
  'gpu',
  'model',
  'tp',
  'requests',
  'utilization',
  'kvUsageMean',
  'kvUsageMax',
  'prefixHitRate',
  'preemptions',
] as const;
const SUMMARY_KEYS = [
  'policy',
  'seed',
  'workload',
  'instances',
  'requests',
  'completed',
  'rejected',
  // What `rejected` counts, beside it: refusals by code, then accepted requests that failed.
  'rejectedByCode',
  'failedByReason',
  'ttftMs',
  'tpotMs',
  'itlMs',
  'e2eMs',
  'queueMs',
  'ttftMsAll',
  'tpotMsAll',
  'e2eMsAll',
  'slo',
  'sloAttainment',
  'throughputTokPerS',
  'throughputReqPerS',
  'inputTokens',
  'outputTokens',
  'prefixHitRate',
  'prefixHitRateAll',
  'preemptions',
  'gpuSeconds',
  'simulatedSeconds',
  'events',
  'wallSeconds',
  'eventsPerWallS',
  'perInstance',
] as const;
const LATENCY_FIELDS = new Set([
  'ttftMs',
  'tpotMs',
  'itlMs',
  'e2eMs',
  'queueMs',
  'ttftMsAll',
  'tpotMsAll',
  'e2eMsAll',
]);
/** The only fields that change between two runs with the same seed and trace. */
const WALL_CLOCK_FIELDS = new Set(['wallSeconds', 'eventsPerWallS', 'decisionUs']);

/**
 * A deterministic JSON copy of any plain value: numbers rounded by roundFloat, object keys sorted,
 * undefined fields dropped. Used for fields added to the contract after this file was written.
 */
export function toJsonValue(value: unknown): JsonValue {
  return toJsonOrdered(value, []);
}

function toJsonOrdered(
  value: unknown,
  keyOrder: readonly string[],
  child?: (key: string) => readonly string[],
): JsonValue {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'number':
      return roundFloat(value);
    case 'string':
    case 'boolean':
      return value;
    case 'bigint':
      return Number(value);
    case 'object':
      break;
    default:
      return null;
  }
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    // Elements of an array share one key order (perInstance: one InstanceSummary each).
    return Array.from(value as ArrayLike<unknown>, (v) => toJsonOrdered(v, keyOrder));
  }
  return orderedObject(value as Record<string, unknown>, keyOrder, child);
}

/** Keys in `keyOrder` first, in that order, then any others sorted; undefined values dropped. */
function orderedObject(
  obj: Record<string, unknown>,
  keyOrder: readonly string[],
  child?: (key: string) => readonly string[],
): JsonObject {
  const known = new Set(keyOrder);
  const extra = Object.keys(obj)
    .filter((k) => !known.has(k))
    .sort();
  const out: JsonObject = {};
  for (const key of [...keyOrder, ...extra]) {
    const v = obj[key];
    if (v === undefined) continue;
    out[key] = toJsonOrdered(v, child?.(key) ?? []);
  }
  return out;
}

function summaryChildKeys(key: string): readonly string[] {
  if (LATENCY_FIELDS.has(key)) return LATENCY_KEYS;
  if (key === 'slo') return SLO_KEYS;
  if (key === 'sloAttainment') return ATTAINMENT_KEYS;
  if (key === 'perInstance') return INSTANCE_KEYS;
  return [];
}

/** Options for summaryToJson and comparisonToJson. */
export interface SummaryJsonOptions {
  /**
   * Keep `wallSeconds`, `eventsPerWallS` and `decisionUs` (default true). Leave them out to get byte-identical
   * output from two runs with the same seed and trace.
   */
  readonly wallClock?: boolean;
}

/** A summary as a deterministic JSON object: contract key order, rounded floats. */
export function summaryToJson(summary: SimSummary, options: SummaryJsonOptions = {}): JsonObject {
  const flat: Record<string, unknown> = { ...summary };
  if (options.wallClock === false) for (const k of WALL_CLOCK_FIELDS) delete flat[k];
  return orderedObject(flat, SUMMARY_KEYS, summaryChildKeys);
}

/**
 * Several policies' summaries as one JSON object keyed by policy name, in the order given (a Map
 * keeps insertion order). A row's goodputRps, when present, comes first in its entry.
 */
export function comparisonToJson(
  runs: ReadonlyMap<string, SimSummary> | readonly ComparisonRow[],
  options: SummaryJsonOptions = {},
): JsonObject {
  const rows: readonly ComparisonRow[] =
    runs instanceof Map
      ? [...runs].map(([name, summary]) => ({ name, summary }))
      : (runs as readonly ComparisonRow[]);
  const out: JsonObject = {};
  for (const row of rows) {
    const entry: JsonObject = {};
    if (row.goodputRps !== undefined) entry['goodputRps'] = roundFloat(row.goodputRps);
    Object.assign(entry, summaryToJson(row.summary, options));
    out[row.name] = entry;
  }
  return out;
}

/** The exact text writeJsonFile writes: two-space indent and a final newline. */
export function stringifyJson(value: JsonValue): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * Writes `value` as JSON to `path`, creating the folder. The text goes to a temporary file first
 * and is renamed into place, so a reader never sees half a file.
 */
export async function writeJsonFile(path: string, value: JsonValue): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, stringifyJson(value), 'utf8');
  await rename(tmp, path);
}
