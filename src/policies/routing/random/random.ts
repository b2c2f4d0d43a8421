import { reject, routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible } from '../eligible.ts';
import type { RoutingPolicy } from '../types.ts';

/** Uniformly random over eligible instances, drawn from the host's seeded generator. */
export function createRandom(): RoutingPolicy {
  return {
    name: 'random',
    decide(view, request, rng) {
      const eligible: InstanceView[] = [];
      for (const instance of view.instances) if (isEligible(instance, request.model)) eligible.push(instance);
      if (eligible.length === 0)
        return reject('SY_ERR_NO_INSTANCE', `no eligible instance for model '${request.model}'`);
      return routeTo(rng.pick(eligible).id);
    },
  };
}
