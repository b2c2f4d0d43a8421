import { routeTo } from '../../../core/decision.ts';
import { noEligibleInstance } from '../eligible.ts';
import { leastLoaded } from '../load.ts';
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
      const best = leastLoaded(view.instances, request.model, 'kv');
      if (best === undefined) return noEligibleInstance(request.model);
      return routeTo(best.id);
    },
  };
}
