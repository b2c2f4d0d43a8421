/**
 * The live control host: runs one control loop for one model on the wall clock in front of the
 * gateway. It hears every request through the gateway's RequestTap (arrival, first byte, end), so its
 * windows count what the gateway itself saw; every `intervalMs` it closes a TrafficWindow, asks the
 * loop with it, the bounded history and the gateway's view of the model's instances, and hands the
 * decision to the actuator. Between ticks it lets the actuator stop drained engines promptly.
 *
 * With `scaleToZero` (a pool whose minimum is 0) it bounds the loop's wish by the keep-alive rule
 * (./scale-to-zero.ts): no instance past the model's keep-alive without a request, at least one
 * while requests are at the host. `wake()` is the gateway's buffer asking for a first instance: it
 * starts one at once when none is up or starting, without closing a window early (a window of a
 * few ms would read as a huge request rate to the loop); the next tick sees the buffered requests in
 * `queuedAtEnd` and sizes the pool from there. Every start from zero (wake-up or tick) first asks
 * `scaleToZero.admit`, where a cap on loaded models per node answers (./loaded-model-cap.ts); that
 * cap stops an idle model through `unload`. With `scaleToZero.prewarm`, a tick that leaves the model
 * at zero asks the pre-warm rule (./prewarm.ts, the twin's forecast value) whether a request is
 * likely before an engine started now would be up, and starts one ahead if so: at most once per idle
 * period (a request must arrive before the next), its keep-alive counted from when the forecast
 * request should have been served (the pre-warm plus one start-up and one interval).
 *
 * It also exports the loop's wish and the pool's state as Prometheus gauges
 * (`switchyard_desired_replicas{model,role}`, `switchyard_replicas{model,role,phase}`): where
 * Switchyard does not run the engines itself, an HPA or KEDA acts on them (docs/autoscaling.md).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import type { ModelId } from '../core/ids.ts';
import type { Request } from '../core/request.ts';
import type { ClusterView } from '../core/view.ts';
import { type PrewarmParams, prewarmVerdict } from './prewarm.ts';
import { keepAliveReplicas } from './scale-to-zero.ts';
import { ArrivalHistory } from './serverless/forecast.ts';
import { TrafficWindowAccumulator } from './traffic-window.ts';
import {
  type Actuator,
  type ControlDecision,
  type ControlLoop,
  type InstancePhase,
  type ServiceObjectives,
  totalReplicas,
  type Variant,
} from './types.ts';

/** Longest wait between two looks at draining engines (a drained engine stops within about this). */
export const SETTLE_EVERY_MS_MAX = 100;
/** The phases `switchyard_replicas` always reports (0 when none), so queries never miss a series. */
export const REPLICA_PHASES: readonly InstancePhase[] = ['pending', 'starting', 'ready', 'draining'];

/** What the runner needs of its actuator besides `Actuator`: the local one, or an export-only one. */
export interface LiveActuator extends Actuator {
  /** Finishes what completes between ticks (a drained engine stops). */
  settle(nowMs: number): void;
  /** Instances per phase, every InstancePhase present. */
  counts(): Readonly<Record<InstancePhase, number>>;
  /** Starts that failed so far. */
  readonly startFailures: number;
}

/** Options of a `LiveControlRunner`. */
export interface LiveRunnerOptions {
  readonly loop: ControlLoop;
  readonly actuator: LiveActuator;
  /** The model name requests use: only its requests are counted. */
  readonly model: ModelId;
  /** What the actuator runs (the gauges' role label). */
  readonly variant: Variant;
  readonly intervalMs: number;
  /** What the windows' SLO attainment measures (the config's SLO). */
  readonly objectives: ServiceObjectives;
  /** The gateway's clock (the one stamping `Request.arrivalMs`). */
  readonly clock: Clock;
  /** The gateway's view settled at `nowMs` (the runner keeps the model's instances). */
  readonly view: (nowMs: number) => ClusterView;
  /** Requests of the model held at the gateway now (admission queue, scale-from-zero buffer). */
  readonly queued: () => number;
  /** Decision changes and loop errors. */
  readonly log?: (line: string) => void;
  /** The pool may shrink to zero: its keep-alive now (the latest request's `keep_alive`, or the default). */
  readonly scaleToZero?: {
    keepAliveMs(): number;
    /**
     * A start from zero may go ahead now (a cap on loaded models, src/control/loaded-model-cap.ts):
     * false keeps the pool at zero and its requests held until a later tick or wake-up. Default: yes.
     */
    admit?(nowMs: number): boolean;
    /** The keep-alive rule stopped the model's engines (it was idle past its keep-alive). */
    stoppedIdle?(nowMs: number): void;
    /** Start the model ahead of a forecast request (./prewarm.ts); `startupMs` is the last measured start-up. */
    prewarm?: {
      readonly params?: PrewarmParams;
      startupMs(): number | undefined;
      /**
       * A pre-warm may start now without displacing anything (a cap on loaded models has a free
       * slot): a forecast alone never evicts a loaded model. Default: yes.
       */
      roomFor?(nowMs: number): boolean;
    };
  };
}

/** Runs a loop live (see the file comment). Set it as the gateway's `requestTap`, then `start()`. */
export class LiveControlRunner {
  /** What the loop last asked for, clamped to the pool (before the first tick: the initial pool). */
  desired: number;
  /** The last decision's reason. */
  reason = 'initial pool';
  /** Ticks run. */
  ticks = 0;
  private readonly windows: TrafficWindowAccumulator;
  /** First-byte time per request; entries go with their requests. */
  private readonly firstByteMs = new WeakMap<Request, number>();
  private timer: NodeJS.Timeout | undefined;
  private nextTickMs: number;
  private readonly log: (line: string) => void;
  /** Pre-warms started (engines started ahead of a forecast request). */
  prewarms = 0;
  /** The model's last arrival or end (host clock). */
  private lastActivityMs: number;
  /** The model's arrivals, for the pre-warm forecast (kept only with `scaleToZero.prewarm`). */
  private readonly arrivals: ArrivalHistory | undefined;
  /**
   * When the last pre-warm's forecast request should be served (pre-warm + start-up + one interval,
   * host clock): the keep-alive counts from there, so an engine started ahead waits for it.
   */
  private prewarmUntilMs = Number.NEGATIVE_INFINITY;
  /** A request arrived since the last pre-warm: the next one may go. */
  private prewarmAllowed = true;

  constructor(private readonly options: LiveRunnerOptions) {
    if (!(Number.isFinite(options.intervalMs) && options.intervalMs > 0))
      throw new RangeError(`intervalMs ${options.intervalMs}: expected a number of ms > 0`);
    const nowMs = options.clock.nowMs();
    this.windows = new TrafficWindowAccumulator(options.objectives, nowMs);
    this.nextTickMs = nowMs + options.intervalMs;
    this.desired = options.actuator.instances(options.variant.model).length;
    this.log = options.log ?? (() => {});
    this.lastActivityMs = nowMs;
    this.arrivals = options.scaleToZero?.prewarm === undefined ? undefined : new ArrivalHistory();
  }

  /** The model whose requests it counts. */
  get model(): ModelId {
    return this.options.model;
  }

  /** The variant it sizes (the gauges' role label). */
  get variant(): Variant {
    return this.options.variant;
  }

  /** The actuator it drives. */
  get actuator(): LiveActuator {
    return this.options.actuator;
  }

  /** Requests of the model arrived and not yet ended (held ones included). */
  get inSystem(): number {
    return this.windows.inSystem;
  }

  /** The model's last arrival or end (host clock). */
  get lastUsedMs(): number {
    return this.lastActivityMs;
  }

  /** The pool holds an engine slot: its last decision wants one, or one is starting or ready. */
  get loaded(): boolean {
    return this.desired > 0 || this.activeCount() > 0;
  }

  /**
   * Stops the model's engines now, whatever the loop says (a cap on loaded models chose it: it is
   * idle). Its next request wakes it again.
   */
  unload(reason: string, nowMs: number = this.options.clock.nowMs()): void {
    this.applyDecision({ targets: [{ variant: this.options.variant, replicas: 0 }], reason }, nowMs);
  }

  // ---- RequestTap (src/gateway/gateway.ts) ----

  arrived(request: Request, nowMs: number): void {
    if (request.model !== this.options.model) return;
    this.windows.arrival(request.inputTokens, nowMs);
    this.lastActivityMs = nowMs;
    this.arrivals?.record(nowMs);
    this.prewarmAllowed = true;
  }

  firstByte(request: Request, nowMs: number): void {
    if (!this.firstByteMs.has(request)) this.firstByteMs.set(request, nowMs);
  }

  ended(request: Request, ok: boolean, outputTokens: number, nowMs: number): void {
    if (request.model !== this.options.model) return;
    this.lastActivityMs = nowMs;
    if (!ok) {
      this.windows.failure(nowMs);
      return;
    }
    const firstMs = this.firstByteMs.get(request) ?? nowMs;
    const tpotMs = outputTokens > 1 ? (nowMs - firstMs) / (outputTokens - 1) : 0;
    this.windows.completion(firstMs - request.arrivalMs, tpotMs, outputTokens, nowMs);
  }

  // ---- the loop ----

  /** Starts ticking every `intervalMs` on the host's clock. */
  start(): void {
    if (this.timer !== undefined) return;
    const everyMs = Math.min(this.options.intervalMs, SETTLE_EVERY_MS_MAX);
    this.timer = setInterval(() => this.poll(), everyMs);
    this.timer.unref();
  }

  /** Stops ticking (the actuator's engines keep running until `actuator.close()`). */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One control interval: close the window, ask the loop, apply its decision. */
  tick(nowMs: number = this.options.clock.nowMs()): ControlDecision | undefined {
    const o = this.options;
    const window = this.windows.close(nowMs, o.queued());
    const all = o.view(nowMs);
    const view: ClusterView = {
      nowMs,
      instances: all.instances.filter((i) => i.models.includes(o.model)),
    };
    let decision: ControlDecision;
    try {
      decision = o.loop.decide({
        nowMs,
        model: o.variant.model,
        instances: o.actuator.instances(o.variant.model),
        view,
        window,
        history: this.windows.history,
      });
    } catch (error) {
      // A loop that throws keeps the pool as it is; serving goes on.
      this.log(`autoscaler ${o.loop.name}: decide failed: ${(error as Error).message}`);
      return undefined;
    }
    this.ticks++;
    if (o.scaleToZero !== undefined) decision = this.keepAlive(decision, window.queuedAtEnd, nowMs);
    if (totalReplicas(decision) === 0) decision = this.prewarmed(decision, nowMs);
    this.applyDecision(decision, nowMs);
    return decision;
  }

  /**
   * The gateway holds `waiting` requests for the model (its scale-from-zero buffer): with nothing up
   * or starting, ask for one instance now rather than at the next tick.
   */
  wake(waiting: number, nowMs: number = this.options.clock.nowMs()): void {
    if (this.activeCount() > 0) return;
    const reason = `scale from zero: ${waiting} request(s) waiting for '${this.options.model}'`;
    this.applyDecision({ targets: [{ variant: this.options.variant, replicas: 1 }], reason }, nowMs);
  }

  /** The loop's decision bounded by the keep-alive rule (./scale-to-zero.ts). */
  private keepAlive(decision: ControlDecision, waiting: number, nowMs: number): ControlDecision {
    const inSystem = this.windows.inSystem;
    const active = this.activeCount();
    const rule = keepAliveReplicas({
      loopReplicas: totalReplicas(decision),
      active,
      waiting,
      inSystem,
      idleMs: inSystem > 0 ? 0 : Math.max(0, nowMs - Math.max(this.lastActivityMs, this.prewarmUntilMs)),
      keepAliveMs: this.options.scaleToZero?.keepAliveMs() ?? 0,
    });
    // With engines up, the rule says 0 only past the keep-alive.
    if (rule.replicas === 0 && active > 0) this.options.scaleToZero?.stoppedIdle?.(nowMs);
    if (rule.override === undefined) return decision;
    return {
      targets: [{ variant: this.options.variant, replicas: rule.replicas }],
      reason: `${rule.override} (${decision.reason})`,
    };
  }

  /** `decision` (zero instances), or one instance when the pre-warm rule says a request is coming. */
  private prewarmed(decision: ControlDecision, nowMs: number): ControlDecision {
    const prewarm = this.options.scaleToZero?.prewarm;
    if (prewarm === undefined || this.arrivals === undefined || !this.prewarmAllowed) return decision;
    const startupMs = prewarm.startupMs();
    const verdict = prewarmVerdict(
      {
        model: this.options.model,
        arrivals: this.arrivals,
        active: this.activeCount(),
        inSystem: this.windows.inSystem,
        lastUsedMs: this.lastActivityMs,
        startupMs,
        intervalMs: this.options.intervalMs,
      },
      nowMs,
      prewarm.params,
    );
    if (!verdict.start || prewarm.roomFor?.(nowMs) === false) return decision;
    this.prewarms++;
    this.prewarmAllowed = false;
    this.prewarmUntilMs = nowMs + (startupMs ?? 0) + this.options.intervalMs;
    return {
      targets: [{ variant: this.options.variant, replicas: 1 }],
      reason: `pre-warm: a request is forecast within the start-up (value ${verdict.value.toFixed(2)}, start-up ${Math.round(startupMs ?? 0)} ms, idle ${Math.round(nowMs - this.lastActivityMs)} ms)`,
    };
  }

  private applyDecision(wish: ControlDecision, nowMs: number): void {
    const o = this.options;
    const decision = this.admitted(wish, nowMs);
    o.actuator.apply(o.variant.model, decision, nowMs);
    const desired = Math.max(0, Math.round(totalReplicas(decision)));
    if (desired !== this.desired)
      this.log(`autoscaler ${o.loop.name}: ${this.desired} -> ${desired} replicas: ${decision.reason}`);
    this.desired = desired;
    this.reason = decision.reason;
  }

  /** `decision`, or 0 when it starts the pool from zero and the host's `admit` refuses. */
  private admitted(decision: ControlDecision, nowMs: number): ControlDecision {
    const admit = this.options.scaleToZero?.admit;
    if (admit === undefined || totalReplicas(decision) < 1 || this.loaded || admit(nowMs)) return decision;
    return {
      targets: [{ variant: this.options.variant, replicas: 0 }],
      reason: `loaded-model cap: waiting for a loaded model to turn idle (${decision.reason})`,
    };
  }

  /** Engines pending, starting or ready. */
  private activeCount(): number {
    const c = this.options.actuator.counts();
    return c.pending + c.starting + c.ready;
  }

  /**
   * Registers the replica gauges (and a start-failure counter) on `registry`, the gateway's own, so
   * they appear on its /metrics.
   */
  registerMetrics(registry: Registry): void {
    registerRunnerMetrics(registry, [this]);
  }

  private poll(): void {
    const nowMs = this.options.clock.nowMs();
    if (nowMs >= this.nextTickMs) {
      // Ticks keep their phase: a late timer does not shift every later window.
      const late = Math.floor((nowMs - this.nextTickMs) / this.options.intervalMs);
      this.nextTickMs += (late + 1) * this.options.intervalMs;
      this.tick(nowMs);
    } else this.options.actuator.settle(nowMs);
  }
}

/**
 * Registers the replica gauges and the start-failure counter of several runners (one per model) on
 * `registry`, once: each series is labelled with its runner's model and role.
 */
export function registerRunnerMetrics(registry: Registry, runners: readonly LiveControlRunner[]): void {
  const labelsOf = (r: LiveControlRunner) => ({ model: r.model, role: r.variant.role });
  new Gauge({
    name: 'switchyard_desired_replicas',
    help: 'Instances the autoscaler wants for the model and role (its last decision)',
    labelNames: ['model', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runners) this.set(labelsOf(r), r.desired);
    },
  });
  new Gauge({
    name: 'switchyard_replicas',
    help: 'Instances of the model and role by phase (pending, starting, ready, draining)',
    labelNames: ['model', 'role', 'phase'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runners) {
        const counts = r.actuator.counts();
        for (const phase of REPLICA_PHASES) this.set({ ...labelsOf(r), phase }, counts[phase]);
      }
    },
  });
  new Counter({
    name: 'switchyard_autoscaler_start_failures_total',
    help: 'Engine starts that failed or timed out (each is retried at a later tick)',
    labelNames: ['model', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runners) this.inc(labelsOf(r), r.actuator.startFailures);
    },
  });
}
