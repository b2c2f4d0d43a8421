import { z } from 'zod';
import type { PolicyContext, RoutingPolicy } from './types.ts';

/** One registered policy type: a description, a strict schema for its parameters, and a factory. */
export interface RoutingPolicyEntry<P = Record<string, unknown>> {
  readonly description: string;
  readonly params: z.ZodType<P>;
  /**
   * Whether the policy predicts time through `PolicyContext.perfModel`, so a host must know each
   * instance's catalogue GPU, model and TP before it runs it (the gateway refuses to start otherwise).
   */
  readonly needsPerfModel?: boolean;
  create(params: P, context: PolicyContext): RoutingPolicy;
}

/** The schema of a policy without parameters: any key is unknown. */
export const noParams = z.strictObject({});

/** Keeps each entry's parameter type tied to its schema while the catalogue holds them together. */
export function entry<P>(e: RoutingPolicyEntry<P>): RoutingPolicyEntry<unknown> {
  return e as unknown as RoutingPolicyEntry<unknown>;
}
