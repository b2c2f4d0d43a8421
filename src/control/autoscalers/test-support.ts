/**
 * Builders for autoscaler tests: a context, traffic windows, instance views, and a scripted cluster
 * that turns one line of load per tick into the `ControlObservation` a host would pass. Test code
 * only; any autoscaler's test may import it.
 */
import type { InstanceView } from '../../core/view.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlLoop,
  ControlObservation,
  InstancePhase,
  ManagedInstance,
  TrafficWindow,
  Variant,
} from '../types.ts';
import { totalReplicas } from '../types.ts';

/** The variant test contexts use: one H100, TP 1, both phases. */
export const TEST_VARIANT: Variant = { model: 'llama-3.1-8b', gpu: 'h100', tp: 1, role: 'both' };

/** A context for `llama-3.1-8b` on one variant: 0..100 replicas, 2 s ticks, no objectives. */
export function testContext(overrides: Partial<ControlContext> = {}): ControlContext {
  return {
    model: 'llama-3.1-8b',
    variants: [TEST_VARIANT],
    minReplicas: 0,
    maxReplicas: 100,
    intervalMs: 2000,
    objectives: {},
    ...overrides,
  };
}

/** A window over [startMs, endMs) with no traffic unless `fields` says otherwise. */
export function trafficWindow(
  startMs: number,
  endMs: number,
  fields: Partial<TrafficWindow> = {},
): TrafficWindow {
  return {
    startMs,
    endMs,
    arrivals: 0,
    meanInputTokens: Number.NaN,
    meanOutputTokens: Number.NaN,
    completions: 0,
    failures: 0,
    meanConcurrency: 0,
    queuedAtEnd: 0,
    ttftMsP50: Number.NaN,
    ttftMsP90: Number.NaN,
    tpotMsMean: Number.NaN,
    sloAttainment: Number.NaN,
    ...fields,
  };
}

/** A healthy, idle instance view named `id` unless `fields` says otherwise. */
export function instanceView(id: string, fields: Partial<InstanceView> = {}): InstanceView {
  return {
    id,
    models: [TEST_VARIANT.model],
    gpu: TEST_VARIANT.gpu,
    tp: TEST_VARIANT.tp,
    role: TEST_VARIANT.role,
    healthy: true,
    draining: false,
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    kvBlocksTotal: 1000,
    blockSize: 16,
    pendingPrefillTokens: 0,
    prefixHitRate: 0,
    updatedAtMs: 0,
    ...fields,
  };
}

/** One tick of a script: the load over the window that just ended and what the cluster holds. */
export interface ScriptTick {
  /** The window's time-averaged concurrency (default 0). */
  readonly concurrency?: number;
  /** Arrivals in the window (default 0). */
  readonly arrivals?: number;
  /**
   * Ready instances at the tick. Default: the previous decision's total, as if the actuator were
   * instant (the script's starting count before the first decision).
   */
  readonly ready?: number;
  /** Instances still starting (default 0). */
  readonly starting?: number;
  /** Engine signals every ready instance shows (kvUsage, running, waiting...). */
  readonly signals?: Partial<InstanceView>;
  /**
   * Engine signals as a function of the ready count, e.g. a fixed total load spread evenly:
   * `(ready) => ({ running: 200 / ready })`. Applied after `signals`.
   */
  readonly signalsFor?: (ready: number) => Partial<InstanceView>;
  /** Any other window field. */
  readonly window?: Partial<TrafficWindow>;
}

/**
 * A scripted cluster: each `tick` advances the clock by one interval and builds the observation a
 * host would pass, keeping the history of windows. With `ready` left out it follows the loop's
 * last decision at once, so a test reads a closed loop without an actuator.
 */
export class ScriptedCluster {
  private nowMs = 0;
  private ready: number;
  private readonly history: TrafficWindow[] = [];

  constructor(
    private readonly context: ControlContext,
    initialReady: number,
  ) {
    this.ready = initialReady;
  }

  /** The observation for the next tick. */
  observe(tick: ScriptTick): ControlObservation {
    const startMs = this.nowMs;
    this.nowMs += this.context.intervalMs;
    if (tick.ready !== undefined) this.ready = tick.ready;
    const window = trafficWindow(startMs, this.nowMs, {
      arrivals: tick.arrivals ?? 0,
      meanConcurrency: tick.concurrency ?? 0,
      ...tick.window,
    });
    this.history.push(window);
    const instances = [
      ...managed('r', this.ready, 'ready', this.nowMs),
      ...managed('s', tick.starting ?? 0, 'starting', this.nowMs),
    ];
    const spread = tick.signalsFor?.(this.ready);
    const views = instances
      .filter((i) => i.phase === 'ready')
      .map((i) => instanceView(i.id, { updatedAtMs: this.nowMs, ...tick.signals, ...spread }));
    return {
      nowMs: this.nowMs,
      model: this.context.model,
      instances,
      view: { nowMs: this.nowMs, instances: views },
      window,
      history: [...this.history],
    };
  }

  /** Observes `tick`, asks `loop`, and follows its decision (unless a later tick sets `ready`). */
  step(loop: ControlLoop, tick: ScriptTick): ControlDecision {
    const decision = loop.decide(this.observe(tick));
    this.ready = totalReplicas(decision);
    return decision;
  }

  /** Runs every tick in order and returns each decision's total replicas. */
  run(loop: ControlLoop, ticks: readonly ScriptTick[]): number[] {
    return ticks.map((t) => totalReplicas(this.step(loop, t)));
  }
}

function managed(prefix: string, n: number, phase: InstancePhase, sinceMs: number): ManagedInstance[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    variant: TEST_VARIANT,
    phase,
    sinceMs,
  }));
}

/** `n` copies of one tick, for steady stretches of a script. */
export function repeat(n: number, tick: ScriptTick): ScriptTick[] {
  return Array.from({ length: n }, () => tick);
}
