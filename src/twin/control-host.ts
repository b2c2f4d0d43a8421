/**
 * The twin's control host: runs one control loop (an autoscaler from the registry) on the virtual
 * clock and acts as its actuator over a fixed pool of modelled instances.
 *
 * The simulator builds `maxInstances` SimInstances up front; the pool (src/twin/model-pool.ts, the
 * machinery shared with the multi-model PlacementHost) moves each one through stopped -> starting ->
 * ready -> draining -> stopped. Only ready and draining instances are in the policies' view, and only
 * ready ones are eligible (every non-ready instance has `draining` set, so `isEligible` refuses it
 * there and in retry views). A start becomes ready after the model's start-up time
 * (src/model/startup.ts) with an empty engine; its GPUs are billed from the start. A draining
 * instance gets nothing new, finishes what it runs, then stops and releases its GPUs. This host has
 * the GPUs, so no instance ever waits in `pending`. A request that finds no ready instance (a pool
 * at zero) waits in the pool's bounded buffer until one is ready.
 *
 * Every `intervalMs` the host closes a TrafficWindow from what it saw (arrivals, completions,
 * failures, time-averaged concurrency, TTFT p50/p90, TPOT mean, SLO attainment, requests held),
 * asks the loop with the window, its bounded history and the view, and applies the answer: start the
 * lowest-index stopped instances, or stop starting ones and drain the highest-index ready ones.
 * Loops read time only through the observation.
 */

import { createAutoscaler } from '../control/autoscalers/registry.ts';
import {
  type Actuator,
  type ControlAction,
  type ControlContext,
  type ControlDecision,
  type ControlLoop,
  type ControlObservation,
  type ManagedInstance,
  type ServiceObjectives,
  totalReplicas,
  type Variant,
} from '../control/types.ts';
import type { ErrorCode } from '../core/errors.ts';
import { invalidArgument } from '../core/errors.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { type CompileMode, startupTimeMs } from '../model/startup.ts';
import type { StorageTier } from '../model/types.ts';
import type { ClusterSpec, SimInstance } from './cluster.ts';
import { type HoldSettings, type InstanceCountPoint, ModelPool } from './model-pool.ts';

export {
  HELD_REQUESTS_MAX_DEFAULT,
  HELD_WAIT_MS_DEFAULT,
  INSTANCE_SERIES_POINTS_MAX,
  type InstanceCountPoint,
} from './model-pool.ts';

/** How often the twin asks a loop unless told otherwise: Knative's 2 s tick. */
export const CONTROL_INTERVAL_MS_DEFAULT = 2000;

/** The `control` block of SimOptions: which loop runs, its bounds and how instances start. */
export interface ControlSettings extends HoldSettings {
  /** A registered autoscaler name (src/control/autoscalers/registry.ts). */
  readonly autoscaler: string;
  readonly params?: Readonly<Record<string, unknown>> | undefined;
  /**
   * Parameters per autoscaler name, for hosts that run several in turn (a comparison): each run
   * takes its own entry as `params`.
   */
  readonly paramsByName?: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined;
  /**
   * Builds the loop in place of the registry (a loop not registered: tests, embedding); the
   * context is the one `createAutoscaler` would get.
   */
  readonly create?: ((context: ControlContext) => ControlLoop) | undefined;
  readonly minInstances: number;
  /** The pool: the cluster's (single) group must have exactly this many instances. */
  readonly maxInstances: number;
  /** Default CONTROL_INTERVAL_MS_DEFAULT. */
  readonly intervalMs?: number | undefined;
  /** What the loop plans for and the window's attainment measures; default the run's SLO. */
  readonly slo?: ServiceObjectives | undefined;
  /** Where weights are read from on a start (default nvme). */
  readonly startupTier?: StorageTier | undefined;
  /** torch.compile at start-up (default cached). */
  readonly compile?: CompileMode | undefined;
  /** A fixed start-up time in place of the model's, ms (tests, what-ifs). */
  readonly startupMs?: number | undefined;
  /**
   * Instances provisioned before the run (ready at 0, not cold starts), in place of asking the loop
   * at time 0: a P/D pool starts at its `--prefill-instances`/`--decode-instances` count.
   */
  readonly initialInstances?: number | undefined;
}

/**
 * The pool a controlled run simulates: the cluster's one group, `maxInstances` of it. A cluster of
 * several groups is refused (one loop controls one variant).
 */
export function controlPool(cluster: ClusterSpec, maxInstances: number): ClusterSpec {
  const group = cluster.groups[0];
  if (group === undefined || cluster.groups.length !== 1) {
    throw invalidArgument('cluster', `${cluster.groups.length} groups`, 'one group under an autoscaler');
  }
  return { groups: [{ ...group, count: maxInstances }] };
}

/** One model's figures in a multi-model run (PlacementHost). */
export interface ModelOutcome {
  /** The served id. */
  readonly model: string;
  /** The catalogue model it runs as. */
  readonly base: string;
  readonly priority: number;
  readonly autoscaler: string;
  readonly gpuHours: number;
  readonly coldStarts: number;
  readonly startupMs: number;
  /** Online requests of the model, and those completed, rejected or failed. */
  readonly requests: number;
  readonly completed: number;
  readonly rejected: number;
  /** Completed within both SLOs, over completed plus rejected (as the run's summary counts). */
  readonly sloAttainment: number;
  /** Instances of the model evicted for a higher-priority one. */
  readonly preempted: number;
  /** Control ticks at which some instance the model's loop wanted could not be placed. */
  readonly shortTicks: number;
  readonly instancesOverTime: readonly InstanceCountPoint[];
}

/** One placement decision-log line: when, and the line from the plan. */
export interface PlacementLogEntry {
  readonly atMs: number;
  readonly placement: string;
  /** The P/D pool a scale line is about (src/twin/pd-pools.ts); absent elsewhere. */
  readonly pool?: 'prefill' | 'decode' | undefined;
}

/** What one tick of a loop changed: the actions taken, the count wanted and the loop's reason. */
export interface ScaleEvent {
  readonly atMs: number;
  readonly actions: readonly ControlAction[];
  /** The count the loop asked for, clamped to the pool. */
  readonly desired: number;
  readonly reason: string;
}

/** What a controlled run adds to its result. */
export interface ControlOutcome {
  readonly autoscaler: string;
  /**
   * GPU-hours billed: every GPU from its instance's start to its release or the run's end (the later
   * of the last completion and the workload's declared end), whichever is first.
   */
  readonly gpuHours: number;
  /** Instances started after time 0 (those provisioned before the run are not cold starts). */
  readonly coldStarts: number;
  /** Start-up time of one instance, ms (the largest, with several models). */
  readonly startupMs: number;
  readonly instancesOverTime: readonly InstanceCountPoint[];
  /** With several models: each one's figures, in config order. */
  readonly models?: readonly ModelOutcome[];
  /** With several models: the first PLACEMENT_LOG_KEPT_MAX placement lines. */
  readonly placementLog?: readonly PlacementLogEntry[];
}

/** Everything a host needs from the twin besides the instances. */
export interface ControlHostDeps {
  /** The view policies read; the host sets its `instances` to the routable ones. */
  readonly view: { nowMs: number; instances: readonly SimInstance[] };
  /** The run's SLO, when the control block names none. */
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  /** Requests held at the host (the admission queue) right now. */
  readonly queued: () => number;
  /** Routes a request the buffer held, now that an instance is ready. */
  readonly release: (request: Request, offline: boolean) => void;
  /** Ends a request the buffer refused at the door (full: SY_ERR_SCALE_BUFFER_FULL), a refusal. */
  readonly refuse: (request: Request, offline: boolean, code: ErrorCode) => void;
  /**
   * Ends a request the buffer held that will not reach an instance (held too long:
   * SY_ERR_COLD_START_TIMEOUT). The live gateway counts a held request accepted, so this is a
   * failure (`failed{cold_start_timeout}`), not a refusal.
   */
  readonly fail: (request: Request, offline: boolean, code: ErrorCode) => void;
  /** Receives each placement decision-log line as it is made (multi-model runs). */
  readonly onPlacement?: ((entry: PlacementLogEntry) => void) | undefined;
  /** Told of every tick that started or drained something (ControlHost only). */
  readonly onScale?: ((event: ScaleEvent) => void) | undefined;
  /** Whether an instance holds work its drain waits for (ControlHost only; default requests in flight). */
  readonly busy?: ((instance: SimInstance) => boolean) | undefined;
  /** Told when an instance stops and releases its GPUs (ControlHost only: the twin's KV store). */
  readonly onStopped?: ((instance: SimInstance, nowMs: number) => void) | undefined;
}

/** What the simulator calls on a control host: one loop (ControlHost) or one per model (PlacementHost). */
export interface TwinControl {
  /** Time 0: provision what the loops want before the run. */
  begin(): void;
  /** When the host next needs to act. */
  readonly nextEventMs: number;
  /** The next event time to push, or undefined when it is already queued. */
  arm(): number | undefined;
  /** The twin popped a control event at `nowMs`. */
  onEvent(nowMs: number): void;
  /** An online request arrived. */
  onArrival(request: Request, nowMs: number): void;
  /** A request completed on `instance`; an offline one only frees its instance. */
  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean): void;
  /** An online request ended in a rejection or an error. */
  onFailed(request: Request, nowMs: number): void;
  /** A request left `instance` (any way). */
  onEnded(instance: SimInstance, nowMs: number): void;
  /**
   * Before routing: true when the host took the request (held until an instance of its model is
   * ready, or refused through `deps.refuse` because the buffer is full).
   */
  hold(request: Request, offline: boolean, nowMs: number): boolean;
  /** Requests held now (the run goes on while any are). */
  readonly held: number;
  /** Closes the books at `endMs`. */
  finish(endMs: number): ControlOutcome;
}

/** The armed control events, so each time is queued once. */
export class ArmedTimes {
  private readonly armed = new Set<number>();

  /** `t`, when it is finite and not queued yet (then it is marked queued). */
  arm(t: number): number | undefined {
    if (!Number.isFinite(t) || this.armed.has(t)) return undefined;
    this.armed.add(t);
    return t;
  }

  popped(t: number): void {
    this.armed.delete(t);
  }
}

/** Routes held requests once an instance is ready, fails those that waited too long. */
export function serveHeld(pool: ModelPool, nowMs: number, deps: ControlHostDeps): void {
  for (const h of pool.releaseHeld()) deps.release(h.request, h.offline);
  for (const h of pool.expireHeld(nowMs)) deps.fail(h.request, h.offline, 'SY_ERR_COLD_START_TIMEOUT');
}

/** Start-up time of one instance of the pool, from the settings or the model. */
export function poolStartupMs(
  settings: Pick<ControlSettings, 'startupMs' | 'startupTier' | 'compile'>,
  first: { readonly gpu: string; readonly tp: number },
  base: string,
): number {
  const startupMs =
    settings.startupMs ??
    startupTimeMs({
      gpu: first.gpu,
      model: base,
      tp: first.tp,
      tier: settings.startupTier,
      compile: settings.compile,
    });
  if (!(startupMs >= 0)) throw invalidArgument('startupMs', startupMs, 'a number of ms >= 0');
  return startupMs;
}

/** The pool's slot-stopped callback for `onStopped`, which takes the instance; undefined for none. */
function stoppedHook(
  instances: readonly SimInstance[],
  onStopped: ControlHostDeps['onStopped'],
): ((k: number, nowMs: number) => void) | undefined {
  if (onStopped === undefined) return undefined;
  return (k, nowMs) => onStopped(instances[k] as SimInstance, nowMs);
}

/**
 * The loop runner and actuator of one controlled model. The twin calls `onArrival`, `onFinish`,
 * `onFailed` and `onEnded` as requests move, `hold` before routing, `onEvent` when `nextEventMs`
 * comes, and `finish` at the end.
 */
export class ControlHost implements Actuator, TwinControl {
  readonly loop: ControlLoop;
  readonly intervalMs: number;
  readonly startupMs: number;
  private readonly pool: ModelPool;
  private nextTickMs: number;
  private readonly armed = new ArmedTimes();
  private readonly initialInstances: number | undefined;

  constructor(
    settings: ControlSettings,
    instances: readonly SimInstance[],
    private readonly deps: ControlHostDeps,
  ) {
    const first = instances[0];
    if (first === undefined || instances.length !== settings.maxInstances) {
      throw invalidArgument(
        'maxInstances',
        settings.maxInstances,
        `the cluster's ${instances.length} instances`,
      );
    }
    for (const i of instances) {
      if (i.gpu !== first.gpu || i.model !== first.model || i.tp !== first.tp) {
        throw invalidArgument('cluster', i.id, 'one group: a controlled model runs one variant');
      }
    }
    // The loop is told the catalogue model (it may size instances from its performance), and the
    // pool's role: 'both' when colocated, 'prefill' or 'decode' for a P/D pool.
    const variant: Variant = { model: first.base, gpu: first.gpu, tp: first.tp, role: first.role };
    this.intervalMs = settings.intervalMs ?? CONTROL_INTERVAL_MS_DEFAULT;
    const objectives: ServiceObjectives = settings.slo ?? {
      ttftMs: deps.slo.ttftMs,
      tpotMs: deps.slo.tpotMs,
    };
    this.startupMs = poolStartupMs(settings, first, first.base);
    // Loops that plan ahead are told the start-up time the host will impose.
    const context: ControlContext = {
      model: first.base,
      variants: [variant],
      minReplicas: settings.minInstances,
      maxReplicas: settings.maxInstances,
      intervalMs: this.intervalMs,
      objectives,
      startupMs: this.startupMs,
    };
    this.loop =
      settings.create?.(context) ?? createAutoscaler(settings.autoscaler, context, settings.params ?? {});
    this.pool = new ModelPool(instances, {
      variant,
      startupMs: this.startupMs,
      objectives,
      heldMax: settings.heldMax,
      heldWaitMs: settings.heldWaitMs,
      busy: deps.busy,
      onStopped: stoppedHook(instances, deps.onStopped),
      onChange: () => {
        this.deps.view.instances = this.pool.routable();
      },
    });
    this.nextTickMs = this.intervalMs;
    this.initialInstances = settings.initialInstances;
  }

  /**
   * Time 0: the loop is asked once with an empty window, and what it wants is provisioned before
   * the run (ready at 0, billed from 0, not a cold start); the first tick is at `intervalMs`.
   */
  begin(): void {
    const wanted = this.clamp(this.initialInstances ?? totalReplicas(this.decideAtZero()));
    for (let k = 0; k < wanted; k++) this.pool.provision(k, 0);
    this.deps.view.instances = this.pool.routable();
    this.pool.record(0, wanted, false);
  }

  /** The loop's answer to an empty window at time 0. */
  private decideAtZero(): ControlDecision {
    const window = this.pool.closeWindow(0, this.queuedNow());
    return this.loop.decide(this.observation(0, window));
  }

  /** When the host next needs to act: a tick, a start completing or a held request's deadline. */
  get nextEventMs(): number {
    return Math.min(this.nextTickMs, this.pool.nextEventMs);
  }

  arm(): number | undefined {
    return this.armed.arm(this.nextEventMs);
  }

  /** Finish starts that are due, serve or expire held requests, then tick if it is time. */
  onEvent(nowMs: number): void {
    this.armed.popped(nowMs);
    this.pool.finishStarts(nowMs);
    serveHeld(this.pool, nowMs, this.deps);
    if (nowMs >= this.nextTickMs) this.tick(nowMs);
  }

  /** Whether some instance is still starting (a reason to keep the clock running). */
  get starting(): boolean {
    return this.pool.count('starting') > 0;
  }

  get held(): number {
    return this.pool.heldCount;
  }

  // ---- what the twin saw ----

  onArrival(request: Pick<Request, 'inputTokens'>, nowMs: number): void {
    this.pool.arrival(request.inputTokens, nowMs);
  }

  /** `wholeRequest` false: a P/D prefill leg ended, its request not yet done (see `ModelPool.completion`). */
  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean, wholeRequest = true): void {
    if (!offline) this.pool.completion(result, wholeRequest);
    this.onEnded(instance, result.finishMs);
  }

  /** A request of this model completed elsewhere (its decode leg) at `atMs`: settles the GPU bill. */
  settle(atMs: number): void {
    this.pool.settle(atMs);
  }

  onFailed(_request: Request, nowMs: number): void {
    this.pool.failure(nowMs);
  }

  onEnded(instance: SimInstance, nowMs: number): void {
    this.pool.onEnded(instance, nowMs);
  }

  hold(request: Request, offline: boolean, nowMs: number): boolean {
    const verdict = this.pool.hold(request, offline, nowMs);
    if (verdict === 'full') this.deps.refuse(request, offline, 'SY_ERR_SCALE_BUFFER_FULL');
    return verdict !== 'route';
  }

  // ---- Actuator ----

  /** The model's instances in every phase but stopped, by index. */
  instances(): readonly ManagedInstance[] {
    return this.pool.managed();
  }

  /**
   * Moves the pool toward `decision`: more wanted starts the lowest-index stopped instances; fewer
   * stops starting ones first (they hold no requests), then drains the highest-index ready ones.
   */
  apply(_model: string, decision: ControlDecision, nowMs: number): readonly ControlAction[] {
    const wanted = this.clamp(totalReplicas(decision));
    const actions: ControlAction[] = [];
    const pool = this.pool;
    let active = pool.count('starting') + pool.count('ready');
    for (let k = pool.firstStopped(); k !== undefined && active < wanted; k = pool.firstStopped()) {
      pool.start(k, nowMs);
      active++;
      actions.push({
        kind: 'start',
        variant: pool.variant,
        instanceId: (pool.instances[k] as SimInstance).id,
      });
    }
    for (const phase of ['starting', 'ready'] as const) {
      for (let k = pool.instances.length - 1; k >= 0 && active > wanted; k--) {
        if (pool.phaseOf(k) !== phase) continue;
        active--;
        actions.push({ kind: 'drain', instanceId: (pool.instances[k] as SimInstance).id });
        pool.drain(k, nowMs);
      }
    }
    return actions;
  }

  /**
   * Closes the books at the run's end: the twin passes the later of its last completion and the
   * workload's declared end (src/twin/workload-end.ts), having ticked the loop until then. GPUs
   * still held are billed up to `endMs`.
   */
  finish(endMs: number): ControlOutcome {
    return {
      autoscaler: this.loop.name,
      gpuHours: this.pool.gpuHoursAt(endMs),
      coldStarts: this.pool.coldStarts,
      startupMs: this.startupMs,
      instancesOverTime: this.pool.instancesUntil(endMs),
    };
  }

  // ---- internals ----

  private tick(nowMs: number): void {
    this.pool.sweepDrained(nowMs);
    const window = this.pool.closeWindow(nowMs, this.queuedNow());
    const decision = this.loop.decide(this.observation(nowMs, window));
    const actions = this.apply(this.pool.variant.model, decision, nowMs);
    const desired = this.clamp(totalReplicas(decision));
    if (actions.length > 0) this.deps.onScale?.({ atMs: nowMs, actions, desired, reason: decision.reason });
    this.pool.record(nowMs, desired, true);
    this.nextTickMs = nowMs + this.intervalMs;
  }

  /** Requests waiting at the host: the admission queue and the scale-from-zero buffer. */
  private queuedNow(): number {
    return this.deps.queued() + this.pool.heldCount;
  }

  private observation(nowMs: number, window: ControlObservation['window']): ControlObservation {
    return {
      nowMs,
      model: this.pool.variant.model,
      instances: this.instances(),
      view: { nowMs, instances: this.deps.view.instances },
      window,
      history: this.pool.history,
    };
  }

  private clamp(replicas: number): number {
    return Math.max(0, Math.min(this.pool.instances.length, Math.round(replicas)));
  }
}
