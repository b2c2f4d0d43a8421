/**
 * Every routing policy type, by the name config and `--policy` use. Adding a policy is one line
 * here plus its folder (code, test calling the conformance suite, README with formula and source).
 */
import { entry, noParams, type RoutingPolicyEntry } from './entry.ts';
import { createLeastRequest } from './least-request/least-request.ts';
import { createRandom } from './random/random.ts';
import { createRoundRobin } from './round-robin/round-robin.ts';

export const CATALOGUE: Readonly<Record<string, RoutingPolicyEntry<unknown>>> = {
  'round-robin': entry({
    description: 'each eligible instance in turn',
    params: noParams,
    create: createRoundRobin,
  }),
  random: entry({ description: 'uniformly random (seeded)', params: noParams, create: createRandom }),
  'least-request': entry({
    description: 'fewest in-flight requests (host accounting)',
    params: noParams,
    create: createLeastRequest,
  }),
};
