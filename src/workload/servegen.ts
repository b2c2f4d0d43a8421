/**
 * ServeGen per-client windows (Alibaba Cloud Model Studio, arXiv 2505.09999; github.com/alibaba/ServeGen).
 * ServeGen publishes no requests, only per-client statistics per 600 s window: the rate (req/s), the
 * coefficient of variation of inter-arrival times and a fitted distribution. We replay them as
 * arrivals: in each window, each client is a stationary Gamma renewal process at the window's rate
 * (times a scale) and CV, and the clients' streams are merged in time order.
 *
 * Files we read:
 * - a combined CSV with a header `client,timestamp_s,rate,cv[,pattern,pat_arg1,pat_arg2]` (the
 *   committed slice under data/samples/servegen/ is one);
 * - one of ServeGen's own `chunk-<client>-trace.csv` files (no header; `timestamp_s,rate,cv,
 *   pattern,pat_arg1,pat_arg2`; the client is the chunk number);
 * - a directory of them (a category as ServeGen's tar bundles unpack, e.g. data/language/m-small);
 * - one of those bundles itself (`language_m-small_trace.tar.gz`: one category's chunk files).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { list as listTar } from 'tar';
import { invalidArgument, SwitchyardError, unknownName } from '../core/errors.ts';
import { MinHeap } from '../core/heap.ts';
import type { Rng } from '../core/rng.ts';
import { defaultsOf } from './common.ts';
import { type LengthsLoader, pairSampler } from './lengths.ts';
import type { WorkloadSpecOf } from './spec.ts';
import { limitsOf, timedRequests } from './synthetic.ts';
import { decodeTraceBytes, excerpt, nonBlankLines, TRACE_BYTES_MAX, traceParseError } from './traces/text.ts';
import type { TwinRequest } from './types.ts';

/** ServeGen's window length: every row covers [timestamp_s, timestamp_s + 600). */
export const SERVEGEN_WINDOW_S = 600;
/** Most window rows we read from one source (m-large, the largest category, has 326,592). */
export const SERVEGEN_ROWS_MAX = 5_000_000;

/** One client's statistics in one window. */
export interface ServegenWindow {
  readonly startS: number;
  readonly rateRps: number;
  /** Inter-arrival CV; 1 where the source has none (a window without arrivals). */
  readonly cv: number;
}

/** One client's windows, in time order. */
export interface ServegenClient {
  readonly id: string;
  readonly windows: readonly ServegenWindow[];
}

/** A parsed ServeGen source. */
export interface ServegenData {
  readonly source: string;
  readonly clients: readonly ServegenClient[];
  /** The earliest window start (the time `startH` counts from). */
  readonly firstS: number;
  /** The end of the latest window. */
  readonly endS: number;
}

/** Bundled slices, addressed as `sample:<name>`. */
export const SERVEGEN_SAMPLES = { 'servegen-m-small-day2': 'm-small-day2.csv' } as const;

const SAMPLES_DIR = fileURLToPath(new URL('../../data/samples/servegen/', import.meta.url));

/** Resolves `sample:<name>` to a path under data/samples/servegen/; other strings are paths. */
export function resolveServegenRef(ref: string): string {
  if (!ref.startsWith('sample:')) return ref;
  const name = ref.slice('sample:'.length);
  if (!Object.hasOwn(SERVEGEN_SAMPLES, name))
    throw unknownName(
      'servegen sample',
      name,
      Object.keys(SERVEGEN_SAMPLES).map((n) => `sample:${n}`),
    );
  return join(SAMPLES_DIR, SERVEGEN_SAMPLES[name as keyof typeof SERVEGEN_SAMPLES]);
}

const NUMBER_RE = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

function nonNegative(cell: string | undefined): number | undefined {
  const s = (cell ?? '').trim();
  if (!NUMBER_RE.test(s)) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** Rows of one client while parsing, with the line each came from. */
type Rows = Map<string, ServegenWindow[]>;

function parseRow(cells: readonly string[], file: string, line: number, text: string): ServegenWindow {
  if (cells.length < 3)
    throw traceParseError(file, line, `expected timestamp_s,rate,cv,…, got ${excerpt(text)}`);
  const startS = nonNegative(cells[0]);
  const rateRps = nonNegative(cells[1]);
  if (startS === undefined)
    throw traceParseError(file, line, `timestamp_s must be a number >= 0, got '${cells[0]}'`);
  if (rateRps === undefined)
    throw traceParseError(file, line, `rate must be a number >= 0, got '${cells[1]}'`);
  const cvCell = (cells[2] as string).trim();
  const cv = nonNegative(cvCell);
  if (rateRps > 0 && !(cv !== undefined && cv > 0))
    throw traceParseError(file, line, `cv must be a number > 0 where rate > 0, got '${cvCell}'`);
  if (rateRps === 0 && cvCell !== '' && cv === undefined)
    throw traceParseError(file, line, `cv must be a number >= 0 or empty, got '${cvCell}'`);
  return { startS, rateRps, cv: rateRps > 0 ? (cv as number) : 1 };
}

function addRow(rows: Rows, client: string, w: ServegenWindow, file: string, line: number): void {
  let list = rows.get(client);
  if (list === undefined) {
    list = [];
    rows.set(client, list);
  }
  const last = list.at(-1);
  if (last !== undefined && !(w.startS > last.startS))
    throw traceParseError(
      file,
      line,
      `client ${client}: timestamp_s ${w.startS} is not after its previous window's ${last.startS}`,
    );
  list.push(w);
}

/**
 * Parses one ServeGen text: a combined CSV (header line starting `client,`) or a chunk file whose
 * client is `chunkClient`. Adds its rows to `rows`; returns how many it read.
 */
function parseInto(rows: Rows, text: string, file: string, chunkClient: string, seen: number): number {
  const lines = nonBlankLines(text);
  const combined = lines[0]?.text.trim().toLowerCase().startsWith('client,') === true;
  let count = seen;
  for (const line of combined ? lines.slice(1) : lines) {
    if (++count > SERVEGEN_ROWS_MAX)
      throw traceParseError(file, line.number, `more than ${SERVEGEN_ROWS_MAX} rows`);
    const cells = line.text.split(',');
    if (combined) {
      const client = (cells[0] as string).trim();
      if (client === '') throw traceParseError(file, line.number, 'empty client id');
      addRow(rows, client, parseRow(cells.slice(1), file, line.number, line.text), file, line.number);
    } else {
      addRow(rows, chunkClient, parseRow(cells, file, line.number, line.text), file, line.number);
    }
  }
  return count;
}

/** The client id of a chunk file: the N of `chunk-N-trace.csv`, else the file name. */
function chunkClientId(path: string): string {
  const name = basename(path);
  return /^chunk-(\d+)-trace\.csv(\.gz)?$/.exec(name)?.[1] ?? name;
}

function readText(path: string): string {
  return decodeTraceBytes(readFileSync(path), path);
}

function notFound(path: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_NOT_FOUND', `servegen file not found: ${path}`, {
    param: 'servegen-file',
    path,
  });
}

/** Reads a ServeGen file or directory (see the module comment), or a `sample:` slice. */
export function readServegen(ref: string): ServegenData {
  const path = resolveServegenRef(ref);
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw notFound(path);
  }
  const rows: Rows = new Map();
  if (/\.(tar\.gz|tgz|tar)$/i.test(path)) {
    let seen = 0;
    for (const [name, text] of readBundle(path))
      seen = parseInto(rows, text, `${path}:${name}`, chunkClientId(name), seen);
  } else if (isDir) {
    const files = readdirSync(path)
      .filter((f) => /-trace\.csv(\.gz)?$/.test(f))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    if (files.length === 0) throw notFound(join(path, '*-trace.csv'));
    let seen = 0;
    for (const f of files)
      seen = parseInto(rows, readText(join(path, f)), join(path, f), chunkClientId(f), seen);
  } else {
    parseInto(rows, readText(path), path, chunkClientId(path), 0);
  }
  return servegenData(ref, rows);
}

/**
 * The chunk files of a ServeGen tar bundle, by path inside it, in client order. A bundle holds one
 * category; one with several would mix clients of the same number, so it is refused.
 */
function readBundle(path: string): [string, string][] {
  const files: [string, string][] = [];
  let bytes = 0;
  listTar({
    file: path,
    sync: true,
    onReadEntry: (entry) => {
      if (!/-trace\.csv$/.test(entry.path)) return entry.resume();
      const parts: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > TRACE_BYTES_MAX)
          throw traceParseError(path, 1, `more than ${TRACE_BYTES_MAX} bytes of chunk files`);
        parts.push(chunk);
      });
      entry.on('end', () => files.push([entry.path, Buffer.concat(parts).toString('utf8')]));
    },
  });
  const dirs = new Set(files.map(([name]) => name.slice(0, name.lastIndexOf('/') + 1)));
  if (files.length === 0) throw traceParseError(path, 1, 'no *-trace.csv files in the bundle');
  if (dirs.size > 1)
    throw traceParseError(
      path,
      1,
      `the bundle holds several categories (${[...dirs].join(', ')}); unpack it and name one directory`,
    );
  return files.sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
}

/** Parses one ServeGen text (combined CSV, or a chunk file of client `client`). */
export function parseServegen(text: string, file: string, client = '0'): ServegenData {
  const rows: Rows = new Map();
  parseInto(rows, text, file, client, 0);
  return servegenData(file, rows);
}

function servegenData(source: string, rows: Rows): ServegenData {
  const clients = [...rows].map(([id, windows]) => ({ id, windows }));
  if (clients.length === 0) throw traceParseError(source, 1, 'no windows');
  let firstS = Number.POSITIVE_INFINITY;
  let endS = 0;
  for (const c of clients) {
    firstS = Math.min(firstS, (c.windows[0] as ServegenWindow).startS);
    endS = Math.max(endS, (c.windows.at(-1) as ServegenWindow).startS + SERVEGEN_WINDOW_S);
  }
  return { source, clients, firstS, endS };
}

/** What part of a ServeGen source to replay, and how hard. */
export interface ServegenReplay {
  /** Multiplies every window's rate. */
  readonly rateScale: number;
  /** Hours after the source's first window that become time 0. */
  readonly startH: number;
  /** Seconds to replay (default: to the source's end). */
  readonly durationS?: number | undefined;
  /** Client ids to replay (default all). */
  readonly clients?: readonly string[] | undefined;
}

/** The clients a replay picks, failing on an id the source does not hold. */
export function pickClients(data: ServegenData, ids: readonly string[] | undefined): ServegenClient[] {
  if (ids === undefined) return [...data.clients];
  const byId = new Map(data.clients.map((c) => [c.id, c]));
  return ids.map((id) => {
    const c = byId.get(id);
    if (c === undefined) throw unknownName('servegen client', id, [...byId.keys()]);
    return c;
  });
}

/**
 * Checks a replay against its source before any arrival is drawn: every client named exists and
 * the start lies inside the file (a start past its end would replay nothing, silently).
 */
export function checkReplay(data: ServegenData, replay: ServegenReplay): void {
  pickClients(data, replay.clients);
  const spanH = (data.endS - data.firstS) / 3600;
  if (replay.startH >= spanH)
    // Both names: the spec's field (a config file) and the flag that sets it.
    throw invalidArgument(
      'startH (--start-h)',
      replay.startH,
      `hours before the end of ${data.source} (it spans ${spanH} h)`,
    );
}

/**
 * The rate of the replayed clients summed, per window of the replay (what the arrivals should
 * average); for tests and reports.
 */
export function servegenRateRps(data: ServegenData, replay: ServegenReplay, tS: number): number {
  const at = data.firstS + replay.startH * 3600 + tS;
  let sum = 0;
  for (const c of pickClients(data, replay.clients)) {
    for (const w of c.windows) if (w.startS <= at && at < w.startS + SERVEGEN_WINDOW_S) sum += w.rateRps;
  }
  return sum * replay.rateScale;
}

/**
 * One client's arrival times (s, relative to the replay's start). Each window restarts a stationary
 * Gamma renewal process: its first arrival is the forward recurrence time (U times a Gamma of shape
 * k + 1, the length-biased gap), so the expected count in a window is exactly rate × length even
 * at ServeGen's CVs of several hundred, where a plain restart would add about cv²/2 arrivals.
 */
function* clientTimesS(
  c: ServegenClient,
  fromS: number,
  toS: number,
  scale: number,
  rng: Rng,
): Generator<number> {
  for (const [i, w] of c.windows.entries()) {
    const next = c.windows[i + 1];
    const lo = Math.max(w.startS, fromS);
    const hi = Math.min(w.startS + SERVEGEN_WINDOW_S, next?.startS ?? Number.POSITIVE_INFINITY, toS);
    const rate = w.rateRps * scale;
    if (!(hi > lo) || !(rate > 0)) continue;
    // A CV under about 1e-154 squares to 0 and its shape to Infinity, whose Gamma draws are NaN: the
    // window sent nothing. Capped, the gaps are the rate's own (the limit as the CV goes to 0).
    const shape = Math.min(1 / (w.cv * w.cv), GAMMA_SHAPE_MAX);
    const gapScaleS = 1 / (rate * shape);
    let t = lo + rng.next() * rng.gamma(shape + 1, gapScaleS);
    for (; t < hi; t += rng.gamma(shape, gapScaleS)) yield t - fromS;
  }
}

/** The largest Gamma shape drawn from (CV 1e-150): past it a window's gaps are all 1 / rate. */
const GAMMA_SHAPE_MAX = 1e300;

/** A stream's next time in mergeSorted's heap. */
interface HeapEntry {
  t: number;
  i: number;
}

/** Merges sorted streams by time; ties go to the lower stream index, so the order is deterministic. */
function* mergeSorted(streams: readonly Iterator<number>[]): Generator<number> {
  const heap = new MinHeap<HeapEntry>((a, b) => a.t < b.t || (a.t === b.t && a.i < b.i));
  for (const [i, s] of streams.entries()) {
    const r = s.next();
    if (r.done !== true) heap.push({ t: r.value, i });
  }
  while (heap.size > 0) {
    const { t, i } = heap.pop() as HeapEntry;
    yield t;
    const r = (streams[i] as Iterator<number>).next();
    if (r.done !== true) heap.push({ t: r.value, i });
  }
}

/** A replay's span in the source's seconds: from its start to the earlier of its duration and the source's end. */
function replaySpanS(data: ServegenData, replay: ServegenReplay): { fromS: number; toS: number } {
  const fromS = data.firstS + replay.startH * 3600;
  const toS = Math.min(
    data.endS,
    replay.durationS === undefined ? Number.POSITIVE_INFINITY : fromS + replay.durationS,
  );
  return { fromS, toS };
}

/**
 * The requests a replay is expected to send: over every picked client's windows in its span, rate x
 * scale x the part of the window in the span (what the arrivals average: clientTimesS draws each
 * window's expected count exactly). The file bounds a replay's length but not its rate: `--scale`
 * multiplies it, so this is what the run-size bound (WORKLOAD_REQUESTS_MAX) is checked against before
 * any arrival is drawn. Infinity where a scaled rate overflows.
 */
export function servegenExpectedRequests(data: ServegenData, replay: ServegenReplay): number {
  const { fromS, toS } = replaySpanS(data, replay);
  let count = 0;
  for (const c of pickClients(data, replay.clients)) {
    for (const [i, w] of c.windows.entries()) {
      const next = c.windows[i + 1]?.startS ?? Number.POSITIVE_INFINITY;
      const lo = Math.max(w.startS, fromS);
      const hi = Math.min(w.startS + SERVEGEN_WINDOW_S, next, toS);
      if (hi > lo && w.rateRps > 0) count += w.rateRps * replay.rateScale * (hi - lo);
    }
  }
  return count;
}

/** Arrival times (ms) of a replay, all picked clients merged. Each client draws from its own fork. */
export function servegenArrivalTimesMs(
  data: ServegenData,
  replay: ServegenReplay,
  rng: Rng,
): Generator<number> {
  const { fromS, toS } = replaySpanS(data, replay);
  const streams = pickClients(data, replay.clients).map((c) =>
    clientTimesS(c, fromS, toS, replay.rateScale, rng.fork(`client ${c.id}`)),
  );
  return (function* () {
    for (const tS of mergeSorted(streams)) yield tS * 1000;
  })();
}

/** A validated servegen spec. */
export type ServegenSpec = WorkloadSpecOf<'servegen'>;

/** A ServeGen replay's requests; `data` is the spec's file, read beforehand (readServegen). */
export function servegenRequests(
  spec: ServegenSpec,
  data: ServegenData,
  rng: Rng,
  load: LengthsLoader,
): Generator<TwinRequest> {
  const times = servegenArrivalTimesMs(data, spec, rng.fork('arrivals'));
  const lengths = pairSampler(spec.input, spec.output, rng.fork('lengths'), load);
  return timedRequests(times, lengths, defaultsOf(spec), limitsOf(spec));
}

/** A label for reports. */
export function describeServegen(spec: ServegenSpec): string {
  const clients = spec.clients !== undefined ? ` clients ${spec.clients.join(',')}` : '';
  return `servegen ${spec.file} from ${spec.startH} h at ${spec.rateScale}x rate${clients}`;
}
