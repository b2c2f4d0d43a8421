import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { makeTwinRequest } from '../workload/common.ts';
import { PD_KV_RELEASE_TIMEOUT_MS_DEFAULT, type PdSettings } from './pd-host.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/**
 * Twin/live parity for the prefill's KV when the decode leg is refused: live, the decode engine
 * answers 400 without reading the KV, so the prefill engine (the sim P/D engine, as vLLM's NIXL
 * connector) holds the blocks until its release timeout (`--kv-release-timeout-ms`). The twin holds
 * them as long, so a request queued behind them on the prefill instance waits for that timeout.
 */

const MODEL = 'llama-3.1-8b';
/** 64 blocks of 16 tokens on each instance. */
const ENGINE = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 64 };

function options(pd: Partial<PdSettings>): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: 'h100', model: MODEL, tp: 1 }] },
    engine: ENGINE,
    policy: createRoutingPolicy('least-request'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    pd: {
      prefillInstances: 1,
      decodeInstances: 1,
      link: 'ib-400',
      decodePolicy: createRoutingPolicy('least-request'),
      ...pd,
    },
  };
}

// 'refused' prefills on 57 of the prefill's 64 blocks, then its decode leg (900 + 400 tokens) can
// never fit the decode instance's 64 blocks: 400. 'next' (19 blocks) needs the prefill's blocks back.
const REQUESTS = [
  makeTwinRequest({ id: 'refused', inputTokens: 900, trueOutputTokens: 400, arrivalMs: 0 }),
  makeTwinRequest({ id: 'next', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 10 }),
];

for (const timeoutMs of [5_000, undefined]) {
  test(`P/D: a refused decode leaves the prefill's KV held for the release timeout (${timeoutMs ?? 'default'})`, () => {
    const heldMs = timeoutMs ?? PD_KV_RELEASE_TIMEOUT_MS_DEFAULT;
    const settings = timeoutMs === undefined ? {} : { kvReleaseTimeoutMs: timeoutMs };
    for (const more of [{}, { decodeAtArrival: true }]) {
      const label = JSON.stringify({ ...settings, ...more });
      const s = runSimulation(REQUESTS, options({ ...settings, ...more })).summary;
      assert.deepEqual(s.failedByReason, { upstream_4xx: 1 }, label);
      assert.equal(s.refusedPastKvCache, 1, label);
      // 'next' runs once the timeout frees the blocks: not before, and not long after.
      assert.equal(s.completed, 1, label);
      const ttft = s.ttftMs.p50;
      assert.ok(ttft >= heldMs - 10, `${label}: TTFT ${ttft} ms, before the ${heldMs} ms release`);
      assert.ok(ttft < heldMs + 1_000, `${label}: TTFT ${ttft} ms, long after the ${heldMs} ms release`);
    }
  });
}
