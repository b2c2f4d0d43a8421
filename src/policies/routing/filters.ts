import type { InstanceView } from '../../core/view.ts';
import { isEligible } from './eligible.ts';
import type { Filter } from './types.ts';

/** Keeps healthy, non-draining instances that serve the request's model. Every profile starts with it. */
export const eligibleFilter: Filter = {
  name: 'eligible',
  filter(_view, request, candidates) {
    let all = true;
    for (const c of candidates) {
      if (!isEligible(c, request.model)) {
        all = false;
        break;
      }
    }
    if (all) return candidates;
    return candidates.filter((c: InstanceView) => isEligible(c, request.model));
  },
};
