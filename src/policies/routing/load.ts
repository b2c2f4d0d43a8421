import { assertNever } from '../../core/assert.ts';
import type { InstanceView } from '../../core/view.ts';

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
