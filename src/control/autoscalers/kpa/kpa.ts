/**
 * Knative's Pod Autoscaler (KPA) as a Switchyard control loop: concurrency averaged over a stable
 * and a panic window, a target concurrency per replica, panic mode on bursts (no scale-down while
 * in it), and per-tick scale-up and scale-down rate limits. Rule, defaults and sources: README.md.
 */
import { z } from 'zod';
import type { ControlContext, ControlDecision, ControlLoop, ControlObservation } from '../../types.ts';
import { singleVariantDecision } from '../../types.ts';
import { activeCount, readyCount, TrailingWindow, trailingMean } from '../window.ts';

/**
 * KPA parameters. Knative's names in comments; windows in ms. `containerConcurrency` x
 * `targetUtilization` is the concurrency each replica is sized for.
 */
export const kpaParams = z
  .strictObject({
    /** Requests one replica is sized for (Knative: container-concurrency-target-default, 100). */
    containerConcurrency: z.number().positive().default(64),
    /** Fraction of it to aim at in steady state (Knative: container-concurrency-target-percentage, 70%). */
    targetUtilization: z.number().gt(0).lte(1).default(0.7),
    /** Averaging window for normal operation (Knative: stable-window, 60 s; 6 s to 1 h). */
    stableWindowMs: z.number().min(6_000).max(3_600_000).default(60_000),
    /** Averaging window that detects bursts (Knative: 10% of the stable window, 6 s). */
    panicWindowMs: z.number().min(1).default(6_000),
    /** Panic when the panic window wants this multiple of the ready count (Knative: 200% = 2). */
    panicThreshold: z.number().gt(1).default(2),
    /** At most this multiple of the ready count per tick (Knative: max-scale-up-rate, 1000). */
    maxScaleUpRate: z.number().gt(1).default(1000),
    /** At least the ready count divided by this per tick (Knative: max-scale-down-rate, 2). */
    maxScaleDownRate: z.number().gt(1).default(2),
    /** Hold the highest count wanted over this span before scaling down (Knative: scale-down-delay, 0). */
    scaleDownDelayMs: z.number().min(0).max(3_600_000).default(0),
  })
  .refine((p) => p.panicWindowMs <= p.stableWindowMs, {
    message: 'panicWindowMs must not exceed stableWindowMs',
    path: ['panicWindowMs'],
  });
export type KpaParams = z.infer<typeof kpaParams>;

/** What one KPA tick computed, for the decision's reason and for tests. */
interface KpaTick {
  readonly ready: number;
  readonly stableConcurrency: number;
  readonly panicConcurrency: number;
  readonly desiredStable: number;
  readonly desiredPanic: number;
  readonly overThreshold: boolean;
}

/** Builds a KPA loop for `context` with validated `params`. */
export function createKpa(context: ControlContext, params: KpaParams): ControlLoop {
  return new Kpa(context, params);
}

class Kpa implements ControlLoop {
  readonly name = 'kpa';
  private readonly targetPerReplica: number;
  /** Last host time the panic window was over the threshold; undefined when not panicking. */
  private panicAtMs: number | undefined;
  /** The highest count wanted since panic began: panic never scales down. */
  private maxPanicReplicas = 0;
  private started = false;
  private readonly delay: TrailingWindow | undefined;

  constructor(
    private readonly context: ControlContext,
    private readonly p: KpaParams,
  ) {
    this.targetPerReplica = p.containerConcurrency * p.targetUtilization;
    this.delay = p.scaleDownDelayMs > 0 ? new TrailingWindow(p.scaleDownDelayMs) : undefined;
  }

  decide(o: ControlObservation): ControlDecision {
    if (!this.started) this.start(o);
    const history = o.history.length > 0 ? o.history : [o.window];
    const stableConcurrency = trailingMean(history, o.nowMs, this.p.stableWindowMs, (w) => w.meanConcurrency);
    const panicConcurrency = trailingMean(history, o.nowMs, this.p.panicWindowMs, (w) => w.meanConcurrency);
    if (!Number.isFinite(stableConcurrency) || !Number.isFinite(panicConcurrency)) {
      // Knative answers "no valid scale" without data; holding what is there is the same here.
      return singleVariantDecision(this.context, activeCount(o), 'kpa: no concurrency data yet, holding');
    }
    const tick = this.measure(readyCount(o), stableConcurrency, panicConcurrency);
    let replicas = this.applyPanic(o.nowMs, tick);
    replicas = this.applyDelay(o.nowMs, replicas);
    return singleVariantDecision(this.context, replicas, this.reason(tick, replicas));
  }

  /**
   * Knative starts a new autoscaler in panic when more than one pod is ready, so losing its metric
   * history (a restart) never scales a serving revision down before it has data.
   */
  private start(o: ControlObservation): void {
    this.started = true;
    const ready = readyCount(o);
    if (ready > 1) {
      this.panicAtMs = o.nowMs;
      this.maxPanicReplicas = ready;
    }
  }

  private measure(readyNow: number, stableConcurrency: number, panicConcurrency: number): KpaTick {
    // Rates are relative to at least one pod, so a revision at zero can still grow.
    const ready = Math.max(1, readyNow);
    const maxUp = Math.ceil(this.p.maxScaleUpRate * ready);
    const maxDown = Math.floor(ready / this.p.maxScaleDownRate);
    const wantStable = Math.ceil(stableConcurrency / this.targetPerReplica);
    const wantPanic = Math.ceil(panicConcurrency / this.targetPerReplica);
    return {
      ready: readyNow,
      stableConcurrency,
      panicConcurrency,
      desiredStable: clamp(wantStable, maxDown, maxUp),
      desiredPanic: clamp(wantPanic, maxDown, maxUp),
      overThreshold: wantPanic / ready >= this.p.panicThreshold,
    };
  }

  /** Enters, extends or leaves panic, and in panic never lets the count fall. */
  private applyPanic(nowMs: number, t: KpaTick): number {
    if (t.overThreshold) {
      this.panicAtMs = nowMs;
    } else if (this.panicAtMs !== undefined && this.panicAtMs + this.p.stableWindowMs < nowMs) {
      // The burst has had a whole stable window to reach the stable average: back to stable mode.
      this.panicAtMs = undefined;
      this.maxPanicReplicas = 0;
    }
    if (this.panicAtMs === undefined) return t.desiredStable;
    this.maxPanicReplicas = Math.max(this.maxPanicReplicas, t.desiredStable, t.desiredPanic);
    return this.maxPanicReplicas;
  }

  /** With a scale-down delay, the highest count wanted over the delay span. */
  private applyDelay(nowMs: number, replicas: number): number {
    if (this.delay === undefined) return replicas;
    this.delay.record(nowMs, replicas);
    return this.delay.max();
  }

  private reason(t: KpaTick, replicas: number): string {
    const mode = this.panicAtMs === undefined ? 'stable' : 'panic';
    return (
      `kpa ${mode}: concurrency stable ${t.stableConcurrency.toFixed(1)} panic ${t.panicConcurrency.toFixed(1)}` +
      ` / ${this.targetPerReplica.toFixed(1)} per replica -> ${replicas} (ready ${t.ready})`
    );
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(Math.max(x, lo), hi);
}
