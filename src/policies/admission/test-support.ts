/** Views and requests for the admission tests. */
import { makeRequest, type Request } from '../../core/request.ts';
import type { ClusterView, InstanceView } from '../../core/view.ts';
import { testInstance } from '../routing/conformance.ts';

/** One instance, idle unless told otherwise (the routing suite's test instance with no load). */
export function instance(index: number, fields: Partial<InstanceView> = {}): InstanceView {
  return testInstance(index, {
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    pendingPrefillTokens: 0,
    ...fields,
  });
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
export function req(id: string, fields: Partial<Request> & { inputTokens?: number } = {}): Request {
  return makeRequest({ id, inputTokens: 100, maxTokens: 50, arrivalMs: 0, ...fields });
}
