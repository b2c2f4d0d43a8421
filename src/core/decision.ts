import type { ErrorCode } from './errors.ts';
import type { InstanceId } from './ids.ts';

/** What a routing policy decides for one request. */
export type RoutingDecision =
  | { readonly kind: 'route'; readonly instanceId: InstanceId }
  | {
      readonly kind: 'reject';
      readonly code: ErrorCode;
      readonly reason: string;
      /** A hint for the client (HTTP Retry-After live). */
      readonly retryAfterMs: number | undefined;
    };

/** Routes to an instance. */
export function routeTo(instanceId: InstanceId): RoutingDecision {
  return { kind: 'route', instanceId };
}

/** Rejects with a stable code. */
export function reject(code: ErrorCode, reason: string, retryAfterMs?: number): RoutingDecision {
  return { kind: 'reject', code, reason, retryAfterMs };
}
