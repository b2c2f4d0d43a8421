/**
 * A fidelity case: one published end-to-end measurement of a real engine, written so the twin can
 * replay it. YAML or JSON; every object is strict (an unknown key fails, so a typo never turns into
 * a silent default). docs/fidelity.md documents the format field by field.
 *
 * Extension points: `engine` takes exactly the twin's engine options (src/twin/config.ts
 * engineOptionsSchema), so an option the twin learns (an engine profile, say) is accepted here the
 * day it exists; `workload.arrival` is a discriminated union a new arrival kind joins.
 */

import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { readYamlFile } from '../../adapters/yaml-file.ts';
import { SwitchyardError } from '../../core/errors.ts';
import { resolveGpuId } from '../../model/gpus.ts';
import { resolveModelId } from '../../model/models.ts';
import { idleStagesProblem, lengthDistSchema, rateStageSchema, STAGES_MAX } from '../../workload/spec.ts';
import { isSampleRef } from '../../workload/traces/samples.ts';
import { engineOptionsSchema, explainIssues } from '../config.ts';
import { casePrefixSchema } from './prefix.ts';
import { checkCaseContext } from './run-case.ts';

const positive = z.number().positive().finite();

/**
 * Most requests one case may simulate: a bound on a run's memory and time. 20 stages of 600 s at
 * 40 req/s fit (480,000); 240,000 requests saturating a 7B engine ran in 14 s and 270 MB.
 */
export const CASE_REQUESTS_MAX = 500_000;
/** Most concurrent clients of a closed-loop case, and the largest client cap of an open-loop one. */
export const CONCURRENCY_MAX = 4096;

/**
 * zod's error option for a strict object: an unknown key is named with the keys the object takes
 * (`unknown key 'p95'; takes mean, p50, p90, p99`), and a value that is not an object says what
 * one looks like; other problems keep zod's message.
 */
function strictKeys(
  takes: readonly string[],
  example: string,
  hint: (key: string) => string | undefined = () => undefined,
) {
  return {
    error: (issue: { code?: string; keys?: readonly PropertyKey[]; input?: unknown }) => {
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue.keys ?? []).map(String);
        const hints = [...new Set(keys.map(hint).filter((h) => h !== undefined))];
        return (
          `unknown key ${keys.map((k) => `'${k}'`).join(', ')}; takes ${takes.join(', ')}` +
          (hints.length > 0 ? ` (${hints.join('; ')})` : '')
        );
      }
      if (issue.code === 'invalid_type')
        return issue.input === undefined
          ? `required: an object such as ${example}`
          : `expected an object such as ${example}, got ${JSON.stringify(issue.input)}`;
      return undefined;
    },
  };
}

/**
 * What to write instead of a statistic a load tester prints that a latency does not take: the
 * median is p50; other statistics are not compared (so leaving them out loses nothing the run shows).
 */
function statHint(key: string): string | undefined {
  const k = key.toLowerCase().replace(/[\s_-]/g, '');
  if (k === 'median' || k === 'p50.0') return `the median is p50`;
  // `P90`, `p90.0` as a results table prints them: the statistic this format takes, in its spelling.
  const taken = /^p(50|90|95|99)(\.0+)?$/.exec(k)?.[1];
  if (taken !== undefined) return `write p${taken}`;
  if (/^(p\d+(\.\d+)?|min|max|std|stddev|stdev|sd|count|n)$/.test(k))
    return `'${key}' is not compared: leave it out`;
  if (k === 'avg' || k === 'average') return 'the average is mean';
  if (k === 'mean') return 'write mean';
  return undefined;
}

/** Figures of one latency, as a benchmark reports them (any subset; at least one). */
export const latencyFiguresSchema = z
  .strictObject(
    {
      mean: positive.optional(),
      p50: positive.optional(),
      p90: positive.optional(),
      p95: positive.optional(),
      p99: positive.optional(),
    },
    strictKeys(['mean', 'p50', 'p90', 'p95', 'p99 (ms)'], '{ mean: 50, p90: 80 }', statHint),
  )
  .refine((f) => Object.values(f).some((v) => v !== undefined), {
    message: 'give at least one of mean, p50, p90, p95, p99',
  });

/**
 * What to write instead of a measured figure named as a load tester or another tool names it: the
 * same figure under this format's name, or why it is not compared.
 */
function measuredHint(key: string): string | undefined {
  const k = key.toLowerCase().replace(/[\s_-]/g, '');
  const unit = /(ms|s|sec|seconds)$/.exec(k)?.[1];
  const base = unit === undefined ? k : k.slice(0, -unit.length);
  const seconds = unit !== undefined && unit !== 'ms';
  const inMs = (name: string) =>
    seconds ? `${name} is in ms: ${name}: { mean: <seconds x 1000> }` : `write ${name}`;
  if (['ttft', 'timetofirsttoken'].includes(base)) return inMs('ttftMs');
  if (['e2e', 'e2el', 'latency', 'requestlatency', 'e2elatency', 'endtoend'].includes(base))
    return inMs('e2eMs');
  if (['tpot', 'timeperoutputtoken', 'pertoken'].includes(base))
    return `TPOT, (E2E - TTFT) / (output tokens - 1) per request, is ${inMs('perTokenMs').replace('write ', '')}`;
  if (['itl', 'intertokenlatency'].includes(base))
    return (
      "ITL is not compared: the twin times each request's first token and finish, not every token; " +
      "vLLM's mean ITL is the mean TPOT where every request has the same output length, so then give it as perTokenMs: { mean }"
    );
  if (['ntpot', 'normalizedtimeperoutputtoken'].includes(base))
    return 'NTPOT (E2E / output tokens) is not compared: give TPOT as perTokenMs, or E2E as e2eMs';
  if (/throughput|tokenspers|tps$/.test(k) && k !== 'throughputrps')
    return /request|rps|reqs/.test(k)
      ? 'completed requests per second is throughputRps'
      : 'token throughput is not compared: leave it out, or give completed requests per second as throughputRps';
  return undefined;
}

/**
 * What was measured. `perTokenMs` is (E2E - TTFT) / (output tokens - 1) per request, which vLLM's
 * and SGLang's benchmarks print as TPOT. `saturated`: the engine fell behind the offered load
 * (queues and TTFT grew through the run), as the source reports it or its figures show; with a
 * client cap (`maxConcurrency`), the run fell behind its rate whichever queue grew (the client's
 * shows as a throughput below the rate), which the twin's `client-bound` is compared with.
 */
export const measuredSchema = z.strictObject(
  {
    ttftMs: latencyFiguresSchema.optional(),
    perTokenMs: latencyFiguresSchema.optional(),
    e2eMs: latencyFiguresSchema.optional(),
    /** Completed requests per second over the run, where the source gives it. */
    throughputRps: positive.optional(),
    saturated: z.boolean({
      error: (issue) =>
        issue.input === undefined
          ? 'required: true if the engine fell behind the offered load (its TTFT grew through the run), else false'
          : typeof issue.input === 'string' && /^\s*(true|false)\s*$/i.test(issue.input)
            ? `write ${issue.input.trim().toLowerCase()} without quotes`
            : `expected true or false, got ${JSON.stringify(issue.input)}`,
    }),
    /**
     * Figures shown but kept out of the summary medians, with the reason (e.g. a TTFT the GPU's peak
     * FLOP/s cannot produce for the stated prompts, which points at prompt caching the source does
     * not describe). The table marks them.
     */
    excluded: z
      .strictObject({
        figures: z.array(z.enum(['ttftMs', 'perTokenMs', 'e2eMs'])).min(1),
        reason: z.string().min(1),
      })
      .optional(),
  },
  strictKeys(
    ['ttftMs', 'perTokenMs', 'e2eMs', 'throughputRps', 'saturated', 'excluded'],
    '{ ttftMs: { mean: 50 }, saturated: false }',
    measuredHint,
  ),
);

/** Where a measurement comes from: enough for a reader to find it and judge it. */
export const sourceSchema = z.strictObject(
  {
    title: z.string().min(1),
    url: z.string().min(1),
    /** The engine and version measured, e.g. `vLLM 0.23.0`. */
    engine: z.string().min(1),
    /** When it was published or accessed (free text, e.g. 2026-03). */
    date: z.string().min(1).optional(),
    /** What the case assumes beyond the source (lengths not published, a GPU variant, …). */
    note: z.string().min(1).optional(),
  },
  strictKeys(
    ['title', 'url', 'engine', 'date', 'note'],
    '{ title: our run, url: https://..., engine: vLLM 0.15.1 }',
  ),
);

/** What to write instead of a stage key another tool's config uses. */
function stageHint(key: string): string | undefined {
  const k = key.toLowerCase().replace(/[\s_-]/g, '');
  if (['rate', 'qps', 'rps', 'requestrate', 'ratereqs'].includes(k)) return 'the rate is rateRps (req/s)';
  if (['duration', 'durations', 'durationsec', 'seconds', 'time'].includes(k))
    return 'the length is durationS (s)';
  return undefined;
}

/** A stage of a staged run, with the figures measured over the requests that arrived in it. */
export const measuredStageSchema = z.strictObject(
  { ...rateStageSchema.shape, measured: measuredSchema.optional() },
  strictKeys(['rateRps', 'durationS', 'measured'], '{ rateRps: 5, durationS: 600 }', stageHint),
);

/**
 * A case's engine options: the twin's (engineOptionsSchema) and vLLM's `--max-model-len`, which
 * bounds the requests a case may send (checkCaseContext) and changes nothing else the twin models.
 */
export const caseEngineSchema = engineOptionsSchema.extend({
  maxModelLen: z.number().int().min(1).max(10_000_000).optional(),
});

/** The engine options' names (vLLM's flags in camelCase). */
const ENGINE_OPTIONS: ReadonlySet<string> = new Set(Object.keys(caseEngineSchema.shape));

const SIXTEEN_BIT = ['auto', 'float16', 'half', 'fp16', 'bfloat16', 'bf16'];

/**
 * vLLM options the twin models one way only, as a serve command line copies them: the value that
 * says that way is read and changes nothing (a case copied from `vllm serve ... --dtype bfloat16
 * --enable-chunked-prefill` runs as it is); any other value is refused saying what the twin runs.
 */
const AS_MODELLED: Readonly<Record<string, { accepts: (v: unknown) => boolean; runs: string }>> = {
  enableChunkedPrefill: {
    accepts: (v) => v === true,
    runs: "chunked prefill under the token budget, always, as vLLM's V1 engine (true)",
  },
  enforceEager: {
    accepts: (v) => v === false,
    runs: 'CUDA-graph decode as vLLM runs it by default (false)',
  },
  dtype: {
    accepts: (v) => typeof v === 'string' && SIXTEEN_BIT.includes(v.toLowerCase()),
    runs: `the catalogue's 16-bit weights (${SIXTEEN_BIT.join(', ')})`,
  },
};

/** vLLM's engine argument or flag name as this format's option name: `--max-num-seqs`, `max_num_seqs` -> `maxNumSeqs`. */
function vllmNameAsOption(key: string): string {
  return key.replace(/^-+/, '').replace(/[-_]+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * The engine options as vLLM names them are read as this format's: `max_num_batched_tokens` (the
 * engine argument) and `--max-num-batched-tokens` (the flag) are `maxNumBatchedTokens`. Only names
 * of options the twin has are renamed; both spellings of one option is an issue, and vLLM's
 * `tensor_parallel_size` says it is the case's `tp`. Anything else goes on to the strict schema.
 */
function engineOptionsAsVllmNames(value: unknown, ctx: z.RefinementCtx): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  const writtenAs = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const camel = vllmNameAsOption(key);
    // One issue saying where it goes, and nothing else: the 'leave it out' of the options the twin
    // lacks, said of this one too, would run a TP4 case at TP 1 when followed.
    if (camel === 'tensorParallelSize' || camel === 'tp') {
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: `tensor parallelism is the case's top-level tp: write tp: ${JSON.stringify(v)} beside model and gpu, not under engine`,
      });
      continue;
    }
    const modelled = AS_MODELLED[camel];
    if (modelled !== undefined) {
      if (!modelled.accepts(v))
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `${JSON.stringify(v)}: the twin runs ${modelled.runs}; leave it out or write that`,
        });
      continue;
    }
    const name = camel !== key && ENGINE_OPTIONS.has(camel) ? camel : key;
    const before = writtenAs.get(name);
    if (before !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: `${name} given twice, as ${before} and ${key}; give one`,
      });
    writtenAs.set(name, key);
    out[name] = v;
  }
  // vLLM's other options, as a serve command line is copied: one issue naming them all with what
  // `engine` takes, instead of the strict schema's bare 'Unrecognized key' per run of the command.
  const unknown = Object.keys(out).filter((k) => !ENGINE_OPTIONS.has(k));
  if (unknown.length > 0) {
    ctx.addIssue({
      code: 'custom',
      path: [],
      message:
        `${unknown.map((k) => `'${k}'`).join(', ')}: not an engine option the twin models; leave ` +
        `${unknown.length === 1 ? 'it' : 'them'} out. engine takes ${[...ENGINE_OPTIONS].join(', ')} ` +
        "(or vLLM's snake_case and --flag names of these), and enableChunkedPrefill, enforceEager and " +
        'dtype at the values the twin runs',
    });
    for (const k of unknown) delete out[k];
  }
  return out;
}

/** What to write instead of a top-level key another tool's config uses. */
function caseHint(key: string): string | undefined {
  const k = key.toLowerCase().replace(/[\s_-]/g, '');
  if (['tensorparallelsize', 'tensorparallel', 'tpsize'].includes(k)) return 'tensor parallelism is tp';
  if (['replicas', 'engines', 'numinstances'].includes(k)) return 'engines behind one router are instances';
  if (['hardware', 'accelerator', 'device', 'gpus', 'gputype'].includes(k)) return 'the GPU is gpu';
  if (['modelname', 'modelid', 'checkpoint'].includes(k)) return 'the model is model';
  if (['engineargs', 'vllm', 'server', 'serverargs'].includes(k)) return "vLLM's options are engine";
  // vLLM's options copied beside model and gpu (max_num_batched_tokens, --max-num-seqs): they go under engine.
  const camel = vllmNameAsOption(key);
  if (ENGINE_OPTIONS.has(camel)) return `${key} is an engine option: put it under engine`;
  return undefined;
}

/**
 * Prompt lengths: `input` is what follows the shared prefix when `prefix` is set (the prompt is
 * prefix + input tokens, as `vllm bench serve --random-prefix-len` builds it), the whole prompt
 * otherwise, when requests share nothing.
 */
const lengths = { input: lengthDistSchema, output: lengthDistSchema, prefix: casePrefixSchema.optional() };
const limits = {
  /** Requests to send (the benchmark's --num-prompts). */
  requests: z.number().int().min(1).max(CASE_REQUESTS_MAX).optional(),
  /** Stop arrivals after this many seconds. */
  durationS: positive.optional(),
};
const openRate = {
  rateRps: positive.optional(),
  stages: z.array(measuredStageSchema).min(1).max(STAGES_MAX).optional(),
  /**
   * A client-side cap on requests in flight, as `vllm bench serve --request-rate R --max-concurrency
   * C`: requests keep the times the arrival process gives them, but one whose slot is not free waits
   * at the client (first come, first sent) and is timed from when it is sent.
   */
  maxConcurrency: z.number().int().min(1).max(CONCURRENCY_MAX).optional(),
};

/** How requests arrive: open loop at a rate (or in stages), or closed loop at a concurrency. */
export const caseWorkloadSchema = z.discriminatedUnion(
  'arrival',
  [
    z.strictObject({ arrival: z.literal('poisson'), ...openRate, ...lengths, ...limits }),
    z.strictObject({ arrival: z.literal('constant'), ...openRate, ...lengths, ...limits }),
    z.strictObject({
      arrival: z.literal('gamma'),
      /** The coefficient of variation of the gaps (1: Poisson; vllm bench serve's --burstiness B is 1/sqrt(B)). */
      cv: z
        .number({
          error: (issue) =>
            issue.input === undefined
              ? 'required with arrival gamma: the coefficient of variation of the gaps (1 is Poisson; --burstiness B is cv 1/sqrt(B))'
              : undefined,
        })
        .positive()
        .finite(),
      ...openRate,
      ...lengths,
      ...limits,
    }),
    /**
     * Closed loop, as `vllm bench serve --max-concurrency C --request-rate inf`: C clients start at
     * once and each sends its next request when its previous answer ends, until `requests` are sent.
     */
    z.strictObject({
      arrival: z.literal('closed-loop'),
      concurrency: z.number().int().min(1).max(CONCURRENCY_MAX),
      ...lengths,
      requests: z.number().int().min(1).max(CASE_REQUESTS_MAX),
    }),
  ],
  {
    // zod's own 'Invalid discriminator value' says neither that arrival is missing nor what each is.
    error: (issue) => {
      if (issue.code !== 'invalid_union') return undefined;
      const input = issue.input as { arrival?: unknown } | undefined;
      const arrival = typeof input === 'object' && input !== null ? input.arrival : undefined;
      return (
        (arrival === undefined ? 'required: ' : `${JSON.stringify(arrival)} is not an arrival; write `) +
        'constant (evenly paced at rateRps, as load testers send), poisson, gamma (with cv) or closed-loop ' +
        '(concurrency clients)'
      );
    },
  },
);

/** One case file. */
export const fidelityCaseSchema = z
  .strictObject(
    {
      /** A short unique id, used as the row label. */
      name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" and "-"'),
      description: z.string().min(1).optional(),
      source: sourceSchema,
      model: z.string().min(1),
      gpu: z.string().min(1),
      tp: z.number().int().min(1).max(64).default(1),
      /** Instances behind one round-robin router (1: a single engine, as most benchmarks run). */
      instances: z.number().int().min(1).max(64).default(1),
      /** The twin's engine options; vLLM's snake_case and --flag names are read (engineOptionsAsVllmNames). */
      engine: (
        z.preprocess(engineOptionsAsVllmNames, caseEngineSchema) as unknown as z.ZodType<
          z.output<typeof caseEngineSchema>,
          z.input<typeof caseEngineSchema>
        >
      ).default({}),
      workload: caseWorkloadSchema,
      seed: z.number().int().min(0).max(0xffffffff).default(1),
      /** Figures over the whole run; optional where every stage has its own. */
      measured: measuredSchema.optional(),
    },
    strictKeys(
      [
        'name',
        'description',
        'source',
        'model',
        'gpu',
        'tp',
        'instances',
        'engine',
        'workload',
        'seed',
        'measured',
      ],
      '{ name, source, model, gpu, workload, measured }',
      caseHint,
    ),
  )
  .superRefine((c, ctx) => {
    const w = c.workload;
    const stages = w.arrival === 'closed-loop' ? undefined : w.stages;
    if (w.arrival !== 'closed-loop') {
      if ((w.rateRps === undefined) === (stages === undefined))
        ctx.addIssue({
          code: 'custom',
          path: ['workload', 'rateRps'],
          message: 'set rateRps or stages (not both)',
        });
      if (stages === undefined && w.requests === undefined && w.durationS === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['workload', 'requests'],
          message: 'set requests or durationS: an open-loop run at one rate never ends on its own',
        });
    }
    if (w.arrival !== 'closed-loop' && expectedRequests(w) > CASE_REQUESTS_MAX)
      ctx.addIssue({
        code: 'custom',
        path: ['workload'],
        message: `about ${Math.round(expectedRequests(w))} requests; a case may send at most ${CASE_REQUESTS_MAX}`,
      });
    const idle = stages === undefined ? undefined : idleStagesProblem(stages);
    if (idle !== undefined) ctx.addIssue({ code: 'custom', path: ['workload', 'stages'], message: idle });
    // An idle stage (rate 0) sends nothing, so a figure measured over it has nothing to compare with.
    stages?.forEach((s, k) => {
      if (s.rateRps === 0 && s.measured !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['workload', 'stages', k, 'measured'],
          message: `stage ${k + 1} has rate 0: no request arrives in it, so it has no figures to compare; drop its measured figures`,
        });
    });
    const stageMeasured = stages?.some((s) => s.measured !== undefined) ?? false;
    if (c.measured === undefined && !stageMeasured)
      ctx.addIssue({
        code: 'custom',
        path: ['measured'],
        message: 'give measured figures for the run or for a stage',
      });
  });

/** About how many requests an open-loop workload sends: its rate over its span, capped by `requests`. */
function expectedRequests(w: {
  rateRps?: number | undefined;
  stages?: readonly { rateRps: number; durationS: number }[] | undefined;
  requests?: number | undefined;
  durationS?: number | undefined;
}): number {
  let byTime = Number.POSITIVE_INFINITY;
  if (w.stages !== undefined) {
    let elapsedS = 0;
    byTime = 0;
    for (const s of w.stages) {
      const spanS = Math.max(0, Math.min(s.durationS, (w.durationS ?? Number.POSITIVE_INFINITY) - elapsedS));
      byTime += s.rateRps * spanS;
      elapsedS += s.durationS;
    }
  } else if (w.rateRps !== undefined && w.durationS !== undefined) {
    byTime = w.rateRps * w.durationS;
  }
  return Math.min(byTime, w.requests ?? Number.POSITIVE_INFINITY);
}

/** A validated case. */
export type FidelityCase = z.output<typeof fidelityCaseSchema>;
/** A case as written. */
export type FidelityCaseInput = z.input<typeof fidelityCaseSchema>;
/** Measured figures after validation. */
export type Measured = z.output<typeof measuredSchema>;
/** Latency figures after validation. */
export type LatencyFigures = z.output<typeof latencyFiguresSchema>;

/**
 * Validates a case. Schema problems fail with SY_ERR_INVALID_CONFIG naming each path; a model or
 * GPU the catalogue lacks with SY_ERR_UNKNOWN_NAME listing the ones it has. `model` and `gpu` may be
 * written as vLLM, Hugging Face or nvidia-smi name them (`meta-llama/Llama-2-7b-hf`,
 * `NVIDIA H100 80GB HBM3`: resolveModelId, resolveGpuId); the case carries the catalogue ids.
 */
export function parseFidelityCase(value: unknown, where = 'fidelity case'): FidelityCase {
  // parseWithSchema's error, with zod's 'expected number, received string' said as what to write.
  const result = fidelityCaseSchema.safeParse(value, { error: writtenAsMessage });
  if (!result.success) {
    // explainIssues, as parseWithSchema: a union's 'Invalid input' said from its closest branch.
    const problems = explainIssues(result.error.issues).map(
      (issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${issue.message}`,
    );
    throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `${where}: ${problems.join('; ')}`, { problems });
  }
  const c = result.data;
  return { ...c, model: resolveModelId(c.model), gpu: resolveGpuId(c.gpu) };
}

/** Seconds per time unit a value may be copied with ("600s", "10 min", "45ms"). */
const SECONDS_PER: Readonly<Record<string, number>> = {
  ms: 0.001,
  s: 1,
  sec: 1,
  secs: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hour: 3600,
  hours: 3600,
};
const RATE_UNITS: ReadonlySet<string> = new Set(['rps', 'qps', 'req/s', 'reqs/s', 'requests/s', '/s']);

/**
 * What to write for a number or a boolean given as a string, as it is copied from a results table
 * or a command line (`"600"`, `"600s"`, `"10 min"`, `"45ms"`, `"5 req/s"`, `"false"`): the value
 * in the field's unit, from the path (`durationS` seconds, figures under `ttftMs` ms, `rateRps`
 * req/s). Undefined (zod's own message) otherwise; a field's own message wins over this one.
 */
function writtenAsMessage(issue: {
  code?: string | undefined;
  expected?: string | undefined;
  input?: unknown;
  path?: readonly PropertyKey[] | undefined;
}): string | undefined {
  if (issue.code !== 'invalid_type') return undefined;
  if (issue.expected === 'number' && issue.input === undefined) return 'required: a number';
  if (typeof issue.input !== 'string') return undefined;
  const input = issue.input.trim();
  if (issue.expected === 'boolean')
    return /^(true|false)$/i.test(input)
      ? `write ${input.toLowerCase()} without quotes`
      : `expected true or false, got ${JSON.stringify(issue.input)}`;
  if (issue.expected !== 'number') return undefined;
  const parsed = /^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)\s*([a-z/]*)$/i.exec(input);
  if (parsed === null) return `expected a number, got ${JSON.stringify(issue.input)}`;
  const x = Number(parsed[1]);
  const unit = (parsed[2] ?? '').toLowerCase();
  if (unit === '') return `write the number without quotes: ${x}`;
  const named = [...(issue.path ?? [])].reverse().find((k) => typeof k === 'string' && /(Ms|S|Rps)$/.test(k));
  const fieldUnit = typeof named === 'string' ? /(Ms|S|Rps)$/.exec(named)?.[1] : undefined;
  const seconds = SECONDS_PER[unit];
  const round = (v: number) => Number(v.toPrecision(12));
  if (seconds !== undefined && fieldUnit === 'S') return `a number of seconds: write ${round(x * seconds)}`;
  if (seconds !== undefined && fieldUnit === 'Ms')
    return `a number of ms: write ${round(x * seconds * 1000)}`;
  if (RATE_UNITS.has(unit) && fieldUnit === 'Rps') return `a number of requests per second: write ${x}`;
  return `expected a number, got ${JSON.stringify(issue.input)}: write the number without quotes or unit`;
}

/**
 * Reads and validates a case file (YAML, of which JSON is a subset), its drawn requests included:
 * one past the model's context is refused (checkCaseContext). A relative `empirical` trace
 * path is taken from the case file's folder, so a case runs from any directory; where no file is
 * there, from the current directory (cases written before read it so, from the repository root).
 * Both existing with different contents is refused (resolveCaseTrace).
 */
export function loadFidelityCase(path: string): FidelityCase {
  const where = `fidelity case '${path}'`;
  checkNoJsonComments(path, where);
  let value: unknown;
  try {
    value = readYamlFile(path, where);
  } catch (error) {
    throw oneCasePerFileHint(error, where);
  }
  // A list of cases would be refused with the whole list echoed back as 'got [...]'.
  if (Array.isArray(value))
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `${where}: a file holds one case (an object with name, source, model, gpu, workload); this one holds a ` +
        `list of ${value.length}: write each case to its own file (a staged run is one case, its stages under workload.stages)`,
    );
  const c = parseFidelityCase(value, where);
  const w = c.workload;
  const caseDir = dirname(resolve(path));
  const withTrace = <D extends { kind: string }>(d: D, field: 'input' | 'output'): D =>
    d.kind === 'empirical' && 'trace' in d && typeof d.trace === 'string'
      ? {
          ...d,
          trace: resolveCaseTrace(d.trace, caseDir, process.cwd(), `${where}: workload.${field}.trace`),
        }
      : d;
  const loaded = {
    ...c,
    workload: { ...w, input: withTrace(w.input, 'input'), output: withTrace(w.output, 'output') },
  };
  // Requests past the model's context are refused here, before any case runs (run-case.ts).
  try {
    checkCaseContext(loaded);
  } catch (error) {
    throw lengthsFileHint(error, where);
  }
  return loaded;
}

/** A YAML file of several documents (`---` between cases): the parser's refusal, with what to do. */
function oneCasePerFileHint(error: unknown, where: string): unknown {
  if (!(error instanceof SwitchyardError) || !error.message.includes('MULTIPLE_DOCS')) return error;
  return new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `${where}: a file holds one case, and this one has several YAML documents ('---' between them): ` +
      'write each case to its own file (a staged run is one case, its stages under workload.stages)',
    error.details,
  );
}

/**
 * Refuses a .json case with a `//` or `/* *\/` comment line (JSONC, as an editor keeps it). Read as
 * YAML, such a line fails with 'Implicit keys need to be on a single line', or inside an object
 * becomes part of the next key (`'// note "name"'`), neither of which says comment. No JSON value
 * spans lines, so a line that starts so is a comment. An unreadable file is left to the reader.
 */
function checkNoJsonComments(path: string, where: string): void {
  if (!/\.json$/i.test(path)) return;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return;
  }
  const line = text.split(/\r?\n/).findIndex((l) => /^\s*(\/\/|\/\*)/.test(l));
  if (line >= 0)
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `${where}: JSON takes no comments, and line ${line + 1} is one ('//' or '/*'): delete it, or write the ` +
        'case as YAML (a .yaml file), whose comments start with #',
    );
}

/**
 * A case's lengths file whose format cannot be told (a CSV of per-request lengths with its own
 * column names, say): the trace reader's refusal, with how a case writes such a file. Other errors
 * unchanged.
 */
function lengthsFileHint(error: unknown, where: string): unknown {
  if (
    !(error instanceof SwitchyardError) ||
    error.code !== 'SY_ERR_TRACE_PARSE' ||
    !error.message.includes('cannot tell the trace format')
  )
    return error;
  const [location] = error.message.split(': cannot tell');
  return new SwitchyardError(
    'SY_ERR_TRACE_PARSE',
    `${where}: ${location}: cannot tell this lengths file's format. A CSV of per-request lengths is read ` +
      'with the header num_prefill_tokens,num_decode_tokens (prompt and output tokens, one row per ' +
      'request; other columns are ignored): rename its columns so; an Azure trace (ContextTokens, ' +
      'GeneratedTokens) and Mooncake JSON lines (.jsonl) are read as they are',
    error.details,
  );
}

/**
 * Where a case's trace path points: unchanged when absolute or a bundled `sample:`; else beside the
 * case (`caseDir`), else from `cwd`. Refused, naming both, when both exist and differ (which one the
 * author meant cannot be told, and the wrong one would silently change every length); SY_ERR_NOT_FOUND,
 * naming both, when neither exists.
 */
export function resolveCaseTrace(trace: string, caseDir: string, cwd: string, where: string): string {
  if (isSampleRef(trace) || isAbsolute(trace)) return trace;
  const beside = resolve(caseDir, trace);
  const fromCwd = resolve(cwd, trace);
  const besideExists = isFile(beside);
  const cwdExists = isFile(fromCwd);
  if (besideExists && cwdExists && !sameFile(beside, fromCwd))
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `${where}: '${trace}' names two different files, ${beside} (beside the case) and ${fromCwd} (from the current directory); rename one, or give an absolute path`,
    );
  if (besideExists) return beside;
  if (cwdExists) return fromCwd;
  throw new SwitchyardError(
    'SY_ERR_NOT_FOUND',
    `${where}: no file '${trace}' beside the case (${beside}) or in the current directory (${fromCwd})`,
  );
}

function isFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() === true;
}

/** The same file, or two with the same bytes. */
function sameFile(a: string, b: string): boolean {
  if (realpathSync(a) === realpathSync(b)) return true;
  return readFileSync(a).equals(readFileSync(b));
}
