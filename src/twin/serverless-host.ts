/**
 * The twin's serverless host: many models share a few nodes of GPUs, each model scaled to zero and
 * back by a serverless policy (src/control/serverless), its start-up times from the nodes'
 * checkpoint tiers (src/control/model-cache).
 *
 * What it reuses, and what it adds:
 * - Each model's instances move through A's per-model pools (src/twin/model-pool.ts): phases,
 *   billing from start to release, the scale-from-zero buffer (held requests released to the first
 *   ready instance; refused with SY_ERR_SCALE_BUFFER_FULL when full, failed with
 *   SY_ERR_COLD_START_TIMEOUT when held too long, as the gateway counts them), instance
 *   counts over time. `serveHeld` and the per-model outcome are the placement host's.
 * - Which GPUs of which node an instance holds is kept in one place, the ModelCache: `load` takes
 *   `tp` free GPUs of a node and says how long the start takes from the fastest tier holding the
 *   weights (they land in DRAM and SSD as models come and go), `unloadInstance` frees them when the
 *   pool stops the instance. The placement module's own books (`placeReplicas`) are not used here:
 *   its best fit and priority preemption are exactly what a serverless policy replaces with its
 *   node choice and victim choice, and two sets of GPU books would drift.
 * - Every `intervalMs`, and at once when a request finds its model at zero, the policy says how many
 *   instances each model should have; the host stops the extra ones, and starts the missing ones on
 *   the node the policy's rule picks; with no free GPU it asks the policy which idle instances to
 *   stop (or waits).
 * - Writes each start (why, the tier read, the start-up), stop and eviction to the decision log.
 * - Books the serverless figures: a request is cold when it was held for an instance to start;
 *   TTFT of cold and warm requests apart, evictions, pre-warm starts, loads per tier.
 */

import {
  firstFitNode,
  type ModelCache,
  ModelCache as ModelCacheClass,
  type ModelCacheConfig,
  type NodeChoice,
  resolveNodeTiers,
  type SourceTier,
  startupAwareNode,
} from '../control/model-cache/index.ts';
import type { ClusterNode } from '../control/placement/index.ts';
import { DEFAULT_GPU_MEMORY_UTILIZATION } from '../control/placement/placement.ts';
import {
  ArrivalHistory,
  bootQueue,
  createServerlessPolicy,
  type LoneGpu,
  nameHash,
  type RetargetCandidate,
  resolveSleep,
  retargetable,
  retargetSleepers,
  retargetTimeMs,
  type ServerlessModelView,
  type ServerlessParams,
  type ServerlessPolicy,
  SleepBook,
  type Sleeper,
  type SleepParams,
  type SwapBlocker,
  swapVerdict,
  type VictimCandidate,
  wakeTimeMs,
} from '../control/serverless/index.ts';
import type { Variant } from '../control/types.ts';
import { invalidArgument } from '../core/errors.ts';
import type { GpuId, ModelId } from '../core/ids.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { gpuSpec } from '../model/gpus.ts';
import type { KvSizingOptions } from '../model/kv.ts';
import { startupTimeMs } from '../model/startup.ts';
import { smallestFittingTp, tpFit } from '../model/tp-fit.ts';
import { GrowableFloat64 } from '../stats/growable.ts';
import { latencyStats } from '../stats/percentiles.ts';
import type { ClusterSpec, SimInstance } from './cluster.ts';
import {
  ArmedTimes,
  CONTROL_INTERVAL_MS_DEFAULT,
  type ControlHostDeps,
  type ControlOutcome,
  type ModelOutcome,
  serveHeld,
  type TwinControl,
} from './control-host.ts';
import { tailWithRejected } from './metrics.ts';
import {
  type HoldSettings,
  heldInPools,
  ModelPool,
  nextPoolsEventMs,
  pooledCluster,
  routableInPools,
} from './model-pool.ts';
import { requestFiguresOf, sumSeries } from './placement-host.ts';
import type { TailStats } from './report/types.ts';

/** Models one serverless run may serve (each has a pool of SimInstances). */
export const SERVERLESS_MODELS_MAX = 1000;
/** Points each model's row keeps of its instance counts (the run's summed series keeps more). */
export const MODEL_SERIES_POINTS_MAX = 200;
/**
 * The warm-up window the results' second p99 leaves out: the first 10 minutes, when every model is
 * still at zero and its first burst waits for a first start (the cold-cluster transient a
 * steady-state figure discards). The headline p99 keeps them.
 */
export const WARMUP_MS = 600_000;
/** Victims one start may stop (a TP group needs at most a node's GPUs). */
const VICTIMS_PER_START_MAX = 64;

/** One served model: its id, base, GPU type, TP and most instances. */
export interface ServerlessModel {
  readonly id: ModelId;
  readonly base: ModelId;
  readonly gpu: GpuId;
  readonly tp: number;
  readonly maxInstances: number;
}

/** SimOptions.serverless: the policy, the nodes and their tiers, the models. */
export interface ServerlessSettings extends HoldSettings {
  /** A name from SERVERLESS_POLICY_NAMES. */
  readonly policy: string;
  /** The policy's parameters (keep-alive, ...); `intervalMs` is the host's. */
  readonly params?: Omit<ServerlessParams, 'intervalMs'> | undefined;
  readonly nodes: readonly ClusterNode[];
  /** Checkpoint tiers per node (defaults: src/control/model-cache/tiers.ts). */
  readonly modelCache?: ModelCacheConfig | undefined;
  readonly models: readonly ServerlessModel[];
  /** How often the policy is asked for every model (default CONTROL_INTERVAL_MS_DEFAULT). */
  readonly intervalMs?: number | undefined;
  /**
   * Sleep mode (vLLM level 1, src/control/serverless/sleep.ts) for the `switchyard` policy: on by
   * default with sleep.ts's defaults; `false` turns it off. The baselines never sleep.
   */
  readonly sleep?: SleepParams | false | undefined;
}

/** One model's row: the placement host's, plus its cold requests and evictions. */
export interface ServerlessModelOutcome extends ModelOutcome {
  /** Completed requests that waited for an instance of the model to start. */
  readonly coldRequests: number;
  /** Its idle instances stopped for another model (also in `preempted`). */
  readonly evicted: number;
}

/**
 * TTFT of one kind of request, ms, and how many requests it covers. With none (`count` 0) every
 * figure is null, not the 0 ms no request saw (JSON carries no NaN).
 */
export interface TtftStats {
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly count: number;
}

/** TTFT stats of `values` (see TtftStats). */
export function ttftStats(values: Float64Array): TtftStats {
  if (values.length === 0) return { mean: null, p50: null, p90: null, p99: null, count: 0 };
  const { mean, p50, p90, p99 } = latencyStats(values);
  return { mean, p50, p90, p99, count: values.length };
}

/** What a serverless run adds to its result. */
export interface ServerlessOutcome {
  readonly policy: string;
  readonly ttftMs: { readonly cold: TtftStats; readonly warm: TtftStats };
  /** Completed requests that waited for an instance to start, and those that did not. */
  readonly coldRequests: number;
  readonly warmRequests: number;
  /**
   * Held requests never served (waited past the buffer's bound: the gateway's
   * failed{cold_start_timeout}; the name is kept for the JSON's readers).
   */
  readonly coldRefused: number;
  /**
   * Of `coldRequests`, those held before their model's first instance of the run was ready: no
   * keep-alive, forecast or sleeper can help them (every model starts the run at zero).
   */
  readonly firstStartColdRequests: number;
  /** TTFT of the completed requests other than those (the run past each model's first start). */
  readonly ttftMsAfterFirstStarts: TtftStats;
  /**
   * TTFT of the requests that arrived after the warm-up (WARMUP_MS), refused ones counted as
   * slower than any served one (+∞), as the summary's `ttftMsAll`.
   */
  readonly ttftMsAfterWarmup: TailStats;
  /** Idle instances stopped to free GPUs for another model. */
  readonly evictions: number;
  /** Starts made with no request of the model in the system (forecast pre-warming). */
  readonly prewarms: number;
  /**
   * Starts that re-targeted an engine of another model of the same base, TP and GPU type (a
   * sleeper, or an idle instance the victim rule offered) instead of a fresh start; also in the
   * run's starts (`coldStarts`) and in `loadsByTier` (the weights' read). 0 with sleep mode off.
   */
  readonly retargets: number;
  /** Loads by the tier their weights were read from. */
  readonly loadsByTier: Readonly<Record<SourceTier, number>>;
  /** Mean start-up of the starts made (wakes included), ms. */
  readonly startupMsMean: number;
  /** Sleep mode: whether it was on, instances put to sleep, sleepers woken, sleepers stopped. */
  readonly sleep: {
    readonly on: boolean;
    readonly sleeps: number;
    readonly wakes: number;
    readonly stoppedAsleep: number;
    /** Drain-and-swaps begun: busy instances drained so a sleeper could wake on their GPUs. */
    readonly swaps: number;
    /**
     * Engines started straight into sleep: on GPUs billed anyway (see the host's `prestart`), and
     * booted on free GPUs (`boots`, counted here too).
     */
    readonly prestarts: number;
    /** Of `prestarts`, models booted into sleep on free GPUs before their first start (`bootQueue`). */
    readonly boots: number;
    /** GPU-hours of GPUs held by sleepers alone (in the run's gpuHours too). */
    readonly loneGpuHours: number;
    /** Mean wake time, ms. */
    readonly wakeMsMean: number;
  };
}

/** Nodes of `perNode` GPUs of `gpu` making up `total` GPUs (the last one may be smaller). */
export function gpuNodes(total: number, perNode: number, gpu: GpuId): ClusterNode[] {
  if (!Number.isInteger(total) || total < 1) throw invalidArgument('gpus', total, 'an integer >= 1');
  if (!Number.isInteger(perNode) || perNode < 1)
    throw invalidArgument('gpus-per-node', perNode, 'an integer >= 1');
  const nodes: ClusterNode[] = [];
  for (let left = total, i = 1; left > 0; left -= perNode, i++) {
    nodes.push({ id: `node-${i}`, gpu, gpus: Math.min(perNode, left) });
  }
  return nodes;
}

/**
 * The smallest power-of-two TP, up to `maxTp`, at which one shard of `base` and the engine's reserve
 * fit 0.9 of a `gpu` with KV cache left for at least one step's token budget (max_num_batched_tokens)
 * or the model's context if shorter (src/model/tp-fit.ts, the rule placement checks too);
 * SY_ERR_INVALID_ARGUMENT when none does. The reserve is sized with the batch limits the engines run
 * with: `engine`'s where given, else `vllm serve`'s on that GPU. (Sized with 256 sequences while an
 * H100 engine runs 1024, Llama-3.1-70B took TP 2 and had KV for under 1,100 tokens: every request
 * of a serverless run was refused.)
 */
export function fittingTp(base: ModelId, gpu: GpuId, maxTp: number, engine: KvSizingOptions = {}): number {
  const tp = smallestFittingTp(base, gpu, maxTp, { engine });
  if (tp !== undefined) return tp;
  const { kvTokensNeeded } = tpFit(base, gpu, 1, { engine });
  throw invalidArgument(
    'model',
    base,
    `a model that fits ${maxTp} ${gpu} GPUs with KV cache for ${kvTokensNeeded} tokens`,
  );
}

/** The twin cluster a serverless run simulates: one group per model, `maxInstances` of it. */
export function serverlessCluster(settings: ServerlessSettings): ClusterSpec {
  return pooledCluster(settings.models);
}

/** One model under the host. */
interface Served {
  readonly spec: ServerlessModel;
  readonly pool: ModelPool;
  readonly arrivals: ArrivalHistory;
  /** The cache's instance id each pool slot runs, if any. */
  readonly cacheIdOfSlot: (string | undefined)[];
  lastUsedMs: number;
  /** When its oldest held request arrived; undefined while none is held. */
  firstHeldMs: number | undefined;
  evicted: number;
  shortTicks: number;
  /** Completed requests of the model that waited for a start. */
  coldRequests: number;
  /** A start-up estimate, refreshed at each tick (the best node's, tiers as they are then). */
  startupMs: number;
  /** Whether an instance of it has been ready in this run. */
  everReady: boolean;
  /** Whether it has had an instance or an engine (awake, starting or asleep) in this run. */
  everStarted: boolean;
}

/** Runs a serverless policy over the models' pools (see the module comment). */
export class ServerlessHost implements TwinControl {
  readonly intervalMs: number;
  readonly policy: ServerlessPolicy;
  private readonly models: Served[];
  private readonly byId = new Map<ModelId, Served>();
  private readonly indexOfModel = new Map<ModelId, number>();
  private readonly cache: ModelCache;
  /** Each cache instance's pool slot and node. */
  private readonly slotOfCacheId = new Map<string, { m: Served; k: number; node: string }>();
  /** The cache's clock: callbacks may arrive slightly out of order across instances (run-ahead). */
  private cacheNowMs = 0;
  private nextTickMs: number;
  private readonly armed = new ArmedTimes();
  /** Held requests not yet ended: they are cold. Bounded by the buffers' bounds. */
  private readonly coldIds = new Set<string>();
  /** Of those, the ones held before their model's first ready instance. Same bound. */
  private readonly firstColdIds = new Set<string>();
  private firstStartCold = 0;
  private readonly ttftCold = new GrowableFloat64();
  private readonly ttftWarm = new GrowableFloat64();
  private readonly ttftAfterFirst = new GrowableFloat64();
  private readonly ttftAfterWarmup = new GrowableFloat64();
  private refusedAfterWarmup = 0;
  private coldRefused = 0;
  private evictions = 0;
  private prewarms = 0;
  private retargets = 0;
  private startupMsSum = 0;
  private starts = 0;
  private closed: ServerlessOutcome | undefined;
  /** Sleep mode's GPU books; undefined when sleep is off (the host then behaves as without it). */
  private readonly book: SleepBook | undefined;
  /** Each node's host-to-GPU bandwidth per GPU, bytes/s (the wake's weights term). */
  private readonly hostLinkOf = new Map<string, number>();
  /** Awake instances to be put to sleep rather than stopped when their pool slot stops. */
  private readonly sleepOnStop = new Set<string>();
  /** When each awake cache instance became (or becomes) ready: its residency for swaps. */
  private readonly readyAtOf = new Map<string, { sinceMs: number; readyAtMs: number }>();
  /** Instances draining so a sleeper of the given model can wake on their GPUs. */
  private readonly drainingFor = new Map<string, Served>();
  private swaps = 0;
  /** Cache instances that are woken sleepers (not fresh starts); dropped when they stop. */
  private readonly wokenIds = new Set<string>();
  private prestarts = 0;
  private boots = 0;
  private sleeps = 0;
  private wakes = 0;
  private wakeMsSum = 0;
  private stoppedAsleep = 0;
  /** The latest completion seen (online or offline): the run's end is no earlier. */
  private lastFinishMs = 0;

  constructor(
    private readonly settings: ServerlessSettings,
    instances: readonly SimInstance[],
    private readonly deps: ControlHostDeps,
  ) {
    if (settings.models.length === 0 || settings.models.length > SERVERLESS_MODELS_MAX) {
      throw invalidArgument('models', settings.models.length, `1..${SERVERLESS_MODELS_MAX} models`);
    }
    this.intervalMs = settings.intervalMs ?? CONTROL_INTERVAL_MS_DEFAULT;
    this.policy = createServerlessPolicy(settings.policy, {
      ...settings.params,
      ...loneHoldBounds(settings.sleep),
      intervalMs: this.intervalMs,
    });
    const nodeTiers = resolveNodeTiers(settings.nodes, settings.modelCache);
    for (const n of nodeTiers) this.hostLinkOf.set(n.id, n.hostLinkBytesPerS);
    this.cache = new ModelCacheClass({
      nodes: nodeTiers,
      models: settings.models.map((m) => ({ id: m.id, base: m.base, tp: m.tp })),
    });
    this.book = this.sleepBook(settings);
    this.models = settings.models.map((spec) => this.buildModel(spec, instances));
    for (const m of this.models) this.byId.set(m.spec.id, m);
    for (const [i, m] of this.models.entries()) this.indexOfModel.set(m.spec.id, i);
    this.nextTickMs = this.intervalMs;
  }

  /** Sleep mode's books, for `switchyard` unless turned off. */
  private sleepBook(settings: ServerlessSettings): SleepBook | undefined {
    if (this.policy.name !== 'switchyard' || settings.sleep === false) return undefined;
    const budget = Math.min(
      ...settings.nodes.map((n) => gpuSpec(n.gpu).hbmBytes * DEFAULT_GPU_MEMORY_UTILIZATION),
    );
    const smallest = Math.min(...settings.models.map((m) => this.cache.shardBytes(m.id).perGpuBytes));
    return new SleepBook(settings.nodes, budget, smallest, resolveSleep(settings.sleep ?? {}));
  }

  private buildModel(spec: ServerlessModel, all: readonly SimInstance[]): Served {
    const instances = all.filter((i) => i.model === spec.id);
    if (instances.length !== spec.maxInstances) {
      throw invalidArgument('cluster', spec.id, `${spec.maxInstances} instances of ${spec.gpu} tp${spec.tp}`);
    }
    if (!this.cache.nodeIds().some((n) => this.cache.fits(spec.id, n))) {
      throw invalidArgument('models', spec.id, `a model whose tp${spec.tp} group fits some node's GPUs`);
    }
    // Loops are not run here, but the pool's variant names the catalogue model, as elsewhere.
    const variant: Variant = { model: spec.base, gpu: spec.gpu, tp: spec.tp, role: 'both' };
    const startupMs = startupTimeMs({ gpu: spec.gpu, model: spec.base, tp: spec.tp });
    const served: Served = {
      spec,
      pool: new ModelPool(instances, {
        variant,
        startupMs,
        objectives: { ttftMs: this.deps.slo.ttftMs, tpotMs: this.deps.slo.tpotMs },
        heldMax: this.settings.heldMax,
        heldWaitMs: this.settings.heldWaitMs,
        onChange: () => this.refreshView(),
        onStopped: (k, nowMs) => this.stopped(served, k, nowMs),
      }),
      arrivals: new ArrivalHistory(),
      cacheIdOfSlot: new Array<string | undefined>(instances.length).fill(undefined),
      lastUsedMs: Number.NEGATIVE_INFINITY,
      firstHeldMs: undefined,
      evicted: 0,
      shortTicks: 0,
      coldRequests: 0,
      startupMs,
      everReady: false,
      everStarted: false,
    };
    return served;
  }

  /** Time 0: every model starts at zero (serverless); the first decision is at the first tick. */
  begin(): void {
    for (const m of this.models) m.pool.record(0, 0, false);
    this.refreshView();
  }

  get nextEventMs(): number {
    return nextPoolsEventMs(this.models, this.nextTickMs);
  }

  arm(): number | undefined {
    return this.armed.arm(this.nextEventMs);
  }

  onEvent(nowMs: number): void {
    this.armed.popped(nowMs);
    for (const m of this.models) {
      m.pool.finishStarts(nowMs);
      if (!m.everReady && m.pool.count('ready') > 0) m.everReady = true;
      serveHeld(m.pool, nowMs, this.deps);
      if (m.pool.heldCount === 0) m.firstHeldMs = undefined;
    }
    if (nowMs >= this.nextTickMs) {
      this.tick(nowMs);
      this.nextTickMs = nowMs + this.intervalMs;
    }
  }

  get held(): number {
    return heldInPools(this.models);
  }

  // ---- what the twin saw ----

  onArrival(request: Request, nowMs: number): void {
    const m = this.byId.get(request.model);
    if (m === undefined) return;
    m.pool.arrival(request.inputTokens, nowMs);
    m.arrivals.record(nowMs);
    m.lastUsedMs = nowMs;
  }

  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean): void {
    const m = this.byId.get(instance.model);
    if (result.finishMs > this.lastFinishMs) this.lastFinishMs = result.finishMs;
    if (!offline) {
      m?.pool.completion(result);
      const ttftMs = result.firstTokenMs - result.arrivalMs;
      const first = this.firstColdIds.delete(result.request.id);
      if (first) this.firstStartCold++;
      else this.ttftAfterFirst.push(ttftMs);
      if (result.arrivalMs >= WARMUP_MS) this.ttftAfterWarmup.push(ttftMs);
      if (this.coldIds.delete(result.request.id)) {
        this.ttftCold.push(ttftMs);
        if (m !== undefined) m.coldRequests++;
      } else {
        this.ttftWarm.push(ttftMs);
      }
    }
    this.onEnded(instance, result.finishMs);
  }

  onFailed(request: Request, nowMs: number): void {
    const m = this.byId.get(request.model);
    m?.pool.failure(nowMs);
    if (request.arrivalMs >= WARMUP_MS) this.refusedAfterWarmup++;
    this.firstColdIds.delete(request.id);
    if (this.coldIds.delete(request.id)) this.coldRefused++;
  }

  onEnded(instance: SimInstance, nowMs: number): void {
    const m = this.byId.get(instance.model);
    if (m === undefined) return;
    m.lastUsedMs = Math.max(m.lastUsedMs, nowMs);
    m.pool.onEnded(instance, nowMs);
  }

  /** A request for a model with no ready instance is held; a model at zero is started at once. */
  hold(request: Request, offline: boolean, nowMs: number): boolean {
    const m = this.byId.get(request.model);
    if (m === undefined) return false;
    const verdict = m.pool.hold(request, offline, nowMs);
    if (verdict === 'full') {
      this.deps.refuse(request, offline, 'SY_ERR_SCALE_BUFFER_FULL');
      return true;
    }
    if (verdict === 'route') return false;
    this.coldIds.add(request.id);
    if (!m.everReady) this.firstColdIds.add(request.id);
    m.firstHeldMs ??= nowMs;
    if (this.active(m) === 0 && this.startOne(m, nowMs)) this.refreshView();
    return true;
  }

  /** The serverless figures, once `finish` has closed the books. */
  get outcome(): ServerlessOutcome | undefined {
    return this.closed;
  }

  finish(endMs: number): ControlOutcome {
    const models: ServerlessModelOutcome[] = this.models.map((m) => {
      return {
        coldRequests: m.coldRequests,
        evicted: m.evicted,
        model: m.spec.id,
        base: m.spec.base,
        priority: 0,
        autoscaler: this.policy.name,
        gpuHours: m.pool.gpuHoursAt(endMs),
        coldStarts: m.pool.coldStarts,
        startupMs: m.startupMs,
        ...requestFiguresOf(m.pool),
        preempted: m.evicted,
        shortTicks: m.shortTicks,
        // Full per-model series would make the JSON grow with models x ticks: every k-th point.
        instancesOverTime: thinned(m.pool.instancesUntil(endMs), MODEL_SERIES_POINTS_MAX),
      };
    });
    const stats = (v: GrowableFloat64): TtftStats => ttftStats(v.view());
    const loneGpuHours = (this.book?.loneGpuMs(endMs) ?? 0) / 3_600_000;
    this.closed = {
      sleep: {
        on: this.book !== undefined,
        sleeps: this.sleeps,
        wakes: this.wakes,
        stoppedAsleep: this.stoppedAsleep,
        swaps: this.swaps,
        prestarts: this.prestarts,
        boots: this.boots,
        loneGpuHours,
        wakeMsMean: this.wakes > 0 ? this.wakeMsSum / this.wakes : 0,
      },
      policy: this.policy.name,
      ttftMs: { cold: stats(this.ttftCold), warm: stats(this.ttftWarm) },
      coldRequests: this.ttftCold.length,
      warmRequests: this.ttftWarm.length,
      coldRefused: this.coldRefused,
      firstStartColdRequests: this.firstStartCold,
      ttftMsAfterFirstStarts: stats(this.ttftAfterFirst),
      ttftMsAfterWarmup: tailWithRejected(
        [...this.ttftAfterWarmup.view()].sort((a, b) => a - b),
        this.refusedAfterWarmup,
      ),
      evictions: this.evictions,
      prewarms: this.prewarms,
      retargets: this.retargets,
      loadsByTier: this.cache.snapshot().loadsByTier,
      startupMsMean: this.starts > 0 ? this.startupMsSum / this.starts : 0,
    };
    return {
      autoscaler: `serverless:${this.policy.name}`,
      // The billing rule: a GPU is billed while any instance holds it, sleepers included.
      gpuHours: models.reduce((s, m) => s + m.gpuHours, 0) + loneGpuHours,
      coldStarts: models.reduce((s, m) => s + m.coldStarts, 0),
      startupMs: Math.max(...models.map((m) => m.startupMs)),
      // Up to the run's end, as the bills: ticks after it (the later of the last completion and the
      // workload's declared end) are left out.
      instancesOverTime: sumSeries(this.models.map((m) => m.pool.instancesUntil(endMs))),
      models,
    };
  }

  // ---- one tick ----

  /** Stops what the policy no longer wants, then starts what it wants, waiting requests first. */
  private tick(nowMs: number): void {
    // Bills closed before the latest completion are final (each bill ends at the run's end).
    this.book?.settle(this.lastFinishMs);
    for (const m of this.models) {
      m.pool.settle(this.lastFinishMs);
      m.pool.sweepDrained(nowMs);
      m.startupMs = this.bestStartupMs(m, nowMs);
    }
    const lone = this.book?.loneGpuList(this.cacheTime(nowMs));
    const plan = this.policy.plan(
      this.models.map((m) => this.view(m, nowMs)),
      nowMs,
      lone?.map((g) => ({ aloneMs: g.aloneMs, models: g.models.map((id) => this.indexOf(id)) })),
    );
    this.reapLoneSleepers(lone ?? [], plan.keepLone, nowMs);
    const desired = new Map<Served, number>();
    for (const [i, m] of this.models.entries()) {
      desired.set(m, Math.max(0, Math.min(m.spec.maxInstances, Math.round(plan.instances[i] ?? 0))));
    }
    for (const m of this.models) this.shrink(m, desired.get(m) ?? 0, nowMs);
    for (const m of this.models) this.rescue(m, nowMs);
    // Models with requests waiting first, the longest waiting first; then the rest by id.
    const order = [...this.models].sort(
      (a, b) =>
        (a.firstHeldMs ?? Number.POSITIVE_INFINITY) - (b.firstHeldMs ?? Number.POSITIVE_INFINITY) ||
        compareStrings(a.spec.id, b.spec.id),
    );
    for (const m of order) {
      const want = desired.get(m) ?? 0;
      while (this.active(m) < want) {
        if (this.startOne(m, nowMs)) continue;
        m.shortTicks++;
        break;
      }
    }
    for (const m of this.models) m.pool.record(nowMs, desired.get(m) ?? 0, true);
    this.prestart(nowMs);
    this.refreshView();
  }

  /**
   * Engines started straight into sleep on GPUs billed anyway (an awake instance there), for models
   * with no sleeper and no instance, none of their requests held unless no instance of the model
   * has been ready yet: so their next start, the first included, is a wake. Models
   * that ran first, the most recently used first; then those never asked for, in a fixed order
   * that knows nothing of their popularity (`nameHash`). Each pins its weights in the node's DRAM;
   * one initialising engine per GPU at a time (`SleepBook.canPrestartOn`).
   */
  private prestart(nowMs: number): void {
    const book = this.book;
    if (book === undefined) return;
    const t = this.cacheTime(nowMs);
    // A model never yet ready whose requests wait is taken too: it got no fresh start this tick (no
    // free GPU, and in a cluster where every loaded model is within a burst the policy offers no
    // victim), and other models come and go by wakes and swaps of their sleepers, so without one it
    // never got in (24 models, Zipf 1.4, 4 GPUs: m16's 618 requests all refused; README, Measured).
    const want = this.models.filter(
      (m) =>
        this.active(m) === 0 && book.countOf(m.spec.id) === 0 && (m.pool.heldCount === 0 || !m.everReady),
    );
    want.sort(
      (a, b) =>
        b.lastUsedMs - a.lastUsedMs ||
        nameHash(a.spec.id) - nameHash(b.spec.id) ||
        compareStrings(a.spec.id, b.spec.id),
    );
    for (const m of want) {
      const initBytes = book.awakeNeedBytes(this.cache.shardBytes(m.spec.id).perGpuBytes);
      for (const node of this.cache.nodeIds()) {
        const gpus = book.prestartGpus(node, m.spec.tp, initBytes, t);
        if (gpus === undefined) continue;
        if (!this.cache.pinDram(m.spec.id, node, t).ok) continue;
        // Its weights are read like any load's: a lane of the tier they come from.
        const startupMs = this.cache.readForSleep(m.spec.id, node, t).startupMs;
        const s = book.prestart(m.spec.id, node, gpus, t, t + startupMs, initBytes);
        m.everStarted = true;
        this.prestarts++;
        this.note(
          nowMs,
          `${s.id} starts into sleep on ${node} GPUs ${gpus.join(',')}: wakeable in ${(startupMs / 1000).toFixed(1)} s`,
        );
        break;
      }
    }
    if (book.config.bootIntoSleep) this.boot(book, nowMs);
  }

  /**
   * Boot into sleep (`bootQueue`): models never started in the run, none of their requests held, go
   * straight into sleep on free GPUs (no awake instance there), in the queue's order, while no
   * demand waits for a GPU. Billed from then on as GPUs held by sleepers alone (the hold rule and
   * the GPU account apply); a demand start still takes such a GPU's awake place, abandoning the boot
   * if both do not fit. Each pins its weights in the node's DRAM, as a start into sleep does.
   */
  private boot(book: SleepBook, nowMs: number): void {
    const t = this.cacheTime(nowMs);
    const queue = bootQueue(
      this.models.map((m) => ({
        id: m.spec.id,
        everStarted: m.everStarted,
        active: this.active(m),
        held: m.pool.heldCount,
      })),
    );
    // Packed: a GPU with no sleeper yet is opened only while fewer GPUs hold sleepers than the
    // queue needs at the memory rule's sleepers per GPU (fewer GPUs held by sleepers alone to bill;
    // booting on every free GPU at once cost the hold of more lone GPUs than it saved: README).
    const gpusNeeded = Math.ceil(queue.length / Math.max(1, book.sleepersPerGpuMax));
    for (const id of queue) {
      const m = this.byId.get(id) as Served;
      const initBytes = book.awakeNeedBytes(this.cache.shardBytes(id).perGpuBytes);
      for (const node of this.cache.nodeIds()) {
        if (!this.cache.fits(id, node)) continue;
        const gpus = book.bootGpus(node, m.spec.tp, initBytes, t, book.gpusWithSleepers < gpusNeeded);
        if (gpus === undefined) continue;
        if (!this.cache.pinDram(id, node, t).ok) continue;
        const startupMs = this.cache.readForSleep(id, node, t).startupMs;
        const s = book.boot(id, node, gpus, t, t + startupMs, initBytes);
        m.everStarted = true;
        this.prestarts++;
        this.boots++;
        this.note(
          nowMs,
          `${s.id} boots into sleep on free ${node} GPUs ${gpus.join(',')}: wakeable in ${(startupMs / 1000).toFixed(1)} s`,
        );
        break;
      }
    }
  }

  /**
   * A model with requests waiting whose only instances are fresh starts still initialising: if one
   * of its sleepers can wake now (or a swap can free one), it wakes, and the fresh starts stop (they
   * hold no request yet), so its requests wait seconds, not the rest of an engine start.
   */
  private rescue(m: Served, nowMs: number): void {
    const book = this.book;
    if (book === undefined || m.pool.heldCount === 0 || m.pool.count('ready') > 0) return;
    const fresh: number[] = [];
    for (const [k, id] of m.cacheIdOfSlot.entries()) {
      if (id === undefined || m.pool.phaseOf(k) !== 'starting') continue;
      if (this.wokenIds.has(id)) return; // a wake is under way already
      fresh.push(k);
    }
    if (fresh.length === 0 || book.countOf(m.spec.id) === 0) return;
    const k = m.pool.firstStopped();
    if (k === undefined) return;
    if (this.tryWake(book, m, k, nowMs) !== 'woken') return;
    for (const j of fresh) {
      this.note(nowMs, `${m.cacheIdOfSlot[j]} stop: a sleeper of ${m.spec.id} woke first`);
      m.pool.drain(j, nowMs);
    }
  }

  /** Down to `want`: starting instances stop first (they hold no request), then idle, then busy ones. */
  private shrink(m: Served, want: number, nowMs: number): void {
    const pool = m.pool;
    let active = this.active(m);
    if (active <= want) return;
    const order: number[] = [];
    for (const phase of ['starting', 'ready'] as const) {
      for (let k = pool.instances.length - 1; k >= 0; k--) if (pool.phaseOf(k) === phase) order.push(k);
    }
    // Idle ready instances before busy ones (a busy one drains first, keeping its GPUs meanwhile).
    order.sort((a, b) => rank(pool, a) - rank(pool, b));
    for (const k of order) {
      if (active <= want) break;
      const cacheId = m.cacheIdOfSlot[k];
      if (this.book !== undefined && cacheId !== undefined && pool.phaseOf(k) === 'ready') {
        this.sleepOnStop.add(cacheId);
      }
      this.note(nowMs, `${cacheId ?? m.spec.id} stop: ${this.policy.name} wants ${want}`);
      pool.drain(k, nowMs);
      active--;
    }
  }

  /** Starts one instance of `m` where the policy's node rule says, stopping idle ones if need be. */
  private startOne(m: Served, nowMs: number): boolean {
    const k = m.pool.firstStopped();
    if (k === undefined) return false;
    if (this.book !== undefined) {
      const woke = this.tryWake(this.book, m, k, nowMs);
      if (woke !== 'none') return woke === 'woken';
    }
    // A pre-warm never starts afresh a model that has a sleeper: its first request wakes it (by a
    // swap if need be) in seconds, and a fresh start's ~45 s would keep its requests waiting.
    if (this.book !== undefined && m.pool.heldCount === 0 && this.book.countOf(m.spec.id) > 0) return false;
    // Requests waiting and no sleeper of its own: a sleeping engine of the same base is re-targeted
    // to it (its weights' read, seconds) rather than a fresh start (~45 s); a sleeper serves nothing.
    const book = this.book?.config.retarget === true && m.pool.heldCount > 0 ? this.book : undefined;
    if (book !== undefined && this.retargetSleeper(book, m, k, nowMs)) return true;
    let choice = this.chooseNode(m, nowMs);
    if (choice === undefined) {
      // No room: an idle instance of the same base that the victim rule would stop for `m` goes on
      // for `m` instead. With room, the existing rules never stop a warm instance, nor does this.
      if (book !== undefined && this.retargetIdle(book, m, k, nowMs)) return true;
      if (!this.evictFor(m, nowMs)) return false;
      choice = this.chooseNode(m, nowMs);
      if (choice === undefined) return false;
    }
    const inSystem = this.inSystem(m);
    const load = this.cache.load(m.spec.id, choice.node, this.cacheTime(nowMs));
    const placed = this.book?.placeAwake(
      load.instanceId,
      choice.node,
      m.spec.tp,
      this.cacheTime(nowMs),
      this.cache.shardBytes(m.spec.id).perGpuBytes,
    );
    this.stopSleepers(placed?.stopped ?? [], nowMs, `no room beside ${load.instanceId}`);
    this.readyAtOf.set(load.instanceId, { sinceMs: nowMs, readyAtMs: nowMs + load.startupMs });
    m.cacheIdOfSlot[k] = load.instanceId;
    m.everStarted = true;
    this.slotOfCacheId.set(load.instanceId, { m, k, node: choice.node });
    m.pool.start(k, nowMs, load.startupMs);
    this.starts++;
    this.startupMsSum += load.startupMs;
    if (inSystem === 0) this.prewarms++;
    const why = inSystem === 0 ? 'pre-warm' : `${inSystem} request(s)`;
    this.note(
      nowMs,
      `${load.instanceId} start (${why}): weights from ${load.fromTier}, ready in ${(load.startupMs / 1000).toFixed(1)} s`,
    );
    return true;
  }

  private chooseNode(m: Served, nowMs: number): NodeChoice | undefined {
    const t = this.cacheTime(nowMs);
    return this.policy.nodeChoice === 'first-fit'
      ? firstFitNode(this.cache, m.spec.id, t)
      : startupAwareNode(this.cache, m.spec.id, t);
  }

  /**
   * Frees `tp` GPUs on one node for `m` by stopping idle instances the policy offers, in its order:
   * the first node where its free GPUs and the victims offered so far there make room. False when
   * the policy offers none that do.
   */
  private evictFor(m: Served, nowMs: number): boolean {
    const candidates = this.idleCandidates(m, nowMs);
    if (candidates.length === 0) return false;
    const ordered = this.policy.victims(candidates, this.view(m, nowMs), nowMs);
    const freed = new Map<string, VictimCandidate[]>();
    for (const v of ordered.slice(0, VICTIMS_PER_START_MAX)) {
      if (!this.cache.fits(m.spec.id, v.node)) continue;
      const list = [...(freed.get(v.node) ?? []), v];
      freed.set(v.node, list);
      const room = this.cache.freeGpus(v.node) + list.reduce((n, x) => n + x.gpus, 0);
      if (room < m.spec.tp) continue;
      for (const victim of list) this.stopVictim(victim.instanceId, m, nowMs);
      return true;
    }
    return false;
  }

  private stopVictim(cacheId: string, forModel: Served, nowMs: number): void {
    const where = this.slotOfCacheId.get(cacheId);
    if (where === undefined) return;
    where.m.evicted++;
    this.evictions++;
    this.note(nowMs, `${cacheId} evicted for ${forModel.spec.id} (${this.policy.name})`);
    if (this.book !== undefined) this.sleepOnStop.add(cacheId);
    // Idle: it stops at once (or sleeps), and `stopped` frees its GPUs in the cache.
    where.m.pool.drain(where.k, nowMs);
  }

  /** Ready instances of other models with nothing in flight and no request of theirs waiting. */
  private idleCandidates(forModel: Served, nowMs: number): VictimCandidate[] {
    const out: VictimCandidate[] = [];
    for (const m of this.models) {
      if (m === forModel || m.pool.heldCount > 0) continue;
      let view: ServerlessModelView | undefined;
      for (const [k, cacheId] of m.cacheIdOfSlot.entries()) {
        if (cacheId === undefined || m.pool.phaseOf(k) !== 'ready') continue;
        if ((m.pool.instances[k] as SimInstance).inFlight > 0) continue;
        const where = this.slotOfCacheId.get(cacheId);
        if (where === undefined) continue;
        view ??= this.view(m, nowMs);
        out.push({ instanceId: cacheId, node: where.node, gpus: m.spec.tp, model: view });
      }
    }
    return out;
  }

  /** Slot `k` of `m` stopped: its GPUs go back to the cache (its weights stay in DRAM there). */
  private stopped(m: Served, k: number, nowMs: number): void {
    const cacheId = m.cacheIdOfSlot[k];
    if (cacheId === undefined) return;
    m.cacheIdOfSlot[k] = undefined;
    this.slotOfCacheId.delete(cacheId);
    this.readyAtOf.delete(cacheId);
    this.wokenIds.delete(cacheId);
    const swapTo = this.drainingFor.get(cacheId);
    this.drainingFor.delete(cacheId);
    const t = this.cacheTime(nowMs);
    const at = this.book?.releaseAwake(cacheId, t);
    const asleep = this.sleepOnStop.delete(cacheId) && at !== undefined && this.trySleep(m, at, t);
    this.cache.unloadInstance(cacheId, t);
    if (asleep) this.note(nowMs, `${cacheId} asleep on ${at.node} GPUs ${at.gpus.join(',')}`);
    // A swap: the model it drained for wakes on the GPUs it left, at once.
    if (swapTo !== undefined && swapTo.pool.heldCount > 0) {
      if (this.active(swapTo) === 0) {
        if (this.startOne(swapTo, nowMs)) this.refreshView();
      } else {
        this.rescue(swapTo, nowMs);
      }
    }
  }

  // ---- sleep mode ----

  /**
   * Re-targets a sleeping engine of another model of the same base, TP and GPU type to `m` (into
   * slot `k`): a sleeper whose GPUs no awake instance holds, of a model with nothing waiting, the
   * least valuable first (`retargetSleepers`). The engine keeps its GPUs and its initialisation;
   * `m`'s weights are read from the fastest tier holding them on that node, through its lane
   * (`ModelCache.retarget`), plus the wake's fixed costs. False when none can.
   */
  private retargetSleeper(book: SleepBook, m: Served, k: number, nowMs: number): boolean {
    const t = this.cacheTime(nowMs);
    const shape = this.shapeOf(m);
    const candidates: RetargetCandidate[] = [];
    for (const x of this.models) {
      if (x === m || !retargetable(this.shapeOf(x), shape)) continue;
      const sleepers = book
        .sleepersOf(x.spec.id)
        .filter((s) => !book.initialising(s.id, t) && book.blockers(s).length === 0);
      if (sleepers.length === 0) continue;
      const view = this.view(x, nowMs);
      for (const s of sleepers) candidates.push({ id: s.id, engine: this.shapeOf(x), model: view });
    }
    const first = retargetSleepers(candidates, shape, nowMs, this.intervalMs)[0];
    if (first !== undefined) {
      const s = book.remove(first.id, t);
      this.cache.unpinDram(s.model, s.node, t);
      this.note(nowMs, `${s.id} re-targeted to ${m.spec.id} (same base ${m.spec.base})`);
      this.startRetargeted(book, m, k, s.node, s.gpus, s.model, nowMs);
      return true;
    }
    return false;
  }

  /**
   * Re-targets to `m` an idle instance of the same base, TP and GPU type that the policy's victim
   * rule offers for `m` (`victims`: it would stop it for `m` anyway), in the rule's order; called only
   * when no node has room for a fresh start. Costs as `retargetSleeper`. False when none can.
   */
  private retargetIdle(book: SleepBook, m: Served, k: number, nowMs: number): boolean {
    const shape = this.shapeOf(m);
    const idle = this.idleCandidates(m, nowMs).filter((c) => {
      const where = this.slotOfCacheId.get(c.instanceId);
      return where !== undefined && retargetable(this.shapeOf(where.m), shape);
    });
    if (idle.length === 0) return false;
    const victim = this.policy.victims(idle, this.view(m, nowMs), nowMs)[0];
    if (victim === undefined) return false;
    const where = this.slotOfCacheId.get(victim.instanceId) as { m: Served; k: number; node: string };
    const at = book.awakeGpus(victim.instanceId);
    if (at === undefined) return false;
    const gpus = [...at.gpus];
    this.note(nowMs, `${victim.instanceId} re-targeted to ${m.spec.id} (same base ${m.spec.base}; idle)`);
    // Idle: it stops at once (its weights stay in the node's DRAM cache), not asleep: its engine
    // goes on for `m`.
    where.m.pool.drain(where.k, nowMs);
    if (this.slotOfCacheId.has(victim.instanceId)) throw new Error(`${victim.instanceId} did not stop`);
    this.startRetargeted(book, m, k, where.node, gpus, undefined, nowMs);
    return true;
  }

  /** Slot `k` of `m` starts on an engine re-targeted on `node`'s `gpus` (see `retarget`). */
  private startRetargeted(
    book: SleepBook,
    m: Served,
    k: number,
    node: string,
    gpus: readonly number[],
    released: ModelId | undefined,
    nowMs: number,
  ): void {
    const t = this.cacheTime(nowMs);
    const r = this.cache.retarget(m.spec.id, node, t, retargetTimeMs(0, book.config), released);
    const stopped = book.placeAt(r.instanceId, node, gpus, t, this.cache.shardBytes(m.spec.id).perGpuBytes);
    this.stopSleepers(stopped, nowMs, `no room beside ${r.instanceId}`);
    // Not a fresh start: a rescue leaves it be, as it does a wake.
    this.wokenIds.add(r.instanceId);
    this.readyAtOf.set(r.instanceId, { sinceMs: nowMs, readyAtMs: nowMs + r.startupMs });
    m.cacheIdOfSlot[k] = r.instanceId;
    m.everStarted = true;
    this.slotOfCacheId.set(r.instanceId, { m, k, node });
    m.pool.start(k, nowMs, r.startupMs);
    this.retargets++;
    this.starts++;
    this.startupMsSum += r.startupMs;
    this.note(
      nowMs,
      `${r.instanceId} start (${this.inSystem(m)} request(s)): re-targeted engine, weights from ${r.fromTier}, ready in ${(r.startupMs / 1000).toFixed(1)} s`,
    );
  }

  private shapeOf(m: Served): { model: ModelId; base: ModelId; tp: number; gpu: GpuId } {
    return { model: m.spec.id, base: m.spec.base, tp: m.spec.tp, gpu: m.spec.gpu };
  }

  /**
   * Puts a stopped instance's engine to sleep on the GPUs it ran on: only if the model has fewer
   * sleepers than instances, each GPU has room for one more residual (`SleepBook.canSleepOn`: beside
   * what is awake there, or the smallest served model), and the node's DRAM can hold its weights;
   * false (it just stops) otherwise.
   */
  private trySleep(m: Served, at: { node: string; gpus: number[] }, t: number): boolean {
    const book = this.book as SleepBook;
    if (book.countOf(m.spec.id) >= m.spec.maxInstances) return false;
    if (!book.canSleepOn(at.node, at.gpus, t)) return false;
    if (!this.cache.pinDram(m.spec.id, at.node, t).ok) return false;
    book.sleep(m.spec.id, at.node, at.gpus, t);
    this.sleeps++;
    return true;
  }

  /**
   * Wakes a sleeper of `m` into slot `k`: one whose GPUs no awake instance holds; else, with
   * requests waiting, one whose GPUs only idle instances of other models hold (ready, nothing in
   * flight, none of their model's requests held; they go to sleep in turn, a ~1 s wake from coming
   * back, so the policy's victim rule, which prices a ~45 s fresh start, is not asked: asking it
   * put the results page's A and C at 1.08x and 1.65x the best baseline's p99); else
   * drain-and-swap (`swapVerdict`): busy instances on a sleeper's GPUs stop taking requests,
   * finish those they run and sleep, and the sleeper wakes when they have (`stopped`). `woken`,
   * `pending` (a swap under way or worth waiting for: no fresh start), or `none`.
   */
  private tryWake(book: SleepBook, m: Served, k: number, nowMs: number): 'woken' | 'pending' | 'none' {
    const t = this.cacheTime(nowMs);
    const all = book.sleepersOf(m.spec.id);
    const sleepers = all.filter((s) => !book.initialising(s.id, t));
    const free = sleepers.find((s) => book.blockers(s).length === 0);
    if (free !== undefined) return this.wake(book, m, k, free.id, nowMs) ? 'woken' : 'none';
    // Its own instance is draining for another model's swap: it sleeps in a moment, and wakes
    // back by a swap in turn, sooner than a fresh start.
    if (m.pool.heldCount > 0 && this.drainingForOther(m)) return 'pending';
    // An engine of its own initialising into sleep that will be ready before a fresh start would.
    if (m.pool.heldCount > 0 && all.some((s) => s.readyAtMs > t && s.readyAtMs - t < m.startupMs))
      return 'pending';
    if (m.pool.heldCount === 0 || sleepers.length === 0) return 'none';
    // An idle blocker is put to sleep in its turn: it can wake there again in about a second, so
    // the two time-share the GPU.
    const idle = new Set(this.idleCandidates(m, nowMs).map((c) => c.instanceId));
    for (const s of sleepers) {
      const blockers = book.blockers(s);
      if (!blockers.every((b) => idle.has(b))) continue;
      for (const b of blockers) this.stopVictim(b, m, nowMs);
      if (book.blockers(s).length === 0) return this.wake(book, m, k, s.id, nowMs) ? 'woken' : 'none';
    }
    return this.swapFor(book, m, sleepers, nowMs);
  }

  /** Drain-and-swap for `m` on the first sleeper whose blockers yield (see `swapVerdict`). */
  private swapFor(
    book: SleepBook,
    m: Served,
    sleepers: readonly Sleeper[],
    nowMs: number,
  ): 'pending' | 'none' {
    let waiting = false;
    const freeGpu = this.chooseNode(m, nowMs) !== undefined;
    for (const s of sleepers) {
      const ids = book.blockers(s);
      const blockers = ids.map((id) => this.swapBlocker(id));
      if (blockers.some((b) => b === undefined)) continue;
      const verdict = swapVerdict(
        { held: m.pool.heldCount, startupMs: m.startupMs, freeGpu, waitingSinceMs: m.firstHeldMs },
        blockers as SwapBlocker[],
        nowMs,
      );
      if (verdict === 'wait') waiting = true;
      if (verdict !== 'drain') continue;
      for (const id of ids) this.drainForSwap(id, m, nowMs);
      this.swaps++;
      return 'pending';
    }
    return waiting ? 'pending' : 'none';
  }

  /** What `swapVerdict` needs of an awake cache instance; undefined if it is not a ready or draining one. */
  private swapBlocker(cacheId: string): SwapBlocker | undefined {
    const where = this.slotOfCacheId.get(cacheId);
    const at = this.readyAtOf.get(cacheId);
    if (where === undefined || at === undefined) return undefined;
    const phase = where.m.pool.phaseOf(where.k);
    if (phase !== 'starting' && phase !== 'ready' && phase !== 'draining') return undefined;
    // A starting blocker's model holds the requests it starts for: they are its own work, not a
    // claim for more GPUs, so only its ready time counts.
    const modelHeld = phase === 'ready' ? where.m.pool.heldCount : 0;
    return { ...at, modelHeld, draining: phase === 'draining' };
  }

  private drainForSwap(cacheId: string, forModel: Served, nowMs: number): void {
    // Gone already: draining an earlier blocker of the same sleeper stopped it at once (idle), and
    // that stop woke or swapped for `forModel` again, stopping this one (a TP 4 sleeper behind four
    // blockers; before, a crash: 16 models with a 70B among 8Bs on 8 GPUs, seed 2).
    const where = this.slotOfCacheId.get(cacheId);
    if (where === undefined || where.m.pool.phaseOf(where.k) !== 'ready') return;
    this.sleepOnStop.add(cacheId);
    this.drainingFor.set(cacheId, forModel);
    this.note(
      nowMs,
      `${cacheId} drains for ${forModel.spec.id} (swap: it sleeps, ${forModel.spec.id} wakes)`,
    );
    where.m.pool.drain(where.k, nowMs);
  }

  /** Whether an instance of `m` is draining so another model's sleeper can wake. */
  private drainingForOther(m: Served): boolean {
    for (const id of m.cacheIdOfSlot) if (id !== undefined && this.drainingFor.has(id)) return true;
    return false;
  }

  private wake(book: SleepBook, m: Served, k: number, sleeperId: string, nowMs: number): boolean {
    const t = this.cacheTime(nowMs);
    const s = book.remove(sleeperId, t);
    this.cache.unpinDram(m.spec.id, s.node, t);
    const hostLink = this.hostLinkOf.get(s.node) as number;
    const wakeMs = wakeTimeMs(this.cache.shardBytes(m.spec.id).shardBytes, hostLink, book.config);
    const r = this.cache.resume(m.spec.id, s.node, t, wakeMs);
    const stopped = book.placeAt(
      r.instanceId,
      s.node,
      s.gpus,
      t,
      this.cache.shardBytes(m.spec.id).perGpuBytes,
    );
    this.stopSleepers(stopped, nowMs, `no room beside ${r.instanceId}`);
    this.wokenIds.add(r.instanceId);
    this.readyAtOf.set(r.instanceId, { sinceMs: nowMs, readyAtMs: nowMs + wakeMs });
    m.cacheIdOfSlot[k] = r.instanceId;
    this.slotOfCacheId.set(r.instanceId, { m, k, node: s.node });
    m.pool.start(k, nowMs, wakeMs);
    this.wakes++;
    this.wakeMsSum += wakeMs;
    this.starts++;
    this.startupMsSum += wakeMs;
    const why = this.inSystem(m) === 0 ? 'pre-warm' : `${this.inSystem(m)} request(s)`;
    if (this.inSystem(m) === 0) this.prewarms++;
    this.note(nowMs, `${r.instanceId} wake (${why}) on ${s.node}: ready in ${(wakeMs / 1000).toFixed(2)} s`);
    return true;
  }

  /**
   * Sleepers on GPUs held by sleepers alone that the plan does not keep are stopped (billing: the
   * policy weighs their value against its GPU account, within the hold bounds).
   */
  private reapLoneSleepers(lone: readonly LoneGpu[], keep: readonly boolean[], nowMs: number): void {
    const book = this.book;
    if (book === undefined) return;
    const t = this.cacheTime(nowMs);
    for (const [i, g] of lone.entries()) {
      if (keep[i] === true) continue;
      const why = `its GPU ${g.node}/${g.index} held by sleepers alone for ${(g.aloneMs / 1000).toFixed(0)} s`;
      this.stopSleepers(book.stopOn(g.node, g.index, t), nowMs, why);
    }
  }

  /** A model's position in the policy's views. */
  private indexOf(id: ModelId): number {
    const i = this.indexOfModel.get(id);
    if (i === undefined) throw new Error(`no served model ${id}`);
    return i;
  }

  /** Sleepers already out of the book are stopped: their pinned weights leave the node's DRAM. */
  private stopSleepers(stopped: readonly Sleeper[], nowMs: number, why: string): void {
    const t = this.cacheTime(nowMs);
    for (const s of stopped) {
      this.cache.unpinDram(s.model, s.node, t);
      this.stoppedAsleep++;
      this.note(nowMs, `${s.id} stopped asleep (${why})`);
    }
  }

  // ---- views ----

  private view(m: Served, nowMs: number): ServerlessModelView {
    const inSystem = this.inSystem(m);
    return {
      id: m.spec.id,
      gpus: m.spec.tp,
      active: this.active(m),
      inSystem,
      held: m.pool.heldCount,
      heldWaitedMs: m.firstHeldMs === undefined ? 0 : Math.max(0, nowMs - m.firstHeldMs),
      idleMs: inSystem > 0 ? 0 : Math.max(0, nowMs - m.lastUsedMs),
      lastUsedMs: m.lastUsedMs,
      startupMs: m.startupMs,
      arrivals: m.arrivals,
    };
  }

  private active(m: Served): number {
    return m.pool.count('starting') + m.pool.count('ready');
  }

  /** Held requests plus those in flight on its instances (the host's own accounting). */
  private inSystem(m: Served): number {
    let n = m.pool.heldCount;
    for (const i of m.pool.instances) n += i.inFlight;
    return n;
  }

  /** The least start-up over the nodes its group fits, with the tiers as they are now. */
  private bestStartupMs(m: Served, nowMs: number): number {
    let best = Number.POSITIVE_INFINITY;
    const t = this.cacheTime(nowMs);
    for (const node of this.cache.nodeIds()) {
      if (!this.cache.fits(m.spec.id, node)) continue;
      best = Math.min(best, this.cache.estimate(m.spec.id, node, t).startupMs);
    }
    return Number.isFinite(best) ? best : m.startupMs;
  }

  /** A decision-log line (`--decision-log`), as the placement host writes its own. */
  private note(atMs: number, line: string): void {
    this.deps.onPlacement?.({ atMs, placement: line });
  }

  private cacheTime(nowMs: number): number {
    this.cacheNowMs = Math.max(this.cacheNowMs, nowMs);
    return this.cacheNowMs;
  }

  private refreshView(): void {
    this.deps.view.instances = routableInPools(this.models);
  }
}

/** The policy's hold bounds for GPUs held by sleepers alone: sleep mode's (none when it is off). */
function loneHoldBounds(sleep: SleepParams | false | undefined): Partial<ServerlessParams> {
  if (sleep === false) return {};
  const c = resolveSleep(sleep ?? {});
  return { loneHoldMinMs: c.loneSleepMaxMs, loneHoldMaxMs: c.loneHoldMaxMs };
}

/** Every k-th point, k the smallest stride that keeps at most `max` (the last point always kept). */
function thinned<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const stride = Math.ceil(points.length / (max - 1));
  const out = points.filter((_, i) => i % stride === 0);
  const last = points.at(-1) as T;
  if (out.at(-1) !== last) out.push(last);
  return out;
}

/** Shrink order: starting, then idle ready, then busy ready. */
function rank(pool: ModelPool, k: number): number {
  if (pool.phaseOf(k) === 'starting') return 0;
  return (pool.instances[k] as SimInstance).inFlight === 0 ? 1 : 2;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
