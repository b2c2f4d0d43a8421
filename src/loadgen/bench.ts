/**
 * One bench run from validated options: build the plan (synthetic, trace, or the twin's workload from
 * a file), find the model, send
 * the plan open-loop through a pooled client, and summarise.
 */
import { SwitchyardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { createWorkload, replayStats, traceLimit, traceUnitWarning } from '../workload/create.ts';
import { formatDeclaredMaxTokens } from '../workload/declared.ts';
import { readTrace } from '../workload/traces/read.ts';
import type { TraceFormat } from '../workload/types.ts';
import { OpenAiClient } from './client.ts';
import { type BenchOptions, namesOwnModels } from './options.ts';
import { syntheticPlan, tracePlan, workloadPlan } from './plan.ts';
import {
  type BenchPriorityOrder,
  priorityOrderLine,
  priorityOrderOf,
  specSetsPriority,
} from './priority-order.ts';
import { PromptSynth } from './prompts.ts';
import { type RunHooks, runPlan } from './runner.ts';

/** The report's model of a run whose requests name their own models. */
export const OWN_MODELS = 'per request';

import type { BenchPlan, BenchSummary } from './types.ts';

/** The plan of a run, from its options (reads the trace for a trace source). */
export function buildPlan(options: BenchOptions): { plan: BenchPlan; prompts: PromptSynth } {
  const s = options.source;
  if (s.kind === 'workload') {
    // The twin's stream for this seed: runTwinSpec draws it from new Rng(seed).fork('workload').
    const source = createWorkload(s.file.spec, new Rng(options.seed).fork('workload'));
    const plan = workloadPlan(source, {
      rateScale: s.rateScale,
      requests: s.requests,
      durationS: s.durationS,
      workload: workloadDescription(s),
      ownModels: namesOwnModels(s.file.spec),
    });
    return { plan, prompts: new PromptSynth(options.seed) };
  }
  if (s.kind === 'trace') {
    // Read only as far as the plan goes (tracePlan slices in trace time, before scaling).
    const durationS = s.durationS === undefined ? undefined : s.durationS * s.rateScale;
    const trace = readTrace(s.trace, undefined, traceLimit(0, durationS, s.requests));
    const plan = tracePlan(trace, { rateScale: s.rateScale, requests: s.requests, durationS: s.durationS });
    return { plan, prompts: new PromptSynth(options.seed, trace.blockTokens) };
  }
  const plan = syntheticPlan({
    rateRps: s.rateRps,
    cv: s.cv,
    ...(s.constant === true ? { constant: true } : {}),
    ...(s.stages !== undefined ? { stages: s.stages } : {}),
    requests: s.requests,
    durationS: s.durationS,
    inputTokens: s.inputTokens,
    outputTokens: s.outputTokens,
    prefixGroups: s.prefixGroups,
    prefixTokens: s.prefixTokens,
    seed: options.seed,
  });
  return { plan, prompts: new PromptSynth(options.seed) };
}

/** The JSON report's workload of a --workload FILE run. */
function workloadDescription(
  s: Extract<BenchOptions['source'], { kind: 'workload' }>,
): Record<string, unknown> {
  const spec = s.file.spec;
  return {
    kind: 'workload',
    file: s.file.path,
    form: s.file.form,
    spec: spec.kind,
    rateScale: s.rateScale,
    // What the twin's policies see as max_tokens; live, max_tokens is the generated length.
    declaredMaxTokens: formatDeclaredMaxTokens(spec.declaredMaxTokens),
    maxTokens: 'generated',
    ...(s.requests !== undefined ? { requests: s.requests } : {}),
    ...(s.durationS !== undefined ? { durationS: s.durationS } : {}),
  };
}

/** Hooks of runBench: the runner's, plus one call once the plan is known. */
export interface BenchHooks extends RunHooks {
  /** Called before the first request, with the plan's size (when known) and the model. */
  readonly onStart?: (total: number | undefined, model: string) => void;
  /**
   * Told, before anything is sent, when a --trace plan's rate is implausible for the format's time
   * unit (see traceUnitWarning); the run goes on. Default: the line is written to stderr.
   */
  readonly onWarning?: (line: string) => void;
}

/** The time-unit warning of a --trace plan (judged on what is sent, after --rate-scale), if any. */
export function planUnitWarning(options: BenchOptions, plan: BenchPlan): string | undefined {
  const s = options.source;
  if (s.kind !== 'trace') return undefined;
  const stats = replayStats(Array.from(plan.requests, (r) => r.atMs));
  return traceUnitWarning(s.trace, plan.workload['format'] as TraceFormat, stats, s.rateScale);
}

/**
 * The order a --workload run sends priorities in: --engine-priority's, else told from the target's
 * `owned_by` (a gateway: as written; unknown: as written, with a warning). Says before the run,
 * when the workload sets priorities, what it applies unless the flag named it.
 */
function workloadPriorityOrder(
  options: BenchOptions,
  url: string,
  ownedBy: string | undefined,
  hooks: BenchHooks,
): BenchPriorityOrder | undefined {
  const source = options.source;
  if (source.kind !== 'workload') return undefined;
  if (source.enginePriority !== undefined) return source.enginePriority;
  const order = priorityOrderOf(ownedBy);
  if (specSetsPriority(source.file.spec)) {
    const line = priorityOrderLine(url, ownedBy, order);
    if (line !== undefined) (hooks.onWarning ?? ((l) => process.stderr.write(`${l}\n`)))(line);
  }
  return order ?? 'gateway';
}

/**
 * Runs a benchmark. Fails before sending anything when the server cannot be reached
 * or names no model when none was given (SY_ERR_UPSTREAM).
 */
export async function runBench(options: BenchOptions, hooks: BenchHooks = {}): Promise<BenchSummary> {
  const { plan, prompts } = buildPlan(options);
  const warning = planUnitWarning(options, plan);
  if (warning !== undefined) (hooks.onWarning ?? ((line) => process.stderr.write(`${line}\n`)))(warning);
  const client = new OpenAiClient({
    baseUrl: options.url,
    apiKey: options.apiKey,
    connections: options.maxConcurrency,
    timeoutMs: options.timeoutMs,
  });
  try {
    // Always asked, even with --model: an unreachable server fails here, before the run.
    const models = await client.listModels(Math.min(options.timeoutMs, 10_000));
    // A plan whose requests all name their models needs no model of its own.
    const model = options.model ?? models.ids[0] ?? (plan.ownModels === true ? OWN_MODELS : undefined);
    if (model === undefined) {
      const why =
        models.error !== undefined
          ? `GET ${client.url}/v1/models answered ${models.status} (${models.error})`
          : `${client.url}/v1/models lists no model`;
      throw new SwitchyardError(
        'SY_ERR_UPSTREAM',
        `${why}; name the model with --model${models.status === 401 || models.status === 403 ? ' or check --api-key' : ''}`,
        { param: '--model' },
      );
    }
    const priorityOrder = workloadPriorityOrder(
      options,
      client.url,
      models.owners.get(model) ?? models.owners.values().next().value,
      hooks,
    );
    hooks.onStart?.(plan.total, model);
    const label = plan.ownModels === true && options.model === undefined ? OWN_MODELS : model;
    return await runPlan(
      plan,
      prompts,
      client,
      {
        endpoint: options.endpoint,
        model,
        stream: options.stream,
        ignoreEos: options.ignoreEos,
        maxConcurrency: options.maxConcurrency,
        overflow: options.overflow,
        slo: { ttftMs: options.sloTtftMs, tpotMs: options.sloTpotMs },
        saveRequests: options.saveRequests,
        ...(options.source.kind === 'workload'
          ? { tenantKeys: options.source.tenantKeys, priorityOrder }
          : {}),
      },
      {
        url: client.url,
        endpoint: options.endpoint,
        model: label,
        stream: options.stream,
        seed: options.seed,
        workload: plan.workload,
      },
      hooks,
    );
  } finally {
    await client.close();
  }
}
