/**
 * Azure LLM inference traces: CSV `TIMESTAMP,ContextTokens,GeneratedTokens` with wall-clock stamps.
 * The 2023 files (Splitwise, ISCA'24) write `2023-11-16 18:17:03.9799600` (time zone unstated);
 * the 2024 week-long files (DynamoLLM, HPCA'25) write `2024-05-10 00:00:00.009930+00:00`, some
 * rows without the fraction. A stamp with a UTC offset (`+00:00`, `-0700`, `Z`) is read as that
 * instant; one without is read as UTC, so a file of either kind (or a mix) keeps its spacing.
 *
 * Stamps are parsed by hand into (day number, nanoseconds of day) and subtracted as integers, so
 * there is no Date, no time-zone or DST shift, and the 100 ns ticks survive: two rows 0.1 µs apart
 * stay 0.0001 ms apart.
 */
import type { TraceRecord } from '../types.ts';
import {
  csvCell,
  excerpt,
  headerColumns,
  limitStop,
  NO_HASH_IDS,
  nonBlankLines,
  parseTokenCount,
  sortByArrival,
  type TraceLine,
  type TraceReadLimit,
  type TraceWarn,
  traceParseError,
} from './text.ts';
import type { TraceReader } from './types.ts';

const NS_PER_MS = 1e6;
const NS_PER_S = 1e9;
const NS_PER_DAY = 86_400 * NS_PER_S;
/** The writer's 100 ns tick, the resolution of the original files' 7 decimals. */
const NS_PER_TICK = 100;
const TICKS_PER_MS = NS_PER_MS / NS_PER_TICK;

/** A wall-clock instant split so that both parts stay exact integers in a double. */
export interface AzureInstant {
  /** Days since 1970-01-01 in the proleptic Gregorian calendar. */
  readonly day: number;
  readonly nsOfDay: number;
}

const STAMP_RE =
  /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?: ?(Z|[+-]\d{2}(?::?\d{2})?))?$/i;

/** Minutes east of UTC of an offset as ISO 8601 writes it (`Z`, `+00:00`, `-0700`, `+05`), or undefined. */
function offsetMinutes(text: string | undefined): number | undefined {
  if (text === undefined || text.toUpperCase() === 'Z') return 0;
  const sign = text[0] === '-' ? -1 : 1;
  const digits = text.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (hours > 23 || minutes > 59) return undefined;
  return sign * (hours * 60 + minutes);
}

/** Days from 1970-01-01 to a civil date (H. Hinnant's days_from_civil). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The civil date of a day number (inverse of daysFromCivil). */
export function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

function daysInMonth(year: number, month: number): number {
  return (
    daysFromCivil(month === 12 ? year + 1 : year, month === 12 ? 1 : month + 1, 1) -
    daysFromCivil(year, month, 1)
  );
}

/**
 * Parses `YYYY-MM-DD HH:MM:SS[.fffffffff][offset]` (a `T` separator is accepted too; the offset is
 * `Z` or `±HH[:MM]`, and the instant is returned in UTC); undefined when the text is not such a
 * stamp or names an impossible date, time or offset.
 */
export function parseAzureTimestamp(text: string): AzureInstant | undefined {
  const m = STAMP_RE.exec(csvCell(text));
  if (m === null) return undefined;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const year = Number(ys);
  const month = Number(mos);
  const dayOfMonth = Number(ds);
  const hour = Number(hs);
  const minute = Number(mis);
  const second = Number(ss);
  if (month < 1 || month > 12 || dayOfMonth < 1 || dayOfMonth > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const eastMin = offsetMinutes(zone);
  if (eastMin === undefined) return undefined;
  const fracNs = frac === undefined ? 0 : Number(frac.padEnd(9, '0'));
  // Local time minus the offset is UTC; a shift across midnight moves the day (|offset| < 1 day).
  let day = daysFromCivil(year, month, dayOfMonth);
  let nsOfDay = ((hour * 60 + minute - eastMin) * 60 + second) * NS_PER_S + fracNs;
  if (nsOfDay < 0) {
    nsOfDay += NS_PER_DAY;
    day -= 1;
  } else if (nsOfDay >= NS_PER_DAY) {
    nsOfDay -= NS_PER_DAY;
    day += 1;
  }
  return { day, nsOfDay };
}

/** Milliseconds from `from` to `to`, computed in integer nanoseconds first. */
export function azureDeltaMs(from: AzureInstant, to: AzureInstant): number {
  return ((to.day - from.day) * NS_PER_DAY + (to.nsOfDay - from.nsOfDay)) / NS_PER_MS;
}

const COLUMNS = ['TIMESTAMP', 'ContextTokens', 'GeneratedTokens'] as const;

function parseAzure(text: string, file: string): TraceRecord[] {
  return parseAzureLines(nonBlankLines(text), file);
}

function parseAzureLines(
  lines: Iterable<TraceLine>,
  file: string,
  limit?: TraceReadLimit,
  warn?: TraceWarn,
): TraceRecord[] {
  const stop = limitStop(limit);
  let header: TraceLine | undefined;
  let index: Record<(typeof COLUMNS)[number], number> | undefined;
  let width = 0;
  const records: TraceRecord[] = [];
  let first: AzureInstant | undefined;
  let stoppedEarly = false;
  for (const line of lines) {
    if (header === undefined || index === undefined) {
      header = line;
      ({ index, width } = headerColumns(header, file, COLUMNS, 'Azure trace'));
      continue;
    }
    const cells = line.text.split(',');
    if (cells.length !== width) {
      throw traceParseError(
        file,
        line.number,
        `expected ${width} columns, got ${cells.length} in ${excerpt(line.text)}`,
      );
    }
    const stamp = cells[index.TIMESTAMP] as string;
    const instant = parseAzureTimestamp(stamp);
    if (instant === undefined) {
      throw traceParseError(
        file,
        line.number,
        `TIMESTAMP ${excerpt(stamp)} is not 'YYYY-MM-DD HH:MM:SS[.fffffff][+HH:MM]'`,
      );
    }
    first ??= instant;
    const arrivalMs = azureDeltaMs(first, instant);
    records.push({
      arrivalMs,
      inputTokens: tokenCell(cells, index.ContextTokens, 'ContextTokens', file, line.number),
      outputTokens: tokenCell(cells, index.GeneratedTokens, 'GeneratedTokens', file, line.number),
      hashIds: NO_HASH_IDS,
    });
    if (stop(arrivalMs)) {
      stoppedEarly = true;
      break;
    }
  }
  if (header === undefined) throw traceParseError(file, 1, 'empty file: expected an Azure CSV header');
  if (records.length === 0) throw traceParseError(file, header.number + 1, 'no records after the header');
  return sortByArrival(records, file, 'TIMESTAMP', stoppedEarly, warn);
}

function tokenCell(cells: readonly string[], at: number, name: string, file: string, line: number): number {
  const cell = cells[at] as string;
  const n = parseTokenCount(cell);
  if (n === undefined) {
    throw traceParseError(file, line, `${name} ${excerpt(cell)} is not a non-negative integer token count`);
  }
  return n;
}

/** Day the writer puts record 0 on: the day the 2023 traces were recorded. */
const WRITE_BASE_DAY = daysFromCivil(2023, 11, 16);

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/** Formats an offset from the writer's base day as an Azure stamp with 7 decimals (100 ns). */
export function formatAzureTimestamp(offsetMs: number): string {
  const ticks = Math.round(offsetMs * TICKS_PER_MS);
  const ticksPerDay = NS_PER_DAY / NS_PER_TICK;
  const dayOffset = Math.floor(ticks / ticksPerDay);
  const tickOfDay = ticks - dayOffset * ticksPerDay;
  const { year, month, day } = civilFromDays(WRITE_BASE_DAY + dayOffset);
  const ticksPerS = NS_PER_S / NS_PER_TICK;
  const secondOfDay = Math.floor(tickOfDay / ticksPerS);
  const fracTicks = tickOfDay - secondOfDay * ticksPerS;
  const hh = Math.floor(secondOfDay / 3600);
  const mm = Math.floor((secondOfDay % 3600) / 60);
  const ss = secondOfDay % 60;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)} ${pad(hh, 2)}:${pad(mm, 2)}:${pad(ss, 2)}.${pad(fracTicks, 7)}`;
}

function writeAzure(records: readonly TraceRecord[]): string {
  const rows = records.map((r) => `${formatAzureTimestamp(r.arrivalMs)},${r.inputTokens},${r.outputTokens}`);
  return `${COLUMNS.join(',')}\n${rows.join('\n')}\n`;
}

/** Reader for the Azure LLM CSV traces (2023 and 2024, conv and code). */
export const azureReader: TraceReader = {
  format: 'azure',
  blockTokens: undefined,
  parse: parseAzure,
  parseLines: parseAzureLines,
  write: writeAzure,
};
