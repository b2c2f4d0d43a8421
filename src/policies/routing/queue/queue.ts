import { routeTo } from '../../../core/decision.ts';
import { noEligibleInstance } from '../eligible.ts';
import { leastLoaded } from '../load.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Shortest engine queue: the eligible instance with the fewest `waiting` sequences; ties go to fewer
 * in-flight requests, then to the lowest index.
 */
export function createQueue(): RoutingPolicy {
  return {
    name: 'queue',
    decide(view, request) {
      const best = leastLoaded(view.instances, request.model, 'waiting');
      if (best === undefined) return noEligibleInstance(request.model);
      return routeTo(best.id);
    },
  };
}
