import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { z } from 'zod';
import { assertNever } from '../core/assert.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import type { Slo } from '../core/request.ts';
import { Rng } from '../core/rng.ts';
import { type EarlyRejectParamsInput, withEarlyReject } from '../policies/admission/early-reject.ts';
import type { PdConditionalRule } from '../policies/disagg/conditional.ts';
import {
  createPairPolicy,
  isPdPairPolicy,
  type PairPolicy,
  PD_PAIR_POLICIES,
} from '../policies/disagg/pair.ts';
import { createConfiguredPolicy, defaultPolicyContext } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import {
  createWorkload,
  describeReplayRate,
  type ReplayStats,
  replayStats,
  traceReplay,
  traceUnitWarning,
} from '../workload/create.ts';
import { formatDeclaredMaxTokens } from '../workload/declared.ts';
import { describeMultiModel } from '../workload/multi-model.ts';
import { idleTailOf, readRateCurve } from '../workload/rate-curve-file.ts';
import { describeServegen } from '../workload/servegen.ts';
import { type WorkloadSpec, type WorkloadSpecOf, workloadSpecSchema } from '../workload/spec.ts';
import { describeRate } from '../workload/synthetic.ts';
import { describeTimeVarying } from '../workload/time-varying.ts';
import { type BatchJobSpec, buildBatchJob } from './batch-jobs.ts';
import type { ClusterSpec } from './cluster.ts';
import { engineConfigsFor, type engineOptionsSchema, parseWithSchema, toEngineConfig } from './config.ts';
import { type ControlSettings, controlPool, type PlacementLogEntry } from './control-host.ts';
import type { Fault, ReliabilityInput } from './faults.ts';
import { GOODPUT_DEFAULTS, type GoodputResult, goodputSweep, scaleWorkload } from './goodput.ts';
import { pdJson } from './pd-host.ts';
import { type PdPoolsSettings, pdPoolSlots, pdPoolsJson } from './pd-pools.ts';
import { type PlacementSettings, placementCluster } from './placement-host.ts';
import { renderHtmlReport } from './report/html.ts';
import {
  comparisonToJson,
  type JsonObject,
  type JsonValue,
  roundFloat,
  stringifyJson,
  summaryToJson,
  toJsonValue,
} from './report/json.ts';
import { controlReport } from './report/replicas.ts';
import { type ServerlessSettings, serverlessCluster } from './serverless-host.ts';
import { type DecisionLogEntry, runSimulation, type SimResult } from './simulator.ts';
import { workloadEnd } from './workload-end.ts';

/** Everything that defines one twin run, resolved from flags and config. */
export interface TwinSettings {
  readonly seed: number;
  /** The routing policy: a registered type or a name from `policies`. */
  readonly policy: string;
  /** Named policy instances from the config. */
  readonly policies: Readonly<
    Record<string, { readonly type: string; readonly params: Record<string, unknown> }>
  >;
  readonly cluster: ClusterSpec;
  readonly engine: z.infer<typeof engineOptionsSchema>;
  /** Validated against the workload schema when the run starts. */
  readonly workload: Readonly<Record<string, unknown>>;
  readonly slo: Slo;
  readonly output: { readonly json?: string | undefined; readonly html?: string | undefined };
  /** For the progress bar, when known. */
  readonly expectedRequests: number | undefined;
  /** The admission queue's config; undefined runs without one (unless batch jobs need it). */
  readonly admission?: Readonly<Record<string, unknown>> | undefined;
  /** Offline batch jobs. */
  readonly batchJobs?: readonly BatchJobSpec[] | undefined;
  /** Engine signals reach policies through scrapes this far apart (0: exact). */
  readonly scrapeIntervalMs?: number | undefined;
  /**
   * The shared early-rejection step (src/policies/admission/early-reject.ts) in front of the policy;
   * undefined: none. With it, policies with a rejection of their own (OWN_REJECTION) run with that
   * off unless their config sets `rejectEarly`, so every policy is admitted by the same rule.
   */
  readonly earlyReject?: EarlyRejectParamsInput | undefined;
  /** Faults to inject (crash, stall, slow-scrape); none by default. */
  readonly faults?: readonly Fault[] | undefined;
  /** Retries and health rules under faults; unset fields take the gateway's defaults. */
  readonly reliability?: ReliabilityInput | undefined;
  /** Goodput's attainment target, 0..1 (default GOODPUT_DEFAULTS.targetAttainment, 0.9). */
  readonly goodputTarget?: number | undefined;
  /**
   * An autoscaler over the cluster (src/twin/control-host.ts): the cluster's one group becomes a
   * pool of `maxInstances`, started and drained by the loop. Undefined: a fixed cluster.
   */
  readonly control?: ControlSettings | undefined;
  /**
   * Several models on a cluster of nodes, each with its own autoscaler (src/twin/placement-host.ts);
   * the cluster is then one group per model. Not with `control`.
   */
  readonly placement?: PlacementSettings | undefined;
  /**
   * Many models scaled to zero by a serverless policy (src/twin/serverless-host.ts); the cluster is
   * then one group per model. Not with `control` or `placement`.
   */
  readonly serverless?: ServerlessSettings | undefined;
  /**
   * A disaggregated cluster (src/twin/pd-host.ts): `prefillInstances` + `decodeInstances` instances
   * of the cluster's one group (its count replaced), `pdPolicy` picking the decode instance. Undefined:
   * colocated.
   */
  readonly pd?: PdRunSettings | undefined;
  /**
   * With `pd`: the prefill and the decode pool each sized by its own loop (src/twin/pd-pools.ts);
   * `pd`'s counts are then the pools' sizes at time 0. Undefined: fixed pools.
   */
  readonly pdPools?: PdPoolsSettings | undefined;
}

/** The P/D part of TwinSettings. */
export interface PdRunSettings {
  readonly prefillInstances: number;
  readonly decodeInstances: number;
  readonly link: string;
  /**
   * A pair policy (src/policies/disagg/pair.ts PD_PAIR_POLICIES: it picks both sides, replacing the
   * run's `policy` on the prefill pool), else a registered policy type or a name from `policies`
   * picking the decode side only.
   */
  readonly pdPolicy: string;
  /**
   * The pair policy's parameters (`--pd-params`), checked by the same schema as the gateway's
   * `pd.params` (pair.ts `createPairPolicy`); undefined: its defaults. Only with a pair `pdPolicy`.
   */
  readonly pdParams?: Readonly<Record<string, unknown>> | undefined;
  /** Conditional disaggregation's rule (`--pd-conditional`); undefined: every request disaggregates. */
  readonly conditional?: PdConditionalRule | undefined;
  /**
   * How long a prefill instance holds a KV no decode reads before freeing it, ms (`--kv-release-timeout-ms`,
   * PdSettings.kvReleaseTimeoutMs); undefined: PD_KV_RELEASE_TIMEOUT_MS_DEFAULT (src/model/kv-release.ts).
   */
  readonly kvReleaseTimeoutMs?: number | undefined;
  /** `--pd-layerwise` (PdSettings.layerwise): KV sent layer by layer as the prefill runs. */
  readonly layerwise?: boolean | undefined;
}

/**
 * The run's pair policy when `pd.pdPolicy` names one; undefined otherwise. Not with the shared
 * early-rejection step, which estimates a colocated instance's latencies.
 */
function pairPolicyOf(settings: TwinSettings): PairPolicy | undefined {
  const name = settings.pd?.pdPolicy;
  const params = settings.pd?.pdParams;
  if (name === undefined || !isPdPairPolicy(name)) {
    // Parameters no pair would read: refused rather than dropped.
    if (params !== undefined)
      throw invalidArgument(
        'pd-params',
        JSON.stringify(params),
        `a pair policy in --pd-policy (${PD_PAIR_POLICIES.join(', ')}), not '${name}'`,
      );
    return undefined;
  }
  if (settings.earlyReject !== undefined)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `early rejection cannot be used with --pd-policy ${name}: a pair policy rejects on its own or not at all`,
      { param: 'early-reject' },
    );
  return createPairPolicy(name, params ?? {}, defaultPolicyContext());
}

/** Policy types that can refuse requests themselves (a `rejectEarly` parameter). */
export const OWN_REJECTION: readonly string[] = ['goodput', 'mooncake'];

/**
 * The policy a run uses: the configured one, behind the shared early-rejection step when asked
 * (with the policy's own rejection off unless its config says otherwise).
 */
export function buildPolicy(settings: TwinSettings): RoutingPolicy {
  const context = defaultPolicyContext();
  if (settings.earlyReject === undefined) {
    return createConfiguredPolicy(settings.policy, settings.policies, context);
  }
  const named = { ...settings.policies };
  const own = named[settings.policy];
  if (own === undefined && OWN_REJECTION.includes(settings.policy)) {
    named[settings.policy] = { type: settings.policy, params: { rejectEarly: false } };
  } else if (own !== undefined && OWN_REJECTION.includes(own.type) && !('rejectEarly' in own.params)) {
    named[settings.policy] = { type: own.type, params: { ...own.params, rejectEarly: false } };
  }
  const inner = createConfiguredPolicy(settings.policy, named, context);
  return withEarlyReject(inner, settings.earlyReject, context);
}

/**
 * Refuses a run whose workload sends no request (a ServeGen window, a rate curve or a trace slice
 * with no arrival in the span asked for): its report would be all zeros, SLO attainment 0% of
 * nothing and a goodput of 0 req/s, which read as results. A run with batch jobs may leave the
 * online workload empty. A trace replay is not drawn here (its file would be read twice); an
 * empty slice of one is refused the same way from its replay's count (runTwinSpec).
 */
export function assertWorkloadSends(settings: TwinSettings): void {
  if ((settings.batchJobs?.length ?? 0) > 0) return;
  const spec = parseWithSchema(workloadSpecSchema, settings.workload, 'workload');
  if (spec.kind === 'trace') return;
  const first = createWorkload(spec, new Rng(settings.seed).fork('workload'))[Symbol.iterator]().next();
  if (first.done === true) throw noRequestsError(spec);
}

function noRequestsError(spec: WorkloadSpec, replay?: ReplayStats): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `the workload sends no requests (${describeWorkload(spec, replay)}): nothing to simulate; ` +
      'pick a span where its rate is not 0 (--start-h, --duration, the clients or the trace slice)',
    { param: 'workload' },
  );
}

/**
 * Told as a run goes: requests arrived, simulated time reached, and the run's request count when it
 * is known up front (a trace replay's).
 */
export type ProgressReport = (arrived: number, simulatedMs: number, total?: number) => void;

/** Runs one twin simulation from resolved settings. */
export function runTwin(
  settings: TwinSettings,
  onProgress?: ProgressReport,
  onDecision?: (entry: DecisionLogEntry) => void,
  onPlacement?: (entry: PlacementLogEntry) => void,
  onWarning?: (line: string) => void,
): SimResult {
  const spec = parseWithSchema(workloadSpecSchema, settings.workload, 'workload');
  return runTwinSpec(settings, spec, onProgress, onDecision, onPlacement, onWarning);
}

/** Whether a run has a control loop (an autoscaler, a multi-model or serverless cluster, P/D pools). */
export function isControlled(settings: TwinSettings): boolean {
  return (
    settings.control !== undefined ||
    settings.placement !== undefined ||
    settings.serverless !== undefined ||
    settings.pdPools !== undefined
  );
}

/**
 * The warning for a rate curve whose trailing rows have rate 0 within the run (`--duration` or the
 * curve's end), for a run without a control loop: the twin ends such a run at its last completion,
 * so that idle tail is not simulated and its GPU-seconds not counted (a controlled run ticks and
 * bills to the declared end: src/twin/workload-end.ts). Undefined when the curve arrives to its end,
 * loops, or is cut by a `--requests` count or a `--duration` inside its busy part.
 */
export function rateCurveTailWarning(spec: WorkloadSpecOf<'rate-curve'>): string | undefined {
  if (spec.repeat || spec.maxRequests !== undefined) return undefined;
  const points = spec.points ?? (spec.file !== undefined ? readRateCurve(spec.file) : []);
  const tail = idleTailOf(points);
  if (tail === undefined) return undefined;
  const endS = Math.min(spec.durationS ?? tail.endS, tail.endS);
  if (!(tail.fromS < endS)) return undefined;
  const name = spec.file !== undefined ? `rate curve ${spec.file}` : 'rate curve';
  return (
    `warning: ${name}: the rate is 0 from ${tail.fromS} s to ${endS} s; a run without --autoscaler ends at its ` +
    `last completion, so those idle seconds are not simulated (its GPU-seconds leave them out; an autoscaler's ` +
    `GPU-hours count them); end the curve at its last positive rate, or --duration ${tail.fromS}, to silence this`
  );
}

/** Runs one twin simulation on an already validated workload spec. */
export function runTwinSpec(
  settings: TwinSettings,
  spec: WorkloadSpec,
  onProgress?: ProgressReport,
  onDecision?: (entry: DecisionLogEntry) => void,
  onPlacement?: (entry: PlacementLogEntry) => void,
  /** Told a trace replay's time-unit warning (see traceUnitWarning), if it has one. */
  onWarning?: (line: string) => void,
): SimResult {
  const rng = new Rng(settings.seed);
  // Requests carry the run's SLO unless the workload gives its own, so SLO-aware policies aim at
  // what the run measures.
  const withSlo: WorkloadSpec = spec.slo !== undefined ? spec : { ...spec, slo: settings.slo };
  // A trace's replayed count, span and rate go in the header, and a rate implausible for the
  // format's time unit is warned about (the run goes on).
  const replay = withSlo.kind === 'trace' ? traceReplay(withSlo) : undefined;
  const source = replay?.source ?? createWorkload(withSlo, rng.fork('workload'));
  const stats = replay !== undefined ? replayStats(arrivalsOf(replay.source)) : undefined;
  if (stats !== undefined && stats.requests === 0 && (settings.batchJobs?.length ?? 0) === 0)
    throw noRequestsError(withSlo, stats);
  if (replay !== undefined && stats !== undefined && spec.kind === 'trace') {
    const warning = traceUnitWarning(spec.trace, replay.format, stats, spec.rateScale);
    if (warning !== undefined) onWarning?.(warning);
  }
  const controlled = isControlled(settings);
  if (spec.kind === 'rate-curve' && !controlled) {
    const warning = rateCurveTailWarning(spec);
    if (warning !== undefined) onWarning?.(warning);
  }
  const pd = settings.pd;
  const pair = pairPolicyOf(settings);
  const cluster = simulatedCluster(settings);
  return runSimulation(source, {
    seed: settings.seed,
    cluster,
    // Each group's GPU picks the batch limits the user did not set (`vllm serve`'s defaults).
    engine: toEngineConfig(settings.engine, cluster.groups[0]?.gpu),
    engineByGroup: engineConfigsFor(settings.engine, cluster),
    policy: pair?.prefill ?? buildPolicy(settings),
    slo: settings.slo,
    workload: describeWorkload(spec, stats),
    ...(onProgress !== undefined
      ? {
          // A trace replay's count is known before the run: a progress bar can fill.
          onProgress: (arrived: number, simulatedMs: number) =>
            onProgress(arrived, simulatedMs, stats?.requests),
        }
      : {}),
    admission: settings.admission,
    batchJobs: settings.batchJobs?.map((job) => buildBatchJob(job, rng.fork('batch'))),
    scrapeIntervalMs: settings.scrapeIntervalMs,
    faults: settings.faults,
    reliability: settings.reliability,
    onDecision,
    control: settings.control,
    placement: settings.placement,
    serverless: settings.serverless,
    onPlacement,
    pdPools: settings.pdPools,
    // Only a controlled run bills to the declared end (a ServeGen file without a duration is read for it).
    workloadEnd: controlled ? workloadEnd(withSlo) : undefined,
    pd:
      pd === undefined
        ? undefined
        : {
            ...pd,
            // The decode pool's own copy of a policy, as the gateway's decode pool has.
            decodePolicy:
              pair?.decode ?? createConfiguredPolicy(pd.pdPolicy, settings.policies, defaultPolicyContext()),
            // Mooncake's pair decides the decode side at arrival (pair.ts `decodeAt`).
            decodeAtArrival: pair?.decodeAt === 'arrival',
          },
  });
}

/**
 * The cluster a run simulates: `settings.cluster` itself, or the pool built from it (P/D's prefill
 * plus decode instances, a serverless or multi-model run's slots, an autoscaler's pool).
 */
export function simulatedCluster(settings: TwinSettings): ClusterSpec {
  if (settings.pd !== undefined) return pdCluster(settings.cluster, settings.pd, settings.pdPools);
  if (settings.serverless !== undefined) return serverlessCluster(settings.serverless);
  if (settings.placement !== undefined) return placementCluster(settings.placement);
  if (settings.control === undefined) return settings.cluster;
  return controlPool(settings.cluster, settings.control.maxInstances);
}

/** The P/D cluster: the run's one group of GPU, model and TP, prefill plus decode instances of it. */
function pdCluster(cluster: ClusterSpec, pd: PdRunSettings, pools?: PdPoolsSettings): ClusterSpec {
  const group = cluster.groups[0];
  if (group === undefined || cluster.groups.length !== 1)
    throw invalidArgument('prefill-instances', pd.prefillInstances, 'a cluster of one group');
  // Autoscaled pools: every slot of both (src/twin/pd-pools.ts).
  const count = pools !== undefined ? pdPoolSlots(pools) : pd.prefillInstances + pd.decodeInstances;
  return { groups: [{ ...group, count }] };
}

/** One policy's run in an experiment: its result at the workload's own rate, and its goodput if swept. */
export interface PolicyRun {
  readonly result: SimResult;
  /** Goodput at the settings' target (goodputTarget). */
  readonly goodput: GoodputResult | undefined;
  /** Goodput at each target asked for with `goodputTargets`, in that order (the sweeps share runs). */
  readonly goodputByTarget?: readonly GoodputResult[];
}

/** The workload's own mean arrival rate: requests over the span of arrivals. */
export function offeredRateRps(spec: WorkloadSpec, seed: number): number {
  let count = 0;
  let firstMs = Number.NaN;
  let lastMs = 0;
  for (const request of createWorkload(spec, new Rng(seed).fork('workload'))) {
    if (count === 0) firstMs = request.arrivalMs;
    lastMs = request.arrivalMs;
    count++;
  }
  const spanS = (lastMs - firstMs) / 1000;
  return count > 1 && spanS > 0 ? (count - 1) / spanS : 0;
}

/**
 * Runs each policy on the same workload and seed, and, when asked, sweeps each one's arrival rate
 * for goodput (the highest rate with >= target of requests meeting both SLOs, DistServe's
 * definition; the target is `settings.goodputTarget`, 0.9 by default). `goodputTargets` sweeps
 * several targets at once, reusing every rate already run.
 */
export function runExperiment(
  settings: TwinSettings,
  policies: readonly string[],
  options: {
    goodput: boolean;
    goodputTargets?: readonly number[];
    onRun?: (policy: string, what: string) => void;
    /** Told the trace replay's time-unit warning once (see runTwinSpec). */
    onWarning?: (line: string) => void;
  },
): PolicyRun[] {
  const spec = parseWithSchema(workloadSpecSchema, settings.workload, 'workload');
  const baseRate = options.goodput ? offeredRateRps(spec, settings.seed) : 0;
  // One request, or all at one instant, has no arrival rate: every point of the sweep would read
  // 0 req/s and the goodput come out 0 with every request within its SLO.
  if (options.goodput && !(baseRate > 0))
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      "invalid goodput: expected a workload whose requests arrive over time; this one's have no rate " +
        '(one request, or all at the same instant), so there is none to sweep: run without --goodput',
      { param: 'goodput' },
    );
  const target = settings.goodputTarget ?? GOODPUT_DEFAULTS.targetAttainment;
  return policies.map((policy, i) => {
    const perPolicy = { ...settings, policy };
    options.onRun?.(policy, 'base rate');
    const warn = i === 0 ? options.onWarning : undefined;
    const result = runTwinSpec(perPolicy, spec, undefined, undefined, undefined, warn);
    if (!options.goodput) return { result, goodput: undefined };
    const attainmentAt = new Map<number, number>([[1, result.summary.sloAttainment.both]]);
    const evaluate = (scale: number) => {
      let attainment = attainmentAt.get(scale);
      if (attainment === undefined) {
        options.onRun?.(policy, `rate x${scale.toFixed(3)}`);
        attainment = runTwinSpec(perPolicy, scaleWorkload(spec, scale)).summary.sloAttainment.both;
        attainmentAt.set(scale, attainment);
      }
      return { attainment, rateRps: baseRate * scale };
    };
    const sweep = (t: number) => goodputSweep(evaluate, { ...GOODPUT_DEFAULTS, targetAttainment: t });
    const goodput = sweep(target);
    if (options.goodputTargets === undefined) return { result, goodput };
    return { result, goodput, goodputByTarget: options.goodputTargets.map(sweep) };
  });
}

/**
 * Writes the JSON summary and the HTML report where asked; `autoscaler` (the run's control loop,
 * if any) labels the HTML report's replicas chart; `sharedGpus` (report/pool.ts) is the GPUs of the
 * nodes a multi-model or serverless pool's slots share, which the report names beside its slots.
 */
export function writeOutputs(
  runs: readonly PolicyRun[],
  output: TwinSettings['output'],
  autoscaler?: string,
  sharedGpus?: number,
  gpuBudget?: number,
): void {
  const withGoodput = (run: PolicyRun) => ({
    name: run.result.summary.policy,
    summary: run.result.summary,
    ...(run.goodput !== undefined ? { goodputRps: run.goodput.goodputRps } : {}),
  });
  if (output.json !== undefined) {
    let value: JsonValue;
    if (runs.length === 1) {
      const run = runs[0] as PolicyRun;
      value = summaryToJson(run.result.summary);
      if (run.goodput !== undefined) {
        value = {
          ...value,
          goodputRps: roundFloat(run.goodput.goodputRps),
          goodputSweep: toJsonValue(run.goodput),
        };
      }
      value = {
        ...value,
        ...controlJson(run.result),
        ...pdJson(run.result.pd),
        ...pdPoolsJson(run.result.pdPools),
      };
      const serverless = run.result.serverless;
      if (serverless !== undefined) {
        // Cold and warm TTFT sit beside the run's own figures: ttftMs.cold, ttftMs.warm.
        const ttft = value['ttftMs'];
        const all = ttft !== null && typeof ttft === 'object' && !Array.isArray(ttft) ? ttft : {};
        value = { ...value, ttftMs: { ...all, ...(toJsonValue(serverless.ttftMs) as JsonObject) } };
      }
    } else {
      value = { policies: comparisonToJson(runs.map(withGoodput)) };
    }
    writeText(output.json, stringifyJson(value));
  }
  if (output.html !== undefined) {
    const reports = runs.map((run) => ({
      ...run.result.report,
      ...(run.goodput !== undefined ? { goodputRps: run.goodput.goodputRps, goodputSweep: run.goodput } : {}),
      ...(autoscaler !== undefined ? controlReport(run.result, autoscaler, sharedGpus, gpuBudget) : {}),
    }));
    writeText(output.html, renderHtmlReport(reports));
  }
}

/**
 * What an autoscaled run adds to its JSON: GPU-hours billed, where the bills end, cold starts,
 * instance counts over time.
 */
export function controlJson(result: SimResult): Record<string, JsonValue> {
  if (result.gpuHours === undefined) return {};
  return {
    gpuHours: roundFloat(result.gpuHours),
    ...(result.billedUntilS !== undefined ? { billedUntilS: roundFloat(result.billedUntilS) } : {}),
    coldStarts: result.coldStarts ?? 0,
    instancesOverTime: toJsonValue(result.instancesOverTime ?? []),
    // A multi-model run (placement): each model's figures and the placement lines.
    ...(result.models !== undefined ? { models: toJsonValue(result.models) } : {}),
    ...(result.placementLog !== undefined ? { placementLog: toJsonValue(result.placementLog) } : {}),
    ...(result.serverless !== undefined ? { serverless: toJsonValue(result.serverless) } : {}),
  };
}

function writeText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

function* arrivalsOf(source: Iterable<{ readonly arrivalMs: number }>): Generator<number> {
  for (const r of source) yield r.arrivalMs;
}

/**
 * A one-line label for a workload spec, for reports. A trace replay's label gives what is replayed
 * (`replay`: count, span, rate) in place of the --requests/--duration limits when it is known.
 */
export function describeWorkload(spec: WorkloadSpec, replay?: ReplayStats): string {
  const limit = [
    spec.maxRequests !== undefined ? `${spec.maxRequests} requests` : '',
    spec.durationS !== undefined ? `${spec.durationS} s` : '',
  ]
    .filter((s) => s.length > 0)
    .join(', ');
  const declared = `, max_tokens ${formatDeclaredMaxTokens(spec.declaredMaxTokens)}`;
  const tail = `${limit.length > 0 ? ` (${limit})` : ''}${declared}`;
  switch (spec.kind) {
    case 'trace': {
      const what = replay !== undefined ? ` (${describeReplayRate(replay)})${declared}` : tail;
      return `trace ${spec.trace}${spec.rateScale !== 1 ? ` at ${spec.rateScale}x rate` : ''}${what}`;
    }
    case 'poisson':
      return `poisson ${describeRate(spec)}${tail}`;
    case 'gamma':
      return `gamma ${describeRate(spec)} cv ${spec.cv}${tail}`;
    case 'constant':
      return `constant ${describeRate(spec)}${tail}`;
    case 'system-prompts':
      return `system-prompts ${spec.groups} groups x ${spec.prefixTokens} tokens at ${spec.rateRps} req/s${tail}`;
    case 'sessions':
      return `sessions at ${spec.sessionRateRps} sessions/s${tail}`;
    case 'sinusoid':
    case 'rate-curve':
    case 'bursts':
      return `${describeTimeVarying(spec)}${tail}`;
    case 'servegen':
      return `${describeServegen(spec)}${tail}`;
    case 'multi-model':
      return `${describeMultiModel(spec)}${tail}`;
    default:
      return assertNever(spec, 'workload kind');
  }
}
