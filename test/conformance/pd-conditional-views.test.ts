/**
 * Conditional disaggregation over the two hosts' real views of one situation (the twin's
 * `SimInstance`s and the gateway's `LiveView`, from views.ts): the twin's host (`PdHandoffs` of
 * src/twin/pd-host.ts) and the gateway's (`PdConditional` of src/gateway/pd/pd-conditional.ts) must
 * build the same `PrefillDecisionInput` for the same request, decode instance and prefill pool, and
 * so decide the same, under every rule and with the default and another link. The prefix hit comes
 * from each host's own estimate, fed the same prompts; both run `DecodePrefixEstimate`'s algorithm
 * (the twin's copy is private to its simulator, so this file feeds the twin side through the shared
 * class). Under `slo` the requests carry an SLO, and the twin side's LocalStallLedger figure is
 * rebuilt here the way PdHandoffs keeps it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Request } from '../../src/core/request.ts';
import type { InstanceView } from '../../src/core/view.ts';
import { DEFAULT_ENGINE_CONFIG } from '../../src/engine-core/types.ts';
import { gatewayPerfModels, parseGatewayConfig } from '../../src/gateway/config.ts';
import { LiveView } from '../../src/gateway/live-view.ts';
import { PdConditional } from '../../src/gateway/pd/pd-conditional.ts';
import { decideThenHold } from '../../src/gateway/pd/pd-exchange.ts';
import { kvLink, kvTransfer } from '../../src/model/kv-link.ts';
import { modelSpec } from '../../src/model/models.ts';
import { perfModelFor } from '../../src/model/perf.ts';
import {
  CONDITIONAL_CHUNK_TOKENS_DEFAULT,
  CONDITIONAL_LINK_DEFAULT,
  DecodePrefixEstimate,
  decidePrefill,
  decisionInputFromViews,
  LocalStallLedger,
  PD_CONDITIONAL_RULES,
  type PdConditionalRule,
  type PrefillDecisionInput,
} from '../../src/policies/disagg/conditional.ts';
import { isEligible } from '../../src/policies/routing/eligible.ts';
import { createRoutingPolicy } from '../../src/policies/routing/registry.ts';
import { PD_LINK_DEFAULT, PdHandoffs } from '../../src/twin/pd-host.ts';
import { loadedPair, ViewPair, viewRequest } from './views.ts';

const MODEL = 'llama-3.1-8b';
const GPU = 'h100';
/** Of loadedPair's six instances: the prefill pool (both eligible) and the decode instances. */
const PREFILL = [1, 2];
const DECODE = [3, 4];

test("the gateway's defaults are the twin's: the link and the decode engine's token budget", () => {
  assert.equal(CONDITIONAL_LINK_DEFAULT, PD_LINK_DEFAULT);
  assert.equal(CONDITIONAL_CHUNK_TOKENS_DEFAULT, DEFAULT_ENGINE_CONFIG.maxNumBatchedTokens);
});

for (const rule of PD_CONDITIONAL_RULES) {
  for (const link of [CONDITIONAL_LINK_DEFAULT, 'tcp-100']) {
    test(`${rule} over ${link}: the twin and the gateway build the same input and decide the same`, async () => {
      const seen = { local: 0, remote: 0 };
      for (const { pair, nowMs } of [await loadedPair(), await quietPair()]) {
        const got = await compareHosts(rule, link, pair, nowMs);
        seen.local += got.local;
        seen.remote += got.remote;
      }
      // Both paths taken, so the comparison covered both outcomes.
      assert.ok(seen.local > 0 && seen.remote > 0, JSON.stringify(seen));
    });
  }
}

/** A PdConditional that keeps each input its rule decided on. */
class RecordingConditional extends PdConditional {
  readonly inputs: PrefillDecisionInput[] = [];
  override input(
    request: Request,
    decode: InstanceView,
    prefill: readonly InstanceView[],
  ): PrefillDecisionInput {
    const input = super.input(request, decode, prefill);
    this.inputs.push(input);
    return input;
  }
}

for (const rule of PD_CONDITIONAL_RULES) {
  test(`${rule}: the live order decides before the decode hold, as the twin does, with signals not yet scraped`, () => {
    // Nothing scraped: the live view shows host accounting (running = in flight), two decoding.
    const view = new LiveView(3_000);
    const spec = (id: string, role: 'prefill' | 'decode') =>
      ({ id, models: [MODEL], gpu: GPU, tp: 1, role, kvBlocksTotal: 1_000, blockSize: 16 }) as const;
    const decode = view.add(spec('i3', 'decode'));
    const prefill = view.add(spec('i1', 'prefill'));
    decode.sent(0);
    decode.sent(0);
    view.at(0);
    const request = viewRequest(1, 500, 0);
    const transferMs = kvTransfer(modelSpec(MODEL), 500, kvLink(CONDITIONAL_LINK_DEFAULT), {
      prefillTp: 1,
      decodeTp: 1,
    }).ttftAddedMs;
    // The twin decides before `decode.sent`: the request is not among the decodes it decides for.
    const twinInput = decisionInputFromViews(500, 0, decode, [prefill], transferMs);
    assert.equal(twinInput.decodeRunning, 2);
    const live = new RecordingConditional(
      rule,
      CONDITIONAL_LINK_DEFAULT,
      CONDITIONAL_CHUNK_TOKENS_DEFAULT,
      gatewayContext(),
    );
    // What PdExchange.conditionalPair runs; the pool is settled as roleInstances settles it.
    decideThenHold(
      live,
      request,
      decode,
      () => view.at(0).instances.filter((i) => i.role === 'prefill'),
      true,
    );
    assert.deepEqual(live.inputs, [twinInput]);
    // The hold is taken: the request counts in flight on its decode instance from now on.
    assert.equal(view.at(0).instances[0]!.running, 3);
  });
}

/**
 * Feeds 48 requests to both hosts' rule over one situation, asserting the same input and decision
 * each time; returns how many went local and remote.
 */
async function compareHosts(
  rule: PdConditionalRule,
  link: string,
  pair: ViewPair,
  nowMs: number,
): Promise<{ local: number; remote: number }> {
  assert.deepEqual(pair.differences(nowMs), []);
  const twinView = pair.twinView(nowMs).instances;
  const liveView = pair.liveView(nowMs).instances;
  // The gateway's prefill pool is the eligible instances of the request's model (pd-exchange.ts).
  const livePool = PREFILL.map((i) => liveView[i] as InstanceView).filter((i) => isEligible(i, MODEL));
  const twinPool = PREFILL.map((i) => twinView[i] as InstanceView);
  assert.equal(livePool.length, twinPool.length);
  const twin = new PdHandoffs(
    {
      prefillInstances: PREFILL.length,
      decodeInstances: DECODE.length,
      link,
      decodePolicy: createRoutingPolicy('least-request'),
      conditional: rule,
    },
    modelSpec(MODEL),
    1,
    16,
  );
  const twinPrefixes = new DecodePrefixEstimate();
  const perf = perfModelFor(GPU, MODEL, 1);
  const chunkTokens = DEFAULT_ENGINE_CONFIG.maxNumBatchedTokens;
  const live = new PdConditional(rule, link, CONDITIONAL_CHUNK_TOKENS_DEFAULT, gatewayContext());
  const seen = { local: 0, remote: 0 };
  // A TTFT SLO short enough that the prefill pool does not meet half of it for long prompts.
  const slo = rule === 'slo' ? { ttftMs: 80, tpotMs: 40 } : undefined;
  const ledger = new LocalStallLedger();
  for (let k = 0; k < 48; k++) {
    // Lengths from 200 to 9,600 tokens; every third repeats an earlier prompt (a learned prefix).
    const id = k % 3 === 2 ? 20_000 + k - 2 : 20_000 + k;
    const request: Request = { ...viewRequest(id, 200 * (1 + (id % 48)), nowMs + k), slo };
    const d = DECODE[k % DECODE.length] as number;
    const twinDecode = twinView[d] as InstanceView;
    const liveDecode = liveView[d] as InstanceView;
    // The twin's input, as PdHandoffs.prefillsRemotely builds it.
    const hit = twinPrefixes.hitTokens(twinDecode.id, request);
    const transferMs = kvTransfer(modelSpec(MODEL), request.inputTokens, kvLink(link), {
      prefillTp: 1,
      decodeTp: 1,
    }).ttftAddedMs;
    const recentLocalStallMs =
      slo === undefined ? 0 : ledger.recentMs(twinDecode.id, request.arrivalMs, slo.ttftMs);
    const twinInput = decisionInputFromViews(request.inputTokens, hit, twinDecode, twinPool, transferMs, {
      slo,
      recentLocalStallMs,
    });
    assert.deepEqual(live.input(request, liveDecode, livePool), twinInput, `request ${k}: inputs differ`);
    const twinRemote = twin.prefillsRemotely(request, hit, twinDecode, twinPool, perf, chunkTokens);
    twinPrefixes.learn(twinDecode.id, request);
    const liveRemote = live.decide(request, liveDecode, livePool);
    assert.equal(liveRemote, twinRemote, `request ${k}: decisions differ`);
    if (slo !== undefined && !twinRemote)
      ledger.add(
        twinDecode.id,
        request.arrivalMs,
        slo.ttftMs,
        decidePrefill(rule, twinInput, perf, chunkTokens).stallMs ?? 0,
      );
    seen[liveRemote ? 'remote' : 'local']++;
  }
  assert.deepEqual(live.stats, { localPrefills: seen.local, remotePrefills: seen.remote });
  assert.equal(twin.outcome().localPrefills, seen.local);
  return seen;
}

/** A quiet situation: one request on a prefill instance and one decoding, scraped, looked at later. */
async function quietPair(): Promise<{ pair: ViewPair; nowMs: number }> {
  const pair = new ViewPair(6);
  pair.send(1, viewRequest(1, 512, 0), 64, 0);
  pair.send(3, viewRequest(2, 256, 0), 200, 0);
  pair.advance(40);
  await pair.scrape(40);
  pair.advance(60);
  return { pair, nowMs: 60 };
}

/** The gateway's performance-model context for loadedPair's instances (ids i0..i5, H100, TP 1). */
function gatewayContext() {
  const backends = Array.from({ length: 6 }, (_, i) => ({
    id: `i${i}`,
    type: 'vllm',
    url: 'http://127.0.0.1:9',
    models: [MODEL],
    gpu: GPU,
    tp: 1,
  }));
  return gatewayPerfModels(parseGatewayConfig({ backends }, {})).context;
}
