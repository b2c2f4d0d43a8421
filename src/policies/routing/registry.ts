import { unknownName } from '../../core/errors.ts';
import { createLeastRequest } from './least-request/least-request.ts';
import { createRandom } from './random/random.ts';
import { createRoundRobin } from './round-robin/round-robin.ts';
import type { RoutingPolicy, RoutingPolicyFactory } from './types.ts';

/** Type name to factory. Adding a policy is one line here. */
const FACTORIES: Readonly<Record<string, RoutingPolicyFactory>> = {
  'round-robin': () => createRoundRobin(),
  random: () => createRandom(),
  'least-request': () => createLeastRequest(),
};

/** The names a config or `--policy` may use. */
export function routingPolicyNames(): string[] {
  return Object.keys(FACTORIES).sort();
}

/** Builds a policy by type name; an unknown name fails and lists the valid ones. */
export function createRoutingPolicy(
  name: string,
  params: Readonly<Record<string, unknown>> = {},
): RoutingPolicy {
  const factory = Object.hasOwn(FACTORIES, name) ? FACTORIES[name] : undefined;
  if (factory === undefined) throw unknownName('routing policy', name, routingPolicyNames());
  return factory(params);
}
