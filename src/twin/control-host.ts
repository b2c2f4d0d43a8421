/**
 * The twin's control host: runs one control loop (an autoscaler from the registry) on the virtual
 * clock and acts as its actuator over a fixed pool of modelled instances.
 *
 * The simulator builds `maxInstances` SimInstances up front; this host moves each one through
 * stopped -> starting -> ready -> draining -> stopped. Only ready and draining instances are in the
 * policies' view, and only ready ones are eligible (every non-ready instance has `draining` set, so
 * `isEligible` refuses it there and in retry views). A start becomes ready after the model's
 * start-up time (src/model/startup.ts); its GPUs are billed from the start. A draining instance gets
 * nothing new, finishes what it runs, then stops and releases its GPUs. The twin has the GPUs, so
 * no instance ever waits in `pending`.
 *
 * Every `intervalMs` the host closes a TrafficWindow from what it saw (arrivals, completions,
 * failures, time-averaged concurrency, TTFT p50/p90, TPOT mean, SLO attainment), asks the loop with
 * the window, its bounded history and the view, and applies the answer: start the lowest-index
 * stopped instances, or stop starting ones and drain the highest-index ready ones. Loops read time
 * only through the observation.
 */

import { createAutoscaler } from '../control/autoscalers/registry.ts';
import { TrafficWindowAccumulator } from '../control/traffic-window.ts';
import {
  type Actuator,
  type ControlAction,
  type ControlContext,
  type ControlDecision,
  type ControlLoop,
  type InstancePhase,
  type ManagedInstance,
  type ServiceObjectives,
  type TrafficWindow,
  totalReplicas,
  type Variant,
} from '../control/types.ts';
import { invalidArgument } from '../core/errors.ts';
import type { ClusterView } from '../core/view.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { type CompileMode, startupTimeMs } from '../model/startup.ts';
import type { StorageTier } from '../model/types.ts';
import type { ClusterSpec, SimInstance } from './cluster.ts';

/** How often the twin asks a loop unless told otherwise: Knative's 2 s tick. */
export const CONTROL_INTERVAL_MS_DEFAULT = 2000;
/** Points `instancesOverTime` keeps at most; beyond, every other point goes and the stride doubles. */
export const INSTANCE_SERIES_POINTS_MAX = 2000;

/** The `control` block of SimOptions: which loop runs, its bounds and how instances start. */
export interface ControlSettings {
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

/** One point of `instancesOverTime`. */
export interface InstanceCountPoint {
  readonly timeS: number;
  readonly ready: number;
  readonly starting: number;
  readonly draining: number;
  /** What the loop asked for at this tick. */
  readonly desired: number;
  /**
   * Offered load: online arrivals per second since the previous point (0 at time 0), so reports
   * can draw the load the counts answer.
   */
  readonly arrivalRps: number;
}

/** What a controlled run adds to its result. */
export interface ControlOutcome {
  readonly autoscaler: string;
  /** GPU-hours billed: every GPU from its instance's start to its release (or the run's end). */
  readonly gpuHours: number;
  /** Instances started after time 0 (those provisioned before the run are not cold starts). */
  readonly coldStarts: number;
  /** Start-up time of one instance, ms. */
  readonly startupMs: number;
  readonly instancesOverTime: readonly InstanceCountPoint[];
}

type Phase = InstancePhase | 'stopped';

/** Everything a host needs from the twin besides the instances. */
export interface ControlHostDeps {
  /** The view policies read; the host sets its `instances` to the routable ones. */
  readonly view: { nowMs: number; instances: readonly SimInstance[] };
  /** The run's SLO, when the control block names none. */
  readonly slo: { readonly ttftMs: number; readonly tpotMs: number };
  /** Requests held at the host (the admission queue) right now. */
  readonly queued: () => number;
}

/**
 * The loop runner and actuator of one controlled model. The twin calls `onArrival`, `onFinish`,
 * `onFailed` and `onEnded` as requests move, `onEvent` when `nextEventMs` comes, and `finish` at
 * the end.
 */
export class ControlHost implements Actuator {
  readonly loop: ControlLoop;
  readonly intervalMs: number;
  readonly startupMs: number;
  private readonly variant: Variant;
  private readonly phase: Phase[];
  private readonly sinceMs: number[];
  private readonly readyAtMs: number[];
  private readonly startedAtMs: number[];
  private readonly objectives: ServiceObjectives;
  private readonly series: InstanceCountPoint[] = [];
  private seriesStride = 1;
  private ticks = 0;
  private nextTickMs: number;
  /** The earliest ready time of a starting instance; kept by `setPhase`. */
  private nextReadyMs = Number.POSITIVE_INFINITY;
  private gpuMs = 0;
  private coldStarts = 0;
  /** Arrivals since the last point of `series`, and when that point was taken. */
  private arrivalsSinceRecord = 0;
  private lastRecordMs = 0;
  private readonly armed = new Set<number>();
  /** The windows of what the twin saw, shared with the live host (src/control/traffic-window.ts). */
  private readonly traffic: TrafficWindowAccumulator;

  constructor(
    settings: ControlSettings,
    private readonly pool: readonly SimInstance[],
    private readonly deps: ControlHostDeps,
  ) {
    const first = pool[0];
    if (first === undefined || pool.length !== settings.maxInstances) {
      throw invalidArgument('maxInstances', settings.maxInstances, `the cluster's ${pool.length} instances`);
    }
    for (const i of pool) {
      if (i.gpu !== first.gpu || i.model !== first.model || i.tp !== first.tp) {
        throw invalidArgument('cluster', i.id, 'one group: a controlled model runs one variant');
      }
    }
    this.variant = { model: first.model, gpu: first.gpu, tp: first.tp, role: 'both' };
    this.intervalMs = settings.intervalMs ?? CONTROL_INTERVAL_MS_DEFAULT;
    this.objectives = settings.slo ?? { ttftMs: deps.slo.ttftMs, tpotMs: deps.slo.tpotMs };
    this.traffic = new TrafficWindowAccumulator(this.objectives, 0);
    this.startupMs =
      settings.startupMs ??
      startupTimeMs({
        gpu: first.gpu,
        model: first.model,
        tp: first.tp,
        tier: settings.startupTier,
        compile: settings.compile,
      });
    // Loops that plan ahead are told the start-up time the host will impose.
    const context: ControlContext = {
      model: first.model,
      variants: [this.variant],
      minReplicas: settings.minInstances,
      maxReplicas: settings.maxInstances,
      intervalMs: this.intervalMs,
      objectives: this.objectives,
      startupMs: this.startupMs,
    };
    this.loop =
      settings.create?.(context) ?? createAutoscaler(settings.autoscaler, context, settings.params ?? {});
    if (!(this.startupMs >= 0)) throw invalidArgument('startupMs', this.startupMs, 'a number of ms >= 0');
    const n = pool.length;
    this.phase = new Array<Phase>(n).fill('stopped');
    this.sinceMs = new Array<number>(n).fill(0);
    this.readyAtMs = new Array<number>(n).fill(Number.POSITIVE_INFINITY);
    this.startedAtMs = new Array<number>(n).fill(0);
    for (const i of pool) i.draining = true;
    this.nextTickMs = this.intervalMs;
  }

  /**
   * Time 0: the loop is asked once with an empty window, and what it wants is provisioned before
   * the run (ready at 0, billed from 0, not a cold start); the first tick is at `intervalMs`.
   */
  begin(): void {
    const window = this.closeWindow(0);
    const decision = this.loop.decide(this.observation(0, window));
    const wanted = this.clamp(totalReplicas(decision));
    for (let k = 0; k < wanted; k++) {
      this.setPhase(k, 'ready', 0);
      this.startedAtMs[k] = 0;
    }
    this.refreshView();
    this.record(0, wanted);
  }

  /** When the host next needs to act: a tick or a start completing (the twin asks often: cached). */
  get nextEventMs(): number {
    return Math.min(this.nextTickMs, this.nextReadyMs);
  }

  /**
   * The next event time to push onto the twin's queue, or undefined when it is already there (the
   * twin pushes each time once, so the queue never holds duplicates).
   */
  arm(): number | undefined {
    const t = this.nextEventMs;
    if (!Number.isFinite(t) || this.armed.has(t)) return undefined;
    this.armed.add(t);
    return t;
  }

  /** The twin popped a control event at `nowMs`: finish starts that are due, then tick if it is time. */
  onEvent(nowMs: number): void {
    this.armed.delete(nowMs);
    let changed = false;
    for (let k = 0; k < this.phase.length; k++) {
      if (this.phase[k] === 'starting' && (this.readyAtMs[k] as number) <= nowMs) {
        this.setPhase(k, 'ready', nowMs);
        changed = true;
      }
    }
    if (changed) this.refreshView();
    if (nowMs >= this.nextTickMs) this.tick(nowMs);
  }

  /** Whether some instance is still starting (a reason to keep the clock running). */
  get starting(): boolean {
    return this.phase.includes('starting');
  }

  // ---- what the twin saw ----

  /** An online request arrived at the host. */
  onArrival(inputTokens: number, nowMs: number): void {
    this.traffic.arrival(inputTokens, nowMs);
    this.arrivalsSinceRecord++;
  }

  /** A request completed on `instance`; an offline (batch) one only frees its instance. */
  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean): void {
    const nowMs = result.finishMs;
    if (!offline) {
      const output = result.request.outputTokens;
      const ttftMs = result.firstTokenMs - result.arrivalMs;
      const tpotMs = output > 1 ? (result.finishMs - result.firstTokenMs) / (output - 1) : 0;
      this.traffic.completion(ttftMs, tpotMs, output, nowMs);
    }
    this.onEnded(instance, nowMs);
  }

  /** An online request ended in a rejection or an error. */
  onFailed(nowMs: number): void {
    this.traffic.failure(nowMs);
  }

  /** A request left `instance` (any way): a draining instance with nothing left stops. */
  onEnded(instance: SimInstance, nowMs: number): void {
    const k = instance.index;
    if (this.phase[k] === 'draining' && instance.inFlight === 0) {
      this.stop(k, nowMs);
      this.refreshView();
    }
  }

  // ---- Actuator ----

  /** The model's instances in every phase but stopped, by index. */
  instances(): readonly ManagedInstance[] {
    const out: ManagedInstance[] = [];
    for (const [k, instance] of this.pool.entries()) {
      const phase = this.phase[k] as Phase;
      if (phase === 'stopped') continue;
      out.push({ id: instance.id, variant: this.variant, phase, sinceMs: this.sinceMs[k] as number });
    }
    return out;
  }

  /**
   * Moves the pool toward `decision`: more wanted starts the lowest-index stopped instances; fewer
   * stops starting ones first (they hold no requests), then drains the highest-index ready ones.
   */
  apply(_model: string, decision: ControlDecision, nowMs: number): readonly ControlAction[] {
    const wanted = this.clamp(totalReplicas(decision));
    const actions: ControlAction[] = [];
    let active = this.count('starting') + this.count('ready');
    for (let k = 0; k < this.phase.length && active < wanted; k++) {
      if (this.phase[k] !== 'stopped') continue;
      this.startedAtMs[k] = nowMs;
      this.readyAtMs[k] = nowMs + this.startupMs;
      this.setPhase(k, 'starting', nowMs);
      this.coldStarts++;
      active++;
      actions.push({ kind: 'start', variant: this.variant, instanceId: (this.pool[k] as SimInstance).id });
    }
    for (const phase of ['starting', 'ready'] as const) {
      for (let k = this.phase.length - 1; k >= 0 && active > wanted; k--) {
        if (this.phase[k] !== phase) continue;
        active--;
        actions.push({ kind: 'drain', instanceId: (this.pool[k] as SimInstance).id });
        if (phase === 'starting' || (this.pool[k] as SimInstance).inFlight === 0) this.stop(k, nowMs);
        else this.setPhase(k, 'draining', nowMs);
      }
    }
    if (actions.length > 0) this.refreshView();
    return actions;
  }

  /**
   * Closes the books at the run's end (the twin passes its last completion, the end its summary's
   * gpuSeconds use): GPUs still held are billed up to `endMs`.
   */
  finish(endMs: number): ControlOutcome {
    for (let k = 0; k < this.phase.length; k++) {
      if (this.phase[k] !== 'stopped') this.bill(k, endMs);
    }
    return {
      autoscaler: this.loop.name,
      gpuHours: this.gpuMs / 3_600_000,
      coldStarts: this.coldStarts,
      startupMs: this.startupMs,
      instancesOverTime: this.series,
    };
  }

  // ---- internals ----

  private tick(nowMs: number): void {
    // A draining instance whose last request ended some other way (a crash) stops here.
    for (let k = 0; k < this.phase.length; k++) {
      if (this.phase[k] === 'draining' && (this.pool[k] as SimInstance).inFlight === 0) this.stop(k, nowMs);
    }
    const window = this.closeWindow(nowMs);
    const decision = this.loop.decide(this.observation(nowMs, window));
    this.apply(this.variant.model, decision, nowMs);
    this.ticks++;
    if (this.ticks % this.seriesStride === 0) this.record(nowMs, this.clamp(totalReplicas(decision)));
    this.nextTickMs = nowMs + this.intervalMs;
  }

  private observation(nowMs: number, window: TrafficWindow) {
    const view: ClusterView = { nowMs, instances: this.deps.view.instances };
    return {
      nowMs,
      model: this.variant.model,
      instances: this.instances(),
      view,
      window,
      history: this.traffic.history,
    };
  }

  /** Ends the open window at `nowMs`, keeps it in the bounded history and starts the next one. */
  private closeWindow(nowMs: number): TrafficWindow {
    return this.traffic.close(nowMs, this.deps.queued());
  }

  private record(nowMs: number, desired: number): void {
    const spanMs = nowMs - this.lastRecordMs;
    const arrivalRps = spanMs > 0 ? (this.arrivalsSinceRecord * 1000) / spanMs : 0;
    this.arrivalsSinceRecord = 0;
    this.lastRecordMs = nowMs;
    this.series.push({
      timeS: nowMs / 1000,
      ready: this.count('ready'),
      starting: this.count('starting'),
      draining: this.count('draining'),
      desired,
      arrivalRps,
    });
    if (this.series.length > INSTANCE_SERIES_POINTS_MAX) {
      // Keep every other point and sample half as often from now on: bounded, evenly spread.
      let w = 0;
      for (let r = 0; r < this.series.length; r += 2) this.series[w++] = this.series[r] as InstanceCountPoint;
      this.series.length = w;
      this.seriesStride *= 2;
    }
  }

  private stop(k: number, nowMs: number): void {
    this.bill(k, nowMs);
    this.readyAtMs[k] = Number.POSITIVE_INFINITY;
    this.setPhase(k, 'stopped', nowMs);
  }

  private bill(k: number, nowMs: number): void {
    const instance = this.pool[k] as SimInstance;
    // An instance started after the run's last completion bills nothing.
    this.gpuMs += Math.max(0, nowMs - (this.startedAtMs[k] as number)) * instance.tp;
  }

  private setPhase(k: number, phase: Phase, nowMs: number): void {
    this.phase[k] = phase;
    this.sinceMs[k] = nowMs;
    // Only a ready instance may take new work; the rest are refused by isEligible.
    (this.pool[k] as SimInstance).draining = phase !== 'ready';
    let next = Number.POSITIVE_INFINITY;
    for (let j = 0; j < this.phase.length; j++) {
      if (this.phase[j] === 'starting' && (this.readyAtMs[j] as number) < next)
        next = this.readyAtMs[j] as number;
    }
    this.nextReadyMs = next;
  }

  /** The policies see ready and draining instances (draining ones only for their signals). */
  private refreshView(): void {
    this.deps.view.instances = this.pool.filter((_, k) => {
      const p = this.phase[k];
      return p === 'ready' || p === 'draining';
    });
  }

  private count(phase: Phase): number {
    let n = 0;
    for (const p of this.phase) if (p === phase) n++;
    return n;
  }

  private clamp(replicas: number): number {
    return Math.max(0, Math.min(this.phase.length, Math.round(replicas)));
  }
}
