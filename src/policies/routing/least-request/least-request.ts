import { routeTo } from '../../../core/decision.ts';
import { noEligibleInstance } from '../eligible.ts';
import { leastLoaded } from '../load.ts';
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
      const best = leastLoaded(view.instances, request.model, 'in-flight');
      if (best === undefined) return noEligibleInstance(request.model);
      return routeTo(best.id);
    },
  };
}
