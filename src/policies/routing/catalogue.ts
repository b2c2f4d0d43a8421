/**
 * Every routing policy type, by the name config and `--policy` use. Adding a policy is one line
 * here plus its folder (code, test calling the conformance suite, README with formula and source).
 */
import { entry, noParams, type RoutingPolicyEntry } from './entry.ts';
import { createKvCost, kvCostParams } from './kv-cost/kv-cost.ts';
import { createKvEvents, kvEventsParams } from './kv-events/kv-events.ts';
import { createLeastRequest } from './least-request/least-request.ts';
import { createMooncake, mooncakeParams } from './mooncake/mooncake.ts';
import { createPreble, prebleParams } from './preble/preble.ts';
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
  'kv-cost': entry({
    description:
      "NVIDIA Dynamo's KV router: min overlapWeight x prefill blocks to compute + active decode blocks (router-side accounting)",
    params: kvCostParams,
    create: createKvCost,
  }),
  'kv-events': entry({
    description:
      'precise prefix routing from engine KV events: longest cached prefix, ties by fewest in-flight then waiting',
    params: kvEventsParams,
    create: createKvEvents,
  }),
  mooncake: entry({
    description:
      "Mooncake's Conductor: min estimated TTFT (queue + uncached prefill + cheaper remote-prefix fetch); early SLO rejection",
    params: mooncakeParams,
    create: createMooncake,
  }),
  preble: entry({
    description:
      "Preble's E2: exploit the longest cached prefix when it covers most of the prompt, else the least windowed load",
    params: prebleParams,
    create: createPreble,
  }),
};
