/**
 * The clairvoyant replica bound shared by scripts/results-autoscaling.ts (the results page) and
 * scripts/slo-planner-probe.ts (which compares the SLO planner with it hour by hour).
 */
import { perfModelCapacity } from '../src/control/capacity.ts';
import {
  type ControlContext,
  type ControlLoop,
  type ControlObservation,
  singleVariantDecision,
} from '../src/control/types.ts';

/**
 * A planner that knows the future: the arrivals in every control window, recorded from the same
 * seed. At each tick it asks for the most replicas that the offered rate (over a span of `spanS`
 * centred on each window) needs at the performance model's full per-replica capacity anywhere in
 * the next start-up plus one interval: the fewest it can start in time for every rise, and it
 * keeps a replica through any dip shorter than a start-up (giving it back and starting it again
 * would cost the same start-up). Not an autoscaler anyone can run: a floor for rate-based scaling
 * with this start-up time, to read the others against. `reason` labels its decisions.
 */
export function clairvoyant(
  context: ControlContext,
  objectives: { ttftMs: number; tpotMs: number },
  arrivals: readonly number[],
  spanS: number,
  reason: string,
): ControlLoop {
  const variant = context.variants[0];
  if (variant === undefined) throw new Error('clairvoyant: no variant');
  // The scenarios' request shape is fixed: the first input and output lengths are every request's.
  const capRps = perfModelCapacity()(variant, objectives, 8000, 1000).requestsPerS;
  const span = Math.max(1, Math.round((spanS * 1000) / context.intervalMs));
  const need = (k: number): number => {
    let a = 0;
    const from = k - Math.floor(span / 2);
    for (let j = from; j < from + span; j++) a += arrivals[j] ?? 0;
    return Math.ceil(a / ((span * context.intervalMs) / 1000) / capRps);
  };
  const aheadWindows = Math.ceil(((context.startupMs ?? 0) + context.intervalMs) / context.intervalMs);
  return {
    name: 'clairvoyant',
    decide(o: ControlObservation) {
      const k0 = Math.round(o.nowMs / context.intervalMs);
      let n = context.minReplicas;
      for (let k = k0; k <= k0 + aheadWindows; k++) n = Math.max(n, need(k));
      return singleVariantDecision(context, n, reason);
    },
  };
}
