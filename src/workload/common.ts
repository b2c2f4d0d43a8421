import type { ModelId, TenantId } from '../core/ids.ts';
import type { PrefixChain, Request, Slo } from '../core/request.ts';

/** What every request of one workload shares. */
export interface RequestDefaults {
  readonly model: ModelId;
  readonly tenant: TenantId;
  readonly priority: number;
  readonly slo: Slo | undefined;
}

/** The defaults makeRequest would fill. */
export const DEFAULT_REQUEST_FIELDS: RequestDefaults = {
  model: 'default',
  tenant: 'default',
  priority: 0,
  slo: undefined,
};

/**
 * Builds a request as one object literal. The key order matches makeRequest's result, so requests
 * from every source share one hidden class and the simulator's hot paths stay monomorphic; and it
 * avoids makeRequest's spread, which costs more than the rest of a Poisson step.
 */
export function buildRequest(
  d: RequestDefaults,
  index: number,
  inputTokens: number,
  outputTokens: number,
  arrivalMs: number,
  prefix: PrefixChain,
  sessionId: string | undefined,
): Request {
  return {
    model: d.model,
    tenant: d.tenant,
    priority: d.priority,
    slo: d.slo,
    prefix,
    sessionId,
    id: `r${index}`,
    inputTokens,
    outputTokens,
    arrivalMs,
  };
}

/** A RequestSource that restarts from the same state on every iteration (re-iterable, deterministic). */
export function restartable(start: () => Iterator<Request>): Iterable<Request> {
  return { [Symbol.iterator]: start };
}

/** The request fields of a validated spec, as a small object of its own (not the whole spec). */
export function defaultsOf(spec: {
  readonly model: ModelId;
  readonly tenant: TenantId;
  readonly priority: number;
  readonly slo?: Slo | undefined;
}): RequestDefaults {
  return { model: spec.model, tenant: spec.tenant, priority: spec.priority, slo: spec.slo };
}
