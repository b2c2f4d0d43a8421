/**
 * The one entry point: a workload spec (plain object, e.g. from YAML) and a seeded Rng in, a lazy
 * RequestSource out.
 */
import { assertNever } from '../core/assert.ts';
import { invalidArgument, SwitchyardError, unknownName } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import { restartable } from './common.ts';
import { cachedLengthsLoader, type LengthsLoader } from './lengths.ts';
import { multiModelRequests, rankedClients } from './multi-model.ts';
import { readRateCurve } from './rate-curve-file.ts';
import type { RatePoint } from './rate-profile.ts';
import {
  checkReplay,
  readServegen,
  type ServegenData,
  servegenExpectedRequests,
  servegenRequests,
} from './servegen.ts';
import { sessionRequests, systemPromptRequests } from './shared-prefix.ts';
import {
  expectedStageRequests,
  type LengthDist,
  WORKLOAD_DURATION_MAX_S,
  WORKLOAD_KINDS,
  WORKLOAD_REQUESTS_MAX,
  type WorkloadSpec,
  type WorkloadSpecInput,
  workloadSpecSchema,
} from './spec.ts';
import { renewalRequests } from './synthetic.ts';
import { profileOf, timeVaryingRequests } from './time-varying.ts';
import { firstAtOrAfter, traceRequests } from './trace-source.ts';
import { readTrace } from './traces/read.ts';
import type { TraceReadLimit } from './traces/text.ts';
import type { RequestSource, TraceFormat, TraceRecord } from './types.ts';

/**
 * A rate curve with no durationS or maxRequests runs to its last point: bounded as durationS is, so
 * a curve written in milliseconds fails saying so instead of generating arrivals for hours.
 */
function checkCurveEnd(
  s: Extract<WorkloadSpec, { kind: 'rate-curve' }>,
  filePoints: readonly { timeS: number }[] | undefined,
): void {
  if (s.durationS !== undefined || s.maxRequests !== undefined) return;
  const endS = (s.points ?? filePoints ?? []).at(-1)?.timeS ?? 0;
  if (endS <= WORKLOAD_DURATION_MAX_S) return;
  const where = s.file !== undefined ? ` (${s.file})` : '';
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid workload spec: the rate curve${where} ends at ${endS} s, more than ${WORKLOAD_DURATION_MAX_S} s (31 days): ` +
      'write its times in seconds (from milliseconds: divide by 1000), or set durationS or maxRequests',
    { endS, maxS: WORKLOAD_DURATION_MAX_S },
  );
}

/**
 * Stages with no durationS or maxRequests run to their sum: bounded as durationS is (and as a rate
 * curve's end is), since `--stages 0.00001:1e12` under a control loop ticked through 31,000 years.
 */
function checkStagesEnd(s: WorkloadSpec): void {
  if (s.durationS !== undefined || s.maxRequests !== undefined) return;
  if (s.kind !== 'poisson' && s.kind !== 'gamma' && s.kind !== 'constant') return;
  const endS = (s.stages ?? []).reduce((sum, stage) => sum + stage.durationS, 0);
  if (endS <= WORKLOAD_DURATION_MAX_S) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid workload spec: the stages (--stages) last ${endS} s, more than ${WORKLOAD_DURATION_MAX_S} s (31 days): ` +
      'write their lengths in seconds, or set durationS (--duration) or maxRequests (--requests)',
    { param: 'workload.stages', endS, maxS: WORKLOAD_DURATION_MAX_S },
  );
}

/**
 * A ServeGen replay with no durationS or maxRequests runs to the file's end: bounded as durationS is.
 * ServeGen's own files span 1 or 14 days, but a file whose stamps are not seconds (a window at
 * 1e9) spanned 31 years, through which a control loop ticked without end. Cut by maxRequests alone,
 * it ends at its last request, which must be expected within the 31 days (`expectedWithin`: the
 * requests expected in the replay's first seconds), as checkCountSpan holds the synthetic kinds to;
 * `--requests 1000` of that file (600 requests in its first window) ran 31 years too. Multi-model
 * passes no `expectedWithin`: its count is not checked here.
 */
function checkServegenSpan(
  s: { durationS?: number | undefined; maxRequests?: number | undefined; startH: number },
  data: ServegenData,
  expectedWithin?: (durationS: number) => number,
): void {
  if (s.durationS !== undefined) return;
  const spanS = data.endS - (data.firstS + s.startH * 3600);
  if (spanS <= WORKLOAD_DURATION_MAX_S) return;
  if (s.maxRequests !== undefined) {
    if (expectedWithin === undefined) return;
    const within = expectedWithin(WORKLOAD_DURATION_MAX_S);
    if (within >= s.maxRequests) return;
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid workload spec: maxRequests (--requests) ${s.maxRequests} of ${data.source}, which spans ${spanS} s from ` +
        `startH (--start-h) ${s.startH}, would run past ${WORKLOAD_DURATION_MAX_S} s (31 days): about ` +
        `${fmtCount(Math.floor(within))} requests are expected by then; lower maxRequests, write its timestamp_s in ` +
        `seconds, or set durationS (--duration) of at most ${WORKLOAD_DURATION_MAX_S}`,
      { param: 'workload.maxRequests', spanS, expectedRequests: within, maxS: WORKLOAD_DURATION_MAX_S },
    );
  }
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid workload spec: ${data.source} spans ${spanS} s from startH (--start-h) ${s.startH}, more than ` +
      `${WORKLOAD_DURATION_MAX_S} s (31 days): write its timestamp_s in seconds, or set durationS (--duration) or maxRequests (--requests)`,
    { param: 'workload.durationS', spanS, maxS: WORKLOAD_DURATION_MAX_S },
  );
}

/**
 * When a workload cut only by maxRequests is expected to send its last request, s; undefined where
 * that is not known before the run (traces and ServeGen: their files bound them; sessions: turns
 * per session vary). A renewal kind's is maxRequests / rate; stages and the time-varying kinds
 * stop at their own end if the count is not reached first.
 */
function expectedEndByCount(
  s: WorkloadSpec,
  filePoints: readonly RatePoint[] | undefined,
): number | undefined {
  const n = s.maxRequests;
  if (n === undefined || s.durationS !== undefined || n === 0) return undefined;
  switch (s.kind) {
    case 'poisson':
    case 'gamma':
    case 'constant': {
      if (s.stages === undefined) return s.rateRps > 0 ? n / s.rateRps : undefined;
      let count = 0;
      let at = 0;
      for (const stage of s.stages) {
        if (stage.rateRps > 0 && count + stage.rateRps * stage.durationS >= n)
          return at + (n - count) / stage.rateRps;
        count += stage.rateRps * stage.durationS;
        at += stage.durationS;
      }
      return at;
    }
    case 'system-prompts':
      return s.rateRps > 0 ? n / s.rateRps : undefined;
    case 'multi-model': {
      if (s.source === 'servegen') return undefined;
      // The models' rates summed: their on/off periods only make the count arrive later.
      const rate = s.rateRps ?? (s.modelRatesRps ?? []).reduce((a, b) => a + b, 0);
      return rate > 0 ? n / rate : undefined;
    }
    case 'sinusoid':
    case 'bursts':
    case 'rate-curve': {
      const profile = profileOf(s, filePoints);
      return Math.min(profile.inverse(n), profile.endS);
    }
    default:
      return undefined;
  }
}

/**
 * A workload cut only by maxRequests lasts at most 31 days too, as one cut by durationS, stages or
 * a curve's end: `sim --rate 0.00001 --requests 100 --autoscaler kpa` simulated 126 days (its loop
 * ticking every 2 s through them) where `--duration` past 31 days is refused.
 */
function checkCountSpan(s: WorkloadSpec, filePoints: readonly RatePoint[] | undefined): void {
  const endS = expectedEndByCount(s, filePoints);
  if (endS === undefined || endS <= WORKLOAD_DURATION_MAX_S) return;
  const days = Number.isFinite(endS)
    ? `about ${fmtCount(endS)} s (${Math.round(endS / 86_400)} days)`
    : 'no end';
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid workload spec: maxRequests (--requests) ${s.maxRequests} at the ${s.kind} workload's rate would take ${days} ` +
      `of simulated time to arrive, more than ${WORKLOAD_DURATION_MAX_S} s (31 days): raise the rate, lower maxRequests, ` +
      `or set durationS (--duration) of at most ${WORKLOAD_DURATION_MAX_S}`,
    { param: 'workload.maxRequests', expectedEndS: endS, maxS: WORKLOAD_DURATION_MAX_S },
  );
}

/** `1,234,567`: counts in messages. */
function fmtCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'unbounded';
}

/**
 * The requests an open-loop workload is expected to send, before maxRequests cuts it, with how
 * that figure was reached; undefined for a trace (its file bounds it) and for the ServeGen kinds
 * until their file is read (`servegen`: the file bounds the span, not the rate, which --scale
 * multiplies). Sessions count one request per session (each has at least one turn).
 */
function expectedRequests(
  s: WorkloadSpec,
  filePoints: readonly RatePoint[] | undefined,
  servegen: ServegenData | undefined,
): { count: number; how: string } | undefined {
  const d = s.durationS;
  const over = (rate: number, rateName: string) => ({
    count: d === undefined ? Number.POSITIVE_INFINITY : rate * d,
    how: `${rateName} ${rate} x durationS (--duration) ${d ?? 'unset'}`,
  });
  switch (s.kind) {
    case 'poisson':
    case 'gamma':
    case 'constant': {
      if (s.stages === undefined) return over(s.rateRps, 'rateRps (--rate)');
      return {
        count: expectedStageRequests(s.stages, d),
        how: `the stages (--stages)${d === undefined ? '' : ` over durationS (--duration) ${d}`}`,
      };
    }
    case 'system-prompts':
      return over(s.rateRps, 'rateRps');
    case 'sessions':
      return over(s.sessionRateRps, 'sessionRateRps');
    case 'multi-model':
      if (s.source === 'servegen') {
        if (servegen === undefined) return undefined;
        const fromS = servegen.firstS + s.startH * 3600;
        const toS = Math.min(servegen.endS, fromS + (d ?? Number.POSITIVE_INFINITY));
        const rate = s.rateRps ?? (s.modelRatesRps ?? []).reduce((a, b) => a + b, 0);
        return {
          count: rate * (toS - fromS),
          how: `${s.rateRps !== undefined ? 'rateRps (--rate)' : 'modelRatesRps summed'} ${rate} over ${toS - fromS} s of ${servegen.source}`,
        };
      }
      return over(s.rateRps ?? (s.modelRatesRps ?? []).reduce((a, b) => a + b, 0), 'rateRps (--rate)');
    case 'sinusoid':
    case 'bursts':
    case 'rate-curve': {
      const profile = profileOf(s, filePoints);
      const endS = Math.min(d ?? Number.POSITIVE_INFINITY, profile.endS);
      return {
        count: Number.isFinite(endS) ? profile.cumulative(endS) : Number.POSITIVE_INFINITY,
        how: `the ${s.kind} rate over ${Number.isFinite(endS) ? `${endS} s` : 'no end'}`,
      };
    }
    case 'servegen': {
      if (servegen === undefined) return undefined;
      const count = servegenExpectedRequests(servegen, s);
      // Only a scale near the largest double overflows a window's rate: its arrivals would all fall
      // at one instant, so it is refused whatever maxRequests says.
      if (!Number.isFinite(count))
        throw invalidArgument(
          'rateScale (--scale)',
          s.rateScale,
          "a scale at which every window's rate stays finite",
        );
      return {
        count,
        how: `the clients' rates x rateScale (--scale) ${s.rateScale} over ${d === undefined ? 'the rest of the file' : `durationS (--duration) ${d}`}`,
      };
    }
    case 'trace':
      return undefined;
    default:
      return assertNever(s, 'workload kind');
  }
}

/**
 * An open-loop workload expected to send more than WORKLOAD_REQUESTS_MAX requests (a high rate over
 * a long duration, with no smaller maxRequests) fails now, naming the fields and their flags,
 * rather than running for years.
 */
function checkRequestCount(
  s: WorkloadSpec,
  filePoints: readonly RatePoint[] | undefined,
  servegen?: ServegenData,
): void {
  const expected = expectedRequests(s, filePoints, servegen);
  if (expected === undefined) return;
  if (Math.min(expected.count, s.maxRequests ?? Number.POSITIVE_INFINITY) <= WORKLOAD_REQUESTS_MAX) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid workload spec: about ${fmtCount(expected.count)} requests (${expected.how}), more than ` +
      `${fmtCount(WORKLOAD_REQUESTS_MAX)}, the most one run holds: lower the rate or durationS (--duration), ` +
      `or cut it with maxRequests (--requests) of at most ${WORKLOAD_REQUESTS_MAX}`,
    { param: 'workload.maxRequests', expectedRequests: expected.count, maxRequests: WORKLOAD_REQUESTS_MAX },
  );
}

/**
 * Validates a workload spec. An unknown `kind` fails with SY_ERR_UNKNOWN_NAME listing the kinds;
 * anything else wrong (unknown keys, bad values, no maxRequests/durationS on a synthetic kind) with
 * SY_ERR_INVALID_ARGUMENT naming each offending path.
 */
export function parseWorkloadSpec(input: unknown): WorkloadSpec {
  if (typeof input === 'object' && input !== null && 'kind' in input) {
    const kind = (input as { kind: unknown }).kind;
    if (typeof kind !== 'string' || !(WORKLOAD_KINDS as readonly string[]).includes(kind)) {
      throw unknownName('workload kind', String(kind), WORKLOAD_KINDS);
    }
  }
  const result = workloadSpecSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => {
    const path = ['workload', ...i.path.map(String)].join('.');
    return `${path}: ${i.message}`;
  });
  const first = result.error.issues[0];
  throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid workload spec: ${problems.join('; ')}`, {
    param: ['workload', ...(first?.path.map(String) ?? [])].join('.'),
    issues: problems,
  });
}

/**
 * Builds the request stream a spec describes. The spec is validated first (see parseWorkloadSpec).
 * Trace files (kind `trace`, empirical lengths) are read now, so a missing file fails here and not
 * mid-simulation. The result is lazy and re-iterable: every iteration replays the same requests,
 * drawn from `rng.fork('workload')` (the caller's rng is not advanced).
 */
export function createWorkload(spec: WorkloadSpecInput | WorkloadSpec, rng: Rng): RequestSource {
  const s = parseWorkloadSpec(spec);
  // Files are read (and a curve checked) now, so a bad one fails before the run starts.
  const points = s.kind === 'rate-curve' && s.file !== undefined ? readRateCurve(s.file) : undefined;
  if (s.kind === 'rate-curve') checkCurveEnd(s, points);
  checkStagesEnd(s);
  checkRequestCount(s, points);
  checkCountSpan(s, points);
  const root = rng.fork('workload');
  const load = cachedLengthsLoader();
  switch (s.kind) {
    case 'trace':
      return traceReplay(s).source;
    case 'poisson':
    case 'gamma':
    case 'constant':
      preload(load, s.input, s.output);
      return restartable(() => renewalRequests(s, root, load));
    case 'system-prompts':
      preload(load, s.suffix, s.output);
      return restartable(() => systemPromptRequests(s, root, load));
    case 'sessions':
      preload(load, s.turns, s.userTokens, s.output);
      return restartable(() => sessionRequests(s, root, load));
    case 'sinusoid':
    case 'bursts':
    case 'rate-curve': {
      preload(load, s.input, s.output);
      profileOf(s, points);
      return restartable(() => timeVaryingRequests(s, root, load, points));
    }
    case 'servegen': {
      const data = readServegen(s.file);
      checkReplay(data, s);
      checkServegenSpan(s, data, (durationS) => servegenExpectedRequests(data, { ...s, durationS }));
      checkRequestCount(s, undefined, data);
      preload(load, s.input, s.output);
      return restartable(() => servegenRequests(s, data, root, load));
    }
    case 'multi-model': {
      // The ServeGen file is read (and the span checked) now, so a bad one fails before the run.
      const data = s.source === 'servegen' ? readServegen(s.servegenFile) : undefined;
      if (data !== undefined) {
        rankedClients(s, data);
        checkServegenSpan(s, data);
        checkRequestCount(s, undefined, data);
      }
      preload(load, s.input, s.output);
      return restartable(() => multiModelRequests(s, root, load, data));
    }
    default:
      return assertNever(s, 'workload kind');
  }
}

/** A trace replay's requests, and the format its file was read in. */
export interface TraceReplay {
  readonly source: RequestSource;
  readonly format: TraceFormat;
}

/** The replay of a validated trace spec; the file is read now (only as far as the replay goes). */
export function traceReplay(s: Extract<WorkloadSpec, { kind: 'trace' }>): TraceReplay {
  // Read only as far as the replay goes (trace-source.ts slices the same way).
  const trace = readTrace(s.trace, s.format, traceLimit(s.startS, s.durationS, s.maxRequests));
  checkReplaySpan(trace.records, s);
  const source = traceRequests(trace, {
    rateScale: s.rateScale,
    startS: s.startS,
    ...(s.durationS === undefined ? {} : { durationS: s.durationS }),
    ...(s.maxRequests === undefined ? {} : { maxRequests: s.maxRequests }),
    model: s.model,
    tenant: s.tenant,
    priority: s.priority,
    ...(s.slo === undefined ? {} : { slo: s.slo }),
    declaredMaxTokens: s.declaredMaxTokens,
  });
  return { source, format: trace.format };
}

/**
 * A trace replay lasts at most WORKLOAD_DURATION_MAX_S of simulated time, as `--duration` does: at
 * `--rate-scale 1e-6` an hour's trace spreads over a century, and a control loop ticking through it
 * (every 2 s) never finished. Found from the records (sorted) without building a request.
 */
function checkReplaySpan(records: readonly TraceRecord[], s: Extract<WorkloadSpec, { kind: 'trace' }>): void {
  const startMs = s.startS * 1000;
  const first = firstAtOrAfter(records, startMs);
  const endMs = s.durationS === undefined ? Number.POSITIVE_INFINITY : startMs + s.durationS * 1000;
  const last = Math.min(firstAtOrAfter(records, endMs), first + (s.maxRequests ?? records.length)) - 1;
  if (last < first) return;
  const spanS = ((records[last] as TraceRecord).arrivalMs - startMs) / 1000 / s.rateScale;
  if (spanS <= WORKLOAD_DURATION_MAX_S) return;
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid rateScale (--rate-scale) '${s.rateScale}': expected a replay of at most ${WORKLOAD_DURATION_MAX_S} s ` +
      `(31 days) of simulated time; its last request would arrive at ${Math.round(spanS)} s: raise --rate-scale, ` +
      'or cut the trace with --duration or --requests',
    { param: 'rateScale', replaySpanS: spanS, maxS: WORKLOAD_DURATION_MAX_S },
  );
}

/** Count, span (first to last arrival) and mean rate of the requests a replay sends. */
export interface ReplayStats {
  readonly requests: number;
  readonly spanS: number;
  /** (requests - 1) / spanS: arrivals per second between the first and the last; 0 with under 2 requests, Infinity when all arrive at once. */
  readonly rateRps: number;
}

/** ReplayStats of arrival times in ms (in order, as a replay sends them). */
export function replayStats(arrivalsMs: Iterable<number>): ReplayStats {
  let requests = 0;
  let first = 0;
  let last = 0;
  for (const ms of arrivalsMs) {
    if (requests === 0) first = ms;
    last = ms;
    requests++;
  }
  const spanS = (last - first) / 1000;
  const rateRps = requests < 2 ? 0 : spanS > 0 ? (requests - 1) / spanS : Number.POSITIVE_INFINITY;
  return { requests, spanS, rateRps };
}

/** The arrival unit of the formats whose stamps are plain numbers (Azure's are wall-clock dates). */
const TRACE_UNITS: Partial<Record<TraceFormat, string>> = { mooncake: 'ms', vidur: 's' };
/** Fewer requests than this are too few to judge a rate by. */
export const UNIT_CHECK_MIN_REQUESTS = 100;
/** Above this mean rate (or all requests within 1 s) a replay is taken as stamped in the next-larger unit. */
export const UNIT_CHECK_DENSE_RPS = 1000;
/**
 * Below this mean rate (1 request a minute) a replay is taken as stamped in the next-smaller unit.
 * Not 1 an hour: a real trace at 5.5 req/s (Splitwise conv) in ms read as s replays at 20 an hour.
 */
export const UNIT_CHECK_SPARSE_RPS = 1 / 60;

/**
 * A one-line warning when a replay's rate is implausible for its format's time unit (see
 * docs/workloads.md, "Trace files"), else undefined. Judged on what is replayed, after --rate-scale
 * (`rateScale`), so a file already rescaled does not warn; the fix named keeps that scale.
 */
export function traceUnitWarning(
  file: string,
  format: TraceFormat,
  stats: ReplayStats,
  rateScale: number,
): string | undefined {
  const unit = TRACE_UNITS[format];
  if (unit === undefined || stats.requests < UNIT_CHECK_MIN_REQUESTS) return undefined;
  const rate = describeReplayRate(stats);
  const dense = stats.rateRps > UNIT_CHECK_DENSE_RPS || stats.spanS <= 1;
  if (dense) {
    const other = unit === 'ms' ? 'seconds' : 'a unit 1000x larger';
    return (
      `warning: trace ${file}: ${rate} is implausibly dense for ${format} stamps in ${unit}; ` +
      `if they are in ${other}, --rate-scale ${fmtScale(rateScale * 0.001)} replays it as meant`
    );
  }
  if (stats.rateRps < UNIT_CHECK_SPARSE_RPS) {
    const other = unit === 's' ? 'milliseconds' : 'microseconds';
    return (
      `warning: trace ${file}: ${rate} is implausibly sparse for ${format} stamps in ${unit}; ` +
      `if they are in ${other}, --rate-scale ${fmtScale(rateScale * 1000)} replays it as meant`
    );
  }
  return undefined;
}

/** "6 requests over 5 s, 1 req/s", for headers and warnings. */
export function describeReplayRate(stats: ReplayStats): string {
  const n = `${stats.requests} request${stats.requests === 1 ? '' : 's'}`;
  if (stats.requests < 2) return n;
  if (stats.spanS === 0) return `${n} all at the same instant`;
  return `${n} over ${fmtFigure(stats.spanS)} s, ${fmtFigure(stats.rateRps)} req/s`;
}

/** Up to 3 significant digits, no exponent for everyday sizes. */
function fmtFigure(x: number): string {
  if (x >= 100) return String(Math.round(x));
  return String(Number(x.toPrecision(3)));
}

function fmtScale(x: number): string {
  return String(Number(x.toPrecision(6)));
}

/** What a trace replay of [startS, startS + durationS), at most maxRequests requests, needs read. */
export function traceLimit(
  startS: number | undefined,
  durationS: number | undefined,
  maxRequests: number | undefined,
): TraceReadLimit {
  const startMs = (startS ?? 0) * 1000;
  return {
    startMs,
    ...(durationS === undefined ? {} : { endMs: startMs + durationS * 1000 }),
    ...(maxRequests === undefined ? {} : { maxRecords: maxRequests }),
  };
}

/**
 * Reads the traces behind empirical distributions now: generators are lazy, so otherwise a missing
 * file would surface only on the first next(). The loader's cache serves every later iteration.
 */
function preload(load: LengthsLoader, ...dists: readonly LengthDist[]): void {
  for (const d of dists) if (d.kind === 'empirical') load(d.trace, d.format);
}
