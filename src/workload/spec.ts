/**
 * The workload spec: a plain, JSON/YAML-friendly discriminated union on `kind`, validated by zod.
 * Every object is strict (an unknown key fails, no silent defaults for typos). Defaults are filled
 * by the schema, so `WorkloadSpecInput` is what a user writes and `WorkloadSpec` what the
 * generators receive.
 */
import { z } from 'zod';
import { catalogueModelSchema } from '../model/names-schema.ts';
import { ARRIVAL_CV_MAX, ARRIVAL_CV_MIN } from './arrivals.ts';
import { declaredMaxTokensSchema } from './declared.ts';

const tokenCount = z.number().int().nonnegative();
const positive = z.number().positive().finite();
/**
 * An inter-arrival coefficient of variation. Past these bounds 1 / cv^2 overflows to Infinity or
 * underflows to 0, every Gamma draw is NaN, and the run hung on NaN arrival times.
 */
const arrivalCv = positive
  .min(ARRIVAL_CV_MIN, {
    message: `an inter-arrival cv (--cv) of at least ${ARRIVAL_CV_MIN} (its Gamma shape 1/cv^2 must be finite)`,
  })
  .max(ARRIVAL_CV_MAX, {
    message: `an inter-arrival cv (--cv) of at most ${ARRIVAL_CV_MAX} (beyond it a renewal process sends about cv^2/7 arrivals at one instant before its first gap)`,
  });

/** Trace formats, as in src/workload/types.ts. */
export const traceFormatSchema = z.enum(['azure', 'mooncake', 'vidur']);

/** The keys each length distribution kind takes: required, then optional. */
const LENGTH_DIST_KEYS = {
  fixed: [['tokens'], []],
  uniform: [['lo', 'hi'], []],
  lognormal: [
    ['mean', 'cv'],
    ['min', 'max'],
  ],
  normal: [
    ['mean', 'stdDev'],
    ['min', 'max'],
  ],
  empirical: [['trace'], ['format', 'column']],
} as const satisfies Record<string, readonly [readonly string[], readonly string[]]>;

/** `a, b and c` (or `a, b or c`). */
function listed(words: readonly string[], conjunction: 'and' | 'or' = 'and'): string {
  return words.length <= 1
    ? (words[0] ?? '')
    : `${words.slice(0, -1).join(', ')} ${conjunction} ${words.at(-1)}`;
}

/**
 * For a distribution written without its kind, what its keys say it is (`{ lo, hi }` is uniform),
 * or, for a mean alone, the two ways to write one: a fixed length, or a spread around it.
 */
function kindHint(keys: readonly string[]): string {
  if (keys.length === 1 && keys[0] === 'mean')
    return ': a mean alone is { kind: fixed, tokens: <mean> } (every request that long), or give its spread: { kind: normal, mean, stdDev } or { kind: lognormal, mean, cv }';
  const fits = Object.entries(LENGTH_DIST_KEYS).filter(([, [required, optional]]) => {
    const allowed: readonly string[] = [...required, ...optional];
    return required.every((k) => keys.includes(k)) && keys.every((k) => allowed.includes(k));
  });
  return fits.length === 1 ? `: these keys are ${fits[0]?.[0]}'s, so add kind: ${fits[0]?.[0]}` : '';
}

/**
 * One sentence for a length distribution of the wrong shape (an unknown kind, a key its kind does
 * not take, or a required key left out), e.g. "uniform takes lo and hi; got min and max", with the
 * path it is about (`kind`, or the distribution itself), or undefined when the shape is right and
 * the values are left to the schema.
 */
export function lengthDistShapeProblem(value: unknown): { path: string[]; message: string } | undefined {
  const kinds = listed(Object.keys(LENGTH_DIST_KEYS), 'or');
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return {
      path: [],
      message:
        `a length distribution is an object with a kind (${kinds})` +
        (typeof value === 'number'
          ? `: for ${value} tokens in every request, { kind: fixed, tokens: ${value} }`
          : ''),
    };
  const { kind, ...rest } = value as Record<string, unknown>;
  if (typeof kind !== 'string' || !Object.hasOwn(LENGTH_DIST_KEYS, kind))
    return {
      path: ['kind'],
      message:
        `kind must be ${kinds}${kind === undefined ? '' : ` (got ${JSON.stringify(kind)})`}` +
        (kind === undefined ? kindHint(Object.keys(rest)) : ''),
    };
  const [required, optional] = LENGTH_DIST_KEYS[kind as keyof typeof LENGTH_DIST_KEYS];
  const given = Object.keys(rest);
  const allowed: readonly string[] = [...required, ...optional];
  if (given.every((k) => allowed.includes(k)) && required.every((k) => given.includes(k))) return undefined;
  const takes = `${kind} takes ${listed(required)}${optional.length > 0 ? `, optionally ${listed(optional)}` : ''}`;
  return { path: [], message: `${takes}; got ${given.length > 0 ? listed(given) : 'no other key'}` };
}

/**
 * A distribution of token counts (or, for `turns`, of counts). `empirical` samples a column of a
 * trace's records (`column` defaults to the role: input-like roles read `inputTokens`, `output`
 * reads `outputTokens`); it also accepts Vidur length-statistics files that have no arrival times.
 */
const lengthDistUnion = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('fixed'), tokens: tokenCount }),
  z
    .strictObject({ kind: z.literal('uniform'), lo: tokenCount, hi: tokenCount })
    .refine((d) => d.lo <= d.hi, { message: 'lo must be <= hi', path: ['hi'] }),
  z
    .strictObject({
      kind: z.literal('lognormal'),
      /** Mean of the distribution before clamping and rounding. */
      mean: positive,
      /**
       * Coefficient of variation (stddev / mean); 0 means always `mean`. At most 1e150: past it
       * cv^2 overflows, the log-normal's sigma is Infinity and every length NaN.
       */
      cv: z.number().nonnegative().finite().max(1e150, {
        message: 'a length cv of at most 1e150 (its square must be finite: every length was NaN)',
      }),
      min: tokenCount.default(1),
      max: tokenCount.optional(),
    })
    .refine((d) => d.max === undefined || d.min <= d.max, { message: 'min must be <= max', path: ['max'] }),
  z
    .strictObject({
      kind: z.literal('normal'),
      /**
       * A normal distribution by its mean and standard deviation, drawn, clipped to [min, max] and
       * rounded, as inference-perf's `normal` lengths (mean, std_dev, min, max) draw them. llmperf's
       * --mean/--stddev-input-tokens truncate instead and redraw below 1: under half a token apart on
       * average, and the same wherever the mean is a few standard deviations above 0.
       */
      mean: positive,
      stdDev: z.number().nonnegative().finite(),
      min: tokenCount.default(1),
      max: tokenCount.optional(),
    })
    .refine((d) => d.max === undefined || d.min <= d.max, { message: 'min must be <= max', path: ['max'] }),
  z.strictObject({
    kind: z.literal('empirical'),
    /** A trace path or `sample:<name>`. */
    trace: z.string().min(1),
    format: traceFormatSchema.optional(),
    column: z.enum(['input', 'output']).optional(),
  }),
]);

/**
 * A length distribution (lengthDistUnion's kinds). One of the wrong shape fails with one sentence
 * naming its kind's keys (lengthDistShapeProblem) rather than an issue per key; values out of range
 * keep the schema's own messages.
 */
export const lengthDistSchema = z.preprocess((value, ctx) => {
  const problem = lengthDistShapeProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', ...problem });
  return value;
}, lengthDistUnion) as unknown as z.ZodType<
  z.output<typeof lengthDistUnion>,
  z.input<typeof lengthDistUnion>
>;

const sloSchema = z.strictObject({ ttftMs: positive, tpotMs: positive });

/** Fields every kind shares: what the requests say about themselves. */
const requestFields = {
  model: z.string().min(1).default('default'),
  tenant: z.string().min(1).default('default'),
  priority: z.number().int().default(0),
  slo: sloSchema.optional(),
  /** What each request declares as max_tokens: exact, cap:N, factor:K or none (see declared.ts). */
  declaredMaxTokens: declaredMaxTokensSchema,
};

/**
 * The longest a workload may run: 31 days, past the longest public trace (ServeGen's 14 days), the
 * bound `sim --duration` has too. Without it `durationS: 1000000000` (or a duration written in
 * milliseconds) generated arrivals for hours instead of failing.
 */
export const WORKLOAD_DURATION_MAX_S = 31 * 24 * 3600;

/**
 * The most requests one workload may hold (50 million, past a full ServeGen day's 45.9 million).
 * The twin keeps four latency figures per request for exact percentiles (32 bytes, and a sorted
 * copy at the end) and simulates some 20,000 requests a second, so `maxRequests: 1e12` (or
 * `sim --requests 1e12`) would run for years and exhaust memory instead of failing; createWorkload
 * checks an open-loop workload's expected count (rate x duration) against it too.
 */
export const WORKLOAD_REQUESTS_MAX = 50_000_000;

/** Where a workload stops; synthetic kinds must set at least one. */
const limitFields = {
  maxRequests: z
    .number()
    .int()
    .nonnegative()
    .max(
      WORKLOAD_REQUESTS_MAX,
      `at most ${WORKLOAD_REQUESTS_MAX} requests in one run (sim/bench --requests has the same bound)`,
    )
    .optional(),
  durationS: positive
    .max(
      WORKLOAD_DURATION_MAX_S,
      `at most ${WORKLOAD_DURATION_MAX_S} s (31 days); durationS is in seconds (from milliseconds: divide by 1000)`,
    )
    .optional(),
};

const blockTokens = z.number().int().positive().default(16);

const BOUNDED = {
  message: 'set maxRequests or durationS: a synthetic workload never ends on its own',
  path: ['maxRequests'],
};
function bounded(d: { maxRequests?: number | undefined; durationS?: number | undefined }): boolean {
  return d.maxRequests !== undefined || d.durationS !== undefined;
}

/** Most stages one workload may have (a bound on the spec, like every list we accept). */
export const STAGES_MAX = 1000;

/**
 * One stage of a staged run: arrivals at `rateRps` for `durationS` seconds. Rate 0 is an idle
 * stretch (a pause between bursts, time to scale to zero): no arrivals, and the next stage starts
 * `durationS` later. A list must end with a busy stage (`idleStagesProblem`).
 */
export const rateStageSchema = z.strictObject({
  rateRps: z.number().nonnegative().finite(),
  durationS: positive,
});

/**
 * What is wrong with a stage list's idle (rate 0) stages, or undefined: every stage idle (no request
 * would arrive), or an idle last stage. A run ends with its last completion, so an idle stretch at
 * the end would never be simulated (nor would a load generator wait it out): it is refused rather
 * than silently cut.
 */
export function idleStagesProblem(stages: readonly { rateRps: number }[]): string | undefined {
  if (stages.length === 0) return undefined;
  if (stages.every((s) => s.rateRps === 0)) return 'every stage has rate 0: no request would arrive';
  if (stages.at(-1)?.rateRps === 0)
    return (
      `the last stage (${stages.length} of ${stages.length}) has rate 0: a run ends with its last ` +
      'request, so an idle stretch at the end is never simulated; idle stages go before or between busy ones'
    );
  return undefined;
}

/**
 * What the renewal kinds (poisson, gamma, constant) share: one rate, or rate stages run back to
 * back (`stages`, as load tests step their rate). With stages, rateRps is filled with their
 * time-weighted mean (for labels and goodput) and the stages alone place the arrivals; a rateRps
 * written next to stages must equal that mean, so that a validated spec validates again unchanged.
 */
const rateFields = {
  rateRps: positive.optional(),
  stages: z.array(rateStageSchema).min(1).max(STAGES_MAX).optional(),
};

/** A stage list's time-weighted mean rate. */
export function meanStageRateRps(stages: readonly RateStage[]): number {
  let requests = 0;
  let seconds = 0;
  for (const s of stages) {
    requests += s.rateRps * s.durationS;
    seconds += s.durationS;
  }
  return requests / seconds;
}

/**
 * The requests `stages` are expected to send (rate x seconds, summed), cut at `durationS` when
 * given: what the run-size bound (WORKLOAD_REQUESTS_MAX) is checked against, in `sim` and `bench`.
 */
export function expectedStageRequests(stages: readonly RateStage[], durationS: number | undefined): number {
  let count = 0;
  let at = 0;
  for (const stage of stages) {
    const seconds =
      durationS === undefined ? stage.durationS : Math.max(0, Math.min(stage.durationS, durationS - at));
    count += stage.rateRps * seconds;
    at += stage.durationS;
  }
  return count;
}

type RateFields = {
  rateRps?: number | undefined;
  stages?: RateStage[] | undefined;
  maxRequests?: number | undefined;
  durationS?: number | undefined;
};

/** Stages end on their own; otherwise a limit is needed. */
function boundedOrStaged(d: RateFields): boolean {
  return d.stages !== undefined || bounded(d);
}

function rateConsistent(d: RateFields): boolean {
  if (d.stages === undefined) return d.rateRps !== undefined;
  if (d.rateRps === undefined) return true;
  const mean = meanStageRateRps(d.stages);
  return Math.abs(d.rateRps - mean) <= 1e-9 * mean;
}

const RATE = {
  message: 'set rateRps or stages (rateRps next to stages must be their time-weighted mean)',
  path: ['rateRps'],
};

/** Fills rateRps from the stages, so every validated renewal spec has a rate. */
function withRate<T extends RateFields>(d: T): Omit<T, 'rateRps'> & { rateRps: number } {
  const rateRps = d.stages !== undefined ? meanStageRateRps(d.stages) : (d.rateRps as number);
  return { ...d, rateRps };
}

/**
 * The schema of a renewal kind (poisson, gamma, constant): `kind`, the rate fields, the kind's own
 * `extra` fields, input and output lengths, the request and limit fields; bounded or staged, rate
 * consistent, and rateRps filled from the stages (`withRate`). The kinds differ only in `extra` and
 * in how the generator spaces arrivals.
 */
function renewalSpecSchema<K extends string, E extends z.ZodRawShape>(kind: K, extra: E) {
  const fields = z.strictObject({
    kind: z.literal(kind),
    ...rateFields,
    ...extra,
    input: lengthDistSchema,
    output: lengthDistSchema,
    ...requestFields,
    ...limitFields,
  });
  // The rate fields are `fields`' own; TypeScript cannot see that through the generic `extra`.
  type Fields = z.output<typeof fields> & RateFields;
  return fields
    .refine((d) => boundedOrStaged(d as Fields), BOUNDED)
    .refine((d) => rateConsistent(d as Fields), RATE)
    .superRefine((d, ctx) => {
      const problem = idleStagesProblem((d as Fields).stages ?? []);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['stages'], message: problem });
    })
    .transform((d) => withRate(d as Fields));
}

/**
 * Poisson arrivals at `rateRps` (or in `stages`), lengths drawn independently per request, no
 * shared prefixes.
 */
export const poissonSpecSchema = renewalSpecSchema('poisson', {});

/** Gamma-renewal arrivals: mean rate `rateRps`, inter-arrival CV `cv` (1 is Poisson, >1 bursty). */
export const gammaSpecSchema = renewalSpecSchema('gamma', { cv: arrivalCv });

/**
 * Constant-rate arrivals, as load generators that pace requests evenly send them: request k of a
 * stage arrives k / rateRps seconds after the stage starts (the first at its start).
 */
export const constantSpecSchema = renewalSpecSchema('constant', {});

/**
 * Shared system prompts: `groups` prompts of `prefixTokens` each, picked with Zipf popularity
 * (P(group g) ∝ 1 / (g + 1)^zipfExponent; 0 is uniform); each request is its group's prefix plus a
 * unique suffix of `suffix` tokens.
 */
export const systemPromptsSpecSchema = z
  .strictObject({
    kind: z.literal('system-prompts'),
    rateRps: positive,
    cv: arrivalCv.default(1),
    groups: z.number().int().min(1).max(1_000_000),
    prefixTokens: tokenCount,
    zipfExponent: z.number().nonnegative().finite().default(1),
    suffix: lengthDistSchema,
    output: lengthDistSchema,
    blockTokens,
    ...requestFields,
    ...limitFields,
  })
  .refine(bounded, BOUNDED);

/**
 * Multi-turn sessions: sessions start at `sessionRateRps`; each has `turns` turns; turn n's prompt
 * is the previous prompt + the previous answer + a new user message of `userTokens`. Turns are
 * `thinkTimeMeanS` apart on average (exponential, measured from the previous turn's arrival: the
 * generator is open-loop and does not know when answers finish).
 */
export const sessionsSpecSchema = z
  .strictObject({
    kind: z.literal('sessions'),
    sessionRateRps: positive,
    cv: arrivalCv.default(1),
    turns: lengthDistSchema,
    userTokens: lengthDistSchema,
    output: lengthDistSchema,
    thinkTimeMeanS: positive.default(10),
    /** A system prompt shared by every session (0 for none). */
    systemPromptTokens: tokenCount.default(0),
    /** A session ends before a turn whose prompt + answer would exceed this (its first turn always runs). */
    contextTokensMax: z.number().int().positive().default(32_768),
    blockTokens,
    ...requestFields,
    ...limitFields,
  })
  .refine(bounded, BOUNDED);

/** Replay of a trace file or bundled sample; see traceRequests for slicing and scaling. */
export const traceSpecSchema = z.strictObject({
  kind: z.literal('trace'),
  /** A trace path or `sample:<name>`. */
  trace: z.string().min(1),
  format: traceFormatSchema.optional(),
  rateScale: positive.default(1),
  startS: z.number().nonnegative().finite().default(0),
  ...requestFields,
  ...limitFields,
});

// Time-varying kinds (generated in time-varying.ts and servegen.ts). Arrivals come from a unit-rate
// renewal process with inter-arrival CV `cv` (1: a non-homogeneous Poisson process) mapped through
// the integral of the rate, so the expected count in any interval is the rate's integral over it.

/** Most points an inline rate curve may have. */
export const RATE_POINTS_MAX = 100_000;
/** Most ServeGen clients a workload may name. */
export const SERVEGEN_CLIENTS_MAX = 10_000;

const modulatedFields = {
  cv: arrivalCv.default(1),
  input: lengthDistSchema,
  output: lengthDistSchema,
  ...requestFields,
  ...limitFields,
};

/**
 * A sinusoidal rate: rateMinRps at t = 0 (with phaseS 0), rateMaxRps half a period later:
 * λ(t) = mid − amp·cos(2π(t + phaseS) / periodS).
 */
export const sinusoidSpecSchema = z
  .strictObject({
    kind: z.literal('sinusoid'),
    rateMinRps: z.number().nonnegative().finite(),
    rateMaxRps: positive,
    periodS: positive,
    phaseS: z.number().finite().default(0),
    ...modulatedFields,
  })
  .refine((d) => d.rateMinRps <= d.rateMaxRps, {
    message: 'rateMinRps must be <= rateMaxRps',
    path: ['rateMaxRps'],
  })
  .refine(bounded, BOUNDED);

/**
 * A rate linear between (timeS, rateRps) points, from a CSV `file` (time_s,rate) or inline
 * `points`; it ends at the last point unless `repeat`. Rates are multiplied by rateScale.
 */
export const rateCurveSpecSchema = z
  .strictObject({
    kind: z.literal('rate-curve'),
    file: z.string().min(1).optional(),
    points: z
      .array(
        z.strictObject({
          timeS: z.number().nonnegative().finite(),
          rateRps: z.number().nonnegative().finite(),
        }),
      )
      .min(2)
      .max(RATE_POINTS_MAX)
      .optional(),
    rateScale: positive.default(1),
    repeat: z.boolean().default(false),
    ...modulatedFields,
  })
  .refine((d) => (d.file === undefined) !== (d.points === undefined), {
    message: 'set exactly one of file and points',
    path: ['file'],
  })
  .refine((d) => !d.repeat || bounded(d), BOUNDED);

/** Bursts: baseRateRps for gapS seconds, then burstRateRps for burstS seconds, repeated. */
export const burstsSpecSchema = z
  .strictObject({
    kind: z.literal('bursts'),
    baseRateRps: z.number().nonnegative().finite(),
    burstRateRps: positive,
    burstS: positive,
    gapS: positive,
    ...modulatedFields,
  })
  .refine(bounded, BOUNDED);

/**
 * ServeGen per-client windows replayed: in each 600 s window each client's arrivals are a Gamma
 * renewal process at the window's rate (x rateScale) and CV. `startH` hours into the file becomes
 * time 0; durationS (or the file's end) ends the run. `clients` picks clients by id (default all).
 */
export const servegenSpecSchema = z.strictObject({
  kind: z.literal('servegen'),
  /** A ServeGen file (see servegen.ts for the formats) or `sample:servegen-m-small-day2`. */
  file: z.string().min(1),
  rateScale: positive.default(1),
  startH: z.number().nonnegative().finite().default(0),
  clients: z
    .array(z.string().min(1))
    .min(1)
    .max(SERVEGEN_CLIENTS_MAX)
    // A repeated id replayed that client twice from the same seed: every arrival doubled at the
    // same instant, silently.
    .refine((ids) => new Set(ids).size === ids.length, {
      message:
        'each client id at most once (--servegen-clients): a repeated id would replay its arrivals twice',
    })
    .optional(),
  input: lengthDistSchema,
  output: lengthDistSchema,
  ...requestFields,
  ...limitFields,
});

/** Most models a multi-model workload may have (the served ids run m000..m999). */
export const MULTI_MODEL_MAX = 1000;

/**
 * Many models on one cluster, the serverless case (see multi-model.ts): `models` served ids
 * m00..m(N-1), each on a catalogue `base` (default: a fixed mix of 7-8B, 13B and a few 34B bases;
 * `bases` round-robin instead); traffic shares ∝ 1 / (k + 1)^zipfExponent of `rateRps`, or
 * `modelRatesRps` per model. Each model's arrivals are an interrupted Poisson process
 * (`source: on-off`: on for onMeanS on average, off for offMeanS × rate_m00 / rate_k) or a ServeGen
 * client's windows (`source: servegen`), scaled to the model's share.
 */
export const multiModelSpecSchema = z
  .strictObject({
    kind: z.literal('multi-model'),
    models: z.number().int().min(1).max(MULTI_MODEL_MAX),
    bases: z.array(catalogueModelSchema).min(1).max(MULTI_MODEL_MAX).optional(),
    zipfExponent: z.number().nonnegative().finite().default(1),
    rateRps: positive.optional(),
    modelRatesRps: z.array(positive).min(1).max(MULTI_MODEL_MAX).optional(),
    source: z.enum(['on-off', 'servegen']).default('on-off'),
    onMeanS: positive.default(300),
    offMeanS: positive.default(30),
    servegenFile: z.string().min(1).default('sample:servegen-m-small-day2'),
    startH: z.number().nonnegative().finite().default(0),
    input: lengthDistSchema,
    output: lengthDistSchema,
    tenant: requestFields.tenant,
    priority: requestFields.priority,
    slo: requestFields.slo,
    declaredMaxTokens: requestFields.declaredMaxTokens,
    ...limitFields,
  })
  .refine((d) => (d.rateRps === undefined) !== (d.modelRatesRps === undefined), {
    message: 'set exactly one of rateRps (shared by Zipf popularity) and modelRatesRps',
    path: ['rateRps'],
  })
  .refine((d) => d.modelRatesRps === undefined || d.modelRatesRps.length === d.models, {
    message: 'modelRatesRps needs one rate per model',
    path: ['modelRatesRps'],
  })
  .refine((d) => d.bases === undefined || d.bases.length <= d.models, {
    message: 'at most one base per model',
    path: ['bases'],
  })
  .refine((d) => d.source === 'servegen' || bounded(d), BOUNDED);

/** The whole workload spec. */
export const workloadSpecSchema = z.discriminatedUnion('kind', [
  poissonSpecSchema,
  gammaSpecSchema,
  constantSpecSchema,
  systemPromptsSpecSchema,
  sessionsSpecSchema,
  traceSpecSchema,
  sinusoidSpecSchema,
  rateCurveSpecSchema,
  burstsSpecSchema,
  servegenSpecSchema,
  multiModelSpecSchema,
]);

/** The workload kinds, for error messages and CLI help. */
export const WORKLOAD_KINDS = [
  'poisson',
  'gamma',
  'constant',
  'system-prompts',
  'sessions',
  'trace',
  'sinusoid',
  'rate-curve',
  'bursts',
  'servegen',
  'multi-model',
] as const;

/** One rate stage. */
export type RateStage = z.output<typeof rateStageSchema>;
/** A length distribution after validation (defaults filled). */
export type LengthDist = z.output<typeof lengthDistSchema>;
/** A length distribution as written. */
export type LengthDistInput = z.input<typeof lengthDistSchema>;
/** A workload spec after validation (defaults filled). */
export type WorkloadSpec = z.output<typeof workloadSpecSchema>;
/** A workload spec as written by a user or config file. */
export type WorkloadSpecInput = z.input<typeof workloadSpecSchema>;
/** One kind's validated spec. */
export type WorkloadSpecOf<K extends WorkloadSpec['kind']> = Extract<WorkloadSpec, { kind: K }>;
