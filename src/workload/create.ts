/**
 * The one entry point: a workload spec (plain object, e.g. from YAML) and a seeded Rng in, a lazy
 * RequestSource out.
 */
import { assertNever } from '../core/assert.ts';
import { SwitchyardError, unknownName } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import { restartable } from './common.ts';
import { cachedLengthsLoader, type LengthsLoader } from './lengths.ts';
import { multiModelRequests, rankedClients } from './multi-model.ts';
import { readRateCurve } from './rate-curve-file.ts';
import { checkReplay, readServegen, servegenRequests } from './servegen.ts';
import { sessionRequests, systemPromptRequests } from './shared-prefix.ts';
import {
  type LengthDist,
  WORKLOAD_KINDS,
  type WorkloadSpec,
  type WorkloadSpecInput,
  workloadSpecSchema,
} from './spec.ts';
import { renewalRequests } from './synthetic.ts';
import { profileOf, timeVaryingRequests } from './time-varying.ts';
import { traceRequests } from './trace-source.ts';
import { readTrace } from './traces/read.ts';
import type { TraceReadLimit } from './traces/text.ts';
import type { RequestSource } from './types.ts';

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
  const root = rng.fork('workload');
  const load = cachedLengthsLoader();
  switch (s.kind) {
    case 'trace':
      // Read only as far as the replay goes (trace-source.ts slices the same way).
      return traceRequests(readTrace(s.trace, s.format, traceLimit(s.startS, s.durationS, s.maxRequests)), {
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
      // Files are read (and a curve checked) now, so a bad one fails before the run starts.
      const points = s.kind === 'rate-curve' && s.file !== undefined ? readRateCurve(s.file) : undefined;
      preload(load, s.input, s.output);
      profileOf(s, points);
      return restartable(() => timeVaryingRequests(s, root, load, points));
    }
    case 'servegen': {
      const data = readServegen(s.file);
      checkReplay(data, s);
      preload(load, s.input, s.output);
      return restartable(() => servegenRequests(s, data, root, load));
    }
    case 'multi-model': {
      // The ServeGen file is read (and the span checked) now, so a bad one fails before the run.
      const data = s.source === 'servegen' ? readServegen(s.servegenFile) : undefined;
      if (data !== undefined) rankedClients(s, data);
      preload(load, s.input, s.output);
      return restartable(() => multiModelRequests(s, root, load, data));
    }
    default:
      return assertNever(s, 'workload kind');
  }
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
