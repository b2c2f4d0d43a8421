/**
 * AIBrix's APA (the AIBrix Pod Autoscaler) as a Switchyard control loop: one signal per replica
 * against a target value, a tolerance band around it, scale-up and scale-down rate limits, and
 * scale-up and scale-down stabilisation (cooldown) windows. Rule, defaults and sources: README.md.
 */
import { z } from 'zod';
import type { InstanceView } from '../../../core/view.ts';
import { engineLimits } from '../../capacity.ts';
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
  /** Mean prompt tokens of the latest window with arrivals. */
  private promptTokens: number | undefined;
  /** KV cache tokens of one instance, as last reported in the view. */
  private kvTokens: number | undefined;
  /** The performance model's KV cache tokens per instance; null when it has none for the variant. */
  private modelKv: number | null | undefined;

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
    this.learn(o);
    const measured = this.measure(o, ready);
    // With no instance ready, the requests held at the host are the load the first ones will take.
    const held = measured === undefined && ready === 0 ? this.heldLoad(o.window.queuedAtEnd) : undefined;
    if (measured === undefined && held === undefined) {
      // No instance reports an engine signal (none ready yet) and nothing held says what the load
      // is: hold, but never sit at zero with requests waiting at the host.
      const replicas = demand ? Math.max(1, current) : current;
      return singleVariantDecision(
        this.context,
        replicas,
        `apa: no ${this.p.metric} reported, holding ${replicas}`,
      );
    }
    let perReplica: number;
    if (measured === undefined) {
      // The backlog as it stands, not averaged: it only grows until an instance is ready. The first
      // instances' own readings then start the window afresh (estimates never enter it).
      this.totals.clear();
      perReplica = held ?? 0;
    } else {
      this.totals.record(o.nowMs, measured);
      // The mean total over the window, shared by the replicas that report it now.
      perReplica = this.totals.mean() / Math.max(1, ready);
    }
    const ratio = perReplica / this.target;
    const recommended = this.recommend(ratio, ready, current);
    const stabilised = this.stabilise(o.nowMs, recommended, current);
    const replicas = demand && stabilised === 0 ? 1 : stabilised;
    const from = measured === undefined ? o.window.queuedAtEnd : undefined;
    return singleVariantDecision(
      this.context,
      replicas,
      this.reason(perReplica, ready, current, replicas, from),
    );
  }

  /** Keeps what turns held requests into the signal's units: prompt length and KV cache size. */
  private learn(o: ControlObservation): void {
    if (Number.isFinite(o.window.meanInputTokens) && o.window.meanInputTokens > 0)
      this.promptTokens = o.window.meanInputTokens;
    for (const v of o.view.instances) {
      const kv = v.kvBlocksTotal * v.blockSize;
      if (!v.draining && kv > 0) {
        this.kvTokens = kv;
        break;
      }
    }
  }

  /**
   * Requests held at the host (no instance ready) as a total of the engine signal: each is a request
   * the first instances will run (`running`, `waiting`, `inFlight`: one each), holding at least its
   * prompt's KV (`kvUsage`: held x mean prompt tokens / one instance's KV cache, the size last seen
   * on an instance, else the performance model's for the variant). Undefined when none is held or
   * the conversion is unknown (no prompt seen, a model the catalogue lacks).
   */
  private heldLoad(held: number): number | undefined {
    if (!(held > 0)) return undefined;
    switch (this.p.metric) {
      case 'running':
      case 'waiting':
      case 'inFlight':
        return held;
      case 'kvUsage': {
        const kvTokens = this.kvTokens ?? this.modelKvTokens();
        if (this.promptTokens === undefined || kvTokens === undefined) return undefined;
        return (held * this.promptTokens) / kvTokens;
      }
      default:
        // The traffic signals already count held requests (they arrived and are in the host).
        return undefined;
    }
  }

  /** One instance's KV cache in tokens by the performance model (vLLM's defaults); undefined if unknown. */
  private modelKvTokens(): number | undefined {
    if (this.modelKv === null) return undefined;
    if (this.modelKv === undefined) {
      const v = this.context.variants[0];
      try {
        this.modelKv = v === undefined ? null : engineLimits(v.gpu, v.model, v.tp).kvCacheTokens;
      } catch {
        // A model or GPU outside the catalogue (a GGUF file): no size until an instance reports one.
        this.modelKv = null;
      }
    }
    return this.modelKv ?? undefined;
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

  private reason(
    perReplica: number,
    ready: number,
    current: number,
    replicas: number,
    held: number | undefined,
  ): string {
    const lo = this.target * (1 - this.p.downFluctuationTolerance);
    const hi = this.target * (1 + this.p.upFluctuationTolerance);
    const move = replicas > current ? 'up' : replicas < current ? 'down' : 'hold';
    const from = held === undefined ? '' : `, from ${held} request(s) held at the host`;
    return (
      `apa ${move}: ${this.p.metric} ${fmt(perReplica)} per replica, band ${fmt(lo)}..${fmt(hi)}` +
      ` around ${fmt(this.target)} -> ${replicas} (ready ${ready}, current ${current}${from})`
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
