/**
 * llm-d's workload variant autoscaler (WVA), saturation analyzer (V1, percentage-based): scale on
 * per-instance KV-cache usage and engine queue length, add a replica of the cheapest variant, remove
 * one of the most expensive, and scale down only when the load of the removed replica, spread over
 * the rest, keeps them clear of the triggers. Rule, defaults and sources: README.md.
 */
import { z } from 'zod';
import { SwitchyardError } from '../../../core/errors.ts';
import type { InstanceView } from '../../../core/view.ts';
import type {
  ControlContext,
  ControlDecision,
  ControlLoop,
  ControlObservation,
  ManagedInstance,
  ReplicaTarget,
  Variant,
} from '../../types.ts';
import { variantKey } from '../../types.ts';

/**
 * On-demand price per GPU-hour (USD) by GPU id, for choosing which variant to add or remove. Midpoints
 * of the "specialty cloud" tier in Mercatus' May 2026 survey (mercatus-ai.com/blog/cloud-gpu-pricing:
 * A100 80GB $1.10-1.50, H100 SXM $2.50-3.50, H200 $3.50-4.50), and AWS's A10G (g5.xlarge) at $1.01 as
 * Mélange's example uses it (tyler-griggs/melange-release, melange/main.py). GPUs not listed need a
 * price in `costPerGpuHour` when the loop has to choose between variants on different GPUs.
 */
export const DEFAULT_GPU_HOUR_PRICES: Readonly<Record<string, number>> = {
  'a100-80gb': 1.3,
  h100: 3.0,
  h200: 4.0,
  a10g: 1.01,
};

/** The parameters, with WVA's defaults (deploy/configmap-saturation-scaling.yaml). */
export const saturationParams = z.strictObject({
  /** A replica is saturated when its KV-cache usage is at or above this fraction. */
  kvCacheThreshold: z.number().min(0).max(1).default(0.8),
  /** A replica is saturated when this many requests or more wait in its engine queue. */
  queueLengthThreshold: z.number().min(0).default(5),
  /** Scale up when the mean spare KV (threshold - usage) over non-saturated replicas falls below this. */
  kvSpareTrigger: z.number().min(0).max(1).default(0.1),
  /** Scale up when the mean spare queue (threshold - waiting) over non-saturated replicas falls below this. */
  queueSpareTrigger: z.number().min(0).default(3),
  /** Price per GPU-hour by GPU id, over DEFAULT_GPU_HOUR_PRICES; a replica costs price x tp. */
  costPerGpuHour: z.record(z.string(), z.number().positive()).default({}),
});

/** Parsed parameters of the saturation autoscaler. */
export type SaturationParams = z.infer<typeof saturationParams>;

/** The non-saturated replicas' state, as WVA's analysis reports it. */
export interface SaturationAnalysis {
  readonly replicas: number;
  readonly nonSaturated: number;
  /** Mean spare KV over non-saturated replicas; 0 when every replica is saturated. */
  readonly avgSpareKv: number;
  /** Mean spare queue over non-saturated replicas; 0 when every replica is saturated. */
  readonly avgSpareQueue: number;
  readonly scaleUp: boolean;
  readonly scaleDownSafe: boolean;
}

/** Non-saturated replicas scale-down needs: with fewer, removing one leaves nothing to take its load. */
export const MIN_NON_SATURATED_FOR_SCALE_DOWN = 2;

/**
 * WVA's saturation analysis over the replicas' signals. Saturated: kvUsage >= kvCacheThreshold or
 * waiting >= queueLengthThreshold. Scale up when the mean spare KV or queue over the others is under
 * its trigger (with none left, both means are 0: scale up). Scale-down is safe when at least two
 * replicas are non-saturated and their load, spread over one replica fewer (x N / (N - 1)), still
 * leaves both spares at or above their triggers.
 */
export function analyzeSaturation(views: readonly InstanceView[], p: SaturationParams): SaturationAnalysis {
  let nonSaturated = 0;
  let spareKv = 0;
  let spareQueue = 0;
  for (const v of views) {
    if (v.kvUsage >= p.kvCacheThreshold || v.waiting >= p.queueLengthThreshold) continue;
    nonSaturated += 1;
    spareKv += p.kvCacheThreshold - v.kvUsage;
    spareQueue += p.queueLengthThreshold - v.waiting;
  }
  const avgSpareKv = nonSaturated > 0 ? spareKv / nonSaturated : 0;
  const avgSpareQueue = nonSaturated > 0 ? spareQueue / nonSaturated : 0;
  const scaleUp = avgSpareKv < p.kvSpareTrigger || avgSpareQueue < p.queueSpareTrigger;
  let scaleDownSafe = false;
  if (nonSaturated >= MIN_NON_SATURATED_FOR_SCALE_DOWN) {
    const grow = nonSaturated / (nonSaturated - 1);
    const kvAfter = (p.kvCacheThreshold - avgSpareKv) * grow;
    const queueAfter = (p.queueLengthThreshold - avgSpareQueue) * grow;
    scaleDownSafe =
      p.kvCacheThreshold - kvAfter >= p.kvSpareTrigger &&
      p.queueLengthThreshold - queueAfter >= p.queueSpareTrigger;
  }
  return { replicas: views.length, nonSaturated, avgSpareKv, avgSpareQueue, scaleUp, scaleDownSafe };
}

/**
 * Builds the saturation autoscaler for one model. Throws SY_ERR_INVALID_CONFIG when its variants run
 * on more than one GPU type and one of them has no price (the choice between them would be a guess).
 */
export function createSaturation(context: ControlContext, params: SaturationParams): ControlLoop {
  const variants = [...context.variants];
  const costs = replicaCosts(variants, { ...DEFAULT_GPU_HOUR_PRICES, ...params.costPerGpuHour });
  let lastTargets: ReadonlyMap<string, number> | undefined;
  return {
    name: 'saturation',
    decide(obs: ControlObservation): ControlDecision {
      const counts = countByVariant(obs.instances, variants, (i) => i.phase !== 'draining');
      if (inTransition(obs.instances, counts, lastTargets)) {
        return finish(lastTargets ?? counts, 'hold: replicas still starting or not yet as decided');
      }
      const base = countByVariant(obs.instances, variants, (i) => i.phase === 'ready');
      const step = chooseStep(context, params, costs, base, readyViews(obs), obs);
      return finish(step.targets, step.reason);
    },
  };

  function finish(targets: ReadonlyMap<string, number>, reason: string): ControlDecision {
    lastTargets = targets;
    const list: ReplicaTarget[] = variants.map((variant) => ({
      variant,
      replicas: targets.get(variantKey(variant)) ?? 0,
    }));
    return { targets: list, reason };
  }
}

interface Step {
  readonly targets: ReadonlyMap<string, number>;
  readonly reason: string;
}

function chooseStep(
  context: ControlContext,
  params: SaturationParams,
  costs: readonly VariantCost[],
  base: ReadonlyMap<string, number>,
  views: readonly InstanceView[],
  obs: ControlObservation,
): Step {
  const total = sum(base);
  // The whole gap at once: one a tick, the run's first ticks (which see the pool the loop asked for
  // at time 0 and hold for it) would drain what the host provisioned and start it again, cold.
  if (total < context.minReplicas)
    return add(
      base,
      cheapest(costs),
      `below minReplicas ${context.minReplicas}`,
      context.minReplicas - total,
    );
  if (total === 0) {
    // WVA's scale-from-zero: requests waiting at the host wake the model with one cheapest replica.
    const demand = obs.window.arrivals + obs.window.queuedAtEnd;
    return demand > 0 && context.maxReplicas > 0
      ? add(base, cheapest(costs), `scale from zero: ${demand} requests at the host`)
      : { targets: base, reason: 'idle at zero replicas' };
  }
  if (total > context.maxReplicas) {
    const v = mostExpensive(costs, base) as Variant;
    return remove(base, v, `above maxReplicas ${context.maxReplicas}`);
  }
  // No replica reports signals (all unhealthy or stale out): no analysis, as WVA without metrics.
  if (views.length === 0) return { targets: base, reason: 'hold: no ready replica reports signals' };
  const a = analyzeSaturation(views, params);
  const facts =
    `${a.replicas - a.nonSaturated}/${a.replicas} saturated, ` +
    `spare kv ${a.avgSpareKv.toFixed(3)} queue ${a.avgSpareQueue.toFixed(2)}`;
  if (a.scaleUp) {
    if (total >= context.maxReplicas)
      return { targets: base, reason: `at maxReplicas ${context.maxReplicas}: ${facts}` };
    const v = cheapest(costs);
    return add(base, v, `scale up ${variantKey(v)}: ${facts}`);
  }
  if (a.scaleDownSafe && total > Math.max(1, context.minReplicas)) {
    const v = mostExpensive(costs, base);
    if (v !== undefined)
      return remove(base, v, `scale down ${variantKey(v)}: ${facts}, safe after redistribution`);
  }
  return { targets: base, reason: `steady: ${facts}` };
}

function remove(base: ReadonlyMap<string, number>, v: Variant, reason: string): Step {
  const next = new Map(base);
  next.set(variantKey(v), (base.get(variantKey(v)) ?? 0) - 1);
  return { targets: next, reason };
}

function add(base: ReadonlyMap<string, number>, v: Variant, reason: string, count = 1): Step {
  const next = new Map(base);
  next.set(variantKey(v), (base.get(variantKey(v)) ?? 0) + count);
  return { targets: next, reason };
}

/** Instances per variant key that pass `keep` (variants of the context start at 0). */
function countByVariant(
  instances: readonly ManagedInstance[],
  variants: readonly Variant[],
  keep: (i: ManagedInstance) => boolean,
): Map<string, number> {
  const counts = new Map(variants.map((v) => [variantKey(v), 0]));
  for (const i of instances) {
    if (!keep(i)) continue;
    const k = variantKey(i.variant);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

/**
 * WVA blocks every scaling decision for a model while any variant is in transition: replicas still
 * pending or starting, or the last decision not yet carried out. Deciding on the signals of a partial
 * fleet would add a replica per tick for the same overload (cascade scaling).
 */
function inTransition(
  instances: readonly ManagedInstance[],
  counts: ReadonlyMap<string, number>,
  last: ReadonlyMap<string, number> | undefined,
): boolean {
  if (instances.some((i) => i.phase === 'pending' || i.phase === 'starting')) return true;
  if (last === undefined) return false;
  for (const [k, n] of last) if ((counts.get(k) ?? 0) !== n) return true;
  return false;
}

/**
 * The signals of ready, healthy, non-draining instances: the replicas WVA has metrics for. An
 * unhealthy replica still counts in the base it scales from (it is not drained for lacking signals).
 */
function readyViews(obs: ControlObservation): InstanceView[] {
  const ready = new Set(obs.instances.filter((i) => i.phase === 'ready').map((i) => i.id));
  return obs.view.instances.filter((v) => ready.has(v.id) && v.healthy && !v.draining);
}

/** A variant and what one replica of it costs per hour. */
interface VariantCost {
  readonly variant: Variant;
  readonly key: string;
  readonly costPerHour: number;
}

/** Price per GPU-hour x tp per variant; a price is required only when the variants' GPUs differ. */
function replicaCosts(variants: readonly Variant[], prices: Readonly<Record<string, number>>): VariantCost[] {
  const mixed = new Set(variants.map((v) => v.gpu)).size > 1;
  return variants.map((variant) => {
    const price = Object.hasOwn(prices, variant.gpu) ? prices[variant.gpu] : undefined;
    if (price === undefined && mixed) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_CONFIG',
        `saturation autoscaler: no price per GPU-hour for '${variant.gpu}' (priced: ${Object.keys(prices).sort().join(', ')}); set costPerGpuHour.${variant.gpu}`,
        { param: 'costPerGpuHour', gpu: variant.gpu },
      );
    }
    return { variant, key: variantKey(variant), costPerHour: (price ?? 1) * variant.tp };
  });
}

/** The cheapest variant; ties go to the first key in alphabetical order (WVA's tie-break). */
function cheapest(costs: readonly VariantCost[]): Variant {
  let best = costs[0] as VariantCost;
  for (const c of costs.slice(1)) {
    if (c.costPerHour < best.costPerHour || (c.costPerHour === best.costPerHour && c.key < best.key))
      best = c;
  }
  return best.variant;
}

/** The most expensive variant with a replica to remove; ties go to the last key alphabetically. */
function mostExpensive(
  costs: readonly VariantCost[],
  base: ReadonlyMap<string, number>,
): Variant | undefined {
  let best: VariantCost | undefined;
  for (const c of costs) {
    if ((base.get(c.key) ?? 0) < 1) continue;
    if (
      best === undefined ||
      c.costPerHour > best.costPerHour ||
      (c.costPerHour === best.costPerHour && c.key > best.key)
    ) {
      best = c;
    }
  }
  return best?.variant;
}

function sum(m: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const x of m.values()) n += x;
  return n;
}
