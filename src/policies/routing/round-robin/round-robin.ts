import { routeTo } from '../../../core/decision.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Round robin over eligible instances. The cursor advances in `onRouted`, not in `decide`, so a
 * decision is a pure function of the view and the policy's state.
 */
export function createRoundRobin(): RoutingPolicy {
  let cursor = 0;
  return {
    name: 'round-robin',
    decide(view, request) {
      const n = view.instances.length;
      for (let k = 0; k < n; k++) {
        const instance = view.instances[(cursor + k) % n];
        if (instance !== undefined && isEligible(instance, request.model)) return routeTo(instance.id);
      }
      return noEligibleInstance(request.model);
    },
    onRouted() {
      // Rotate the starting point; skipping ineligible instances happens in decide.
      cursor = (cursor + 1) % 0x7fffffff;
    },
  };
}
