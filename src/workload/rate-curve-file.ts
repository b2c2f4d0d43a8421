/**
 * Rate-curve files: CSV of `time_s,rate` points (seconds from the start, req/s), the rate linear
 * between points. An optional header line names the two columns; `#` starts a comment line. Every
 * problem fails with SY_ERR_TRACE_PARSE naming `file:line`, because a curve that is silently fixed up
 * would drive an experiment nobody asked for.
 */
import { readFileSync } from 'node:fs';
import { SwitchyardError } from '../core/errors.ts';
import type { RatePoint } from './rate-profile.ts';
import { decodeTraceBytes, excerpt, nonBlankLines, traceParseError } from './traces/text.ts';

/** Most points a curve may have (a bound on what we hold in memory; a week at 1 s steps fits). */
export const RATE_CURVE_POINTS_MAX = 1_000_000;

const NUMBER_RE = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

/** A cell without its spaces and the double quotes a spreadsheet may put around it. */
function unquote(cell: string): string {
  const s = cell.trim();
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).trim() : s;
}

/**
 * A line's cells, less the empty ones a spreadsheet export leaves at the end (`0,2,`): they hold
 * nothing, so dropping them reads the same point.
 */
function cellsOf(text: string): string[] {
  const cells = text.split(',').map(unquote);
  while (cells.length > 2 && cells.at(-1) === '') cells.pop();
  return cells;
}

function parseCell(cell: string): number | undefined {
  const s = unquote(cell);
  if (!NUMBER_RE.test(s)) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Parses a rate curve's text. Points must start at time 0, have strictly increasing times and
 * finite rates >= 0, at least one of them positive; there must be at least two.
 */
export function parseRateCurve(text: string, file: string): RatePoint[] {
  const lines = nonBlankLines(text).filter((l) => !l.text.trimStart().startsWith('#'));
  const points: RatePoint[] = [];
  let lastLine = 1;
  for (const [i, line] of lines.entries()) {
    lastLine = line.number;
    const cells = cellsOf(line.text);
    if (i === 0 && cells.length === 2 && parseCell(cells[0] as string) === undefined) {
      checkHeader(cells, line.text, file, line.number);
      continue;
    }
    points.push(parsePoint(cells, line.text, file, line.number, points.at(-1)));
    if (points.length > RATE_CURVE_POINTS_MAX)
      throw traceParseError(file, line.number, `more than ${RATE_CURVE_POINTS_MAX} points`);
  }
  if (points.length < 2)
    throw traceParseError(file, lastLine, `a rate curve needs at least 2 points, found ${points.length}`);
  if (!points.some((p) => p.rateRps > 0))
    throw traceParseError(file, lastLine, 'every rate is 0: no request would arrive');
  return points;
}

/** Header names read as the time column, in seconds (lower case). */
const TIME_S_NAMES: ReadonlySet<string> = new Set([
  'time_s',
  'time',
  't',
  't_s',
  'seconds',
  'sec',
  's',
  'timestamp_s',
]);
/** Header names read as the rate column, in requests per second (lower case). */
const RATE_NAMES: ReadonlySet<string> = new Set(['rate', 'rate_rps', 'rps', 'req_per_s', 'qps', 'req/s']);
/** Time columns in another unit: refused, since their numbers would be read as seconds. */
const TIME_OTHER_UNIT_RE = /(^|_)(ms|us|ns|min|minutes|h|hours)$/;

/**
 * A header line: the time column first, then the rate, under one of the usual names. Swapped columns
 * or a time in another unit are refused, since the numbers below would be read wrongly.
 */
function checkHeader(cells: readonly string[], text: string, file: string, line: number): void {
  const [time, rate] = cells.map((c) => c.trim().toLowerCase()) as [string, string];
  if (TIME_S_NAMES.has(time) && RATE_NAMES.has(rate)) return;
  if (RATE_NAMES.has(time) && TIME_S_NAMES.has(rate))
    throw traceParseError(file, line, `the columns are time_s,rate in that order, got ${excerpt(text)}`);
  if (TIME_OTHER_UNIT_RE.test(time))
    throw traceParseError(
      file,
      line,
      `times are in seconds (time_s), got a column named '${cells[0]?.trim()}': convert it to seconds`,
    );
  throw traceParseError(
    file,
    line,
    `expected a header 'time_s,rate' (or time,rps and the like) or a point, got ${excerpt(text)}`,
  );
}

function parsePoint(
  cells: readonly string[],
  text: string,
  file: string,
  line: number,
  previous: RatePoint | undefined,
): RatePoint {
  if (cells.length !== 2)
    throw traceParseError(
      file,
      line,
      `expected 2 columns time_s,rate, got ${cells.length} in ${excerpt(text)}`,
    );
  const timeS = parseCell(cells[0] as string);
  const rateRps = parseCell(cells[1] as string);
  if (timeS === undefined || timeS < 0)
    throw traceParseError(file, line, `time_s must be a number >= 0, got '${(cells[0] as string).trim()}'`);
  if (rateRps === undefined || rateRps < 0)
    throw traceParseError(
      file,
      line,
      `rate must be a number >= 0 (req/s), got '${(cells[1] as string).trim()}'`,
    );
  if (previous === undefined && timeS !== 0)
    throw traceParseError(file, line, `the first point must be at time_s 0, got ${timeS}`);
  if (previous !== undefined && !(timeS > previous.timeS))
    throw traceParseError(
      file,
      line,
      `time_s ${timeS} is not after the previous point's ${previous.timeS} (points go in increasing time)`,
    );
  return { timeS, rateRps };
}

/** Reads and parses a rate-curve file (plain or gzipped); a missing file is SY_ERR_NOT_FOUND. */
export function readRateCurve(path: string): RatePoint[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const details = { param: 'rate-curve', path };
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new SwitchyardError('SY_ERR_NOT_FOUND', `rate curve file not found: ${path}`, details);
    if (code === 'EISDIR')
      throw new SwitchyardError(
        'SY_ERR_NOT_FOUND',
        `rate curve '${path}' is a folder, not a CSV file`,
        details,
      );
    // Anything else the system refuses (permissions, a device): one line, not a stack.
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `cannot read rate curve '${path}': ${(err as Error).message}`,
      details,
    );
  }
  return parseRateCurve(decodeTraceBytes(bytes, path), path);
}

/** A rate curve's idle tail: its rate is 0 from `fromS` to its last point at `endS`. */
export interface RateCurveIdleTail {
  readonly fromS: number;
  readonly endS: number;
}

/**
 * Where a curve's rate falls to 0 for good before its last point (its trailing rows of rate 0), or
 * undefined when it arrives until its end. The twin ends a run at its last completion, so such a
 * tail is not simulated; the caller warns (runTwinSpec).
 */
export function idleTailOf(points: readonly RatePoint[]): RateCurveIdleTail | undefined {
  let k = points.length;
  while (k > 0 && (points[k - 1] as RatePoint).rateRps === 0) k--;
  // The rate is linear between points: it reaches 0 at the first of the trailing zero points.
  const first = points[k];
  const last = points.at(-1);
  if (first === undefined || last === undefined || !(first.timeS < last.timeS)) return undefined;
  return { fromS: first.timeS, endS: last.timeS };
}
