import type { InstanceView } from '../../../core/view.ts';
import type { Scorer } from '../types.ts';

/** Free KV cache: `1 - kvUsage` (llm-d's `kv-cache-utilization-scorer`). Stateless. */
export const kvUsageScorer: Scorer = {
  name: 'kv-usage',
  score(_view, _request, candidates, out) {
    for (let i = 0; i < candidates.length; i++) out[i] = 1 - (candidates[i] as InstanceView).kvUsage;
  },
};
