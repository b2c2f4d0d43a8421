import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { modelSpec } from '../model/models.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { RoutingPolicy } from '../policies/routing/types.ts';
import { makeTwinRequest } from '../workload/common.ts';
import type { TwinRequest } from '../workload/types.ts';
import { PdHandoffs, type PdSettings } from './pd-host.ts';
import { runSimulation, type SimOptions, type SimResult } from './simulator.ts';

/**
 * `--pd-layerwise` in a twin P/D run (PdSettings.layerwise, src/twin/pd-host.ts): the KV moves as
 * the prefill computes it, so only the link's backlog lands on TTFT, and only for a hand-off whose
 * decode blocks were reserved at the prefill's end.
 */

/** When each request's prefill leg ended and its first token came, as the policies hear them. */
interface Times {
  readonly prefilled: Map<string, number>;
  readonly firstToken: Map<string, number>;
}

/** Least-request on both sides, noting prefill ends (prefill side) and first tokens (decode side). */
function recorded(times: Times): { policy: RoutingPolicy; decodePolicy: RoutingPolicy } {
  const prefill = createRoutingPolicy('least-request');
  const decode = createRoutingPolicy('least-request');
  return {
    policy: {
      name: 'prefill-times',
      decide: (view, request, rng) => prefill.decide(view, request, rng),
      onCompleted: (request, _id, nowMs) => times.prefilled.set(request.id, nowMs),
    },
    decodePolicy: {
      name: 'decode-times',
      decide: (view, request, rng) => decode.decide(view, request, rng),
      onFirstToken: (request, _id, nowMs) => times.firstToken.set(request.id, nowMs),
    },
  };
}

/** A 1 prefill + 1 decode run of Llama-3.1-8B on H100s over `link`, layer-wise or not. */
function run(
  requests: readonly TwinRequest[],
  layerwise: boolean,
  more: Partial<SimOptions> = {},
  link = 'tcp-100',
): { result: SimResult; times: Times } {
  const times: Times = { prefilled: new Map(), firstToken: new Map() };
  const { policy, decodePolicy } = recorded(times);
  const pd: PdSettings = { prefillInstances: 1, decodeInstances: 1, link, decodePolicy, layerwise };
  const result = runSimulation(requests, {
    seed: 1,
    cluster: { groups: [{ count: 2, gpu: 'h100', model: 'llama-3.1-8b', tp: 1 }] },
    engine: DEFAULT_ENGINE_CONFIG,
    policy,
    slo: { ttftMs: 5000, tpotMs: 50 },
    workload: 'test',
    pd,
    ...more,
  });
  return { result, times };
}

/** Long prompts, far enough apart that no hand-off waits for decode blocks. */
function longPrompts(): TwinRequest[] {
  return Array.from({ length: 8 }, (_, i) =>
    makeTwinRequest({ id: `r${i}`, inputTokens: 6000 + 1000 * i, trueOutputTokens: 32, arrivalMs: i * 3000 }),
  );
}

test('--pd-layerwise on a slow link: a lower TTFT, the same completions and transfers', () => {
  const requests = longPrompts();
  const whole = run(requests, false);
  const layered = run(requests, true);
  const w = whole.result;
  const l = layered.result;
  assert.equal(l.summary.completed, requests.length);
  assert.equal(l.summary.completed, w.summary.completed);
  assert.equal(l.summary.outputTokens, w.summary.outputTokens);
  // The same KV moves over the same link: only when it lands on TTFT differs.
  assert.equal(l.pd?.transfers, w.pd?.transfers);
  assert.equal(l.pd?.kvBytesMoved, w.pd?.kvBytesMoved);
  assert.equal(l.pd?.transferMsMean, w.pd?.transferMsMean);
  assert.equal(l.pd?.reserveWaitMsMean, 0);
  assert.equal(l.pd?.layerwise, true);
  assert.equal(w.pd?.layerwise, false);
  // 6,000 to 13,000 prompt tokens are 0.8 to 1.7 GB, ~250 ms a transfer on tcp-100 on average; each
  // prefill takes longer, so the link keeps up and almost all of it leaves TTFT.
  const gain = w.summary.ttftMs.mean - l.summary.ttftMs.mean;
  assert.ok(
    gain > 0.8 * (w.pd?.transferMsMean as number),
    `TTFT ${gain} ms lower, of ${w.pd?.transferMsMean}`,
  );
  // Per request: between the prefill's end and the first token, the whole transfer without it, less
  // than the whole transfer with it.
  for (const r of requests) {
    const gapW = (whole.times.firstToken.get(r.id) as number) - (whole.times.prefilled.get(r.id) as number);
    const gapL =
      (layered.times.firstToken.get(r.id) as number) - (layered.times.prefilled.get(r.id) as number);
    assert.ok(gapL < gapW, `${r.id}: ${gapL} ms layer-wise vs ${gapW} ms whole`);
  }
  // Same seed, same output.
  const strip = (x: SimResult) =>
    JSON.stringify({ ...x.summary, wallSeconds: 0, eventsPerWallS: 0, decisionUs: 0, pd: x.pd });
  const again = run(requests, true).result;
  assert.equal(strip(again), strip(l));
  assert.equal(again.decisionDigest, l.decisionDigest);
});

test('--pd-layerwise: a hand-off that waits for decode blocks moves its whole KV after the wait', () => {
  // 900 blocks of 16 tokens: the decode instance holds a (8,000 prompt tokens, 500 blocks, growing over
  // 1,500 output tokens), so b's 500 blocks wait until a ends; the prefill instance has room for each.
  const engine = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 900 };
  const requests = [
    makeTwinRequest({ id: 'a', inputTokens: 8000, trueOutputTokens: 1500, arrivalMs: 0 }),
    makeTwinRequest({ id: 'b', inputTokens: 8000, trueOutputTokens: 2, arrivalMs: 2000 }),
  ];
  const whole = run(requests, false, { engine });
  const layered = run(requests, true, { engine });
  for (const x of [whole, layered]) {
    assert.equal(x.result.summary.completed, 2);
    // b, prefilled at `prefilled`, first waited `wait` (a waited none: the mean is half b's wait).
    const wait = 2 * (x.result.pd?.reserveWaitMsMean as number);
    assert.ok(wait > 1000, `b waited ${wait} ms for decode blocks`);
  }
  const transferMs = (x: typeof whole, id: string) => {
    const gap = (x.times.firstToken.get(id) as number) - (x.times.prefilled.get(id) as number);
    return id === 'b' ? gap - 2 * (x.result.pd?.reserveWaitMsMean as number) : gap;
  };
  // a was reserved at once: layer-wise, its transfer overlapped the prefill.
  assert.ok(transferMs(layered, 'a') < transferMs(whole, 'a') - 50, 'a gains the overlap');
  // b waited: from its reservation to its first token, the whole transfer and a step, as without.
  assert.ok(
    Math.abs(transferMs(layered, 'b') - transferMs(whole, 'b')) < 1e-6,
    `b: ${transferMs(layered, 'b')} ms layer-wise vs ${transferMs(whole, 'b')} ms whole`,
  );
});

test('a hand-off reserved at the prefill end adds the layer-wise figure; one reserved later, the whole transfer', () => {
  const settings: PdSettings = {
    prefillInstances: 1,
    decodeInstances: 1,
    link: 'tcp-100',
    decodePolicy: createRoutingPolicy('least-request'),
    layerwise: true,
  };
  const h = new PdHandoffs<null>(settings, modelSpec('llama-3.1-8b'), 1, 16);
  const req = (id: string) => makeTwinRequest({ id, inputTokens: 8000, trueOutputTokens: 4, arrivalMs: 0 });
  // Prefilled at 1,000 ms after 500 ms of compute: the link keeps up, only the last layer remains.
  const now = h.handoff(req('now'), null, 0, 1000, 500);
  assert.ok(now.transfer.ttftAddedMs < now.transfer.transferMs / 10);
  h.enqueue(now);
  assert.deepEqual(
    h.startTransfers(0, 1000, () => true),
    [1000 + now.transfer.ttftAddedMs],
  );
  const later = h.handoff(req('later'), null, 0, 1000, 500);
  h.enqueue(later);
  assert.deepEqual(
    h.startTransfers(0, 1200, () => true),
    [1200 + later.transfer.transferMs],
  );
  // A prefill shorter than the wire time: the backlog lands on TTFT.
  const short = h.handoff(req('short'), null, 0, 1000, 990);
  assert.ok(Math.abs(short.transfer.ttftAddedMs - (short.transfer.transferMs - 10)) < 1e-9);
});
