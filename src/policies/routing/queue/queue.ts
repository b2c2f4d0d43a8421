import { reject, routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Shortest engine queue: the eligible instance with the fewest `waiting` sequences; ties go to fewer
 * in-flight requests, then to the lowest index.
 */
export function createQueue(): RoutingPolicy {
  return {
    name: 'queue',
    decide(view, request) {
      let best: InstanceView | undefined;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        if (
          best === undefined ||
          instance.waiting < best.waiting ||
          (instance.waiting === best.waiting && instance.inFlight < best.inFlight)
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
