/**
 * The time-varying workloads of `switchyard sim`: their flags and the spec they build. Kept out of
 * sim-command.ts so that file only registers the flags and calls in here.
 */
import { InvalidArgumentError, Option } from 'commander';
import { assertNever } from '../core/assert.ts';
import { invalidArgument } from '../core/errors.ts';
import { readRateCurve } from '../workload/rate-curve-file.ts';
import { filePath, nonNegativeNumber, positiveNumber, SIM_DURATION_MAX_S } from './parse.ts';

/** The time-varying kinds `--workload` accepts. */
export const TIME_VARYING_WORKLOADS = ['sinusoid', 'rate-curve', 'bursts', 'servegen'] as const;
type Kind = (typeof TIME_VARYING_WORKLOADS)[number];

/** The flags read here, as commander hands them over. */
export interface TimeVaryingFlags {
  workload?: string;
  stages?: unknown;
  rate?: number;
  cv?: number;
  duration?: number;
  requests?: number;
  inputTokens?: number;
  outputTokens?: number;
  rateMin?: number;
  rateMax?: number;
  periodS?: number;
  rateCurve?: string;
  burstRate?: number;
  burstS?: number;
  gapS?: number;
  servegenFile?: string;
  scale?: number;
  startH?: number;
  servegenClients?: string[];
}

/** Flags that belong to one kind only, by commander's attribute name and flag. */
const OWN_FLAGS: Record<Kind, readonly (keyof TimeVaryingFlags)[]> = {
  sinusoid: ['rateMin', 'rateMax', 'periodS'],
  'rate-curve': ['rateCurve'],
  bursts: ['burstRate', 'burstS', 'gapS'],
  servegen: ['servegenFile', 'scale', 'startH', 'servegenClients'],
};

/** The options, in the order --help lists them (each names the kind it belongs to). */
export function timeVaryingOptions(): Option[] {
  const options = [
    new Option('--rate-min <req/s>', 'sinusoid: lowest rate, at t = 0 (required)').argParser(
      nonNegativeNumber,
    ),
    new Option(
      '--rate-max <req/s>',
      'sinusoid: highest rate, half a period in (required, at least --rate-min)',
    ).argParser(positiveNumber),
    new Option(
      '--period-s <s>',
      'sinusoid: period (required; without --duration or --requests the run lasts one period)',
    ).argParser(positiveNumber),
    new Option(
      '--rate-curve <file.csv>',
      'rate curve: CSV of time_s,rate points (s, req/s), linear between them; an optional time_s,rate header and # comment ' +
        'lines; the first point at 0, times increasing, rates >= 0 and not all 0, at least two; arrivals end at the last ' +
        '(implies --workload rate-curve). A bad line fails before the run, naming file:line; trailing rows of rate 0 ' +
        'are warned about without --autoscaler: such a run ends with its last request, so that idle tail is not simulated ' +
        "(under --autoscaler the loop ticks and bills GPU-hours to the curve's end)",
    )
      .argParser(filePath)
      .conflicts('trace'),
    new Option(
      '--burst-rate <req/s>',
      'bursts: rate during a burst (required; --rate, also required, is the rate between bursts)',
    ).argParser(positiveNumber),
    new Option('--burst-s <s>', 'bursts: length of a burst (required)').argParser(positiveNumber),
    new Option(
      '--gap-s <s>',
      'bursts: time between bursts, at --rate (required; without --duration or --requests the run lasts one gap and one burst)',
    ).argParser(positiveNumber),
    new Option(
      '--servegen-file <f>',
      'servegen: per-client 600 s windows (combined CSV, a chunk-N-trace.csv, a directory of them, or sample:servegen-m-small-day2); implies --workload servegen (required with it)',
    )
      .argParser(filePath)
      .conflicts('trace'),
    new Option('--scale <x>', "servegen: multiply every client's rate by x (default 1)").argParser(
      positiveNumber,
    ),
    new Option(
      '--start-h <h>',
      'servegen: start this many hours into the file (default 0; --duration: how long)',
    ).argParser(nonNegativeNumber),
    new Option(
      '--servegen-clients <ids>',
      'servegen: replay only these clients (comma-separated ids; default all)',
    ).argParser((value: string) => {
      const ids = value
        .split(',')
        .map((id) => id.trim())
        .filter((id) => id.length > 0);
      // A repeated id would replay that client twice from the same seed: every arrival doubled.
      if (new Set(ids).size !== ids.length)
        throw new InvalidArgumentError(`'${value}' names a client twice.`);
      return ids;
    }),
  ];
  for (const o of options)
    o.helpGroup('Time-varying workloads (--workload sinusoid, rate-curve, bursts, servegen):');
  return options;
}

/** The kind the flags ask for: `--workload`, or implied by --rate-curve / --servegen-file. */
function kindOf(flags: TimeVaryingFlags): Kind | undefined {
  const named = (TIME_VARYING_WORKLOADS as readonly string[]).includes(flags.workload ?? '')
    ? (flags.workload as Kind)
    : undefined;
  if (named !== undefined) return named;
  if (flags.workload !== undefined) return undefined;
  if (flags.rateCurve !== undefined) return 'rate-curve';
  if (flags.servegenFile !== undefined) return 'servegen';
  return undefined;
}

const FLAG_NAMES: Record<string, string> = {
  rateMin: 'rate-min',
  rateMax: 'rate-max',
  periodS: 'period-s',
  rateCurve: 'rate-curve',
  burstRate: 'burst-rate',
  burstS: 'burst-s',
  gapS: 'gap-s',
  servegenFile: 'servegen-file',
  scale: 'scale',
  startH: 'start-h',
  servegenClients: 'servegen-clients',
};

/** Fails on a flag of another kind (e.g. --period-s with --workload bursts): it would be ignored. */
function checkStrayFlags(flags: TimeVaryingFlags, kind: Kind | undefined): void {
  for (const [k, names] of Object.entries(OWN_FLAGS)) {
    if (k === kind) continue;
    for (const name of names) {
      if (flags[name] !== undefined)
        throw invalidArgument(
          FLAG_NAMES[name] as string,
          flags[name],
          `--${FLAG_NAMES[name]} only with --workload ${k}`,
        );
    }
  }
}

function required<T>(value: T | undefined, flag: string, kind: Kind): T {
  if (value === undefined) throw invalidArgument(flag, 'missing', `--${flag} with --workload ${kind}`);
  return value;
}

/**
 * The workload spec of a time-varying kind, or undefined when the flags ask for none. `limits`
 * carries --requests, --duration and --declared-max-tokens as sim-command builds them.
 */
export function timeVaryingWorkload(
  flags: TimeVaryingFlags,
  limits: Record<string, unknown>,
): Record<string, unknown> | undefined {
  const kind = kindOf(flags);
  checkStrayFlags(flags, kind);
  if (kind === undefined) return undefined;
  if (flags.stages !== undefined)
    throw invalidArgument(
      'stages',
      'given',
      `no --stages with --workload ${kind} (its rate varies on its own)`,
    );
  if (flags.rate !== undefined && kind !== 'bursts')
    throw invalidArgument(
      'rate',
      flags.rate,
      `no --rate with --workload ${kind} (only bursts takes it, as the base rate)`,
    );
  const common = {
    input: { kind: 'fixed', tokens: flags.inputTokens ?? 1024 },
    output: { kind: 'fixed', tokens: flags.outputTokens ?? 128 },
    ...(flags.cv !== undefined && kind !== 'servegen' ? { cv: flags.cv } : {}),
    ...limits,
  };
  if (flags.cv !== undefined && kind === 'servegen')
    throw invalidArgument('cv', flags.cv, 'no --cv with --workload servegen (each window has its own)');
  return specOf(kind, flags, common);
}

/**
 * A rate curve ends at its last point: a --duration past it would be printed as the run's length
 * while the run stopped earlier. (A config file's `repeat: true` loops a curve.)
 */
function checkDurationWithinCurve(file: string, durationS: number | undefined): void {
  if (durationS === undefined) return;
  const endS = readRateCurve(file).at(-1)?.timeS ?? 0;
  if (durationS > endS)
    throw invalidArgument(
      'duration',
      durationS,
      `at most the rate curve's end, ${endS} s (${file} ends there; a config file's workload with repeat: true loops it)`,
    );
}

/**
 * Without --duration or --requests a kind runs for a length its own flags or file imply (a period, a
 * gap and a burst, a curve's last time): it is bounded as --duration is, since `--period-s 1e9` or a
 * curve written in milliseconds would otherwise generate arrivals for hours instead of failing.
 */
function checkImpliedLength(
  param: string,
  value: unknown,
  lengthS: number,
  what: string,
  inSeconds = 'write it in seconds',
): void {
  if (lengthS > SIM_DURATION_MAX_S)
    throw invalidArgument(
      param,
      value,
      `${what} of at most ${SIM_DURATION_MAX_S} s (31 days) without --duration or --requests, got ${lengthS} s: ` +
        `${inSeconds}, or give --duration (at most ${SIM_DURATION_MAX_S}) or --requests`,
    );
}

/** The spec of one kind from its flags; without --duration or --requests a periodic kind runs one period. */
function specOf(
  kind: Kind,
  flags: TimeVaryingFlags,
  common: Record<string, unknown>,
): Record<string, unknown> {
  const unbounded = flags.duration === undefined && flags.requests === undefined;
  switch (kind) {
    case 'sinusoid': {
      const periodS = required(flags.periodS, 'period-s', kind);
      const rateMinRps = required(flags.rateMin, 'rate-min', kind);
      const rateMaxRps = required(flags.rateMax, 'rate-max', kind);
      // Checked here so the message names the flags; the spec's own check names its fields.
      if (rateMaxRps < rateMinRps)
        throw invalidArgument('rate-max', rateMaxRps, `at least --rate-min (${rateMinRps})`);
      if (unbounded) checkImpliedLength('period-s', periodS, periodS, 'a period');
      return {
        kind,
        rateMinRps,
        rateMaxRps,
        periodS,
        ...common,
        ...(unbounded ? { durationS: periodS } : {}),
      };
    }
    case 'bursts': {
      const burstS = required(flags.burstS, 'burst-s', kind);
      const gapS = required(flags.gapS, 'gap-s', kind);
      if (unbounded) checkImpliedLength('gap-s', gapS, burstS + gapS, '--gap-s + --burst-s');
      return {
        kind,
        baseRateRps: required(flags.rate, 'rate', kind),
        burstRateRps: required(flags.burstRate, 'burst-rate', kind),
        burstS,
        gapS,
        ...common,
        ...(unbounded ? { durationS: burstS + gapS } : {}),
      };
    }
    case 'rate-curve': {
      const file = required(flags.rateCurve, 'rate-curve', kind);
      checkDurationWithinCurve(file, flags.duration);
      if (unbounded)
        checkImpliedLength(
          'rate-curve',
          file,
          readRateCurve(file).at(-1)?.timeS ?? 0,
          'a last time_s',
          'write its times in seconds (from milliseconds: divide by 1000)',
        );
      return { kind, file, ...common };
    }
    case 'servegen':
      return {
        kind,
        file: required(flags.servegenFile, 'servegen-file', kind),
        ...(flags.scale !== undefined ? { rateScale: flags.scale } : {}),
        ...(flags.startH !== undefined ? { startH: flags.startH } : {}),
        ...(flags.servegenClients !== undefined ? { clients: flags.servegenClients } : {}),
        ...common,
      };
    default:
      return assertNever(kind, 'time-varying kind');
  }
}
