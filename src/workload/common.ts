import type { ModelId, TenantId } from '../core/ids.ts';
import { makeRequest, type PrefixChain, type Request, type Slo } from '../core/request.ts';
import {
  DEFAULT_DECLARED_MAX_TOKENS,
  type DeclaredMaxTokens,
  declaredMaxTokens,
  generatedTokens,
  parseDeclaredMaxTokens,
} from './declared.ts';
import type { TwinRequest } from './types.ts';

/** What every request of one workload shares. */
export interface RequestDefaults {
  readonly model: ModelId;
  readonly tenant: TenantId;
  readonly priority: number;
  readonly slo: Slo | undefined;
  /** What each request declares as max_tokens, from its true output length. */
  readonly declared: DeclaredMaxTokens;
}

/** The defaults makeRequest would fill, and the default declaration. */
export const DEFAULT_REQUEST_FIELDS: RequestDefaults = {
  model: 'default',
  tenant: 'default',
  priority: 0,
  slo: undefined,
  declared: parseDeclaredMaxTokens(DEFAULT_DECLARED_MAX_TOKENS),
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
  traceOutputTokens: number,
  arrivalMs: number,
  prefix: PrefixChain,
  sessionId: string | undefined,
): TwinRequest {
  const maxTokens = declaredMaxTokens(d.declared, traceOutputTokens);
  return {
    model: d.model,
    tenant: d.tenant,
    priority: d.priority,
    slo: d.slo,
    prefix,
    sessionId,
    maxTokens,
    id: `r${index}`,
    inputTokens,
    arrivalMs,
    trueOutputTokens: generatedTokens(maxTokens, traceOutputTokens),
  };
}

/** A RequestSource that restarts from the same state on every iteration (re-iterable, deterministic). */
export function restartable(start: () => Iterator<TwinRequest>): Iterable<TwinRequest> {
  return { [Symbol.iterator]: start };
}

/** The request fields of a validated spec, as a small object of its own (not the whole spec). */
export function defaultsOf(spec: {
  readonly model: ModelId;
  readonly tenant: TenantId;
  readonly priority: number;
  readonly slo?: Slo | undefined;
  readonly declaredMaxTokens: DeclaredMaxTokens;
}): RequestDefaults {
  return {
    model: spec.model,
    tenant: spec.tenant,
    priority: spec.priority,
    slo: spec.slo,
    declared: spec.declaredMaxTokens,
  };
}

/** A twin request from a few fields (tests, small hand-made workloads): makeRequest plus the true length. */
export function makeTwinRequest(
  fields: Pick<Request, 'id' | 'inputTokens' | 'arrivalMs'> &
    Partial<Request> & { readonly trueOutputTokens: number },
): TwinRequest {
  return { ...makeRequest(fields), trueOutputTokens: fields.trueOutputTokens };
}

/**
 * A token count a request can be served with: at least 1. Public traces hold rows with 0 prompt or
 * 0 output tokens (BurstGPT's failed requests answer 0 tokens); vLLM takes no empty prompt and no
 * `max_tokens` 0, and the twin's engine asserts both are positive, so trace replay and empirical
 * lengths serve such a row as 1 token (a prefill-only request) instead of crashing the run.
 */
export function servableTokens(n: number): number {
  return n >= 1 ? n : 1;
}
