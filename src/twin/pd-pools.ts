/**
 * Autoscaled pools of a disaggregated (P/D) cluster in the twin: the prefill pool and the decode pool
 * each sized by its own control loop, as NVIDIA Dynamo's planner and llm-d scale prefill and decode
 * workers apart.
 *
 * Each pool is a ControlHost (src/twin/control-host.ts) over its own slots: the cluster's first
 * `prefill.maxInstances` instances are prefill-role, the rest decode-role, each created with its role.
 * A pool's loop is told its role in its variant and sees only its own pool's signals, those a live
 * metrics scrape of that pool's engines and the gateway's accounting of its leg give:
 * - prefill: its routable instances (queue, `pendingPrefillTokens`), the window of prefill legs
 *   (arrivals at the front door, each completing with its one token: TTFT of the prefill), and the
 *   admission queue as `queuedAtEnd`;
 * - decode: its routable instances (running decodes, KV usage), the window of decode legs (arriving
 *   when their prefill ends, TTFT from there: the wait for blocks, the transfer and the first step;
 *   TPOT), and the hand-offs waiting for decode blocks as `queuedAtEnd`.
 * New instances start after the modelled start-up time and join their pool with its role; a pool
 * scales down by draining, as a colocated pool does. Both pools tick together.
 *
 * When both pools run `dynamo-planner`, one loop drives both (`joint`): Dynamo's planner sizes the
 * prefill and the decode pool in one decision from the front door's load (request count, ISL, OSL),
 * so it is given the whole requests' window and both pools' instances, with a prefill and a decode
 * variant, and each pool applies its own target.
 */

import { createAutoscaler } from '../control/autoscalers/registry.ts';
import { TrafficWindowAccumulator } from '../control/traffic-window.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlLoop,
  ControlObservation,
  Variant,
} from '../control/types.ts';
import { invalidArgument } from '../core/errors.ts';
import type { Request } from '../core/request.ts';
import type { FinishedRequest } from '../engine-core/types.ts';
import type { SimInstance } from './cluster.ts';
import {
  ArmedTimes,
  ControlHost,
  type ControlHostDeps,
  type ControlOutcome,
  type ControlSettings,
  type ScaleEvent,
  type TwinControl,
} from './control-host.ts';
import type { InstanceCountPoint } from './model-pool.ts';
import { PLACEMENT_LOG_KEPT_MAX } from './placement-host.ts';
import { type JsonValue, roundFloat, toJsonValue } from './report/json.ts';

/** The two pools, in slot order. */
export const PD_POOLS = ['prefill', 'decode'] as const;
export type PdPoolName = (typeof PD_POOLS)[number];

/** The autoscaler that, run on both pools, drives them from one loop (as Dynamo's planner does). */
export const JOINT_AUTOSCALER = 'dynamo-planner';

/** One pool's loop and bounds. */
export interface PdPoolSettings {
  /** A registered autoscaler name (src/control/autoscalers/registry.ts). */
  readonly autoscaler: string;
  readonly params?: Readonly<Record<string, unknown>> | undefined;
  /** Builds the loop in place of the registry (tests); never joint. */
  readonly create?: ((context: ControlContext) => ControlLoop) | undefined;
  /** Fewest instances, at least 1: a hand-off always finds a decode instance, a request a prefill one. */
  readonly minInstances: number;
  /** The pool's slots. */
  readonly maxInstances: number;
  /** Ready at time 0 (`--prefill-instances`/`--decode-instances`), within min..max. */
  readonly initialInstances: number;
}

/**
 * SimOptions.pdPools: both pools' loops, and what they share: how often both run and how their
 * instances start, each as in ControlSettings (passed on to both pools' control hosts).
 */
export interface PdPoolsSettings
  extends Pick<ControlSettings, 'intervalMs' | 'startupTier' | 'compile' | 'startupMs'> {
  readonly prefill: PdPoolSettings;
  readonly decode: PdPoolSettings;
}

/** The instances a P/D cluster with pools is built with: every slot of both pools. */
export function pdPoolSlots(settings: PdPoolsSettings): number {
  return settings.prefill.maxInstances + settings.decode.maxInstances;
}

/** Checks a pool's bounds; the errors name the flags that set them. */
export function checkPdPool(name: PdPoolName, pool: PdPoolSettings): void {
  const { minInstances: min, maxInstances: max, initialInstances: initial } = pool;
  if (!Number.isInteger(min) || min < 1)
    throw invalidArgument(`min-${name}-instances`, min, 'an integer >= 1 (a pool never empties)');
  if (!Number.isInteger(max) || max < min)
    throw invalidArgument(`max-${name}-instances`, max, `an integer >= --min-${name}-instances (${min})`);
  if (!Number.isInteger(initial) || initial < min || initial > max)
    throw invalidArgument(`${name}-instances`, initial, `within ${min}..${max} (the pool's min and max)`);
}

/** One pool's figures for the JSON (`pdPools.prefill`, `pdPools.decode`). */
export interface PdPoolOutcome {
  readonly autoscaler: string;
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly initialInstances: number;
  readonly gpuHours: number;
  readonly coldStarts: number;
  readonly peakReady: number;
  readonly instancesOverTime: readonly InstanceCountPoint[];
}

/** One scale line: a tick that started or drained instances of a pool. */
export interface PdScaleEvent {
  readonly atMs: number;
  readonly pool: PdPoolName;
  readonly line: string;
}

/** What an autoscaled P/D run adds to its result. */
export interface PdPoolsOutcome {
  /** Both pools driven by one loop (dynamo-planner on both). */
  readonly joint: boolean;
  readonly prefill: PdPoolOutcome;
  readonly decode: PdPoolOutcome;
  /** The first PLACEMENT_LOG_KEPT_MAX scale lines, in time order. */
  readonly scaleEvents: readonly PdScaleEvent[];
}

/** What the decode pool needs from the twin besides its instances. */
export interface DecodePoolDeps {
  /** The decode pick's view; the pool sets its `instances` to the routable decode instances. */
  readonly view: { nowMs: number; instances: readonly SimInstance[] };
  /** Hand-offs waiting for blocks at decode instances now. */
  readonly handoffsWaiting: () => number;
}

/**
 * The control host of a P/D cluster: two ControlHosts, one per pool, ticking together (see the module
 * comment). The twin calls it as any TwinControl; it sends each call to the pool the request's leg
 * or the instance belongs to.
 */
export class PdPoolsHost implements TwinControl {
  readonly joint: boolean;
  private readonly prefill: ControlHost;
  private readonly decode: ControlHost;
  private readonly armed = new ArmedTimes();
  /** Requests in their decode leg: when the leg began (its prefill ended), by request id. */
  private readonly decodeLegSinceMs = new Map<string, number>();
  private readonly events: PdScaleEvent[] = [];
  /** The whole requests' window, for a joint loop; undefined otherwise. */
  private readonly front: JointLoop | undefined;
  private outcomeAtEnd: PdPoolsOutcome | undefined;

  constructor(
    private readonly settings: PdPoolsSettings,
    instances: readonly SimInstance[],
    deps: ControlHostDeps,
    decodeDeps: DecodePoolDeps,
  ) {
    checkPdPool('prefill', settings.prefill);
    checkPdPool('decode', settings.decode);
    const prefills = instances.filter((i) => i.role === 'prefill');
    const decodes = instances.filter((i) => i.role === 'decode');
    this.joint =
      settings.prefill.autoscaler === JOINT_AUTOSCALER &&
      settings.decode.autoscaler === JOINT_AUTOSCALER &&
      settings.prefill.create === undefined &&
      settings.decode.create === undefined;
    const objectives = { ttftMs: deps.slo.ttftMs, tpotMs: deps.slo.tpotMs };
    this.front = this.joint ? new JointLoop(settings, objectives) : undefined;
    const base = {
      intervalMs: settings.intervalMs,
      startupTier: settings.startupTier,
      compile: settings.compile,
      startupMs: settings.startupMs,
      slo: objectives,
    };
    const onScale = (pool: PdPoolName) => (event: ScaleEvent) => this.logScale(pool, event, deps);
    this.prefill = new ControlHost(this.poolControl('prefill', base), prefills, {
      ...deps,
      onScale: onScale('prefill'),
      // A draining prefill instance stops once the decode side has read the KV it holds, too.
      busy: (i) => i.inFlight > 0 || i.engine.exportHeldBlocks > 0,
    });
    this.decode = new ControlHost(
      // A hand-off finds a decode instance or waits for its blocks there: nothing is held in front.
      { ...this.poolControl('decode', base), heldMax: 0 },
      decodes,
      {
        ...deps,
        view: decodeDeps.view,
        queued: decodeDeps.handoffsWaiting,
        onScale: onScale('decode'),
      },
    );
    this.front?.bind(this.prefill, this.decode, deps, decodeDeps);
  }

  /** The ControlHost settings of one pool: its loop (or its share of the joint one) and bounds. */
  private poolControl(pool: PdPoolName, base: Partial<ControlSettings>): ControlSettings {
    const p = this.settings[pool];
    const front = this.front;
    return {
      ...base,
      autoscaler: p.autoscaler,
      params: p.params,
      create: front !== undefined ? (context) => front.share(pool, context, p) : p.create,
      minInstances: p.minInstances,
      maxInstances: p.maxInstances,
      initialInstances: p.initialInstances,
    };
  }

  begin(): void {
    this.prefill.begin();
    this.decode.begin();
  }

  get nextEventMs(): number {
    return Math.min(this.prefill.nextEventMs, this.decode.nextEventMs);
  }

  arm(): number | undefined {
    return this.armed.arm(this.nextEventMs);
  }

  /** Both pools act at `nowMs` (prefill first: a joint loop decides once, at the prefill pool's tick). */
  onEvent(nowMs: number): void {
    this.armed.popped(nowMs);
    this.prefill.onEvent(nowMs);
    this.decode.onEvent(nowMs);
  }

  onArrival(request: Request, nowMs: number): void {
    this.prefill.onArrival(request, nowMs);
    this.front?.window.arrival(request.inputTokens, nowMs);
  }

  /**
   * A leg completed: a prefill (its request's decode leg begins now, at the decode pick) or a decode
   * (the request is done; the decode pool measures TTFT from its leg's start).
   */
  onFinish(result: FinishedRequest, instance: SimInstance, offline: boolean): void {
    const id = result.request.id;
    if (instance.role === 'prefill') {
      this.prefill.onFinish(result, instance, offline, false);
      this.decodeLegSinceMs.set(id, result.finishMs);
      if (!offline) this.decode.onArrival(result.request, result.finishMs);
      return;
    }
    const sinceMs = this.decodeLegSinceMs.get(id) ?? result.arrivalMs;
    this.decodeLegSinceMs.delete(id);
    this.decode.onFinish({ ...result, arrivalMs: sinceMs }, instance, offline);
    // The request is whole only now: the prefill pool's bill settles here, not at its leg's end.
    if (!offline) this.prefill.settle(result.finishMs);
    if (!offline) this.front?.completion(result);
  }

  /** A request ended failed: in its decode leg (the decode pick refused it) or before (the prefill's). */
  onFailed(request: Request, nowMs: number): void {
    if (this.decodeLegSinceMs.delete(request.id)) this.decode.onFailed(request, nowMs);
    else this.prefill.onFailed(request, nowMs);
    this.front?.window.failure(nowMs);
  }

  onEnded(instance: SimInstance, nowMs: number): void {
    (instance.role === 'prefill' ? this.prefill : this.decode).onEnded(instance, nowMs);
  }

  /** Only the front door holds: a request with no ready prefill instance (never, with min >= 1). */
  hold(request: Request, offline: boolean, nowMs: number): boolean {
    return this.prefill.hold(request, offline, nowMs);
  }

  get held(): number {
    return this.prefill.held + this.decode.held;
  }

  /** Closes both pools' books at `endMs`; the totals are what a colocated run reports. */
  finish(endMs: number): ControlOutcome {
    const p = this.prefill.finish(endMs);
    const d = this.decode.finish(endMs);
    this.outcomeAtEnd = {
      joint: this.joint,
      prefill: this.poolOutcome('prefill', p),
      decode: this.poolOutcome('decode', d),
      scaleEvents: this.events,
    };
    return {
      autoscaler: this.label(p.autoscaler, d.autoscaler),
      gpuHours: p.gpuHours + d.gpuHours,
      coldStarts: p.coldStarts + d.coldStarts,
      startupMs: p.startupMs,
      instancesOverTime: sumSeries(p.instancesOverTime, d.instancesOverTime),
    };
  }

  /** The per-pool figures; set by `finish`. */
  get outcome(): PdPoolsOutcome | undefined {
    return this.outcomeAtEnd;
  }

  private label(prefill: string, decode: string): string {
    if (this.joint) return `${JOINT_AUTOSCALER} (joint)`;
    return prefill === decode ? prefill : `prefill ${prefill}, decode ${decode}`;
  }

  private poolOutcome(pool: PdPoolName, o: ControlOutcome): PdPoolOutcome {
    const p = this.settings[pool];
    return {
      autoscaler: this.joint ? `${JOINT_AUTOSCALER} (joint)` : o.autoscaler,
      minInstances: p.minInstances,
      maxInstances: p.maxInstances,
      initialInstances: p.initialInstances,
      gpuHours: o.gpuHours,
      coldStarts: o.coldStarts,
      peakReady: Math.max(0, ...o.instancesOverTime.map((x) => x.ready)),
      instancesOverTime: o.instancesOverTime,
    };
  }

  /** A tick that started or drained instances: one decision-log line tagged with the pool, kept bounded. */
  private logScale(pool: PdPoolName, event: ScaleEvent, deps: ControlHostDeps): void {
    const started = event.actions.filter((a) => a.kind === 'start').map((a) => a.instanceId);
    const drained = event.actions.filter((a) => a.kind === 'drain').map((a) => a.instanceId);
    const moves = [
      started.length > 0 ? `start ${started.join(' ')}` : '',
      drained.length > 0 ? `drain ${drained.join(' ')}` : '',
    ].filter((s) => s.length > 0);
    const line = `${pool} pool -> ${event.desired}: ${moves.join(', ')}; ${event.reason}`;
    if (this.events.length < PLACEMENT_LOG_KEPT_MAX) this.events.push({ atMs: event.atMs, pool, line });
    deps.onPlacement?.({ atMs: event.atMs, pool, placement: line });
  }
}

/**
 * One dynamo-planner over both pools. Each pool's ControlHost gets a share of it as its loop: the
 * prefill pool's tick asks the planner (once per tick time) with the front door's window and both
 * pools' instances, and each share answers its own pool's target.
 */
class JointLoop {
  readonly window: TrafficWindowAccumulator;
  private loop: ControlLoop | undefined;
  private decidedAtMs = Number.NaN;
  private decision: ControlDecision | undefined;
  private hosts: { prefill: ControlHost; decode: ControlHost } | undefined;
  private deps: { prefill: ControlHostDeps; decode: DecodePoolDeps } | undefined;
  private readonly contexts: Partial<Record<PdPoolName, ControlContext>> = {};

  constructor(
    private readonly settings: PdPoolsSettings,
    private readonly objectives: { ttftMs: number; tpotMs: number },
  ) {
    this.window = new TrafficWindowAccumulator(objectives, 0);
  }

  bind(prefill: ControlHost, decode: ControlHost, deps: ControlHostDeps, decodeDeps: DecodePoolDeps): void {
    this.hosts = { prefill, decode };
    this.deps = { prefill: deps, decode: decodeDeps };
  }

  /** A whole request completed (its decode leg ended): the front door's figures. */
  completion(result: FinishedRequest): void {
    const output = result.request.outputTokens;
    const ttftMs = result.firstTokenMs - result.arrivalMs;
    const tpotMs = output > 1 ? (result.finishMs - result.firstTokenMs) / (output - 1) : 0;
    this.window.completion(ttftMs, tpotMs, output, result.finishMs);
  }

  /** Pool `pool`'s loop: the planner's target for its variant, within the pool's bounds. */
  share(pool: PdPoolName, context: ControlContext, bounds: PdPoolSettings): ControlLoop {
    this.contexts[pool] = context;
    const variant = context.variants[0] as Variant;
    return {
      name: JOINT_AUTOSCALER,
      decide: (obs) => {
        const decision = this.decisionAt(obs.nowMs);
        const target = decision.targets.find((t) => t.variant.role === variant.role)?.replicas;
        const wanted = target ?? bounds.initialInstances;
        const replicas = Math.max(bounds.minInstances, Math.min(bounds.maxInstances, wanted));
        return { targets: [{ variant, replicas }], reason: decision.reason };
      },
    };
  }

  private decisionAt(nowMs: number): ControlDecision {
    if (this.decision !== undefined && this.decidedAtMs === nowMs) return this.decision;
    const hosts = this.hosts as { prefill: ControlHost; decode: ControlHost };
    const deps = this.deps as { prefill: ControlHostDeps; decode: DecodePoolDeps };
    this.loop ??= this.build();
    const loop = this.loop;
    const queued = deps.prefill.queued() + hosts.prefill.held + deps.decode.handoffsWaiting();
    const window = this.window.close(nowMs, queued);
    const observation: ControlObservation = {
      nowMs,
      model: (this.contexts.prefill as ControlContext).model,
      instances: [...hosts.prefill.instances(), ...hosts.decode.instances()],
      view: { nowMs, instances: [...deps.prefill.view.instances, ...deps.decode.view.instances] },
      window,
      history: this.window.history,
    };
    this.decision = loop.decide(observation);
    this.decidedAtMs = nowMs;
    return this.decision;
  }

  /** The planner, told both variants and the two pools' bounds summed. */
  private build(): ControlLoop {
    const p = this.contexts.prefill as ControlContext;
    const d = this.contexts.decode as ControlContext;
    const context: ControlContext = {
      ...p,
      variants: [p.variants[0] as Variant, d.variants[0] as Variant],
      minReplicas: p.minReplicas + d.minReplicas,
      maxReplicas: p.maxReplicas + d.maxReplicas,
      objectives: this.objectives,
    };
    return createAutoscaler(JOINT_AUTOSCALER, context, this.settings.prefill.params ?? {});
  }
}

/** Two pools' series summed point by point (both record at time 0 and at the same ticks). */
function sumSeries(a: readonly InstanceCountPoint[], b: readonly InstanceCountPoint[]): InstanceCountPoint[] {
  return a.map((x, k) => {
    const y = b[k];
    if (y === undefined) return x;
    return {
      timeS: x.timeS,
      ready: x.ready + y.ready,
      starting: x.starting + y.starting,
      draining: x.draining + y.draining,
      desired: x.desired + y.desired,
      // The front door's arrivals: the prefill pool's.
      arrivalRps: x.arrivalRps,
    };
  });
}

/** The `pdPools` block of a run's JSON; nothing for other runs. */
export function pdPoolsJson(outcome: PdPoolsOutcome | undefined): Record<string, JsonValue> {
  if (outcome === undefined) return {};
  const pool = (p: PdPoolOutcome): JsonValue => ({
    ...(toJsonValue(p) as Record<string, JsonValue>),
    gpuHours: roundFloat(p.gpuHours),
  });
  return {
    pdPools: {
      joint: outcome.joint,
      prefill: pool(outcome.prefill),
      decode: pool(outcome.decode),
      scaleEvents: toJsonValue(outcome.scaleEvents),
    },
  };
}
