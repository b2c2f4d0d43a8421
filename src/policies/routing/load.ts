import { assertNever } from '../../core/assert.ts';
import type { InstanceView } from '../../core/view.ts';
import { isEligible } from './eligible.ts';

/** The load signals a load-comparing policy may read. */
export const LOAD_SIGNALS = ['in-flight', 'waiting', 'kv'] as const;

/**
 * Which number counts as an instance's load: `in-flight` (the host's own count of requests sent
 * and not finished; never stale), `waiting` (the engine's queue, as last scraped) or `kv` (KV-cache
 * usage, 0..1, as last scraped).
 */
export type LoadSignal = (typeof LOAD_SIGNALS)[number];

/** The load of one instance under a signal; lower is less loaded. */
export function loadOf(instance: InstanceView, signal: LoadSignal): number {
  switch (signal) {
    case 'in-flight':
      return instance.inFlight;
    case 'waiting':
      return instance.waiting;
    case 'kv':
      return instance.kvUsage;
    default:
      return assertNever(signal, 'load signal');
  }
}

/**
 * The eligible instance with the lowest load under `signal`; ties go to fewer in-flight requests
 * (the host's fresh count breaks ties between equally stale scrapes), then to the lowest index, so
 * neither map order nor randomness decides. Undefined when none is eligible.
 */
export function leastLoaded(
  instances: readonly InstanceView[],
  model: string,
  signal: LoadSignal,
): InstanceView | undefined {
  let best: InstanceView | undefined;
  let bestLoad = Number.POSITIVE_INFINITY;
  for (const instance of instances) {
    if (!isEligible(instance, model)) continue;
    const load = loadOf(instance, signal);
    if (best === undefined || load < bestLoad || (load === bestLoad && instance.inFlight < best.inFlight)) {
      best = instance;
      bestLoad = load;
    }
  }
  return best;
}
