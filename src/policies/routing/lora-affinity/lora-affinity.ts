import { routeTo } from '../../../core/decision.ts';
import type { InstanceId } from '../../../core/ids.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/** Parameters of LoRA affinity. */
export interface LoraAffinityParams {
  /** Adapters remembered per instance (LRU): about what an engine keeps loaded (vLLM `--max-loras`). */
  readonly maxAdaptersPerInstance: number;
  /** Holders are overloaded when the least loaded of them has more than this x mean in-flight. */
  readonly overloadFactor: number;
}

/** Defaults: 8 adapters per instance, overloaded at 1.5 x the mean in-flight. */
export const LORA_AFFINITY_DEFAULTS: LoraAffinityParams = { maxAdaptersPerInstance: 8, overloadFactor: 1.5 };

/** Most instances whose adapters are remembered; beyond it the least recently routed-to is forgotten. */
export const LORA_INSTANCES_MAX = 65_536;

/** A request's base model and adapter: `model` is `base:adapter`, split at the first ':'. */
export interface ModelAdapter {
  readonly base: string;
  /** Undefined when the model names no adapter (no ':'). */
  readonly adapter: string | undefined;
}

/** Splits `base:adapter` at the first ':'; a model without ':' has no adapter. */
export function parseModelAdapter(model: string): ModelAdapter {
  const at = model.indexOf(':');
  if (at < 0) return { base: model, adapter: undefined };
  return { base: model.slice(0, at), adapter: model.slice(at + 1) };
}

/**
 * LoRA affinity. Requests name an adapter as `model = "base:adapter"`; an instance serves such a
 * request when it is healthy, not draining, and lists either the full name or the base model. Among
 * eligible instances, those that already hold the adapter (learned from routing, an LRU of
 * `maxAdaptersPerInstance` per instance) are preferred, least in-flight first, unless even the least
 * loaded holder has more than `overloadFactor x max(mean in-flight, 1)`: then the least in-flight
 * instance overall takes it (and will hold the adapter from then on). The floor of 1 keeps a nearly
 * idle pool from scattering an adapter over every instance for one extra request. Requests without
 * an adapter go to the least in-flight instance. Ties go to the lowest index.
 */
export function createLoraAffinity(params: LoraAffinityParams = LORA_AFFINITY_DEFAULTS): RoutingPolicy {
  const { maxAdaptersPerInstance, overloadFactor } = params;
  // instance id -> adapters it holds, most recent first. Map order is only used to evict the least
  // recently routed-to instance past the bound, never to break a tie in a decision.
  const held = new Map<InstanceId, string[]>();
  const serves = (instance: InstanceView, model: string, base: string): boolean =>
    isEligible(instance, model) || (model !== base && isEligible(instance, base));

  return {
    name: 'lora-affinity',
    decide(view, request) {
      const { base, adapter } = parseModelAdapter(request.model);
      let count = 0;
      let inFlight = 0;
      let least: InstanceView | undefined;
      let leastHolder: InstanceView | undefined;
      for (const instance of view.instances) {
        if (!serves(instance, request.model, base)) continue;
        count++;
        inFlight += instance.inFlight;
        if (least === undefined || instance.inFlight < least.inFlight) least = instance;
        if (
          adapter !== undefined &&
          (leastHolder === undefined || instance.inFlight < leastHolder.inFlight) &&
          held.get(instance.id)?.includes(adapter) === true
        ) {
          leastHolder = instance;
        }
      }
      if (least === undefined) return noEligibleInstance(request.model);
      if (leastHolder === undefined) return routeTo(least.id);
      const mean = inFlight / count;
      const overloaded = leastHolder.inFlight > overloadFactor * Math.max(mean, 1);
      return routeTo(overloaded ? least.id : leastHolder.id);
    },
    onRouted(request, instanceId) {
      const { adapter } = parseModelAdapter(request.model);
      if (adapter === undefined) return;
      let adapters = held.get(instanceId);
      if (adapters === undefined) {
        if (held.size >= LORA_INSTANCES_MAX) {
          const oldest = held.keys().next();
          if (oldest.done !== true) held.delete(oldest.value);
        }
        adapters = [];
      }
      // Re-inserted so the map's order is least recently routed-to first.
      held.delete(instanceId);
      held.set(instanceId, adapters);
      const at = adapters.indexOf(adapter);
      if (at >= 0) adapters.splice(at, 1);
      adapters.unshift(adapter);
      if (adapters.length > maxAdaptersPerInstance) adapters.length = maxAdaptersPerInstance;
    },
  };
}
