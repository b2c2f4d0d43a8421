/**
 * The `sim` engine's KV-event output: the vLLM-format ZMQ publisher from the adapters layer, behind
 * the backend's `KvEventSink`. Loaded on demand, so an engine started with `--kv-events none` never
 * loads the native ZMQ module.
 */
import type { KvEventSink } from './sim-backend.ts';

/** A bound publisher the backend writes to. */
export interface KvPublisherHandle extends KvEventSink {
  /** The resolved endpoint subscribers connect to, e.g. `tcp://127.0.0.1:41234`. */
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * Binds a vLLM-format KV-event publisher at `endpoint` (a wildcard port such as
 * `tcp://127.0.0.1:*` is resolved). Throws SwitchyardError SY_ERR_INVALID_ARGUMENT when it cannot bind.
 */
export async function openKvPublisher(endpoint: string): Promise<KvPublisherHandle> {
  const { KvEventPublisher } = await import('../../adapters/kv-events/publisher.ts');
  return KvEventPublisher.bind(endpoint);
}
