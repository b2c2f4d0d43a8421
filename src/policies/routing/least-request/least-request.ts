import { reject, routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Least outstanding requests: the eligible instance with the fewest in-flight requests (the host's
 * own accounting, which is never stale). Ties go to the lowest index, so the result does not depend
 * on map order or on randomness.
 */
export function createLeastRequest(): RoutingPolicy {
  return {
    name: 'least-request',
    decide(view, request) {
      let best: InstanceView | undefined;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        if (best === undefined || instance.inFlight < best.inFlight) best = instance;
      }
      if (best === undefined)
        return reject('SY_ERR_NO_INSTANCE', `no eligible instance for model '${request.model}'`);
      return routeTo(best.id);
    },
  };
}
