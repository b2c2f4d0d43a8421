import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeShape } from '../../bench/trace-shapes.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { createWorkload } from '../workload/create.ts';
import type { WorkloadSpecInput } from '../workload/spec.ts';
import { type PrefixCacheMode, runSimulation, type SimResult } from './simulator.ts';

/**
 * The twin's fast prefix cache (runs of blocks over shared prefix paths, decode step times
 * remembered) against the per-block reference fed exact block ids, asking the perf model every
 * step: every output but the wall-clock fields must be the same bytes.
 */
function output(result: SimResult): string {
  const { wallSeconds: _w, eventsPerWallS: _e, decisionUs: _d, ...summary } = result.summary;
  const { summary: _s, ...report } = result.report;
  return JSON.stringify({ summary, report, decisionDigest: result.decisionDigest });
}

function run(
  workload: WorkloadSpecInput,
  policy: string,
  mode: PrefixCacheMode,
  instances: number,
  kvBlocks: number | undefined,
): string {
  const source = createWorkload(workload, new Rng(1).fork('workload'));
  return output(
    runSimulation(source, {
      seed: 1,
      cluster: { groups: [{ count: instances, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
      engine: { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: kvBlocks },
      policy: createRoutingPolicy(policy),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'prefix-cache test',
      prefixCache: mode,
    }),
  );
}

const cases: {
  name: string;
  workload: WorkloadSpecInput;
  instances: number;
  policies: string[];
  hits: boolean;
  /** A pool small enough to evict and preempt; undefined: sized from memory. */
  kvBlocks?: number;
}[] = [
  {
    // 12k-token prompts, chains of 512-token blocks: the case the fast path exists for.
    name: 'mooncake sample',
    workload: { kind: 'trace', trace: 'sample:mooncake-conversation', maxRequests: 1500 },
    instances: 8,
    policies: ['least-request', 'kv-cost', 'mooncake', 'preble', 'session'],
    hits: true,
  },
  {
    // 12k-token prompts in pools of 1,200 blocks: evictions, preemptions, rejections.
    name: 'mooncake sample, tight KV pool',
    workload: { kind: 'trace', trace: 'sample:mooncake-conversation', maxRequests: 400 },
    instances: 4,
    policies: ['least-request', 'session'],
    hits: true,
    kvBlocks: 1200,
  },
  {
    name: 'azure sample',
    workload: { kind: 'trace', trace: 'sample:azure-conv', maxRequests: 1500 },
    instances: 4,
    policies: ['least-request', 'preble'],
    hits: false,
  },
  {
    // Chains of 16-token blocks (one engine block per chain block), growing turn by turn.
    name: 'sessions',
    workload: {
      kind: 'sessions',
      sessionRateRps: 4,
      turns: { kind: 'uniform', lo: 1, hi: 6 },
      userTokens: { kind: 'uniform', lo: 50, hi: 1500 },
      output: { kind: 'uniform', lo: 10, hi: 300 },
      systemPromptTokens: 700,
      maxRequests: 800,
    },
    instances: 2,
    policies: ['least-request', 'kv-cost', 'session'],
    hits: true,
  },
  {
    // One long system prompt every instance caches (a record per instance on each of its nodes,
    // looked up in any order: RunCache.recordOf reorders the node's list), sessions growing turn
    // by turn, in pools small enough that the queue's front is refused and matched again.
    name: 'sessions behind a shared long system prompt on 12 instances, tight KV pool',
    workload: {
      kind: 'sessions',
      sessionRateRps: 10,
      turns: { kind: 'uniform', lo: 2, hi: 10 },
      userTokens: { kind: 'uniform', lo: 200, hi: 2000 },
      output: { kind: 'uniform', lo: 10, hi: 300 },
      systemPromptTokens: 6000,
      blockTokens: 512,
      maxRequests: 500,
    },
    instances: 12,
    policies: ['least-request', 'session'],
    hits: true,
    kvBlocks: 1100,
  },
];

// Small cuts of the bench's trace shapes (bench/trace-shapes.ts), written as a user's files: agent
// loops behind long shared system prompts, 30k-120k-token prompts, sessions of many turns whose
// hash_ids extend the previous turn's, a burst of requests in one second, an Azure-format CSV.
const shapeDir = mkdtempSync(join(tmpdir(), 'prefix-cache-shapes-'));
after(() => rmSync(shapeDir, { recursive: true, force: true }));
const shapeTrace = (shape: Parameters<typeof writeShape>[0], rows: number): string => {
  const path = join(shapeDir, shape === 'azure' ? 'azure.csv' : `${shape}.jsonl`);
  writeShape(shape, path, 7, rows);
  return path;
};
cases.push(
  {
    name: 'trace shape agent',
    workload: { kind: 'trace', trace: shapeTrace('agent', 700) },
    instances: 4,
    policies: ['least-request', 'session'],
    hits: true,
  },
  {
    // Prompts of 2,000 to 7,500 engine blocks in pools of 12,000: long prompts evict each other and
    // are preempted (too few rows for a shared document to be read twice: no hits).
    name: 'trace shape long-context, tight KV pool',
    workload: { kind: 'trace', trace: shapeTrace('long-context', 60) },
    instances: 2,
    policies: ['least-request'],
    hits: false,
    kvBlocks: 12_000,
  },
  {
    name: 'trace shape deep-sessions',
    workload: { kind: 'trace', trace: shapeTrace('deep-sessions', 400) },
    instances: 4,
    policies: ['least-request', 'session'],
    hits: true,
  },
  {
    // 1,500 requests inside one second on 2 instances: deep queues, preemptions.
    name: 'trace shape bursts, tight KV pool',
    workload: { kind: 'trace', trace: shapeTrace('bursts', 1500) },
    instances: 2,
    policies: ['least-request'],
    hits: true,
    kvBlocks: 3000,
  },
  {
    name: 'trace shape azure',
    workload: { kind: 'trace', trace: shapeTrace('azure', 2000) },
    instances: 2,
    policies: ['least-request'],
    hits: false,
  },
);

for (const c of cases) {
  for (const policy of c.policies) {
    test(`${c.name}, ${policy}: the run-length prefix cache gives the reference's output byte for byte`, () => {
      // A policy that reads KV events runs the 32-bit per-block pool in every mode: nothing to compare.
      assert.equal(createRoutingPolicy(policy).onKvEvent, undefined);
      const reference = run(c.workload, policy, 'blocks', c.instances, c.kvBlocks);
      const fast = run(c.workload, policy, 'runs', c.instances, c.kvBlocks);
      assert.equal(fast, reference);
      // Something to compare: requests completed and, where prompts share prefixes, cache hits.
      assert.match(reference, /"completed":[1-9]/);
      if (c.hits) assert.match(reference, /"prefixHitRate":0\.\d*[1-9]/);
      if (c.kvBlocks !== undefined) assert.match(reference, /"preemptions":[1-9]/);
    });
  }
}
