import type { RoutingDecision } from '../../core/decision.ts';
import type { InstanceId } from '../../core/ids.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import type { Request } from '../../core/request.ts';
import type { Rng } from '../../core/rng.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import type { PerfModel } from '../../model/types.ts';

/** Outcome hooks: how a policy learns what happened, instead of mutating state while selecting. */
export interface RoutingHooks {
  /** The host sent `request` to `instanceId`. */
  onRouted?(request: Request, instanceId: InstanceId, nowMs: number): void;
  onFirstToken?(request: Request, instanceId: InstanceId, nowMs: number): void;
  /**
   * The request finished on `instanceId`. `generatedTokens` is how many output tokens it produced
   * (the engine's usage or counted chunks live; the engine's count in the twin), or undefined where
   * the host cannot tell (a 4xx answer). This, not the request, is how a policy learns output lengths.
   */
  onCompleted?(request: Request, instanceId: InstanceId, nowMs: number, generatedTokens?: number): void;
  onFailed?(request: Request, instanceId: InstanceId, nowMs: number): void;
  /** An engine reported a change to its prefix cache (vLLM KV events). */
  onKvEvent?(instanceId: InstanceId, event: KvEvent, nowMs: number): void;
}

/**
 * A whole routing policy: decides which instance serves a request. `decide` must not mutate the
 * view or its own state; what it learns comes through the hooks, which the host calls.
 */
export interface RoutingPolicy extends RoutingHooks {
  readonly name: string;
  decide(view: ClusterView, request: Request, rng: Rng): RoutingDecision;
}

/** Narrows the candidate set (never widens it). Returning no candidate rejects the request. */
export interface Filter extends RoutingHooks {
  readonly name: string;
  filter(view: ClusterView, request: Request, candidates: readonly InstanceView[]): readonly InstanceView[];
}

/**
 * Scores each candidate; higher is better. Writes `out[i]` for `candidates[i]`. The profile clamps
 * scores to [0, 1] and weighs them, so a scorer never needs to normalise defensively.
 */
export interface Scorer extends RoutingHooks {
  readonly name: string;
  score(view: ClusterView, request: Request, candidates: readonly InstanceView[], out: Float64Array): void;
}

/** Picks one candidate from the weighted total scores. */
export interface Picker {
  readonly name: string;
  pick(candidates: readonly InstanceView[], totals: Float64Array, rng: Rng): number;
}

/** Services a host lends to policies. */
export interface PolicyContext {
  /** The performance model of an instance (its GPU, model and TP), for policies that predict time. */
  perfModel(instance: InstanceView): PerfModel;
}

/** Builds a policy from validated parameters. */
export type RoutingPolicyFactory = (
  params: Readonly<Record<string, unknown>>,
  context: PolicyContext,
) => RoutingPolicy;
