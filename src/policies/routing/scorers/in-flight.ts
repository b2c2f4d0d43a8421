import type { Scorer } from '../types.ts';
import { lowerIsBetter } from './min-max.ts';

/**
 * In-flight requests (the host's own accounting, never stale), min-max normalised over the
 * candidates: `(max - inFlight) / (max - min)`, 1 for all when equal. The scorer form of
 * least-request (llm-d's load-aware / active-request scorers). Stateless.
 */
export const inFlightScorer: Scorer = {
  name: 'in-flight',
  score(_view, _request, candidates, out) {
    lowerIsBetter(candidates, out, (c) => c.inFlight);
  },
};
