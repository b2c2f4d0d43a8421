import type { Scorer } from '../types.ts';
import { lowerIsBetter } from './min-max.ts';

/**
 * Engine queue depth, min-max normalised over the candidates: `(max - waiting) / (max - min)`,
 * 1 for all when every queue is equal (llm-d's `queue-scorer`). Stateless.
 */
export const queueScorer: Scorer = {
  name: 'queue',
  score(_view, _request, candidates, out) {
    lowerIsBetter(candidates, out, (c) => c.waiting);
  },
};
