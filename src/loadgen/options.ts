/**
 * `switchyard bench` flags: raw strings from the command line, validated into BenchOptions. Every
 * bad value fails with a SwitchyardError that names the flag, the value and what is valid, and
 * flags that do not go together (a trace with --rate, --cv with --burstiness) are refused rather
 * than silently ignored.
 */
import { existsSync } from 'node:fs';
import { invalidArgument, SwitchyardError, unknownName } from '../core/errors.ts';
import { multiModelId } from '../workload/multi-model.ts';
import {
  expectedStageRequests,
  meanStageRateRps,
  WORKLOAD_REQUESTS_MAX,
  type WorkloadSpec,
} from '../workload/spec.ts';
import { parseStages } from '../workload/synthetic.ts';
import { ENDPOINTS, type Endpoint, parseBaseUrl } from './client.ts';
import {
  type SyntheticPlanOptions,
  type TokenRange,
  type TracePlanOptions,
  TWIN_DEFAULT_TENANT,
} from './plan.ts';
import { BENCH_PRIORITY_ORDERS, type BenchPriorityOrder } from './priority-order.ts';
import { OVERFLOW_MODES, type OverflowMode } from './runner.ts';
import { readWorkloadFile, type WorkloadFile } from './workload-file.ts';

/** Defaults of the flags that have one. */
export const BENCH_DEFAULTS = {
  endpoint: 'completions' as Endpoint,
  rateRps: 10,
  /** Poisson, as in vLLM's benchmark and in `switchyard sim`: burstier arrivals are asked for. */
  cv: 1,
  requests: 1000,
  inputTokens: 1024,
  outputTokens: 128,
  maxConcurrency: 256,
  overflow: 'wait' as OverflowMode,
  timeoutS: 300,
  seed: 1,
} as const;

/** Upper bounds that keep a typo from asking for something absurd. */
export const BENCH_LIMITS = {
  maxConcurrencyMax: 100_000,
  tokensMax: 1 << 20,
  prefixGroupsMax: 1_000_000,
} as const;

/** The flags as commander hands them over: strings, and the booleans of --no-* flags. */
export interface BenchFlags {
  url?: string;
  endpoint?: string;
  model?: string;
  apiKey?: string;
  rate?: string;
  /**
   * poisson, gamma or constant arrivals (default poisson; --cv/--burstiness imply gamma), or a file
   * holding the twin's workload block (or a sim config with one).
   */
  workload?: string;
  /** Rate stages `rate:seconds,...` instead of --rate. */
  stages?: string;
  burstiness?: string;
  cv?: string;
  requests?: string;
  duration?: string;
  inputTokens?: string;
  outputTokens?: string;
  prefixGroups?: string;
  prefixTokens?: string;
  trace?: string;
  rateScale?: string;
  /**
   * `NAME=KEY[,NAME=KEY...]`: with --workload FILE, the API key each twin tenant's requests are sent
   * with (the gateway names a request's tenant by its key).
   */
  tenantKey?: string;
  /** With --workload FILE: the order the target reads `priority` in (default: told from /v1/models). */
  enginePriority?: string;
  maxConcurrency?: string;
  overflow?: string;
  timeoutS?: string;
  stream: boolean;
  ignoreEos: boolean;
  sloTtftMs?: string;
  sloTpotMs?: string;
  seed?: string;
  json?: string;
  saveRequests?: boolean;
  progress: boolean;
}

/** Where the requests come from. */
export type BenchSource =
  | ({ readonly kind: 'synthetic' } & Omit<SyntheticPlanOptions, 'seed'>)
  | ({ readonly kind: 'trace'; readonly trace: string } & TracePlanOptions)
  | {
      /** The twin's own workload, from a file (`--workload FILE`). */
      readonly kind: 'workload';
      readonly file: WorkloadFile;
      /** Arrival-rate multiplier (--rate-scale). */
      readonly rateScale: number;
      readonly requests: number | undefined;
      readonly durationS: number | undefined;
      /** API keys by the workload's tenant names (--tenant-key); empty without the flag. */
      readonly tenantKeys: ReadonlyMap<string, string>;
      /** --engine-priority; undefined: told from the target's /v1/models (priority-order.ts). */
      readonly enginePriority: BenchPriorityOrder | undefined;
    };

/** The arrival kinds --workload names; any other value is a workload file. */
export const ARRIVAL_KINDS = ['poisson', 'gamma', 'constant'] as const;

/**
 * True when --workload names a file rather than one of ARRIVAL_KINDS: a value that looks like a
 * path (a folder separator or an extension) or names an existing file. Any other value is refused
 * as an unknown kind, as before files were taken.
 */
export function isWorkloadFile(value: string | undefined): value is string {
  if (value === undefined || (ARRIVAL_KINDS as readonly string[]).includes(value)) return false;
  if (/[./\\]/.test(value) || existsSync(value)) return true;
  throw new SwitchyardError(
    'SY_ERR_UNKNOWN_NAME',
    `unknown --workload '${value}'; valid: ${ARRIVAL_KINDS.join(', ')}, or a workload file (YAML or JSON)`,
    { param: '--workload', value, valid: [...ARRIVAL_KINDS] },
  );
}

/** Validated options of one bench run. */
export interface BenchOptions {
  readonly url: URL;
  readonly endpoint: Endpoint;
  readonly model: string | undefined;
  readonly apiKey: string | undefined;
  readonly source: BenchSource;
  readonly maxConcurrency: number;
  readonly overflow: OverflowMode;
  readonly timeoutMs: number;
  readonly stream: boolean;
  readonly ignoreEos: boolean;
  readonly sloTtftMs: number | undefined;
  readonly sloTpotMs: number | undefined;
  readonly seed: number;
  readonly json: string | undefined;
  readonly saveRequests: boolean;
  readonly progress: boolean;
}

function flagError(flag: string, value: string, expected: string): SwitchyardError {
  return invalidArgument(`--${flag}`, value, expected);
}

/** A positive number; `inf` too when allowInfinity. */
export function parsePositive(flag: string, value: string, allowInfinity = false): number {
  const text = value.trim().toLowerCase();
  if (allowInfinity && (text === 'inf' || text === 'infinity')) return Number.POSITIVE_INFINITY;
  const n = Number(text);
  if (text === '' || !Number.isFinite(n) || n <= 0) {
    throw flagError(flag, value, allowInfinity ? 'a positive number or inf' : 'a positive number');
  }
  return n;
}

/** An integer in [min, max]. */
export function parseInteger(flag: string, value: string, min: number, max: number): number {
  const text = value.trim();
  const n = Number(text);
  if (text === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw flagError(flag, value, `an integer from ${min} to ${max}`);
  }
  return n;
}

/** `N` or `LO-HI` (inclusive, LO <= HI), each a token count from 1 to BENCH_LIMITS.tokensMax. */
export function parseTokenRange(flag: string, value: string): TokenRange {
  const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(value);
  const expected = `a token count N or a range LO-HI (1 <= LO <= HI <= ${BENCH_LIMITS.tokensMax})`;
  if (m === null) throw flagError(flag, value, expected);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi < lo || hi > BENCH_LIMITS.tokensMax) throw flagError(flag, value, expected);
  return { lo, hi };
}

function oneOf<T extends string>(kind: string, value: string, valid: readonly T[]): T {
  if (!(valid as readonly string[]).includes(value)) throw unknownName(kind, value, valid);
  return value as T;
}

function conflict(flag: string, value: string, why: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid --${flag} '${value}': ${why}`, {
    param: `--${flag}`,
    value,
  });
}

/** Validates the flags. Throws SwitchyardError on the first bad one. */
export function resolveBenchOptions(flags: BenchFlags): BenchOptions {
  if (flags.url === undefined) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      "missing --url: expected the server's base URL, e.g. --url http://127.0.0.1:8000",
      { param: '--url' },
    );
  }
  const url = parseBaseUrl(flags.url);
  const endpoint = oneOf('--endpoint', flags.endpoint ?? BENCH_DEFAULTS.endpoint, ENDPOINTS);
  const overflow = oneOf('--overflow', flags.overflow ?? BENCH_DEFAULTS.overflow, OVERFLOW_MODES);
  const requests =
    flags.requests === undefined
      ? undefined
      : parseInteger('requests', flags.requests, 1, WORKLOAD_REQUESTS_MAX);
  const durationS = flags.duration === undefined ? undefined : parsePositive('duration', flags.duration);
  const source =
    flags.trace !== undefined
      ? traceSource(flags, requests, durationS)
      : isWorkloadFile(flags.workload)
        ? workloadSource(flags, requests, durationS)
        : syntheticSource(flags, requests, durationS);
  if (flags.enginePriority !== undefined && source.kind !== 'workload')
    throw conflict(
      'engine-priority',
      flags.enginePriority,
      'only with --workload FILE (whose requests carry priorities)',
    );
  if (flags.tenantKey !== undefined && source.kind !== 'workload')
    throw conflict(
      'tenant-key',
      flags.tenantKey,
      'only with --workload FILE (whose requests name their tenants)',
    );
  if (flags.model !== undefined && flags.model.trim() === '')
    throw flagError('model', flags.model, 'a model name');
  const fileSeed = source.kind === 'workload' ? source.file.seed : undefined;
  return {
    url,
    endpoint,
    model: flags.model,
    apiKey: flags.apiKey,
    source,
    maxConcurrency:
      flags.maxConcurrency === undefined
        ? BENCH_DEFAULTS.maxConcurrency
        : parseInteger('max-concurrency', flags.maxConcurrency, 1, BENCH_LIMITS.maxConcurrencyMax),
    overflow,
    timeoutMs:
      (flags.timeoutS === undefined ? BENCH_DEFAULTS.timeoutS : parsePositive('timeout-s', flags.timeoutS)) *
      1000,
    stream: flags.stream,
    ignoreEos: flags.ignoreEos,
    sloTtftMs: flags.sloTtftMs === undefined ? undefined : parsePositive('slo-ttft-ms', flags.sloTtftMs),
    sloTpotMs: flags.sloTpotMs === undefined ? undefined : parsePositive('slo-tpot-ms', flags.sloTpotMs),
    seed:
      flags.seed === undefined
        ? (fileSeed ?? BENCH_DEFAULTS.seed)
        : parseInteger('seed', flags.seed, 0, 0xffffffff),
    json: flags.json,
    saveRequests: flags.saveRequests === true,
    progress: flags.progress,
  };
}

function traceSource(
  flags: BenchFlags,
  requests: number | undefined,
  durationS: number | undefined,
): BenchSource {
  const synthetic: [keyof BenchFlags, string][] = [
    ['rate', 'a trace brings its own arrival times; speed them up or slow them down with --rate-scale'],
    ['workload', 'a trace brings its own arrival times'],
    ['stages', 'a trace brings its own arrival times'],
    ['burstiness', 'a trace brings its own arrival times'],
    ['cv', 'a trace brings its own arrival times'],
    ['inputTokens', 'a trace brings its own lengths'],
    ['outputTokens', 'a trace brings its own lengths'],
    ['prefixGroups', "a trace brings its own prefixes (Mooncake hash_ids); Azure's have none"],
    ['prefixTokens', "a trace brings its own prefixes (Mooncake hash_ids); Azure's have none"],
  ];
  for (const [key, why] of synthetic) {
    const value = flags[key];
    if (typeof value === 'string') throw conflict(kebab(key), value, `not used with --trace: ${why}`);
  }
  return {
    kind: 'trace',
    trace: flags.trace as string,
    rateScale: flags.rateScale === undefined ? 1 : parsePositive('rate-scale', flags.rateScale),
    requests,
    durationS,
  };
}

/**
 * --workload FILE: the twin's workload brings its own arrivals, lengths, prefixes and models, so
 * the flags that shape a synthetic workload are refused; --rate-scale, --requests and --duration cut
 * or speed up the plan, and --model names the run's model only for requests that name none.
 */
function workloadSource(
  flags: BenchFlags,
  requests: number | undefined,
  durationS: number | undefined,
): BenchSource {
  const why = 'a workload file brings its own arrivals, lengths and prefixes (edit the file)';
  const shaping: (keyof BenchFlags)[] = [
    'rate',
    'stages',
    'burstiness',
    'cv',
    'inputTokens',
    'outputTokens',
    'prefixGroups',
    'prefixTokens',
  ];
  for (const key of shaping) {
    const value = flags[key];
    if (typeof value === 'string') throw conflict(kebab(key), value, `not used with --workload FILE: ${why}`);
  }
  const file = readFileOrHint(flags.workload as string);
  const tenantKeys = parseTenantKeys(flags.tenantKey);
  // The spec's tenant, sent under another key (or none), would be some other tenant at the gateway.
  const tenant = (file.spec as { readonly tenant?: string }).tenant ?? TWIN_DEFAULT_TENANT;
  if (tenant !== TWIN_DEFAULT_TENANT && !tenantKeys.has(tenant)) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `--workload '${file.path}': its requests are tenant '${tenant}', which the gateway names by an API key: ` +
        `give it with --tenant-key ${tenant}=KEY (a key of the gateway's tenants)`,
      { param: '--tenant-key', value: tenant },
    );
  }
  if (flags.model !== undefined && namesOwnModels(file.spec)) {
    throw conflict(
      'model',
      flags.model,
      file.spec.kind === 'multi-model'
        ? `a multi-model workload names its models (${multiModelId(0, file.spec.models)}..${multiModelId(file.spec.models - 1, file.spec.models)})`
        : `the workload names its model (workload.model: ${String((file.spec as { model: string }).model)})`,
    );
  }
  return {
    kind: 'workload',
    file,
    rateScale: flags.rateScale === undefined ? 1 : parsePositive('rate-scale', flags.rateScale),
    requests,
    durationS,
    tenantKeys,
    enginePriority:
      flags.enginePriority === undefined
        ? undefined
        : oneOf('--engine-priority', flags.enginePriority, BENCH_PRIORITY_ORDERS),
  };
}

/** Tenant API keys past this many are refused (a twin workload names one tenant per spec). */
export const TENANT_KEYS_MAX = 1000;

/** `NAME=KEY[,NAME=KEY...]` as a map; each name once, neither part empty. */
export function parseTenantKeys(text: string | undefined): ReadonlyMap<string, string> {
  const keys = new Map<string, string>();
  if (text === undefined) return keys;
  const expected = 'comma-separated NAME=KEY pairs, each tenant once, e.g. a=key-a,b=key-b';
  const pairs = text.split(',');
  if (pairs.length > TENANT_KEYS_MAX)
    throw flagError('tenant-key', text, `at most ${TENANT_KEYS_MAX} ${expected}`);
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    const key = pair.slice(at + 1).trim();
    if (at <= 0 || name === '' || key === '' || keys.has(name)) throw flagError('tenant-key', text, expected);
    keys.set(name, key);
  }
  return keys;
}

/** Reads the file; a missing one names the arrival kinds too, in case a kind was meant. */
function readFileOrHint(path: string): WorkloadFile {
  try {
    return readWorkloadFile(path);
  } catch (error) {
    if (!(error instanceof SwitchyardError) || error.code !== 'SY_ERR_NOT_FOUND') throw error;
    throw new SwitchyardError(
      error.code,
      `${error.message}; --workload takes ${ARRIVAL_KINDS.join(', ')} or a file holding the twin's workload block`,
      { ...error.details },
    );
  }
}

/** True when a spec's requests name their models (multi-model, or a model other than `default`). */
export function namesOwnModels(spec: WorkloadSpec): boolean {
  return spec.kind === 'multi-model' || spec.model !== 'default';
}

function syntheticSource(
  flags: BenchFlags,
  requests: number | undefined,
  durationS: number | undefined,
): BenchSource {
  if (flags.rateScale !== undefined) {
    throw conflict(
      'rate-scale',
      flags.rateScale,
      'only used with --trace or --workload FILE; set the rate of a synthetic workload with --rate',
    );
  }
  const arrival = arrivalOf(flags);
  if (arrival.stages !== undefined && flags.rate !== undefined)
    throw conflict('rate', flags.rate, 'give --rate or --stages, not both');
  const rateRps =
    arrival.stages !== undefined
      ? meanStageRateRps(arrival.stages)
      : flags.rate === undefined
        ? BENCH_DEFAULTS.rateRps
        : parsePositive('rate', flags.rate, true);
  if (arrival.constant && rateRps === Number.POSITIVE_INFINITY)
    throw conflict('rate', flags.rate ?? 'inf', 'constant arrivals need a finite rate');
  if (flags.burstiness !== undefined && flags.cv !== undefined) {
    throw conflict('cv', flags.cv, 'give --burstiness or --cv, not both (burstiness k is cv = 1/sqrt(k))');
  }
  let cv: number = BENCH_DEFAULTS.cv;
  if (flags.burstiness !== undefined) cv = 1 / Math.sqrt(parsePositive('burstiness', flags.burstiness));
  if (flags.cv !== undefined) cv = parsePositive('cv', flags.cv);
  if (cv !== 1 && rateRps === Number.POSITIVE_INFINITY) {
    throw conflict(
      flags.cv !== undefined ? 'cv' : 'burstiness',
      flags.cv ?? flags.burstiness ?? '',
      'has no effect with --rate inf',
    );
  }
  const groupsGiven = flags.prefixGroups !== undefined;
  const tokensGiven = flags.prefixTokens !== undefined;
  if (groupsGiven !== tokensGiven) {
    throw groupsGiven
      ? conflict(
          'prefix-groups',
          flags.prefixGroups as string,
          'needs --prefix-tokens P (the length of each shared prompt)',
        )
      : conflict(
          'prefix-tokens',
          flags.prefixTokens as string,
          'needs --prefix-groups G (how many shared prompts)',
        );
  }
  const prefixGroups = groupsGiven
    ? parseInteger('prefix-groups', flags.prefixGroups as string, 1, BENCH_LIMITS.prefixGroupsMax)
    : 0;
  const prefixTokens = tokensGiven
    ? parseInteger('prefix-tokens', flags.prefixTokens as string, 1, BENCH_LIMITS.tokensMax)
    : 0;
  const inputTokens =
    flags.inputTokens === undefined
      ? { lo: BENCH_DEFAULTS.inputTokens, hi: BENCH_DEFAULTS.inputTokens }
      : parseTokenRange('input-tokens', flags.inputTokens);
  const outputTokens =
    flags.outputTokens === undefined
      ? { lo: BENCH_DEFAULTS.outputTokens, hi: BENCH_DEFAULTS.outputTokens }
      : parseTokenRange('output-tokens', flags.outputTokens);
  if (rateRps === Number.POSITIVE_INFINITY && requests === undefined && durationS !== undefined) {
    throw conflict(
      'rate',
      flags.rate ?? 'inf',
      'needs --requests: at an infinite rate every request goes at t = 0',
    );
  }
  checkExpectedRequests(flags, rateRps, arrival.stages, requests, durationS);
  return {
    kind: 'synthetic',
    rateRps,
    cv,
    ...(arrival.constant ? { constant: true } : {}),
    ...(arrival.stages !== undefined ? { stages: arrival.stages } : {}),
    requests:
      requests ??
      (durationS === undefined && arrival.stages === undefined ? BENCH_DEFAULTS.requests : undefined),
    durationS,
    inputTokens,
    outputTokens,
    prefixGroups,
    prefixTokens,
  };
}

/**
 * --workload and --stages: constant arrivals refuse --cv and --burstiness (their gaps do not vary);
 * gamma takes them (without either it is cv 1, Poisson, as sim's gamma without --cv), poisson
 * refuses them.
 */
function arrivalOf(flags: BenchFlags): {
  constant: boolean;
  stages: ReturnType<typeof parseStages> | undefined;
} {
  const kind = oneOf('--workload', flags.workload ?? 'poisson', ARRIVAL_KINDS);
  const shaped = flags.cv ?? flags.burstiness;
  if (kind === 'constant' && shaped !== undefined)
    throw conflict(
      flags.cv !== undefined ? 'cv' : 'burstiness',
      shaped,
      'constant arrivals have no variation',
    );
  if (kind === 'poisson' && flags.workload !== undefined && shaped !== undefined)
    throw conflict(
      flags.cv !== undefined ? 'cv' : 'burstiness',
      shaped,
      'Poisson arrivals have cv 1; use --workload gamma',
    );
  const stages = flags.stages === undefined ? undefined : parseStages(flags.stages, '--stages');
  return { constant: kind === 'constant', stages };
}

/**
 * A synthetic run with no --requests is bounded by its expected count, --rate x --duration (or the
 * stages' sum, cut at --duration), at WORKLOAD_REQUESTS_MAX as `sim` is: every finished request
 * keeps its latencies (and ITLs) for the summary, so `--rate 1000 --duration 1e9` would grow until
 * memory ran out instead of failing at once.
 */
function checkExpectedRequests(
  flags: BenchFlags,
  rateRps: number,
  stages: ReturnType<typeof parseStages> | undefined,
  requests: number | undefined,
  durationS: number | undefined,
): void {
  if (requests !== undefined) return;
  let expected = 0;
  if (stages !== undefined) expected = expectedStageRequests(stages, durationS);
  else if (durationS !== undefined) expected = rateRps * durationS;
  if (expected <= WORKLOAD_REQUESTS_MAX) return;
  const given =
    stages !== undefined ? `--stages '${flags.stages}'` : `--rate ${rateRps} x --duration ${durationS}`;
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid ${given}: about ${Math.round(expected).toLocaleString('en-US')} requests, more than ` +
      `${WORKLOAD_REQUESTS_MAX.toLocaleString('en-US')}, the most one run holds: lower the rate or --duration, ` +
      `or cut it with --requests (at most ${WORKLOAD_REQUESTS_MAX})`,
    { param: stages !== undefined ? '--stages' : '--duration', expectedRequests: expected },
  );
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
