/**
 * End-to-end: the routing hooks a policy hears when the engine it picked refuses the request (its
 * 400: a KV past the engine's 64-block cache, or past Llama-2-7B's 4,096-token context), live and
 * in the twin, for the same engine and request. Live: a sim engine behind an in-process gateway
 * whose routing policy is wrapped to record its calls: decide, onRouted, then onCompleted without
 * a token count (proxy.ts relays the 4xx as the engine's verdict on the request, the attempt ending
 * `ok` for the instance). A P/D decode attempt is a proxied attempt on the same path; the twin's
 * P/D sequences are pinned in src/twin/refusal-hooks.test.ts. The twin, run on the same request and
 * engine settings, must give the same sequence: a policy keeping state from these hooks holds in
 * the twin what it holds live.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../../src/engine-core/types.ts';
import { type Gateway, startGateway } from '../../src/gateway/index.ts';
import { createRoutingPolicy } from '../../src/policies/routing/registry.ts';
import type { RoutingPolicy } from '../../src/policies/routing/types.ts';
import { runSimulation } from '../../src/twin/simulator.ts';
import { makeTwinRequest } from '../../src/workload/common.ts';
import { MODEL, type SimEngine, startSims, Teardown } from './support/cluster.ts';
import { json } from './support/pd.ts';

const BLOCKS = 64;
/** 900 prompt tokens (the sim engine counts 4 characters a token), 400 output: 82 blocks. */
const KV_CASE = { model: MODEL, promptTokens: 900, maxTokens: 400 } as const;
/** 4,000 + 200 tokens are past Llama-2-7B's 4,096-token context. */
const CONTEXT_CASE = { model: 'llama-2-7b', promptTokens: 4000, maxTokens: 200 } as const;
type Case = { readonly model: string; readonly promptTokens: number; readonly maxTokens: number };
const engineArgs = ['--time-scale', '0.05', '--kv-events', 'none'];
const EXPECTED = ['decide', 'onRouted', 'onCompleted(undefined)'];

const teardown = new Teardown();
after(() => teardown.run());

/** Wraps `inner`, logging each call's name (onCompleted with its token count). */
function recording(inner: RoutingPolicy, log: string[]): RoutingPolicy {
  return {
    name: inner.name,
    decide(view, request, rng) {
      log.push('decide');
      return inner.decide(view, request, rng);
    },
    onRouted(request, instanceId, nowMs) {
      log.push('onRouted');
      inner.onRouted?.(request, instanceId, nowMs);
    },
    onFirstToken(request, instanceId, nowMs) {
      log.push('onFirstToken');
      inner.onFirstToken?.(request, instanceId, nowMs);
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      log.push(`onCompleted(${generatedTokens})`);
      inner.onCompleted?.(request, instanceId, nowMs, generatedTokens);
    },
    onFailed(request, instanceId, nowMs) {
      log.push('onFailed');
      inner.onFailed?.(request, instanceId, nowMs);
    },
  };
}

/**
 * The gateway's active policy replaced by a recording wrapper of it. The gateway takes policies by
 * name only; the test reaches its one field so that the real hook calls are what is recorded.
 */
function recordActivePolicy(gw: Gateway, log: string[]): void {
  const host = gw as unknown as { policy: RoutingPolicy };
  assert.equal(typeof host.policy?.decide, 'function', "the gateway's active policy field");
  host.policy = recording(host.policy, log);
}

/** The /v1/completions request of `c`, which its engine refuses; resolves with the status. */
async function send(gw: Gateway, c: Case): Promise<number> {
  const r = await json(`${gw.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: c.model, prompt: 'abcd'.repeat(c.promptTokens), max_tokens: c.maxTokens }),
  });
  return r.status;
}

/** What the twin's policy hears of the same request on the same engine. */
function twinHooks(c: Case): string[] {
  const log: string[] = [];
  const s = runSimulation(
    [makeTwinRequest({ id: 'r', inputTokens: c.promptTokens, trueOutputTokens: c.maxTokens, arrivalMs: 0 })],
    {
      seed: 1,
      cluster: { groups: [{ count: 1, gpu: 'h100', model: c.model, tp: 1 }] },
      // The live engine's blocks where it was given them (the KV case), else what fits the GPU.
      engine:
        c === KV_CASE ? { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: BLOCKS } : DEFAULT_ENGINE_CONFIG,
      policy: recording(createRoutingPolicy('round-robin'), log),
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'test',
    },
  ).summary;
  assert.deepEqual(s.failedByReason, { upstream_4xx: 1 });
  return log;
}

const backend = (id: string, model: string, e: SimEngine) => ({
  id,
  type: 'sim' as const,
  url: e.url,
  models: [model],
  metricsPath: null,
});

describe('routing hooks on an engine refusal, live and twin', { timeout: 60_000 }, () => {
  for (const [what, c, args] of [
    ['KV past the cache', KV_CASE, ['--num-gpu-blocks-override', String(BLOCKS)]],
    ["past the model's context", CONTEXT_CASE, ['--model', CONTEXT_CASE.model]],
  ] as const) {
    it(`a request its engine refuses (${what}): decide, onRouted, onCompleted without a count`, async () => {
      const sims = await startSims(1, [...engineArgs, ...args], teardown);
      const gw = await startGateway(
        {
          port: 0,
          backends: [backend('c0', c.model, sims.engines[0] as SimEngine)],
          routing: { policy: 'round-robin' },
        },
        { log: () => {} },
      );
      teardown.add(() => gw.close());
      const live: string[] = [];
      recordActivePolicy(gw, live);
      assert.equal(await send(gw, c), 400);
      assert.deepEqual(live, EXPECTED);
      assert.deepEqual(twinHooks(c), live, 'the twin tells the policy what the gateway did');
    });
  }
});
