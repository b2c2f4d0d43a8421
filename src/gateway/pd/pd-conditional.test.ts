/**
 * Conditional disaggregation in the gateway (config `pd.conditional`): what start-up accepts and
 * refuses, and how the live host builds the rule's input and decides. The flows run against real
 * sim engines in test/e2e/gateway-pd-conditional.test.ts; the twin and the gateway building the same
 * input from the same situation is test/conformance/pd-conditional-views.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { makeRequest, type Request } from '../../core/request.ts';
import type { InstanceView } from '../../core/view.ts';
import { KV_LINKS, kvTransfer } from '../../model/kv-link.ts';
import { perfModelFor } from '../../model/perf.ts';
import {
  CONDITIONAL_CHUNK_TOKENS_DEFAULT,
  DYNAMO_MAX_LOCAL_PREFILL_TOKENS,
  LOCAL_STALL_LEDGER_ENTRIES_MAX,
  LocalStallLedger,
  sloDecision,
  switchyardDecision,
} from '../../policies/disagg/conditional.ts';
import { defaultPolicyContext } from '../../policies/routing/registry.ts';
import { parseGatewayConfig } from '../config.ts';
import { LiveGateway } from '../gateway.ts';
import { PdConditional } from './pd-conditional.ts';
import { PdRuntime } from './pd-exchange.ts';

const MODEL = 'llama-3.1-8b';

const backends = (protocol: 'vllm' | 'sglang' = 'vllm', model = MODEL) => [
  {
    id: 'p0',
    type: 'vllm',
    url: 'http://127.0.0.1:9',
    models: [model],
    role: 'prefill',
    pdProtocol: protocol,
  },
  {
    id: 'd0',
    type: 'vllm',
    url: 'http://127.0.0.1:9',
    models: [model],
    role: 'decode',
    pdProtocol: protocol,
  },
];

function configError(value: unknown): string {
  try {
    parseGatewayConfig(value, {});
  } catch (error) {
    assert.ok(error instanceof SwitchyardError);
    assert.equal(error.code, 'SY_ERR_INVALID_CONFIG');
    return error.message;
  }
  return assert.fail('the config was accepted');
}

/** A view of one instance, with the fields the rule's input reads. */
function view(over: Partial<InstanceView> & { id: string; role: InstanceView['role'] }): InstanceView {
  return {
    models: [MODEL],
    gpu: 'h100',
    tp: 1,
    healthy: true,
    draining: false,
    inFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    kvBlocksTotal: 10_000,
    blockSize: 16,
    pendingPrefillTokens: 0,
    prefixHitRate: 0,
    updatedAtMs: 0,
    ...over,
  };
}

/** A request of `tokens` prompt tokens whose 16-token blocks are `k * 1000 + b` (its own chain). */
function request(k: number, tokens: number, shared = 0): Request {
  const hashes: number[] = [];
  for (let b = 0; b < Math.floor(tokens / 16); b++) hashes.push(b < shared ? b + 1 : k * 1000 + b);
  return makeRequest({
    id: `r${k}`,
    model: MODEL,
    inputTokens: tokens,
    arrivalMs: 0,
    maxTokens: 64,
    prefix: { blockTokens: 16, hashes },
  });
}

describe('gateway config pd.conditional', () => {
  it('accepts a rule alone or beside a pair policy, with a link and a chunk size', () => {
    assert.deepEqual(parseGatewayConfig({ backends: backends(), pd: { conditional: 'dynamo' } }, {}).pd, {
      conditional: 'dynamo',
      params: {},
    });
    const config = parseGatewayConfig(
      {
        backends: backends(),
        pd: { pairPolicy: 'round-robin', conditional: 'switchyard', link: 'tcp-100', chunkTokens: 2048 },
      },
      {},
    );
    assert.deepEqual(config.pd, {
      pairPolicy: 'round-robin',
      params: {},
      conditional: 'switchyard',
      link: 'tcp-100',
      chunkTokens: 2048,
    });
  });

  it('refuses an unknown rule naming the valid ones, SGLang, stray settings and no P/D backends', () => {
    assert.match(
      configError({ backends: backends(), pd: { conditional: 'always' } }),
      /pd\.conditional: .*dynamo.*switchyard/,
    );
    assert.match(
      configError({ backends: backends('sglang'), pd: { conditional: 'dynamo' } }),
      /pd\.conditional: .*vLLM's flow only: model 'llama-3\.1-8b' speaks SGLang's, whose decode server cannot prefill/,
    );
    assert.match(
      configError({ backends: backends(), pd: { link: 'nvlink' } }),
      /pd\.link: link applies to conditional disaggregation; set pd\.conditional \(dynamo, switchyard, slo\)/,
    );
    assert.match(
      configError({ backends: backends(), pd: { conditional: 'dynamo', link: 'wifi' } }),
      /pd\.link: .*ib-400/,
    );
    assert.match(
      configError({ backends: backends(), pd: { params: { x: 1 } } }),
      /pd\.params: .*pd\.pairPolicy/,
    );
    assert.match(
      configError({ pd: { conditional: 'dynamo' } }),
      /pd\.conditional: conditional rule 'dynamo' needs prefill and decode backends/,
    );
  });

  it('refuses to start switchyard or slo when a decode backend has no performance model; dynamo needs none', () => {
    const mk = (rule: string) =>
      parseGatewayConfig({ backends: backends('vllm', 'm'), pd: { conditional: rule } }, {});
    for (const rule of ['switchyard', 'slo'])
      assert.throws(
        () => new LiveGateway(mk(rule), { log: () => {} }),
        (e: unknown) =>
          e instanceof SwitchyardError &&
          e.code === 'SY_ERR_INVALID_CONFIG' &&
          new RegExp(`pd\\.conditional '${rule}' .*backend 'd0'`).test(e.message),
      );
    new LiveGateway(mk('dynamo'), { log: () => {} });
  });

  it('reports the rule and its counters in /stats only when configured', () => {
    const parsed = parseGatewayConfig({ backends: backends() }, {}).backends;
    const plain = new PdRuntime(parsed, 1);
    assert.equal(plain.statsJson()?.conditional, undefined);
    assert.equal(plain.statsJson()?.localPrefills, undefined);
    const runtime = new PdRuntime(parsed, 1);
    runtime.usePairPolicy(
      { params: {}, conditional: 'dynamo' },
      { context: defaultPolicyContext(), require: () => {} },
    );
    assert.deepEqual(
      { ...runtime.statsJson() },
      {
        prefills: 0,
        prefillFailures: 0,
        prefillRetries: 0,
        kvParamsMissing: 0,
        conditional: 'dynamo',
        localPrefills: 0,
        remotePrefills: 0,
      },
    );
  });
});

describe('PdConditional (the live host of the rules)', () => {
  const decode = view({ id: 'd0', role: 'decode', running: 4, kvUsage: 0.1 });
  const prefill = [
    view({ id: 'p0', role: 'prefill', inFlight: 3, pendingPrefillTokens: 6000 }),
    view({ id: 'p1', role: 'prefill', inFlight: 1, pendingPrefillTokens: 2500 }),
  ];

  it("builds the input from the views, the link's transfer time and the learned prefix", () => {
    const rule = new PdConditional(
      'dynamo',
      'tcp-100',
      CONDITIONAL_CHUNK_TOKENS_DEFAULT,
      defaultPolicyContext(),
    );
    const r = request(1, 3200, 40);
    const perf = perfModelFor('h100', MODEL, 1);
    const transferMs = kvTransfer(perf.model, 3200, KV_LINKS['tcp-100']).ttftAddedMs;
    assert.deepEqual(rule.input(r, decode, prefill), {
      promptTokens: 3200,
      prefixHitTokens: 0,
      prefillQueueRequests: 4,
      prefillQueueTokens: 2500,
      prefillInstances: 2,
      decodeRunning: 4,
      decodeContextTokensMean: (0.1 * 10_000 * 16) / 4,
      transferMs,
      decodePendingPrefillTokens: 0,
    });
    assert.ok(transferMs > 0);
    rule.decide(r, decode, prefill);
    // Another prompt sharing the first 40 blocks: the decode instance holds them now.
    assert.equal(rule.input(request(2, 3200, 40), decode, prefill).prefixHitTokens, 40 * 16);
    assert.equal(
      rule.input(request(2, 3200, 40), view({ id: 'd1', role: 'decode' }), prefill).prefixHitTokens,
      0,
    );
  });

  it('dynamo: local at or under the threshold, remote past it, local again when the learned prefix covers it', () => {
    const rule = new PdConditional(
      'dynamo',
      'ib-400',
      CONDITIONAL_CHUNK_TOKENS_DEFAULT,
      defaultPolicyContext(),
    );
    assert.equal(rule.decide(request(1, DYNAMO_MAX_LOCAL_PREFILL_TOKENS, 0), decode, prefill), false);
    assert.equal(rule.decide(request(2, 4000, 0), decode, prefill), true);
    // The same 4,000-token prompt again: its prefix is on d0, 0 tokens uncached.
    assert.equal(rule.decide(request(2, 4000, 0), decode, prefill), false);
    assert.deepEqual(rule.stats, { localPrefills: 2, remotePrefills: 1 });
    // A retry's new decision for a request already counted: decided, not counted again.
    assert.equal(rule.decide(request(3, 4000, 0), decode, prefill, false), true);
    assert.deepEqual(rule.stats, { localPrefills: 2, remotePrefills: 1 });
  });

  it('switchyard: decides as the pure rule on the same input, with the configured chunk size', () => {
    const context = defaultPolicyContext();
    const rule = new PdConditional('switchyard', 'ib-400', 2048, context);
    const perf = context.perfModel(decode);
    for (const [k, tokens] of [300, 2000, 8000, 16000].entries()) {
      const r = request(10 + k, tokens);
      const expected = switchyardDecision(rule.input(r, decode, prefill), perf, 2048).remote;
      assert.equal(rule.decide(r, decode, prefill), expected, `${tokens} tokens`);
    }
    // An idle decode instance with no running decodes prefills a short prompt itself.
    assert.equal(rule.decide(request(20, 300), view({ id: 'd2', role: 'decode' }), prefill), false);
    // A long prompt onto a busy decode batch goes remote.
    assert.equal(rule.decide(request(21, 16000), decode, prefill), true);
  });

  it('slo: reads the request SLO and the decode backlog, and spends a per-instance budget the twin spends too', () => {
    const context = defaultPolicyContext();
    const rule = new PdConditional('slo', 'ib-400', CONDITIONAL_CHUNK_TOKENS_DEFAULT, context);
    const busy = view({ id: 'd0', role: 'decode', running: 16, kvUsage: 0.2, pendingPrefillTokens: 700 });
    const slow = [view({ id: 'p0', role: 'prefill', inFlight: 8, pendingPrefillTokens: 20_000 })];
    const slo = { ttftMs: 500, tpotMs: 25 };
    const perf = context.perfModel(busy);
    const at = (k: number, arrivalMs: number): Request => ({ ...request(k, 1000), arrivalMs, slo });
    const input = rule.input(at(1, 0), busy, slow);
    assert.deepEqual([input.slo, input.recentLocalStallMs, input.decodePendingPrefillTokens], [slo, 0, 700]);
    // A burst 1 ms apart behind a slow pool, decided beside a ledger fed as the twin feeds its own.
    const ledger = new LocalStallLedger();
    const decisions: boolean[] = [];
    for (let i = 0; i < 60; i++) {
      const r = at(100 + i, i);
      const expectedInput = {
        ...rule.input(r, busy, slow),
        recentLocalStallMs: ledger.recentMs('d0', i, 500),
      };
      assert.deepEqual(rule.input(r, busy, slow), expectedInput, `${i}`);
      const expected = sloDecision(expectedInput, perf, CONDITIONAL_CHUNK_TOKENS_DEFAULT);
      const remote = rule.decide(r, busy, slow);
      assert.equal(remote, expected.remote, `${i}`);
      if (!remote) ledger.add('d0', i, 500, expected.stallMs as number);
      decisions.push(remote);
    }
    assert.equal(decisions[0], false);
    assert.equal(decisions.at(-1), true, 'the budget is spent: later arrivals go remote');
    assert.deepEqual(rule.stats, {
      localPrefills: decisions.filter((r) => !r).length,
      remotePrefills: decisions.filter((r) => r).length,
    });
    // Another decode instance has its own budget; a quick pool takes the request whatever the budget.
    assert.equal(
      rule.decide(at(200, 60), view({ id: 'd1', role: 'decode', running: 16, kvUsage: 0.2 }), slow),
      false,
    );
    assert.equal(rule.decide(at(201, 60), busy, [view({ id: 'p0', role: 'prefill' })]), true);
  });

  it('slo: a retry takes back the stall its failed local attempt recorded; the final pick keeps it once', () => {
    const context = defaultPolicyContext();
    const rule = new PdConditional('slo', 'ib-400', CONDITIONAL_CHUNK_TOKENS_DEFAULT, context);
    const slow = [view({ id: 'p0', role: 'prefill', inFlight: 8, pendingPrefillTokens: 20_000 })];
    const slo = { ttftMs: 500, tpotMs: 25 };
    const d0 = view({ id: 'd0', role: 'decode', running: 16, kvUsage: 0.2 });
    const d1 = view({ id: 'd1', role: 'decode', running: 16, kvUsage: 0.2 });
    const r: Request = { ...request(1, 1000), arrivalMs: 0, slo };
    assert.equal(rule.decide(r, d0, slow), false);
    const recorded = rule.input(r, d0, slow).recentLocalStallMs as number;
    assert.ok(recorded > 0);
    // Its attempt on d0 failed: the retry decides at d1 with the same request.
    assert.equal(rule.decide(r, d1, slow, false), false);
    assert.equal(rule.input(r, d0, slow).recentLocalStallMs, 0, 'nothing left on the instance that failed');
    assert.equal(rule.input(r, d1, slow).recentLocalStallMs, recorded, 'recorded once, at the final pick');
    // A retry gone remote takes it back too; another request's record on d1 stays.
    const other: Request = { ...request(2, 1000), arrivalMs: 0, slo };
    assert.equal(rule.decide(other, d1, slow), false);
    const both = rule.input(other, d1, slow).recentLocalStallMs as number;
    assert.equal(rule.decide(r, d0, [view({ id: 'p0', role: 'prefill' })], false), true);
    assert.ok(Math.abs((rule.input(r, d1, slow).recentLocalStallMs as number) - (both - recorded)) < 1e-9);
    assert.equal(rule.input(r, d0, slow).recentLocalStallMs, 0);
    assert.deepEqual(rule.stats, { localPrefills: 2, remotePrefills: 0 });
  });

  it('slo: a removed backend leaves the ledger, and the ledger stays bounded whatever ids come and go', () => {
    const rule = new PdConditional('slo', 'ib-400', CONDITIONAL_CHUNK_TOKENS_DEFAULT, defaultPolicyContext());
    const slow = [view({ id: 'p0', role: 'prefill', inFlight: 8, pendingPrefillTokens: 20_000 })];
    const slo = { ttftMs: 500, tpotMs: 25 };
    const d = (id: string) => view({ id, role: 'decode', running: 16, kvUsage: 0.2 });
    assert.equal(rule.decide({ ...request(1, 1000), arrivalMs: 0, slo }, d('d0'), slow), false);
    assert.equal(rule.ledgerSize, 1);
    rule.forgetBackend('d0');
    assert.equal(rule.ledgerSize, 0);
    // An autoscaler's churn: a new decode id every 10 ms, never removed through the gateway.
    for (let k = 0; k < 3 * LOCAL_STALL_LEDGER_ENTRIES_MAX; k++)
      rule.decide({ ...request(10 + k, 1000), arrivalMs: 10 * k, slo }, d(`e${k}`), slow);
    assert.ok(rule.ledgerSize <= LOCAL_STALL_LEDGER_ENTRIES_MAX, `${rule.ledgerSize} entries`);
  });

  it("slo: a retry after its decode backend was removed and re-added leaves the new incarnation's stall", () => {
    const rule = new PdConditional('slo', 'ib-400', CONDITIONAL_CHUNK_TOKENS_DEFAULT, defaultPolicyContext());
    const slow = [view({ id: 'p0', role: 'prefill', inFlight: 8, pendingPrefillTokens: 20_000 })];
    const slo = { ttftMs: 500, tpotMs: 25 };
    const d0 = view({ id: 'd0', role: 'decode', running: 16, kvUsage: 0.2 });
    const d1 = view({ id: 'd1', role: 'decode', running: 16, kvUsage: 0.2 });
    // A long prompt stays local at d0; d0 is removed (its attempt fails) and comes back under its id.
    const r: Request = { ...request(1, 4000), arrivalMs: 0, slo };
    assert.equal(rule.decide(r, d0, slow), false);
    const old = rule.input(r, d0, slow).recentLocalStallMs as number;
    rule.forgetBackend('d0');
    // The re-added d0 takes a shorter local prefill: its ledger starts fresh with that one's stall.
    const other: Request = { ...request(2, 1000), arrivalMs: 0, slo };
    assert.equal(rule.decide(other, d0, slow), false);
    const fresh = rule.input(other, d0, slow).recentLocalStallMs as number;
    assert.ok(fresh > 0 && fresh < old, `${fresh} < ${old}`);
    // The first request's retry goes to d1: its withdraw is for the removed incarnation, ignored.
    assert.equal(rule.decide(r, d1, slow, false), false);
    assert.equal(rule.input(other, d0, slow).recentLocalStallMs, fresh);
  });

  it('slo: the gateway drops a removed decode backend from the ledger (removeBackend)', async () => {
    const gw = new LiveGateway(parseGatewayConfig({ backends: backends(), pd: { conditional: 'slo' } }, {}), {
      log: () => {},
    });
    try {
      gw.addBackend({ id: 'd1', type: 'vllm', url: 'http://127.0.0.1:9', models: [MODEL], role: 'decode' });
      const rule = (gw as unknown as { pd: PdRuntime }).pd.conditional as PdConditional;
      const slow = [view({ id: 'p0', role: 'prefill', inFlight: 8, pendingPrefillTokens: 20_000 })];
      const d1 = view({ id: 'd1', role: 'decode', running: 16, kvUsage: 0.2 });
      const r: Request = { ...request(1, 1000), arrivalMs: 0, slo: { ttftMs: 500, tpotMs: 25 } };
      assert.equal(rule.decide(r, d1, slow), false);
      assert.equal(rule.ledgerSize, 1);
      assert.equal(gw.removeBackend('d1'), true);
      assert.equal(rule.ledgerSize, 0);
    } finally {
      await gw.close();
    }
  });
});
