/**
 * The twin's multi-model control host: several models share a cluster of nodes under a global GPU
 * budget, each with its own autoscaler, on one virtual clock.
 *
 * Every `intervalMs` each model's loop is asked, as ControlHost asks its one loop, with its own
 * traffic window (its requests held in the scale-from-zero buffer in `queuedAtEnd`); their answers
 * become `ModelWant`s and one call to `placeReplicas` (src/control/placement) says where instances
 * go. The actions move per-model pools (src/twin/model-pool.ts):
 * - place: the instance takes a stopped slot of its model's pool and starts at once, or, when it
 *   `waitsFor` instances still draining off its GPUs (or its model has no stopped slot yet, or the
 *   GPUs held, draining ones included, leave no room in the budget), waits in `pending` (not
 *   billed) and starts when they have stopped;
 * - evict: drain then stop (an instance holding no request stops at once); its placement keeps its
 *   GPUs until then.
 * GPUs are billed from the start to the release. Each action's line, and each change in what could
 * not be placed, goes to the decision log with its time. When GPUs run out, the lowest-priority
 * model yields: placement evicts its instances above its minimum for a higher-priority model.
 */
import { createAutoscaler } from '../control/autoscalers/registry.ts';
import {
  type ClusterNode,
  type ModelWant,
  type Placement,
  type PlacementAction,
  placeReplicas,
  unfitReason,
} from '../control/placement/index.ts';
import type {
  ControlContext,
  ControlLoop,
  ControlObservation,
  ManagedInstance,
  ServiceObjectives,
  Variant,
} from '../control/types.ts';
import { variantKey } from '../control/types.ts';
import { invalidArgument, SwitchyardError } from '../core/errors.ts';
import type { GpuId, InstanceId, ModelId } from '../core/ids.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import type { KvSizingOptions } from '../model/kv.ts';
import type { ClusterSpec, SimInstance } from './cluster.ts';
import {
  ArmedTimes,
  CONTROL_INTERVAL_MS_DEFAULT,
  type ControlHostDeps,
  type ControlOutcome,
  type ControlSettings,
  type ModelOutcome,
  type PlacementLogEntry,
  poolStartupMs,
  serveHeld,
  type TwinControl,
} from './control-host.ts';
import {
  type HoldSettings,
  heldInPools,
  type InstanceCountPoint,
  ModelPool,
  nextPoolsEventMs,
  pooledCluster,
  routableInPools,
} from './model-pool.ts';

/** Placement lines a result keeps (the decision log file gets every one). */
export const PLACEMENT_LOG_KEPT_MAX = 2000;
/** Models one cluster config may list (each has a loop and a pool of SimInstances). */
export const PLACED_MODELS_MAX = 1000;

/** One model of a multi-model cluster: what it serves, where it may run, and its autoscaler. */
export interface PlacedModel
  extends Pick<
    ControlSettings,
    | 'autoscaler'
    | 'params'
    | 'create'
    | 'minInstances'
    | 'maxInstances'
    | 'startupMs'
    | 'startupTier'
    | 'compile'
  > {
  /** The served id (what requests name). */
  readonly id: ModelId;
  /** The catalogue model it runs as. */
  readonly base: ModelId;
  readonly gpu: GpuId;
  readonly tp: number;
  /** Higher is served first and may take GPUs from lower ones. */
  readonly priority: number;
  /** What its loop plans for and its attainment measures; default the run's SLO. */
  readonly slo?: ServiceObjectives | undefined;
  /**
   * The batch limits its engines run with, for placement's fit check (`ModelWant.engine`); the
   * simulator fills them from the model's engine config. Unset: `vllm serve`'s on its GPU.
   */
  readonly engine?: KvSizingOptions | undefined;
}

/** SimOptions.placement: the nodes, the budget, the models and their loops' common interval. */
export interface PlacementSettings extends HoldSettings {
  readonly nodes: readonly ClusterNode[];
  /** Most GPUs all instances together may hold; unset: the nodes' total. */
  readonly gpuBudget?: number | undefined;
  readonly models: readonly PlacedModel[];
  /** How often every loop is asked (one tick for all, so placement sees every want at once). */
  readonly intervalMs?: number | undefined;
  /** Share of GPU memory an engine may use, for placement's fit check (default 0.9). */
  readonly gpuMemoryUtilization?: number | undefined;
}

/** The twin cluster a multi-model run simulates: one group per model, `maxInstances` of it. */
export function placementCluster(settings: PlacementSettings): ClusterSpec {
  return pooledCluster(settings.models);
}

/** One model under placement: its loop, its pool and its books. */
interface ModelSlot {
  readonly spec: PlacedModel;
  readonly variant: Variant;
  readonly loop: ControlLoop;
  readonly pool: ModelPool;
  /** The placement instance id each pool slot runs, if any. */
  readonly idOfSlot: (InstanceId | undefined)[];
  preempted: number;
  shortTicks: number;
}

/** A placed instance not started yet: waiting for victims to stop, or for a slot of its model. */
interface Waiting {
  readonly id: InstanceId;
  readonly model: ModelSlot;
  readonly waitsFor: readonly InstanceId[];
  slot: number | undefined;
}

/** Runs one loop per model and applies one placement plan per tick (see the module comment). */
export class PlacementHost implements TwinControl {
  readonly intervalMs: number;
  private readonly models: ModelSlot[];
  private readonly byId = new Map<ModelId, ModelSlot>();
  /** Where each placed instance runs: its model and pool slot (absent while unslotted). */
  private readonly slotOf = new Map<InstanceId, { model: ModelSlot; k: number }>();
  private readonly waiting = new Map<InstanceId, Waiting>();
  private placements: Placement[] = [];
  /** The last unplaced line per variant, so a shortage is logged when it changes, not every tick. */
  private unplacedLines = new Map<string, string>();
  private readonly log: PlacementLogEntry[] = [];
  private nextTickMs: number;
  private readonly armed = new ArmedTimes();
  private nowMs = 0;

  constructor(
    private readonly settings: PlacementSettings,
    instances: readonly SimInstance[],
    private readonly deps: ControlHostDeps,
  ) {
    if (settings.models.length === 0 || settings.models.length > PLACED_MODELS_MAX) {
      throw invalidArgument('cluster.models', settings.models.length, `1..${PLACED_MODELS_MAX} models`);
    }
    this.intervalMs = settings.intervalMs ?? CONTROL_INTERVAL_MS_DEFAULT;
    this.models = settings.models.map((spec) => this.buildModel(spec, instances));
    // A model placement could never place would sit out the whole run with every request refused
    // and nothing in the summary saying why: refuse the run, with placement's reason.
    for (const m of this.models) {
      const why = unfitReason(settings.nodes, m.spec, m.variant, settings.gpuMemoryUtilization);
      if (why !== undefined) {
        throw new SwitchyardError('SY_ERR_CAPACITY', `cluster.models ${m.spec.id}: ${why}`, {
          param: 'cluster.models',
          model: m.spec.id,
        });
      }
    }
    for (const m of this.models) this.byId.set(m.spec.id, m);
    this.nextTickMs = this.intervalMs;
  }

  private buildModel(spec: PlacedModel, all: readonly SimInstance[]): ModelSlot {
    const instances = all.filter((i) => i.model === spec.id);
    if (
      instances.length !== spec.maxInstances ||
      instances.some((i) => i.gpu !== spec.gpu || i.tp !== spec.tp)
    ) {
      throw invalidArgument('cluster', spec.id, `${spec.maxInstances} instances of ${spec.gpu} tp${spec.tp}`);
    }
    const variant: Variant = { model: spec.id, gpu: spec.gpu, tp: spec.tp, role: 'both' };
    // Loops size instances from the catalogue model's performance (slo-planner reads it through
    // src/control/capacity.ts), so they are told the base; placement and requests use the served id.
    const loopVariant: Variant = { ...variant, model: spec.base };
    const objectives = spec.slo ?? { ttftMs: this.deps.slo.ttftMs, tpotMs: this.deps.slo.tpotMs };
    const startupMs = poolStartupMs(spec, spec, spec.base);
    const context: ControlContext = {
      model: spec.base,
      variants: [loopVariant],
      minReplicas: spec.minInstances,
      maxReplicas: spec.maxInstances,
      intervalMs: this.intervalMs,
      objectives,
      startupMs,
    };
    const loop = spec.create?.(context) ?? createAutoscaler(spec.autoscaler, context, spec.params ?? {});
    const slot: ModelSlot = {
      spec,
      variant,
      loop,
      pool: new ModelPool(instances, {
        variant: loopVariant,
        startupMs,
        objectives,
        heldMax: this.settings.heldMax,
        heldWaitMs: this.settings.heldWaitMs,
        onChange: () => this.refreshView(),
        onStopped: (k, nowMs) => this.stopped(slot, k, nowMs),
      }),
      idOfSlot: new Array<InstanceId | undefined>(instances.length).fill(undefined),
      preempted: 0,
      shortTicks: 0,
    };
    return slot;
  }

  /** Time 0: every loop is asked once and what placement grants is provisioned before the run. */
  begin(): void {
    this.decideAndPlace(0, false);
    this.refreshView();
  }

  get nextEventMs(): number {
    return nextPoolsEventMs(this.models, this.nextTickMs);
  }

  arm(): number | undefined {
    return this.armed.arm(this.nextEventMs);
  }

  /** Starts that are due become ready and take the held requests; then the tick, when due. */
  onEvent(nowMs: number): void {
    this.armed.popped(nowMs);
    this.nowMs = nowMs;
    for (const m of this.models) {
      m.pool.finishStarts(nowMs);
      serveHeld(m.pool, nowMs, this.deps);
    }
    if (nowMs >= this.nextTickMs) {
      for (const m of this.models) m.pool.sweepDrained(nowMs);
      this.decideAndPlace(nowMs, true);
      this.nextTickMs = nowMs + this.intervalMs;
    }
  }

  get held(): number {
    return heldInPools(this.models);
  }

  // ---- what the twin saw ----

  onArrival(request: Request, nowMs: number): void {
    this.byId.get(request.model)?.pool.arrival(request.inputTokens, nowMs);
  }

  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean): void {
    const m = this.byId.get(instance.model);
    if (!offline) m?.pool.completion(result);
    m?.pool.onEnded(instance, result.finishMs);
  }

  onFailed(request: Request, nowMs: number): void {
    this.byId.get(request.model)?.pool.failure(nowMs);
  }

  onEnded(instance: SimInstance, nowMs: number): void {
    this.byId.get(instance.model)?.pool.onEnded(instance, nowMs);
  }

  /** A request for a model of the cluster with no ready instance waits in that model's buffer. */
  hold(request: Request, offline: boolean, nowMs: number): boolean {
    const m = this.byId.get(request.model);
    if (m === undefined) return false;
    const verdict = m.pool.hold(request, offline, nowMs);
    if (verdict === 'full') this.deps.refuse(request, offline, 'SY_ERR_SCALE_BUFFER_FULL');
    return verdict !== 'route';
  }

  /** Closes the books: per model, and the run's totals (counts summed tick by tick). */
  finish(endMs: number): ControlOutcome {
    const models: ModelOutcome[] = this.models.map((m) => {
      return {
        model: m.spec.id,
        base: m.spec.base,
        priority: m.spec.priority,
        autoscaler: m.loop.name,
        gpuHours: m.pool.gpuHoursAt(endMs),
        coldStarts: m.pool.coldStarts,
        startupMs: m.pool.startupMs,
        ...requestFiguresOf(m.pool),
        preempted: m.preempted,
        shortTicks: m.shortTicks,
        instancesOverTime: m.pool.instancesUntil(endMs),
      };
    });
    return {
      autoscaler: models.map((m) => `${m.model}:${m.autoscaler}`).join(','),
      gpuHours: models.reduce((s, m) => s + m.gpuHours, 0),
      coldStarts: models.reduce((s, m) => s + m.coldStarts, 0),
      startupMs: Math.max(...models.map((m) => m.startupMs)),
      instancesOverTime: sumSeries(models.map((m) => m.instancesOverTime)),
      models,
      placementLog: this.log,
    };
  }

  // ---- one tick ----

  /** Asks every loop, places what they want together, applies the plan and records the counts. */
  private decideAndPlace(nowMs: number, tick: boolean): void {
    this.nowMs = nowMs;
    const wants: ModelWant[] = [];
    const desired = new Map<ModelSlot, number>();
    for (const m of this.models) {
      const window = m.pool.closeWindow(nowMs, m.pool.heldCount);
      const decision = m.loop.decide(this.observation(m, nowMs, window));
      let replicas = 0;
      for (const t of decision.targets) replicas += t.replicas;
      replicas = Math.max(0, Math.min(m.spec.maxInstances, Math.round(replicas)));
      desired.set(m, replicas);
      wants.push({
        model: m.spec.id,
        base: m.spec.base,
        priority: m.spec.priority,
        minReplicas: m.spec.minInstances,
        targets: [{ variant: m.variant, replicas }],
        engine: m.spec.engine,
      });
    }
    const { gpuBudget, gpuMemoryUtilization } = this.settings;
    const plan = placeReplicas(this.settings.nodes, this.placements, wants, {
      ...(gpuBudget !== undefined ? { gpuBudget } : {}),
      ...(gpuMemoryUtilization !== undefined ? { gpuMemoryUtilization } : {}),
    });
    this.placements = [...plan.placements];
    for (const action of plan.actions) {
      this.note(nowMs, action.reason);
      if (action.kind === 'evict') this.evict(action);
      else this.place(action, tick);
    }
    const lines = new Map<string, string>();
    for (const u of plan.unplaced) {
      const key = variantKey(u.variant);
      lines.set(key, u.reason);
      if (this.unplacedLines.get(key) !== u.reason) this.note(nowMs, u.reason);
      if (tick) (this.byId.get(u.model) as ModelSlot).shortTicks++;
    }
    this.unplacedLines = lines;
    for (const m of this.models) m.pool.record(nowMs, desired.get(m) ?? 0, tick);
  }

  private observation(m: ModelSlot, nowMs: number, window: ControlObservation['window']): ControlObservation {
    const instances: ManagedInstance[] = m.pool.managed();
    // Placed instances still without a slot of their own are pending too.
    for (const w of this.waiting.values()) {
      if (w.model === m && w.slot === undefined) {
        instances.push({ id: w.id, variant: m.pool.variant, phase: 'pending', sinceMs: nowMs });
      }
    }
    return {
      nowMs,
      model: m.spec.base,
      instances,
      view: { nowMs, instances: m.pool.routable() },
      window,
      history: m.pool.history,
    };
  }

  private evict(action: Extract<PlacementAction, { kind: 'evict' }>): void {
    const where = this.slotOf.get(action.instanceId);
    if (action.cause === 'preempted') {
      const victim = this.byId.get(action.variant.model);
      if (victim !== undefined) victim.preempted++;
    }
    if (where === undefined) {
      // Placed but never slotted: it simply goes.
      this.waiting.delete(action.instanceId);
      this.release(action.instanceId);
      return;
    }
    // A stop here calls back into `stopped`, which releases the placement.
    where.model.pool.drain(where.k, this.nowMs);
  }

  /** A new instance: a slot of its model's pool, started now or when its GPUs are free. */
  private place(action: Extract<PlacementAction, { kind: 'place' }>, tick: boolean): void {
    const model = this.byId.get(action.variant.model) as ModelSlot;
    const w: Waiting = { id: action.instanceId, model, waitsFor: action.waitsFor, slot: undefined };
    if (!tick && action.waitsFor.length === 0) {
      // Before the run: provisioned, ready at 0, not a cold start.
      const k = model.pool.firstStopped();
      if (k !== undefined) {
        this.assign(w, k);
        model.pool.provision(k, 0);
        return;
      }
    }
    this.waiting.set(w.id, w);
    this.tryStart(w);
  }

  /** Gives the waiting instance a slot when one is free, and starts it once its GPUs are free. */
  private tryStart(w: Waiting): void {
    const pool = w.model.pool;
    if (w.slot === undefined) {
      const k = pool.firstStopped();
      if (k === undefined) return;
      this.assign(w, k);
      pool.reserve(k, this.nowMs);
    }
    if (w.waitsFor.some((id) => this.holds(id))) return;
    // Placement counts draining instances outside the budget (they are on their way out); the twin
    // holds the budget to what is billed, so a start waits until the GPUs held leave room for it.
    const budget = this.settings.gpuBudget;
    if (budget !== undefined && this.gpusHeld() + w.model.spec.tp > budget) return;
    this.waiting.delete(w.id);
    pool.start(w.slot as number, this.nowMs);
  }

  private assign(w: Waiting, k: number): void {
    w.slot = k;
    w.model.idOfSlot[k] = w.id;
    this.slotOf.set(w.id, { model: w.model, k });
  }

  /** Slot `k` of a model stopped: its placement frees its GPUs, and waiting instances may start. */
  private stopped(m: ModelSlot, k: number, nowMs: number): void {
    this.nowMs = nowMs;
    const id = m.idOfSlot[k];
    if (id === undefined) return;
    m.idOfSlot[k] = undefined;
    this.slotOf.delete(id);
    this.waiting.delete(id);
    this.release(id);
    const ready = [...this.waiting.values()].sort((a, b) => compareIds(a.id, b.id));
    for (const w of ready) this.tryStart(w);
  }

  /** Drops an instance's placement: its GPUs are free. */
  private release(id: InstanceId): void {
    this.placements = this.placements.filter((p) => p.instanceId !== id);
  }

  /** GPUs of starting, ready and draining instances: what is billed now. */
  private gpusHeld(): number {
    let n = 0;
    for (const m of this.models) {
      n += (m.pool.count('starting') + m.pool.count('ready') + m.pool.count('draining')) * m.spec.tp;
    }
    return n;
  }

  private holds(id: InstanceId): boolean {
    return this.placements.some((p) => p.instanceId === id);
  }

  private note(atMs: number, line: string): void {
    const entry = { atMs, placement: line };
    if (this.log.length < PLACEMENT_LOG_KEPT_MAX) this.log.push(entry);
    this.deps.onPlacement?.(entry);
  }

  private refreshView(): void {
    this.deps.view.instances = routableInPools(this.models);
  }
}

/**
 * A model's online request figures as its ModelOutcome gives them: arrived, completed, rejected
 * (failed), and SLO attainment over completed plus rejected (0 with neither). Both multi-model hosts
 * (this one and serverless-host.ts) report them so.
 */
export function requestFiguresOf(
  pool: ModelPool,
): Pick<ModelOutcome, 'requests' | 'completed' | 'rejected' | 'sloAttainment'> {
  const r = pool.requests;
  const judged = r.completed + r.failed;
  return {
    requests: r.arrived,
    completed: r.completed,
    rejected: r.failed,
    sloAttainment: judged > 0 ? r.sloMet / judged : 0,
  };
}

/** The per-model series summed point by point (the pools record at the same ticks). */
export function sumSeries(series: readonly (readonly InstanceCountPoint[])[]): InstanceCountPoint[] {
  const first = series[0] ?? [];
  return first.map((p, i) => {
    const sum = { ...p };
    for (const s of series.slice(1)) {
      const q = s[i];
      if (q === undefined) continue;
      sum.ready += q.ready;
      sum.starting += q.starting;
      sum.draining += q.draining;
      sum.desired += q.desired;
      sum.arrivalRps += q.arrivalRps;
    }
    return sum;
  });
}

/** `m#2` before `m#10`; other ids by code units. */
function compareIds(a: string, b: string): number {
  const ma = /^(.*)#(\d+)$/.exec(a);
  const mb = /^(.*)#(\d+)$/.exec(b);
  if (ma !== null && mb !== null && ma[1] === mb[1]) return Number(ma[2]) - Number(mb[2]);
  return a < b ? -1 : a > b ? 1 : 0;
}
