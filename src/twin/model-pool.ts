/**
 * One model's pool of modelled instances in the twin, and the machinery every control host shares:
 * moving each SimInstance through stopped -> (pending ->) starting -> ready -> draining -> stopped,
 * billing GPUs from the start to the release or the run's end (whichever is first), the model's
 * traffic windows, its instance counts over time, and the scale-from-zero buffer for requests that
 * find no ready instance.
 *
 * It decides nothing: a coordinator says which slot to start, reserve or drain. ControlHost drives
 * one pool from one loop; PlacementHost drives one pool per model from the cluster's placement.
 */
import { GpuBill } from '../control/serverless/gpu-bill.ts';
import { TrafficWindowAccumulator } from '../control/traffic-window.ts';
import type {
  InstancePhase,
  ManagedInstance,
  ServiceObjectives,
  TrafficWindow,
  Variant,
} from '../control/types.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import { SCALE_FROM_ZERO_BUFFER_MAX } from '../gateway/model-buffer.ts';
import type { ClusterSpec, SimInstance } from './cluster.ts';

/** Points `instancesOverTime` keeps at most; beyond, every other point goes and the stride doubles. */
export const INSTANCE_SERIES_POINTS_MAX = 2000;
/**
 * Requests one model's scale-from-zero buffer holds by default; past it, arrivals are refused with
 * SY_ERR_SCALE_BUFFER_FULL. The live gateway's default (`limits.scaleFromZeroBufferMax`, the same
 * constant), so the twin refuses what the gateway would. The gateway's bound on all models' held
 * requests together (`limits.scaleFromZeroHeldMax`) is not modelled.
 */
export const HELD_REQUESTS_MAX_DEFAULT = SCALE_FROM_ZERO_BUFFER_MAX;
/**
 * How long a held request waits for a ready instance by default, ms: above the modelled start-up of
 * the catalogue's mid-size models from NVMe (about 47 s for an 8B on an H100), with room for a start
 * that must first wait for a preempted instance to drain; the live gateway's default
 * (`limits.scaleFromZeroWaitMs`). Past it: SY_ERR_COLD_START_TIMEOUT, a failure (held means accepted).
 */
export const HELD_WAIT_MS_DEFAULT = 120_000;

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

/** A request waiting in the scale-from-zero buffer. */
export interface HeldRequest {
  readonly request: Request;
  readonly offline: boolean;
  /** When it is refused if no instance is ready by then. */
  readonly untilMs: number;
}

/** Bounds of the scale-from-zero buffer. */
export interface HoldSettings {
  /** Requests held at most (default HELD_REQUESTS_MAX_DEFAULT); 0 turns the buffer off. */
  readonly heldMax?: number | undefined;
  /** Longest wait for a ready instance, ms (default HELD_WAIT_MS_DEFAULT). */
  readonly heldWaitMs?: number | undefined;
}

/** What a pool needs besides its instances. */
export interface PoolOptions extends HoldSettings {
  readonly variant: Variant;
  readonly startupMs: number;
  readonly objectives: ServiceObjectives;
  /** Called after any phase change, so the host can refresh the policies' view. */
  readonly onChange: () => void;
  /** Called when slot `k` stops and releases its GPUs. */
  readonly onStopped?: ((k: number, nowMs: number) => void) | undefined;
  /**
   * Whether an instance still holds work a drain must wait for; default: requests in flight. A P/D
   * prefill instance also waits for the KV it holds until the decode side has read it.
   */
  readonly busy?: ((instance: SimInstance) => boolean) | undefined;
}

type Phase = InstancePhase | 'stopped';

/** The pool of one model (see the module comment). Slots are indices into `instances`. */
export class ModelPool {
  readonly variant: Variant;
  readonly startupMs: number;
  readonly objectives: ServiceObjectives;
  private readonly phase: Phase[];
  private readonly counts: Record<Phase, number> = {
    stopped: 0,
    pending: 0,
    starting: 0,
    ready: 0,
    draining: 0,
  };
  private readonly sinceMs: number[];
  private readonly readyAtMs: number[];
  private readonly startedAtMs: number[];
  /** Whether the slot's engine has run: a later start gets an empty one. */
  private readonly ran: boolean[];
  /** The earliest ready time of a starting instance; kept by `setPhase`. */
  private nextReadyMs = Number.POSITIVE_INFINITY;
  /** Instances stopped: their GPU-ms, clipped at the run's end. */
  private readonly bill = new GpuBill();
  private coldStartCount = 0;
  private readonly series: InstanceCountPoint[] = [];
  private seriesStride = 1;
  private ticks = 0;
  /** Slot of each instance, by its twin-wide index. */
  private readonly slotOfIndex: Map<number, number>;
  private arrivalsSinceRecord = 0;
  private lastRecordMs = 0;
  private readonly traffic: TrafficWindowAccumulator;
  private readonly held: HeldRequest[] = [];
  private heldHead = 0;
  private readonly heldMax: number;
  private readonly heldWaitMs: number;
  /** Online requests of the model: arrived, completed, completed within both SLOs, failed. */
  private readonly tally = { arrived: 0, completed: 0, sloMet: 0, failed: 0 };

  constructor(
    readonly instances: readonly SimInstance[],
    private readonly options: PoolOptions,
  ) {
    this.variant = options.variant;
    this.startupMs = options.startupMs;
    this.objectives = options.objectives;
    this.traffic = new TrafficWindowAccumulator(options.objectives, 0);
    this.heldMax = options.heldMax ?? HELD_REQUESTS_MAX_DEFAULT;
    this.heldWaitMs = options.heldWaitMs ?? HELD_WAIT_MS_DEFAULT;
    const n = instances.length;
    this.phase = new Array<Phase>(n).fill('stopped');
    this.counts.stopped = n;
    this.sinceMs = new Array<number>(n).fill(0);
    this.readyAtMs = new Array<number>(n).fill(Number.POSITIVE_INFINITY);
    this.startedAtMs = new Array<number>(n).fill(0);
    this.ran = new Array<boolean>(n).fill(false);
    this.slotOfIndex = new Map(instances.map((instance, k) => [instance.index, k]));
    for (const i of instances) i.draining = true;
  }

  private busy(instance: SimInstance): boolean {
    return this.options.busy?.(instance) ?? instance.inFlight > 0;
  }

  // ---- lifecycle, driven by the coordinator ----

  /** Ready at once, billed from `nowMs`, not a cold start: provisioned before the run. */
  provision(k: number, nowMs: number): void {
    this.startedAtMs[k] = nowMs;
    this.ran[k] = true;
    this.setPhase(k, 'ready', nowMs);
  }

  /** Asked for, waiting for GPUs others still hold: not billed, takes nothing. */
  reserve(k: number, nowMs: number): void {
    this.setPhase(k, 'pending', nowMs);
  }

  /**
   * Starts: billed from now, ready after the start-up time (the pool's, or `startupMs` when the
   * coordinator knows this start's own, e.g. from the node's checkpoint tiers), with an empty engine.
   */
  start(k: number, nowMs: number, startupMs = this.startupMs): void {
    const instance = this.instances[k] as SimInstance;
    if (this.ran[k] === true) instance.restartEngine();
    this.ran[k] = true;
    this.startedAtMs[k] = nowMs;
    this.readyAtMs[k] = nowMs + startupMs;
    this.coldStartCount++;
    this.setPhase(k, 'starting', nowMs);
  }

  /**
   * Drain then stop: an instance holding no request (pending, starting, or idle) stops at once;
   * true when it did.
   */
  drain(k: number, nowMs: number): boolean {
    const p = this.phase[k];
    if (p === 'stopped' || p === 'draining') return false;
    if (p === 'pending' || p === 'starting' || !this.busy(this.instances[k] as SimInstance)) {
      this.stop(k, nowMs);
      return true;
    }
    this.setPhase(k, 'draining', nowMs);
    return false;
  }

  /** Starts that are due become ready; true when any did. */
  finishStarts(nowMs: number): boolean {
    if (this.nextReadyMs > nowMs) return false;
    for (let k = 0; k < this.phase.length; k++) {
      if (this.phase[k] === 'starting' && (this.readyAtMs[k] as number) <= nowMs)
        this.setPhase(k, 'ready', nowMs);
    }
    return true;
  }

  /** A request left `instance`: a draining one with nothing left stops. */
  onEnded(instance: SimInstance, nowMs: number): void {
    const k = this.slotOfIndex.get(instance.index);
    if (k !== undefined && this.phase[k] === 'draining' && !this.busy(instance)) this.stop(k, nowMs);
  }

  /** Draining instances whose last request ended some other way (a crash) stop here. */
  sweepDrained(nowMs: number): void {
    for (let k = 0; k < this.phase.length; k++) {
      if (this.phase[k] === 'draining' && !this.busy(this.instances[k] as SimInstance)) this.stop(k, nowMs);
    }
  }

  /** The lowest stopped slot, or undefined when every slot is in use. */
  firstStopped(): number | undefined {
    const k = this.phase.indexOf('stopped');
    return k < 0 ? undefined : k;
  }

  phaseOf(k: number): Phase {
    return this.phase[k] as Phase;
  }

  /** Instances in `phase` now (kept by `setPhase`: `hold` asks on every request). */
  count(phase: Phase): number {
    return this.counts[phase];
  }

  /** The earliest time a start completes or a held request expires. */
  get nextEventMs(): number {
    const head = this.held[this.heldHead];
    return Math.min(this.nextReadyMs, head === undefined ? Number.POSITIVE_INFINITY : head.untilMs);
  }

  /** The model's instances in every phase but stopped, by slot. */
  managed(): ManagedInstance[] {
    const out: ManagedInstance[] = [];
    for (const [k, instance] of this.instances.entries()) {
      const phase = this.phase[k] as Phase;
      if (phase === 'stopped') continue;
      out.push({ id: instance.id, variant: this.variant, phase, sinceMs: this.sinceMs[k] as number });
    }
    return out;
  }

  /** What policies see: ready and draining instances (draining ones only for their signals). */
  routable(): SimInstance[] {
    return this.instances.filter((_, k) => this.phase[k] === 'ready' || this.phase[k] === 'draining');
  }

  // ---- the scale-from-zero buffer ----

  /** Requests held now. */
  get heldCount(): number {
    return this.held.length - this.heldHead;
  }

  /**
   * Holds a request that found no ready instance: 'held' (released to the first ready one, or refused
   * at its deadline), 'full' (the buffer is at its bound: refuse now), or 'route' when an instance is
   * ready or the buffer is off (route as usual).
   */
  hold(request: Request, offline: boolean, nowMs: number): 'held' | 'full' | 'route' {
    if (this.heldMax === 0 || this.count('ready') > 0) return 'route';
    if (this.heldCount >= this.heldMax) return 'full';
    this.held.push({ request, offline, untilMs: nowMs + this.heldWaitMs });
    return 'held';
  }

  /** With a ready instance: every held request, oldest first, out of the buffer. */
  releaseHeld(): HeldRequest[] {
    if (this.heldCount === 0 || this.count('ready') === 0) return [];
    return this.takeHeld(this.held.length);
  }

  /** Held requests whose wait ended by `nowMs`, out of the buffer (they all wait equally long). */
  expireHeld(nowMs: number): HeldRequest[] {
    let end = this.heldHead;
    while (end < this.held.length && (this.held[end] as HeldRequest).untilMs <= nowMs) end++;
    return this.takeHeld(end);
  }

  private takeHeld(end: number): HeldRequest[] {
    const out = this.held.slice(this.heldHead, end);
    this.heldHead = end;
    if (this.heldHead === this.held.length) {
      this.held.length = 0;
      this.heldHead = 0;
    }
    return out;
  }

  // ---- what the twin saw ----

  /** An online request of the model arrived. */
  arrival(inputTokens: number, nowMs: number): void {
    this.traffic.arrival(inputTokens, nowMs);
    this.arrivalsSinceRecord++;
    this.tally.arrived++;
  }

  /**
   * An online request completed (`wholeRequest`), or one leg of it did (a P/D prefill leg, whose
   * request may still be refused at its decode pick): only a whole request's completion is a time the
   * run's end cannot precede, so only it settles the bill.
   */
  completion(result: FinishedRequest, wholeRequest = true): void {
    if (wholeRequest) this.bill.settle(result.finishMs);
    const output = result.request.outputTokens;
    const ttftMs = result.firstTokenMs - result.arrivalMs;
    const tpotMs = output > 1 ? (result.finishMs - result.firstTokenMs) / (output - 1) : 0;
    this.traffic.completion(ttftMs, tpotMs, output, result.finishMs);
    this.tally.completed++;
    const { ttftMs: ttftTarget, tpotMs: tpotTarget } = this.objectives;
    const met =
      (ttftTarget === undefined || ttftMs <= ttftTarget) &&
      (tpotTarget === undefined || tpotMs <= tpotTarget);
    if (met) this.tally.sloMet++;
  }

  /** An online request ended in a rejection or an error. */
  failure(nowMs: number): void {
    this.traffic.failure(nowMs);
    this.tally.failed++;
  }

  /** Ends the open window at `nowMs` (with `queued` requests held for the model) and keeps it. */
  closeWindow(nowMs: number, queued: number): TrafficWindow {
    return this.traffic.close(nowMs, queued);
  }

  /** Earlier windows, oldest first (bounded by the accumulator). */
  get history(): readonly TrafficWindow[] {
    return this.traffic.history;
  }

  /** Online requests: arrived, completed, met both SLOs, failed (rejected or errored). */
  get requests(): Readonly<{ arrived: number; completed: number; sloMet: number; failed: number }> {
    return this.tally;
  }

  // ---- books ----

  /**
   * Adds a point to `instancesOverTime`: always at time 0, then at every `stride`-th tick (the
   * stride doubles each time the series fills).
   */
  record(nowMs: number, desired: number, tick: boolean): void {
    if (tick && ++this.ticks % this.seriesStride !== 0) return;
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

  get instancesOverTime(): readonly InstanceCountPoint[] {
    return this.series;
  }

  /**
   * The points of `instancesOverTime` up to the run's end, `endMs` (the later of the last completion
   * and the workload's declared end): ticks after it (held requests waiting out their deadline) are
   * past what `gpuHoursAt(endMs)` bills.
   */
  instancesUntil(endMs: number): readonly InstanceCountPoint[] {
    const endS = endMs / 1000;
    let n = this.series.length;
    while (n > 1 && (this.series[n - 1] as InstanceCountPoint).timeS > endS) n--;
    return n === this.series.length ? this.series : this.series.slice(0, n);
  }

  /**
   * The run's end is at or after `atMs` (some model's request completed then): bills of instances
   * stopped by then are final. Completions of the pool's own model settle it too.
   */
  settle(atMs: number): void {
    this.bill.settle(atMs);
  }

  get coldStarts(): number {
    return this.coldStartCount;
  }

  /**
   * GPU-hours up to the run's end, `endMs` (the later of its last completion and the workload's
   * declared end, so at or after every completion the pool saw): each instance from its start to its
   * stop or `endMs`, whichever is first. A keep-alive or a held request's deadline may stop an
   * instance after that end; that tail is not billed, as it is not for instances still running then.
   */
  gpuHoursAt(endMs: number): number {
    let ms = this.bill.totalMs(endMs);
    for (let k = 0; k < this.phase.length; k++) {
      const p = this.phase[k];
      if (p === 'starting' || p === 'ready' || p === 'draining') ms += this.billMs(k, endMs);
    }
    return ms / 3_600_000;
  }

  // ---- internals ----

  private stop(k: number, nowMs: number): void {
    const p = this.phase[k];
    if (p === 'starting' || p === 'ready' || p === 'draining')
      this.bill.close(this.startedAtMs[k] as number, nowMs, (this.instances[k] as SimInstance).tp);
    this.readyAtMs[k] = Number.POSITIVE_INFINITY;
    this.setPhase(k, 'stopped', nowMs);
    this.options.onStopped?.(k, nowMs);
  }

  private billMs(k: number, nowMs: number): number {
    // An instance started after the run's last completion bills nothing.
    return Math.max(0, nowMs - (this.startedAtMs[k] as number)) * (this.instances[k] as SimInstance).tp;
  }

  private setPhase(k: number, phase: Phase, nowMs: number): void {
    this.counts[this.phase[k] as Phase]--;
    this.counts[phase]++;
    this.phase[k] = phase;
    this.sinceMs[k] = nowMs;
    // Only a ready instance may take new work; the rest are refused by isEligible.
    (this.instances[k] as SimInstance).draining = phase !== 'ready';
    let next = Number.POSITIVE_INFINITY;
    for (let j = 0; j < this.phase.length; j++) {
      if (this.phase[j] === 'starting' && (this.readyAtMs[j] as number) < next)
        next = this.readyAtMs[j] as number;
    }
    this.nextReadyMs = next;
    this.options.onChange();
  }
}

// ---- what the multi-model hosts (PlacementHost, ServerlessHost) share over their pools ----

/** A model of a multi-model host: one group of `maxInstances` SimInstances. */
export interface PooledModelSpec {
  readonly id: string;
  readonly base: string;
  readonly gpu: string;
  readonly tp: number;
  readonly maxInstances: number;
}

/** The twin cluster a multi-model run simulates: one group per model, `maxInstances` of it. */
export function pooledCluster(models: readonly PooledModelSpec[]): ClusterSpec {
  return {
    groups: models.map((m) => ({
      count: m.maxInstances,
      gpu: m.gpu,
      model: m.id,
      base: m.base,
      tp: m.tp,
    })),
  };
}

/** Anything a host keeps per model that owns a pool. */
interface HasPool {
  readonly pool: ModelPool;
}

/** The earliest of the next tick and every pool's next start or held-request deadline, ms. */
export function nextPoolsEventMs(models: readonly HasPool[], nextTickMs: number): number {
  let t = nextTickMs;
  for (const m of models) t = Math.min(t, m.pool.nextEventMs);
  return t;
}

/** Requests held in all the pools' scale-from-zero buffers. */
export function heldInPools(models: readonly HasPool[]): number {
  let n = 0;
  for (const m of models) n += m.pool.heldCount;
  return n;
}

/** Every pool's routable instances in twin index order: the policies' view of the cluster. */
export function routableInPools(models: readonly HasPool[]): SimInstance[] {
  const out: SimInstance[] = [];
  for (const m of models) out.push(...m.pool.routable());
  out.sort((a, b) => a.index - b.index);
  return out;
}
