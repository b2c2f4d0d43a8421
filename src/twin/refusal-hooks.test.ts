import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { makeTwinRequest } from '../workload/common.ts';
import type { TwinRequest } from '../workload/types.ts';
import type { PdSettings } from './pd-host.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/**
 * Twin/live parity of the routing hooks on the paths where an engine refuses a request (its 400:
 * past the model's context, or a KV that could never fit the engine's cache). The live gateway
 * tells the policy of a proxied attempt (colocated, or a P/D decode attempt) onRouted when it goes
 * out (gateway.ts attemptStarted) and, on the engine's 4xx, onCompleted without a token count
 * (proxy.ts endCollected: attemptEnded ok); the prefill pool's policy hears a vLLM prefill leg's
 * onRouted then onFirstToken and onCompleted(1), or onFailed when it fails (pd-exchange.ts
 * prefillLeg). A pair deciding at arrival (or a conditional rule) picks the decode instance first
 * and holds it, its attempt (onRouted) coming after the prefill leg. A policy keeping state from
 * these hooks (in-flight counts, prefix trees) must see in the twin what it sees live.
 */

/** 64 blocks of 16 tokens: 1,024 tokens of KV, far below the model's context. */
const ENGINE = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 64 };
const MODEL = 'llama-3.1-8b';

/** Wraps `inner`, logging (tagged `tag`) each call about the request `watched`. */
function recording(tag: string, inner: RoutingPolicy, log: string[], watched: string): RoutingPolicy {
  const note = (id: string, what: string): void => {
    if (id === watched) log.push(`${tag}.${what}`);
  };
  return {
    name: inner.name,
    decide(view, request, rng) {
      note(request.id, 'decide');
      return inner.decide(view, request, rng);
    },
    onRouted(request, instanceId, nowMs) {
      note(request.id, 'onRouted');
      inner.onRouted?.(request, instanceId, nowMs);
    },
    onFirstToken(request, instanceId, nowMs) {
      note(request.id, 'onFirstToken');
      inner.onFirstToken?.(request, instanceId, nowMs);
    },
    onCompleted(request, instanceId, nowMs, generatedTokens) {
      note(request.id, `onCompleted(${generatedTokens})`);
      inner.onCompleted?.(request, instanceId, nowMs, generatedTokens);
    },
    onFailed(request, instanceId, nowMs) {
      note(request.id, 'onFailed');
      inner.onFailed?.(request, instanceId, nowMs);
    },
  };
}

/** The hooks the run's policy (P) and the decode pick's (D) heard about `watched`. */
function hooksOf(requests: TwinRequest[], watched: string, pd?: Omit<PdSettings, 'decodePolicy'>): string[] {
  const log: string[] = [];
  const options: SimOptions = {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: 'h100', model: MODEL, tp: 1 }] },
    engine: ENGINE,
    policy: recording('P', createRoutingPolicy('least-request'), log, watched),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    ...(pd === undefined
      ? {}
      : { pd: { ...pd, decodePolicy: recording('D', createRoutingPolicy('least-request'), log, watched) } }),
  };
  const s = runSimulation(requests, options).summary;
  assert.deepEqual(s.failedByReason, { upstream_4xx: 1 }, 'the watched request failed as its 400');
  return log;
}

const PD = { prefillInstances: 1, decodeInstances: 1, link: 'ib-400' } as const;
/** The prefill leg (one output token) fits 64 blocks; the decode leg (prompt + 400 output) does not. */
const pastCache = [
  makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
  makeTwinRequest({ id: 'big', inputTokens: 900, trueOutputTokens: 400, arrivalMs: 10 }),
  makeTwinRequest({ id: 'c', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 20 }),
];
/** What the prefill pool's policy hears of a vLLM prefill leg that succeeded. */
const PREFILLED = ['P.decide', 'P.onRouted', 'P.onFirstToken', 'P.onCompleted(1)'];
/** What the decode policy hears of a decode attempt its engine answered 400. */
const DECODE_REFUSED = ['D.onRouted', 'D.onCompleted(undefined)'];

test('P/D: a decode leg refused for its KV: the decode policy hears onRouted then onCompleted, after the prefill', () => {
  assert.deepEqual(hooksOf(pastCache, 'big', PD), [...PREFILLED, 'D.decide', ...DECODE_REFUSED]);
});

test('P/D, a pair deciding at arrival: the decode pick first, its attempt (refused) after the prefill leg', () => {
  assert.deepEqual(hooksOf(pastCache, 'big', { ...PD, decodeAtArrival: true }), [
    'D.decide',
    ...PREFILLED,
    ...DECODE_REFUSED,
  ]);
});

test('conditional P/D: the refused request prefills remotely or locally, as the rule says, and hears the 400 alike', () => {
  // dynamo keeps a short prompt local (the decode attempt at once) and prefills a long one remotely.
  const local = [
    makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
    makeTwinRequest({ id: 'big', inputTokens: 40, trueOutputTokens: 1100, arrivalMs: 10 }),
  ];
  assert.deepEqual(hooksOf(local, 'big', { ...PD, conditional: 'dynamo' }), ['D.decide', ...DECODE_REFUSED]);
  // Past dynamo's 1,000 tokens, its prefill leg still fitting the 64 blocks (1,010 + 1 tokens).
  const remote = [
    makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
    makeTwinRequest({ id: 'big', inputTokens: 1010, trueOutputTokens: 100, arrivalMs: 10 }),
  ];
  assert.deepEqual(hooksOf(remote, 'big', { ...PD, conditional: 'dynamo' }), [
    'D.decide',
    ...PREFILLED,
    ...DECODE_REFUSED,
  ]);
});

test('colocated: a request its engine refuses (KV past the cache) hears onRouted then onCompleted, not onFailed', () => {
  assert.deepEqual(hooksOf(pastCache, 'big'), ['P.decide', 'P.onRouted', 'P.onCompleted(undefined)']);
});

test("colocated: a request past the model's context hears onRouted then onCompleted, not onFailed", () => {
  const requests = [
    makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
    makeTwinRequest({ id: 'long', inputTokens: 200_000, trueOutputTokens: 20, arrivalMs: 10 }),
  ];
  assert.deepEqual(hooksOf(requests, 'long'), ['P.decide', 'P.onRouted', 'P.onCompleted(undefined)']);
});

test('P/D: a prefill leg past the context hears onFailed (a failed prefill leg), the decode policy nothing', () => {
  const requests = [
    makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
    makeTwinRequest({ id: 'long', inputTokens: 200_000, trueOutputTokens: 20, arrivalMs: 10 }),
  ];
  assert.deepEqual(hooksOf(requests, 'long', PD), ['P.decide', 'P.onRouted', 'P.onFailed']);
  // Picked at arrival, the decode instance held it; no decode attempt went out, so its policy hears none.
  assert.deepEqual(hooksOf(requests, 'long', { ...PD, decodeAtArrival: true }), [
    'D.decide',
    'P.decide',
    'P.onRouted',
    'P.onFailed',
  ]);
});
