/**
 * Every routing policy type, by the name config and `--policy` use. Adding a policy is one line
 * here plus its folder (code, test calling the conformance suite, README with formula and source).
 */
import { z } from 'zod';
import { entry, noParams, type RoutingPolicyEntry } from './entry.ts';
import { createGoodput, goodputParams } from './goodput/goodput.ts';
import { createKvCost, kvCostParams } from './kv-cost/kv-cost.ts';
import { createKvEvents, kvEventsParams } from './kv-events/kv-events.ts';
import { createLeastKv } from './least-kv/least-kv.ts';
import { createLeastRequest } from './least-request/least-request.ts';
import { createLlmd } from './llm-d/llm-d.ts';
import { LOAD_SIGNALS } from './load.ts';
import { createLoraAffinity } from './lora-affinity/lora-affinity.ts';
import { createMooncake, mooncakeParams } from './mooncake/mooncake.ts';
import { createPowerOfTwo } from './power-of-two/power-of-two.ts';
import { createPreble, prebleParams } from './preble/preble.ts';
import { createPrefixAffinity } from './prefix-affinity/prefix-affinity.ts';
import { createProfile, profileParams } from './profile-policy/profile-policy.ts';
import { createQueue } from './queue/queue.ts';
import { createRandom } from './random/random.ts';
import { createRoundRobin } from './round-robin/round-robin.ts';
import { createSession } from './session/session.ts';

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
  'least-kv': entry({
    description: 'lowest KV-cache usage; ties: fewest in-flight, then lowest index',
    params: noParams,
    create: createLeastKv,
  }),
  queue: entry({
    description: 'fewest waiting in the engine queue; ties: fewest in-flight, then lowest index',
    params: noParams,
    create: createQueue,
  }),
  'power-of-two': entry({
    description: 'two distinct random eligible instances (seeded), the less loaded wins',
    params: z.strictObject({ load: z.enum(LOAD_SIGNALS).default('in-flight') }),
    create: createPowerOfTwo,
  }),
  'prefix-affinity': entry({
    description:
      "SGLang's cache-aware rule: least load when imbalanced, else longest prefix match above cacheThreshold, else least load",
    params: z.strictObject({
      load: z.enum(['in-flight', 'waiting']).default('in-flight'),
      balanceAbsThreshold: z.number().nonnegative().default(64),
      balanceRelThreshold: z.number().min(1).default(1.5),
      cacheThreshold: z.number().min(0).max(1).default(0.3),
      /** Per-instance prefix-index bound in chain blocks; absent: the instance's KV cache in chain blocks. */
      capacityBlocks: z.number().int().positive().optional(),
    }),
    create: createPrefixAffinity,
  }),
  'llm-d': entry({
    description: "llm-d's default profile: queue x2 + (1 - kvUsage) x2 + prefix match x3, max score",
    params: z.strictObject({
      queueWeight: z.number().nonnegative().default(2),
      kvUsageWeight: z.number().nonnegative().default(2),
      prefixCacheWeight: z.number().nonnegative().default(3),
      /** Per-instance prefix-index bound in chain blocks; absent: the instance's KV cache in chain blocks. */
      capacityBlocks: z.number().int().positive().optional(),
    }),
    create: createLlmd,
  }),
  profile: entry({
    description:
      'a scheduling profile composed in config: filters, weighted scorers (queue, in-flight, kv-usage, prefix-cache, session-affinity, kv-cost) and a picker',
    params: profileParams,
    create: createProfile,
  }),
  session: entry({
    description:
      'session affinity: consistent hashing with bounded loads on sessionId, else tenant, else request id',
    params: z.strictObject({
      virtualNodes: z.number().int().min(1).max(1000).default(100),
      epsilon: z.number().nonnegative().default(0.25),
    }),
    create: createSession,
  }),
  'lora-affinity': entry({
    description: "model 'base:adapter': instances already holding the adapter first, unless overloaded",
    params: z.strictObject({
      maxAdaptersPerInstance: z.number().int().min(1).max(1024).default(8),
      overloadFactor: z.number().positive().default(1.5),
    }),
    create: createLoraAffinity,
  }),
  'kv-cost': entry({
    description:
      "NVIDIA Dynamo's KV router: min overlapWeight x prefill blocks to compute + active decode blocks (router-side accounting)",
    params: kvCostParams,
    create: createKvCost,
  }),
  'kv-events': entry({
    description:
      "precise prefix routing from engine KV events, priced by Dynamo's KV router cost (prefill saved vs active and pending KV); score: longest-prefix for the longest match alone",
    params: kvEventsParams,
    create: createKvEvents,
  }),
  mooncake: entry({
    description:
      "Mooncake's Conductor: min estimated TTFT (queue + uncached prefill + cheaper remote-prefix fetch); early SLO rejection",
    params: mooncakeParams,
    needsPerfModel: true,
    create: createMooncake,
  }),
  preble: entry({
    description:
      "Preble's E2: exploit the longest cached prefix when it covers most of the prompt, else the least windowed load",
    params: prebleParams,
    needsPerfModel: true,
    create: createPreble,
  }),
  goodput: entry({
    description:
      "Switchyard's SLO router: min over instances of max(predicted TTFT / SLO, TPOT / SLO) from never-stale router-side prefill and decode accounting, prefix reuse and KV headroom; early SLO rejection",
    params: goodputParams,
    needsPerfModel: true,
    create: createGoodput,
  }),
};
