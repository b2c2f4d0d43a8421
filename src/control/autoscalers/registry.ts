/**
 * Every autoscaler (a `ControlLoop` that sets replica counts), by the name `--autoscaler` and
 * config use. Adding one is one entry in `AUTOSCALERS` plus its folder (code, test, README with its
 * rule, defaults and source).
 */
import { z } from 'zod';
import { invalidArgument, SwitchyardError, unknownName } from '../../core/errors.ts';
import type { ControlContext, ControlLoop } from '../types.ts';
import { apaParams, createApa } from './apa/apa.ts';
import { createDynamoPlanner, dynamoPlannerParams } from './dynamo-planner/planner.ts';
import { createKpa, kpaParams } from './kpa/kpa.ts';
import { createSaturation, saturationParams } from './saturation/saturation.ts';
import { createSloPlanner, sloPlannerParams } from './slo-planner/planner.ts';
import { createStatic } from './static/static.ts';

/** One registered autoscaler: a description, a strict schema for its parameters, and a factory. */
export interface AutoscalerEntry<P = Record<string, unknown>> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  create(context: ControlContext, params: P): ControlLoop;
}

/** The schema of an autoscaler without parameters: any key is unknown. */
export const noParams = z.strictObject({});

/** Keeps each entry's parameter type tied to its schema while the table holds them together. */
export function autoscalerEntry<P>(e: AutoscalerEntry<P>): AutoscalerEntry<unknown> {
  return e as unknown as AutoscalerEntry<unknown>;
}

const AUTOSCALERS: Readonly<Record<string, AutoscalerEntry<unknown>>> = {
  apa: autoscalerEntry({
    description: "AIBrix's APA: one signal per replica vs a target, tolerance band, rate limits, cooldowns",
    params: apaParams,
    create: createApa,
  }),
  'dynamo-planner': autoscalerEntry({
    description:
      "NVIDIA Dynamo's SLA planner: forecast load, replicas from per-replica req/s at the TTFT/ITL targets, GPU budget",
    params: dynamoPlannerParams,
    create: createDynamoPlanner,
  }),
  kpa: autoscalerEntry({
    description: "Knative's KPA: concurrency over 60 s stable / 6 s panic windows, no scale-down in panic",
    params: kpaParams,
    create: createKpa,
  }),
  saturation: autoscalerEntry({
    description:
      "llm-d WVA's saturation guardrail: KV and queue thresholds, add the cheapest variant, remove the dearest",
    params: saturationParams,
    create: createSaturation,
  }),
  'slo-planner': autoscalerEntry({
    description:
      "Switchyard's: replicas for the forecast demand a start-up ahead (level, trend, detected season) at the performance model's SLO capacity",
    params: sloPlannerParams,
    create: (context, params) => createSloPlanner(context, params),
  }),
  static: autoscalerEntry({
    description: 'peak provisioning: always maxReplicas (the baseline)',
    params: noParams,
    create: createStatic,
  }),
};

/** The names `--autoscaler` and config may use, sorted. */
export function autoscalerNames(): string[] {
  return Object.keys(AUTOSCALERS).sort();
}

/** The description of an autoscaler, for `--help`; empty for an unknown name. */
export function autoscalerDescription(name: string): string {
  return entryOf(name, false)?.description ?? '';
}

/**
 * Builds an autoscaler by name with validated parameters. An unknown name fails with
 * SY_ERR_UNKNOWN_NAME listing the valid ones; an unknown or malformed parameter fails with
 * SY_ERR_INVALID_CONFIG naming it; a context with impossible bounds fails with SY_ERR_INVALID_ARGUMENT.
 */
export function createAutoscaler(
  name: string,
  context: ControlContext,
  params: Readonly<Record<string, unknown>> = {},
): ControlLoop {
  const e = entryOf(name, true);
  checkContext(context);
  return e.create(context, parseParams(e, name, params));
}

/**
 * Checks a name and its parameters without building the loop, with the errors `createAutoscaler`
 * gives: a host validates its configuration at start-up.
 */
export function checkAutoscaler(name: string, params: Readonly<Record<string, unknown>> = {}): void {
  parseParams(entryOf(name, true), name, params);
}

function entryOf(name: string, required: true): AutoscalerEntry<unknown>;
function entryOf(name: string, required: false): AutoscalerEntry<unknown> | undefined;
function entryOf(name: string, required: boolean): AutoscalerEntry<unknown> | undefined {
  const e = Object.hasOwn(AUTOSCALERS, name) ? AUTOSCALERS[name] : undefined;
  if (e === undefined && required) throw unknownName('autoscaler', name, autoscalerNames());
  return e;
}

function checkContext(c: ControlContext): void {
  if (c.variants.length === 0) throw invalidArgument('variants', '[]', 'at least one variant');
  if (!Number.isInteger(c.minReplicas) || c.minReplicas < 0) {
    throw invalidArgument('minReplicas', c.minReplicas, 'an integer >= 0');
  }
  if (!Number.isInteger(c.maxReplicas) || c.maxReplicas < Math.max(1, c.minReplicas)) {
    throw invalidArgument('maxReplicas', c.maxReplicas, `an integer >= max(1, minReplicas ${c.minReplicas})`);
  }
  if (!(Number.isFinite(c.intervalMs) && c.intervalMs > 0)) {
    throw invalidArgument('intervalMs', c.intervalMs, 'a number of ms > 0');
  }
}

function parseParams(
  e: AutoscalerEntry<unknown>,
  name: string,
  params: Readonly<Record<string, unknown>>,
): unknown {
  const parsed = e.params.safeParse(params);
  if (parsed.success) return parsed.data;
  const valid = shapeKeys(e.params);
  const problems = parsed.error.issues.map((i) => {
    const where = i.path.join('.') || '(params)';
    // Name the keys that do exist, so a typo is one look away from its fix.
    const hint =
      i.code === 'unrecognized_keys' ? `; valid: ${valid.length > 0 ? valid.join(', ') : '(none)'}` : '';
    return `${where}: ${i.message}${hint}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `autoscaler '${name}': ${problems.join('; ')}`, {
    param: 'params',
    problems,
  });
}

/** The top-level keys an object schema accepts, sorted (none for other schemas). */
function shapeKeys(schema: unknown): string[] {
  const def = (schema as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  if (def?.['type'] !== 'object') return [];
  return Object.keys((def['shape'] ?? {}) as Record<string, unknown>).sort();
}
