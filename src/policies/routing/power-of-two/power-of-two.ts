import { routeTo } from '../../../core/decision.ts';
import type { InstanceView } from '../../../core/view.ts';
import { isEligible, noEligibleInstance } from '../eligible.ts';
import { type LoadSignal, loadOf } from '../load.ts';
import type { RoutingPolicy } from '../types.ts';

/** Parameters of power-of-two. */
export interface PowerOfTwoParams {
  /** Which load to compare the two samples on. */
  readonly load: LoadSignal;
}

/**
 * Power of two choices: draws two distinct eligible instances uniformly with the seeded generator
 * and sends the request to the less loaded one. Ties go to fewer in-flight requests, then to the
 * first draw. Two passes over the view and no allocation: one counts the eligible instances, the
 * other finds the two drawn.
 */
export function createPowerOfTwo(params: PowerOfTwoParams = { load: 'in-flight' }): RoutingPolicy {
  const signal = params.load;
  return {
    name: 'power-of-two',
    decide(view, request, rng) {
      let eligible = 0;
      for (const instance of view.instances) if (isEligible(instance, request.model)) eligible++;
      if (eligible === 0) return noEligibleInstance(request.model);
      const first = rng.int(eligible);
      let second = first;
      if (eligible > 1) {
        // A draw from the other eligible - 1 positions, shifted past the first: distinct and uniform.
        second = rng.int(eligible - 1);
        if (second >= first) second++;
      }
      let a: InstanceView | undefined;
      let b: InstanceView | undefined;
      let k = 0;
      for (const instance of view.instances) {
        if (!isEligible(instance, request.model)) continue;
        if (k === first) a = instance;
        if (k === second) b = instance;
        k++;
      }
      const x = a as InstanceView;
      const y = b as InstanceView;
      const lx = loadOf(x, signal);
      const ly = loadOf(y, signal);
      const takeSecond = ly < lx || (ly === lx && y.inFlight < x.inFlight);
      return routeTo(takeSecond ? y.id : x.id);
    },
  };
}
