import type { RoutingDecision } from '../../core/decision.ts';
import type { InstanceId } from '../../core/ids.ts';
import type { Request } from '../../core/request.ts';
import type { Rng } from '../../core/rng.ts';
import type { ClusterView } from '../../core/view.ts';

/**
 * A routing policy: decides which instance serves a request. `decide` must not mutate the view or
 * any state of its own; what it learns about outcomes comes through the hooks, which the host calls.
 */
export interface RoutingPolicy {
  readonly name: string;
  decide(view: ClusterView, request: Request, rng: Rng): RoutingDecision;
  /** The host sent `request` to `instanceId`. */
  onRouted?(request: Request, instanceId: InstanceId, nowMs: number): void;
  onFirstToken?(request: Request, instanceId: InstanceId, nowMs: number): void;
  onCompleted?(request: Request, instanceId: InstanceId, nowMs: number): void;
  onFailed?(request: Request, instanceId: InstanceId, nowMs: number): void;
}

/** Builds a policy from its parameters (already validated by the factory's own schema). */
export type RoutingPolicyFactory = (params: Readonly<Record<string, unknown>>) => RoutingPolicy;
