/**
 * The control layer's interfaces (DESIGN.md, `src/control/`): control loops observe a window of the
 * cluster and return a desired state; an actuator turns the difference into actions. Like routing
 * policies, loops are written once and run in both hosts: the twin calls them on its virtual clock,
 * the gateway on the wall clock. A loop never reads the clock or randomness itself; everything it may
 * use arrives in its `ControlObservation`, and the same observations give the same decisions.
 */
import type { GpuId, InstanceId, ModelId } from '../core/ids.ts';
import type { ClusterView, InstanceRole } from '../core/view.ts';

/** What one instance runs: the unit an autoscaler counts. */
export interface Variant {
  readonly model: ModelId;
  readonly gpu: GpuId;
  readonly tp: number;
  readonly role: InstanceRole;
}

/** A stable key for a variant, e.g. `llama-3.1-8b/h100/tp1/both` (map keys, logs, metric labels). */
export function variantKey(v: Variant): string {
  return `${v.model}/${v.gpu}/tp${v.tp}/${v.role}`;
}

/**
 * An instance's lifecycle as the actuator reports it. `pending`: asked for, waiting for GPUs;
 * `starting`: GPUs held, loading weights and initialising (GPU-seconds count from here); `ready`:
 * taking requests; `draining`: takes nothing new, finishes what it runs, then releases its GPUs.
 */
export type InstancePhase = 'pending' | 'starting' | 'ready' | 'draining';

/** One instance under control. */
export interface ManagedInstance {
  readonly id: InstanceId;
  readonly variant: Variant;
  readonly phase: InstancePhase;
  /** Host time the instance entered its current phase. */
  readonly sinceMs: number;
}

/**
 * What the host measured for one model over one control interval. Rates are per second of the
 * window; latency figures cover requests that completed in it (NaN when none did).
 */
export interface TrafficWindow {
  readonly startMs: number;
  readonly endMs: number;
  /** Requests that arrived at the host for this model in the window. */
  readonly arrivals: number;
  /** Mean prompt tokens of those arrivals (NaN when none). */
  readonly meanInputTokens: number;
  /** Mean output tokens of the requests that completed in the window (NaN when none). */
  readonly meanOutputTokens: number;
  /** Requests that completed (successfully) in the window. */
  readonly completions: number;
  /** Requests that ended in an error or a rejection in the window. */
  readonly failures: number;
  /** Time-averaged number of requests in flight at the host (sent to engines or queued there). */
  readonly meanConcurrency: number;
  /** Requests held at the host (admission queue, scale-from-zero buffer) at the window's end. */
  readonly queuedAtEnd: number;
  readonly ttftMsP50: number;
  readonly ttftMsP90: number;
  /** Mean time per output token after the first, over the completed requests. */
  readonly tpotMsMean: number;
  /**
   * Fraction of the completed requests that met both SLOs (TTFT and TPOT, as configured for the
   * model); NaN when none completed or no SLO is set.
   */
  readonly sloAttainment: number;
}

/** The objectives a loop may plan for. Missing fields: no objective of that kind. */
export interface ServiceObjectives {
  readonly ttftMs?: number;
  readonly tpotMs?: number;
  /** Target fraction of requests meeting both, e.g. 0.99. */
  readonly attainment?: number;
}

/** Everything a control loop may read at one tick, for one model. */
export interface ControlObservation {
  readonly nowMs: number;
  readonly model: ModelId;
  /** The model's instances in every phase, as the actuator reports them. */
  readonly instances: readonly ManagedInstance[];
  /** Per-instance signals of the model's instances, as a routing policy sees them (ready and draining). */
  readonly view: ClusterView;
  /** The window that just ended. */
  readonly window: TrafficWindow;
  /** Earlier windows, oldest first, `window` last; bounded by the host (`CONTROL_HISTORY_MAX`). */
  readonly history: readonly TrafficWindow[];
}

/** How many past windows a host keeps for its loops: a week of one-minute windows. */
export const CONTROL_HISTORY_MAX = 7 * 24 * 60;

/** The number of instances a loop wants of one variant. */
export interface ReplicaTarget {
  readonly variant: Variant;
  readonly replicas: number;
}

/** A loop's answer for one tick: the whole desired state of its model, and why. */
export interface ControlDecision {
  /** Instances wanted per variant; variants not listed are wanted at zero. */
  readonly targets: readonly ReplicaTarget[];
  /** One line for the decision log, e.g. `panic: concurrency 41.2 > 2 x 16 per pod`. */
  readonly reason: string;
}

/** What a loop is told once, when it is built. */
export interface ControlContext {
  readonly model: ModelId;
  /** The variants it may ask for, the default (cheapest or configured) first. */
  readonly variants: readonly Variant[];
  readonly minReplicas: number;
  readonly maxReplicas: number;
  /** How often the host calls `decide`, ms. */
  readonly intervalMs: number;
  readonly objectives: ServiceObjectives;
  /**
   * Expected time from asking for an instance of the default variant to its taking requests, as the
   * host's start-up model says (weights from their tier, engine initialisation, graph capture).
   * Loops that scale ahead of demand plan over it; unset when the host has no model of it.
   */
  readonly startupMs?: number;
}

/**
 * A control loop: called by the host every `ControlContext.intervalMs` with the latest observation.
 * It may keep state between calls (its own windows, a forecaster) but must be deterministic in its
 * inputs; it never reads a clock or a random source.
 */
export interface ControlLoop {
  readonly name: string;
  decide(observation: ControlObservation): ControlDecision;
}

/** One step an actuator takes to move the cluster toward a decision. */
export type ControlAction =
  | { readonly kind: 'start'; readonly variant: Variant; readonly instanceId: InstanceId }
  | { readonly kind: 'drain'; readonly instanceId: InstanceId };

/**
 * Turns decisions into actions on real or modelled instances: the twin's actuator starts modelled
 * instances after their start-up time, the local actuator spawns built-in engines, a Kubernetes
 * setup only exports the desired counts. `apply` returns the actions it took.
 */
export interface Actuator {
  instances(model: ModelId): readonly ManagedInstance[];
  apply(model: ModelId, decision: ControlDecision, nowMs: number): readonly ControlAction[];
}

/** Sum of the replicas a decision wants, over all variants. */
export function totalReplicas(decision: ControlDecision): number {
  let n = 0;
  for (const t of decision.targets) n += t.replicas;
  return n;
}

/** A decision for one variant, clamped to the context's bounds. */
export function singleVariantDecision(
  context: ControlContext,
  replicas: number,
  reason: string,
): ControlDecision {
  const variant = context.variants[0];
  if (variant === undefined) throw new RangeError(`control loop for ${context.model} has no variant`);
  const clamped = Math.max(context.minReplicas, Math.min(context.maxReplicas, Math.ceil(replicas)));
  return { targets: [{ variant, replicas: clamped }], reason };
}
