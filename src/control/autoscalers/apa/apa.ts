/**
 * AIBrix's APA (the AIBrix Pod Autoscaler) as a Switchyard control loop: one signal per replica
 * against a target value, a tolerance band around it, scale-up and scale-down rate limits, and
 * scale-up and scale-down stabilisation (cooldown) windows. Rule, defaults and sources: README.md.
 */
import { z } from 'zod';
import type { InstanceView } from '../../../core/view.ts';
import type { ControlContext, ControlDecision, ControlLoop, ControlObservation } from '../../types.ts';
import { singleVariantDecision } from '../../types.ts';
import { activeCount, readyCount, TrailingWindow } from '../window.ts';

/** Engine signals, read from each ready instance's view and summed. */
const ENGINE_METRICS = ['kvUsage', 'running', 'waiting', 'inFlight'] as const;
/** Host traffic signals, read from the window that just ended. */
const TRAFFIC_METRICS = ['concurrency', 'arrivalRate'] as const;

/** The signals APA may scale on. */
export const APA_METRICS = [...ENGINE_METRICS, ...TRAFFIC_METRICS] as const;
export type ApaMetric = (typeof APA_METRICS)[number];

/** AIBrix's sample APA policy targets 50% KV-cache usage per pod. */
const KV_USAGE_TARGET_DEFAULT = 0.5;

/** APA parameters; AIBrix's annotation names in comments, durations in ms. */
export const apaParams = z
  .strictObject({
    /** The signal per replica (AIBrix: metricsSources[].targetMetric). */
    metric: z.enum(APA_METRICS).default('kvUsage'),
    /** Wanted value per replica (AIBrix: targetValue); defaults only for kvUsage (0.5). */
    targetValue: z.number().positive().optional(),
    /** Scale up only above target x (1 + this) (scale-up-tolerance, 0.1). */
    upFluctuationTolerance: z.number().min(0).default(0.1),
    /** Scale down only below target x (1 - this) (scale-down-tolerance, 0.1). */
    downFluctuationTolerance: z.number().min(0).lt(1).default(0.1),
    /** At most this multiple of the current count per tick (max-scale-up-rate, 2). */
    maxScaleUpRate: z.number().gt(1).default(2),
    /** At least the current count divided by this per tick (max-scale-down-rate, 2). */
    maxScaleDownRate: z.number().gt(1).default(2),
    /** Scale up only to the lowest count recommended over this span (scale-up-cooldown-window, 0 s). */
    scaleUpCooldownMs: z.number().min(0).max(3_600_000).default(0),
    /** Scale down only to the highest count recommended over this span (scale-down-cooldown-window, 300 s). */
    scaleDownCooldownMs: z.number().min(0).max(3_600_000).default(300_000),
    /** The signal is averaged over this span (AIBrix's APA metrics window, 60 s); 0: the latest tick. */
    windowMs: z.number().min(0).max(3_600_000).default(60_000),
  })
  .refine((p) => p.targetValue !== undefined || p.metric === 'kvUsage', {
    message: 'targetValue is required for every metric but kvUsage (whose default is 0.5)',
    path: ['targetValue'],
  });
export type ApaParams = z.infer<typeof apaParams>;

/** Builds an APA loop for `context` with validated `params`. */
export function createApa(context: ControlContext, params: ApaParams): ControlLoop {
  return new Apa(context, params);
}

class Apa implements ControlLoop {
  readonly name = 'apa';
  private readonly target: number;
  private readonly totals: TrailingWindow;
  private readonly upRecommendations: TrailingWindow;
  private readonly downRecommendations: TrailingWindow;

  constructor(
    private readonly context: ControlContext,
    private readonly p: ApaParams,
  ) {
    this.target = p.targetValue ?? KV_USAGE_TARGET_DEFAULT;
    this.totals = new TrailingWindow(p.windowMs);
    this.upRecommendations = new TrailingWindow(p.scaleUpCooldownMs);
    this.downRecommendations = new TrailingWindow(p.scaleDownCooldownMs);
  }

  decide(o: ControlObservation): ControlDecision {
    const current = activeCount(o);
    const ready = readyCount(o);
    const demand = o.window.arrivals > 0 || o.window.queuedAtEnd > 0;
    const total = this.measure(o, ready);
    if (total === undefined) {
      // No instance reports an engine signal (none ready yet): hold, but never sit at zero with
      // requests waiting at the host.
      const replicas = demand ? Math.max(1, current) : current;
      return singleVariantDecision(
        this.context,
        replicas,
        `apa: no ${this.p.metric} reported, holding ${replicas}`,
      );
    }
    this.totals.record(o.nowMs, total);
    // The mean total over the window, shared by the replicas that report it now.
    const perReplica = this.totals.mean() / Math.max(1, ready);
    const ratio = perReplica / this.target;
    const recommended = this.recommend(ratio, ready, current);
    const stabilised = this.stabilise(o.nowMs, recommended, current);
    const replicas = demand && stabilised === 0 ? 1 : stabilised;
    return singleVariantDecision(this.context, replicas, this.reason(perReplica, ready, current, replicas));
  }

  /** The signal summed over ready instances (engine) or over the window (traffic); undefined if none reports. */
  private measure(o: ControlObservation, ready: number): number | undefined {
    switch (this.p.metric) {
      case 'kvUsage':
      case 'running':
      case 'waiting':
      case 'inFlight':
        return ready === 0 ? undefined : sumOver(o.view.instances, this.p.metric);
      case 'concurrency':
        return Number.isFinite(o.window.meanConcurrency) ? o.window.meanConcurrency : undefined;
      case 'arrivalRate': {
        const spanS = (o.window.endMs - o.window.startMs) / 1000;
        return spanS > 0 ? o.window.arrivals / spanS : undefined;
      }
      default: {
        const never: never = this.p.metric;
        throw new TypeError(`unhandled apa metric ${String(never)}`);
      }
    }
  }

  /**
   * AIBrix's rule: outside the tolerance band, ceil(replicas x ratio), rate-limited; inside it, hold.
   * The proportional step counts the replicas the signal came from (ready), so instances still
   * starting are not assumed loaded; a scale-up never asks for fewer than are already on the way.
   */
  private recommend(ratio: number, ready: number, current: number): number {
    const base = Math.max(1, ready);
    const proportional = Math.ceil(base * ratio);
    if (ratio > 1 + this.p.upFluctuationTolerance) {
      const maxUp = Math.ceil(this.p.maxScaleUpRate * Math.max(1, current));
      return Math.max(current, Math.min(proportional, maxUp));
    }
    if (ratio < 1 - this.p.downFluctuationTolerance) {
      const maxDown = Math.floor(current / this.p.maxScaleDownRate);
      return Math.min(current, Math.max(proportional, maxDown));
    }
    return current;
  }

  /**
   * Kubernetes HPA-style stabilisation, which AIBrix's cooldown windows are documented to follow:
   * scale up only to the lowest count recommended over the scale-up window, and down only to the
   * highest count recommended over the scale-down window.
   */
  private stabilise(nowMs: number, recommended: number, current: number): number {
    this.upRecommendations.record(nowMs, recommended);
    this.downRecommendations.record(nowMs, recommended);
    const upTo = this.upRecommendations.min();
    const downTo = this.downRecommendations.max();
    if (current < upTo) return upTo;
    if (current > downTo) return downTo;
    return current;
  }

  private reason(perReplica: number, ready: number, current: number, replicas: number): string {
    const lo = this.target * (1 - this.p.downFluctuationTolerance);
    const hi = this.target * (1 + this.p.upFluctuationTolerance);
    const move = replicas > current ? 'up' : replicas < current ? 'down' : 'hold';
    return (
      `apa ${move}: ${this.p.metric} ${fmt(perReplica)} per replica, band ${fmt(lo)}..${fmt(hi)}` +
      ` around ${fmt(this.target)} -> ${replicas} (ready ${ready}, current ${current})`
    );
  }
}

function sumOver(views: readonly InstanceView[], field: (typeof ENGINE_METRICS)[number]): number {
  let s = 0;
  for (const v of views) if (!v.draining) s += v[field];
  return s;
}

function fmt(x: number): string {
  return Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3);
}
