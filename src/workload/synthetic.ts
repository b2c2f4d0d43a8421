/**
 * Poisson, Gamma and constant-rate workloads without shared prefixes, at one rate or in stages. The hot loop allocates only the request
 * object and its id string: lengths land in a reused PairSampler and every request shares the
 * frozen NO_PREFIX chain, so a million requests cost well under a second.
 */
import { invalidArgument } from '../core/errors.ts';
import { NO_PREFIX } from '../core/request.ts';
import type { Rng } from '../core/rng.ts';
import { type ArrivalProcess, constantArrivals, gammaArrivals, poissonArrivals } from './arrivals.ts';
import { buildRequest, defaultsOf, type RequestDefaults } from './common.ts';
import { type LengthsLoader, type PairSampler, pairSampler } from './lengths.ts';
import { idleStagesProblem, type RateStage, STAGES_MAX, type WorkloadSpecOf } from './spec.ts';
import type { TwinRequest } from './types.ts';

/** When a generated stream stops: whichever comes first. */
export interface StreamLimits {
  /** Requests to emit at most (Infinity for no cap). */
  readonly maxRequests: number;
  /** Arrivals at or after this time end the stream (Infinity for no cap). */
  readonly durationMs: number;
}

/** The limits a spec asks for, Infinity where unset. */
export function limitsOf(spec: {
  maxRequests?: number | undefined;
  durationS?: number | undefined;
}): StreamLimits {
  return {
    maxRequests: spec.maxRequests ?? Number.POSITIVE_INFINITY,
    durationMs: spec.durationS === undefined ? Number.POSITIVE_INFINITY : spec.durationS * 1000,
  };
}

/** Requests from a renewal arrival process with independent lengths, ids r0, r1, … */
export function* independentRequests(
  arrivals: ArrivalProcess,
  lengths: PairSampler,
  defaults: RequestDefaults,
  limits: StreamLimits,
): Generator<TwinRequest> {
  const { maxRequests, durationMs } = limits;
  let t = 0;
  for (let i = 0; i < maxRequests; i++) {
    t += arrivals.nextGapMs();
    if (t >= durationMs) return;
    lengths.sample();
    yield buildRequest(defaults, i, lengths.inputTokens, lengths.outputTokens, t, NO_PREFIX, undefined);
  }
}

/** The renewal kinds: one arrival process per rate. */
export type RenewalSpec = WorkloadSpecOf<'poisson' | 'gamma' | 'constant'>;

/**
 * A Poisson, Gamma or constant-rate workload from its validated spec; `rng` is used as this
 * stream's root. A single-rate Poisson or Gamma stream is the renewal process itself (its first
 * arrival one gap after 0); constant rates and stages go through arrivalTimesMs.
 */
export function renewalRequests(spec: RenewalSpec, rng: Rng, load: LengthsLoader): Generator<TwinRequest> {
  const arrivalRng = rng.fork('arrivals');
  const lengths = pairSampler(spec.input, spec.output, rng.fork('lengths'), load);
  const defaults = defaultsOf(spec);
  const limits = limitsOf(spec);
  if (spec.kind !== 'constant' && spec.stages === undefined) {
    return independentRequests(processAt(spec, spec.rateRps, arrivalRng), lengths, defaults, limits);
  }
  const stages = spec.stages ?? [{ rateRps: spec.rateRps, durationS: Number.POSITIVE_INFINITY }];
  const times = arrivalTimesMs(stages, (rateRps) => processAt(spec, rateRps, arrivalRng), spec.kind);
  return timedRequests(times, lengths, defaults, limits);
}

function processAt(spec: RenewalSpec, rateRps: number, rng: Rng): ArrivalProcess {
  switch (spec.kind) {
    case 'poisson':
      return poissonArrivals(rateRps, rng);
    case 'gamma':
      return gammaArrivals(rateRps, spec.cv, rng);
    case 'constant':
      return constantArrivals(rateRps);
  }
}

/**
 * Arrival times of stages run back to back: stage i covers [start_i, start_i + durationS_i) and
 * its arrivals come from a fresh process at its rate, started at start_i. A random process's first
 * arrival is one gap after the start; a constant one's k-th arrival is at start + k * gap exactly
 * (multiplied, not summed, so a 600 s stage at 8 req/s holds exactly 4800 arrivals).
 */
export function* arrivalTimesMs(
  stages: readonly RateStage[],
  processFor: (rateRps: number) => ArrivalProcess,
  kind: RenewalSpec['kind'],
): Generator<number> {
  let startMs = 0;
  for (const stage of stages) {
    const endMs = startMs + stage.durationS * 1000;
    if (stage.rateRps === 0) {
      // An idle stretch: nothing arrives, and the next stage starts at its end.
      startMs = endMs;
      continue;
    }
    if (kind === 'constant') {
      const gapMs = 1000 / stage.rateRps;
      for (let k = 0; ; k++) {
        const t = startMs + k * gapMs;
        if (t >= endMs) break;
        yield t;
      }
    } else {
      const process = processFor(stage.rateRps);
      for (let t = startMs + process.nextGapMs(); t < endMs; t += process.nextGapMs()) yield t;
    }
    startMs = endMs;
  }
}

/** Requests at given arrival times (non-decreasing) with independent lengths, ids r0, r1, … */
export function* timedRequests(
  timesMs: Iterable<number>,
  lengths: PairSampler,
  defaults: RequestDefaults,
  limits: StreamLimits,
): Generator<TwinRequest> {
  const { maxRequests, durationMs } = limits;
  let i = 0;
  for (const t of timesMs) {
    if (i >= maxRequests || t >= durationMs) return;
    lengths.sample();
    yield buildRequest(defaults, i, lengths.inputTokens, lengths.outputTokens, t, NO_PREFIX, undefined);
    i++;
  }
}

/** The same workload with every rate (and every stage's rate) multiplied by `k`; for goodput sweeps. */
export function scaleRenewalRate<S extends RenewalSpec>(spec: S, k: number): S {
  const stages = spec.stages?.map((s) => ({ rateRps: s.rateRps * k, durationS: s.durationS }));
  return { ...spec, rateRps: spec.rateRps * k, ...(stages !== undefined ? { stages } : {}) };
}

/** A renewal workload's rate for labels: `8 req/s`, or its stages as `stages 8:600,20:600 (req/s:s)`. */
export function describeRate(spec: RenewalSpec): string {
  if (spec.stages === undefined) return `${spec.rateRps} req/s`;
  return `stages ${formatStages(spec.stages)} (req/s:s)`;
}

/** Stages as the --stages flag writes them: `rate:seconds,rate:seconds`. */
export function formatStages(stages: readonly RateStage[]): string {
  return stages.map((s) => `${s.rateRps}:${s.durationS}`).join(',');
}

/** A stage's number in decimal: Number() alone would read '0x10' as 16 and ' ' as 0. */
const STAGE_NUMBER_RE = /^\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;

function stageNumber(text: string): number {
  const s = text.trim();
  return STAGE_NUMBER_RE.test(s) ? Number(s) : Number.NaN;
}

/**
 * Parses `--stages`: comma-separated `rate:seconds` pairs, e.g. `8:600,20:600` (8 req/s for 600 s,
 * then 20 req/s for 600 s); rate 0 is an idle stretch (`8:60,0:120,8:60`), refused as the last stage
 * or as every stage (`idleStagesProblem`). A malformed list fails with SY_ERR_INVALID_ARGUMENT naming the pair
 * (an empty one, from a stray comma, by its position in the list).
 */
export function parseStages(text: string, param = 'stages'): RateStage[] {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length > STAGES_MAX) throw invalidArgument(param, text, `at most ${STAGES_MAX} stages`);
  const stages = parts.map((part, i) => {
    if (part === '')
      throw invalidArgument(
        param,
        text,
        `rate:seconds pairs separated by single commas, e.g. 8:600,20:600 (stage ${i + 1} of ${parts.length} is empty)`,
      );
    const match = /^([^:]+):([^:]+)$/.exec(part);
    const rateRps = stageNumber(match?.[1] ?? '');
    const durationS = stageNumber(match?.[2] ?? '');
    if (
      match === null ||
      !(rateRps >= 0 && Number.isFinite(rateRps)) ||
      !(durationS > 0 && Number.isFinite(durationS))
    ) {
      throw invalidArgument(
        param,
        part,
        'rate:seconds with decimal numbers, a rate >= 0 (req/s) and a positive duration (s), e.g. 8:600, or 0:60 for an idle stretch (stages are comma-separated)',
      );
    }
    return { rateRps, durationS };
  });
  const problem = idleStagesProblem(stages);
  if (problem !== undefined) throw invalidArgument(param, text, problem);
  return stages;
}
