import { CHAIN_ROOT, chainHash } from '../../../core/hash.ts';
import { hashString } from '../../../core/rng.ts';
import type { InstanceView } from '../../../core/view.ts';
import { sessionKey } from '../session/session.ts';
import type { Scorer } from '../types.ts';

/**
 * Session affinity as a score: 1 for the candidate a request's session (else its tenant) hashes to,
 * 0 for the others; all 0 for a request with neither, which has no affinity to keep. The owner is
 * chosen by rendezvous hashing (highest random weight, Thaler and Ravishankar 1998) over the
 * candidates, so an instance leaving moves only its own sessions and ties cannot come from map
 * order. Bounded load is the other scorers' job: weigh it against `in-flight` or `queue`. Stateless.
 */
export const sessionAffinityScorer: Scorer = {
  name: 'session-affinity',
  score(_view, request, candidates, out) {
    const key = sessionKey(request);
    out.fill(0, 0, candidates.length);
    if (key.startsWith('r:')) return;
    const keyHash = hashString(key);
    let best = -1;
    let bestWeight = -1;
    for (let i = 0; i < candidates.length; i++) {
      const weight = chainHash(
        chainHash(CHAIN_ROOT, keyHash),
        hashString((candidates[i] as InstanceView).id),
      );
      if (weight > bestWeight) {
        bestWeight = weight;
        best = i;
      }
    }
    if (best >= 0) out[best] = 1;
  },
};
