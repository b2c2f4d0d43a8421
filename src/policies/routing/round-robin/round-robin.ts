import { routeTo } from '../../../core/decision.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/**
 * Round robin over eligible instances: the k-th routed request goes to the (k mod m)-th of the m
 * instances eligible at that moment, so every eligible instance gets an equal share. (Walking the
 * full list from a cursor and skipping ineligible ones would hand a down instance's turn to its
 * successor, which then takes twice the traffic.) The count advances in `onRouted`, not in
 * `decide`, so a decision is a pure function of the view and the policy's state.
 */
export function createRoundRobin(): RoutingPolicy {
  let routed = 0;
  return {
    name: 'round-robin',
    decide(view, request) {
      let eligible = 0;
      for (const instance of view.instances) if (isEligible(instance, request.model)) eligible++;
      if (eligible === 0) return noEligibleInstance(request.model);
      // Two passes instead of collecting the eligible list: a decision allocates nothing.
      let turn = routed % eligible;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        if (turn === 0) return routeTo(instance.id);
        turn--;
      }
      return noEligibleInstance(request.model);
    },
    onRouted() {
      // Wraps well before 2^53; the modulo in decide keeps turns even across the wrap but one.
      routed = (routed + 1) % 0x7fffffff;
    },
  };
}
