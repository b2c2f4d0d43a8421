import { z } from 'zod';
import { SwitchyardError, unknownName } from '../../core/errors.ts';
import type { GpuId, ModelId } from '../../core/ids.ts';
import type { InstanceView } from '../../core/view.ts';
import { perfModelFor } from '../../model/perf.ts';
import type { PerfModel } from '../../model/types.ts';
import { CATALOGUE } from './catalogue.ts';
import type { RoutingPolicyEntry } from './entry.ts';
import type { PolicyContext, RoutingPolicy } from './types.ts';

const ENTRIES = CATALOGUE;

/** The type names a config or `--policy` may use. */
export function routingPolicyNames(): string[] {
  return Object.keys(ENTRIES).sort();
}

/** The description of a policy type, for `--help`. */
export function routingPolicyDescription(name: string): string {
  return ENTRIES[name]?.description ?? '';
}

/** Catalogue ids of the performance model an instance runs with (src/model: GPU, model, TP). */
export interface PerfModelRef {
  readonly gpu: GpuId;
  readonly model: ModelId;
  readonly tp: number;
}

/**
 * A context whose performance models come from `refOf`, built once per distinct (gpu, model, tp).
 * A host that knows which catalogue model each instance runs (the gateway's `perfModel` mapping)
 * passes its own `refOf`; an unknown id throws SY_ERR_UNKNOWN_NAME from the catalogue.
 */
export function perfModelContext(refOf: (instance: InstanceView) => PerfModelRef): PolicyContext {
  const cache = new Map<string, PerfModel>();
  return {
    perfModel(instance: InstanceView): PerfModel {
      const ref = refOf(instance);
      const key = `${ref.gpu}/${ref.model}/${ref.tp}`;
      let perf = cache.get(key);
      if (perf === undefined) {
        perf = perfModelFor(ref.gpu, ref.model, ref.tp);
        cache.set(key, perf);
      }
      return perf;
    },
  };
}

/**
 * The twin's context: an instance's first model, GPU and TP are catalogue ids already (the twin
 * builds its cluster from them).
 */
export function defaultPolicyContext(): PolicyContext {
  return perfModelContext((instance) => ({
    gpu: instance.gpu,
    model: instance.models[0] ?? 'llama-3.1-8b',
    tp: instance.tp,
  }));
}

/**
 * Whether the policy a config names (a named instance or a registered type) predicts time through
 * `PolicyContext.perfModel`. An unknown name answers false: creating the policy reports it.
 */
export function policyNeedsPerfModel(name: string, named: RoutingConfig['policies'] = {}): boolean {
  const type = Object.hasOwn(named, name) ? (named[name] as { type: string }).type : name;
  const e = Object.hasOwn(ENTRIES, type) ? ENTRIES[type] : undefined;
  return e?.needsPerfModel === true;
}

/**
 * Builds a policy by type name with validated parameters. An unknown name fails and lists the
 * valid ones; an unknown or malformed parameter fails naming it.
 */
export function createRoutingPolicy(
  name: string,
  params: Readonly<Record<string, unknown>> = {},
  context: PolicyContext = defaultPolicyContext(),
  label = name,
): RoutingPolicy {
  const e = entryOf(name);
  const policy = e.create(parseParams(e, name, params, label), context);
  return label === policy.name
    ? policy
    : { ...bindHooks(policy), name: label, decide: policy.decide.bind(policy) };
}

/**
 * Checks a policy type and its parameters without building it, with the errors `createRoutingPolicy`
 * gives: a host validates every named policy of its config at start-up, not when one is switched to.
 */
export function checkRoutingPolicy(
  name: string,
  params: Readonly<Record<string, unknown>> = {},
  label = name,
): void {
  parseParams(entryOf(name), name, params, label);
}

function entryOf(name: string): RoutingPolicyEntry<unknown> {
  const e = Object.hasOwn(ENTRIES, name) ? ENTRIES[name] : undefined;
  if (e === undefined) throw unknownName('routing policy', name, routingPolicyNames());
  return e;
}

function parseParams(
  e: RoutingPolicyEntry<unknown>,
  name: string,
  params: Readonly<Record<string, unknown>>,
  label: string,
): unknown {
  const parsed = e.params.safeParse(params);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    const where = i.path.join('.') || '(params)';
    // Name the keys that do exist, so a typo is one look away from its fix.
    const valid = validKeys(e.params, i.path);
    const hint =
      i.code === 'unrecognized_keys' ? `; valid: ${valid.length > 0 ? valid.join(', ') : '(none)'}` : '';
    return `${where}: ${i.message}${hint}`;
  });
  throw new SwitchyardError(
    'SY_ERR_INVALID_CONFIG',
    `routing policy '${label}' (type ${name}): ${problems.join('; ')}`,
    { param: 'params', problems },
  );
}

function bindHooks(policy: RoutingPolicy): Partial<RoutingPolicy> {
  const out: Record<string, unknown> = {};
  for (const hook of ['onRouted', 'onFirstToken', 'onCompleted', 'onFailed', 'onKvEvent'] as const) {
    const f = policy[hook];
    if (f !== undefined) out[hook] = (f as (...a: unknown[]) => void).bind(policy);
  }
  return out as Partial<RoutingPolicy>;
}

/**
 * The `routing:` section of a config: named policy instances (a type and its parameters) and the
 * one that is active. A name may also be used directly as a type with default parameters.
 */
export const routingConfigSchema = z.strictObject({
  policy: z.string(),
  policies: z
    .record(
      z.string(),
      z.strictObject({ type: z.string(), params: z.record(z.string(), z.unknown()).default({}) }),
    )
    .default({}),
});
export type RoutingConfig = z.infer<typeof routingConfigSchema>;

/** Resolves a policy name against a config's named instances, falling back to a registered type. */
export function createConfiguredPolicy(
  name: string,
  named: RoutingConfig['policies'],
  context: PolicyContext = defaultPolicyContext(),
): RoutingPolicy {
  const instance = Object.hasOwn(named, name) ? named[name] : undefined;
  if (instance !== undefined) return createRoutingPolicy(instance.type, instance.params, context, name);
  if (!Object.hasOwn(ENTRIES, name)) {
    throw unknownName('routing policy', name, [...routingPolicyNames(), ...Object.keys(named)]);
  }
  return createRoutingPolicy(name, {}, context);
}

/** The keys a policy's schema accepts at `path` (its object shapes, through arrays and defaults), sorted. */
function validKeys(schema: unknown, path: readonly PropertyKey[]): string[] {
  let node = schema;
  let i = 0;
  for (let guard = 0; guard < 32 && node !== undefined; guard++) {
    const def = (node as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
    if (def === undefined) return [];
    if (def['type'] === 'object') {
      const shape = (def['shape'] ?? {}) as Record<string, unknown>;
      if (i >= path.length) return Object.keys(shape).sort();
      node = shape[String(path[i++])];
    } else if (def['type'] === 'array') {
      if (i++ >= path.length) return [];
      node = def['element'];
    } else if (def['type'] === 'pipe') node = def['in'];
    else node = def['innerType'];
  }
  return [];
}
