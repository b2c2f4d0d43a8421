import { reject, routeTo } from '../../core/decision.ts';
import type { InstanceId } from '../../core/ids.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { Request } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import type { Filter, Picker, RoutingHooks, RoutingPolicy, Scorer } from './types.ts';

/** A scorer and its weight in a profile. */
export interface WeightedScorer {
  readonly scorer: Scorer;
  readonly weight: number;
}

/** A scheduling profile: filters, then weighted scorers, then a picker (llm-d's shape). */
export interface ProfileSpec {
  readonly filters: readonly Filter[];
  readonly scorers: readonly WeightedScorer[];
  readonly picker: Picker;
}

/** Clamps to [0, 1]; NaN counts as 0 so a broken scorer cannot win. */
export function clamp01(x: number): number {
  return x > 0 ? (x < 1 ? x : 1) : 0;
}

/**
 * Turns a profile into a policy. The profile does the shared work once, so plugins stay small:
 * filtering in order, clamping every score to [0, 1], weighing, picking, and forwarding each hook
 * to every plugin that has it.
 */
export function createProfilePolicy(name: string, spec: ProfileSpec): RoutingPolicy {
  let scratch = new Float64Array(64);
  let totals = new Float64Array(64);
  const plugins: RoutingHooks[] = [...spec.filters, ...spec.scorers.map((s) => s.scorer)];
  const forward = <K extends keyof RoutingHooks>(hook: K): RoutingHooks[K] | undefined => {
    const withHook = plugins.filter((p) => p[hook] !== undefined);
    if (withHook.length === 0) return undefined;
    return ((...args: unknown[]) => {
      for (const p of withHook) (p[hook] as (...a: unknown[]) => void).apply(p, args);
    }) as RoutingHooks[K];
  };
  const policy: RoutingPolicy = {
    name,
    decide(view, request, rng) {
      let candidates: readonly InstanceView[] = view.instances;
      for (const filter of spec.filters) {
        candidates = filter.filter(view, request, candidates);
        if (candidates.length === 0) {
          return reject(
            'SY_ERR_NO_INSTANCE',
            `no instance passes filter '${filter.name}' for model '${request.model}'`,
          );
        }
      }
      const n = candidates.length;
      if (scratch.length < n) {
        scratch = new Float64Array(n * 2);
        totals = new Float64Array(n * 2);
      }
      const total = totals.subarray(0, n);
      const out = scratch.subarray(0, n);
      total.fill(0);
      for (const { scorer, weight } of spec.scorers) {
        if (weight === 0) continue;
        out.fill(0);
        scorer.score(view, request, candidates, out);
        for (let i = 0; i < n; i++) total[i] = (total[i] as number) + weight * clamp01(out[i] as number);
      }
      const index = spec.picker.pick(candidates, total, rng);
      return routeTo((candidates[index] as InstanceView).id);
    },
  };
  const hooks: RoutingHooks = {};
  const onRouted = forward('onRouted');
  const onFirstToken = forward('onFirstToken');
  const onCompleted = forward('onCompleted');
  const onFailed = forward('onFailed');
  const onKvEvent = forward('onKvEvent');
  if (onRouted) hooks.onRouted = onRouted as (r: Request, id: InstanceId, t: number) => void;
  if (onFirstToken) hooks.onFirstToken = onFirstToken as (r: Request, id: InstanceId, t: number) => void;
  if (onCompleted) hooks.onCompleted = onCompleted as NonNullable<RoutingHooks['onCompleted']>;
  if (onFailed) hooks.onFailed = onFailed as (r: Request, id: InstanceId, t: number) => void;
  if (onKvEvent) hooks.onKvEvent = onKvEvent as (id: InstanceId, e: KvEvent, t: number) => void;
  return Object.assign(policy, hooks);
}
