import { routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/** Uniformly random over eligible instances, drawn from the host's seeded generator. */
export function createRandom(): RoutingPolicy {
  return {
    name: 'random',
    decide(view, request, rng) {
      const eligible: InstanceView[] = [];
      for (const instance of view.instances) if (isEligible(instance, request.model)) eligible.push(instance);
      if (eligible.length === 0) return noEligibleInstance(request.model);
      return routeTo(rng.pick(eligible).id);
    },
  };
}
