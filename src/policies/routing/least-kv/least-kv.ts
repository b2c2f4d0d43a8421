import { reject, routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Least KV-cache usage: the eligible instance with the lowest `kvUsage`; ties go to fewer in-flight
 * requests (the host's fresh count breaks ties between equally stale scrapes), then to the lowest
 * index.
 */
export function createLeastKv(): RoutingPolicy {
  return {
    name: 'least-kv',
    decide(view, request) {
      let best: InstanceView | undefined;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        if (
          best === undefined ||
          instance.kvUsage < best.kvUsage ||
          (instance.kvUsage === best.kvUsage && instance.inFlight < best.inFlight)
        ) {
          best = instance;
        }
      }
      if (best === undefined)
        return reject('SY_ERR_NO_INSTANCE', `no eligible instance for model '${request.model}'`);
      return routeTo(best.id);
    },
  };
}
