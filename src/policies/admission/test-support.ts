/** Views and requests for the admission tests. */
import { makeRequest, type Request } from '../../core/request.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';

/** One instance, idle unless told otherwise. */
export function instance(index: number, fields: Partial<InstanceView> = {}): InstanceView {
  return {
    id: `i${index}`,
    models: ['default'],
    gpu: 'h100',
    tp: 1,
    role: 'both',
    healthy: true,
    draining: false,
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    kvBlocksTotal: 10_000,
    blockSize: 16,
    pendingPrefillTokens: 0,
    prefixHitRate: 0,
    updatedAtMs: 0,
    ...fields,
  };
}

/** A cluster of `n` instances at `nowMs`, each with the same fields. */
export function view(nowMs: number, n = 2, fields: Partial<InstanceView> = {}): ClusterView {
  return { nowMs, instances: Array.from({ length: n }, (_, i) => instance(i, fields)) };
}

/** Every instance saturated (engine queue at the default waitingMax). */
export function saturated(nowMs: number, n = 2): ClusterView {
  return view(nowMs, n, { waiting: 5, running: 64, inFlight: 69 });
}

/** A request; `arrivalMs` defaults to 0. */
export function req(
  id: string,
  fields: Partial<Request> & { inputTokens?: number; outputTokens?: number } = {},
): Request {
  return makeRequest({ id, inputTokens: 100, outputTokens: 50, arrivalMs: 0, ...fields });
}
