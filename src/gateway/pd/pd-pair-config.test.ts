/**
 * The gateway config's `pd:` block (a P/D pair policy): what start-up accepts and refuses, and that
 * the runtime hands each pool the pair's own side. The flows run against real sim engines in
 * test/e2e/gateway-pd-pair.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../../core/errors.ts';
import { createRoutingPolicy, defaultPolicyContext } from '../../policies/routing/registry.ts';
import { parseGatewayConfig } from '../config.ts';
import { LiveGateway } from '../gateway.ts';
import { PdRuntime } from './pd-exchange.ts';

const pdBackends = (model = 'llama-3.1-8b') => [
  { id: 'p0', type: 'vllm', url: 'http://127.0.0.1:9', models: [model], role: 'prefill', pdProtocol: 'vllm' },
  { id: 'd0', type: 'vllm', url: 'http://127.0.0.1:9', models: [model], role: 'decode', pdProtocol: 'vllm' },
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

describe('gateway config pd:', () => {
  it('accepts a pair policy with parameters, and fills the defaults', () => {
    const config = parseGatewayConfig(
      { backends: pdBackends(), pd: { pairPolicy: 'mooncake', params: { tpotSloMs: 50 } } },
      {},
    );
    assert.deepEqual(config.pd, { pairPolicy: 'mooncake', params: { tpotSloMs: 50 } });
    assert.deepEqual(
      parseGatewayConfig({ backends: pdBackends(), pd: { pairPolicy: 'load-aware' } }, {}).pd,
      {
        pairPolicy: 'load-aware',
        params: {},
      },
    );
  });

  it('refuses an unknown pair, an unknown parameter, and a pair without P/D backends', () => {
    assert.match(
      configError({ backends: pdBackends(), pd: { pairPolicy: 'fastest' } }),
      /pd\.pairPolicy: .*round-robin/,
    );
    assert.match(
      configError({ backends: pdBackends(), pd: { pairPolicy: 'load-aware', params: { kvWeight: 1 } } }),
      /pd\.params: P\/D pair policy 'load-aware': .*kvWeight.*valid: inFlightWeight, kvUsageWeight/,
    );
    assert.match(
      configError({ pd: { pairPolicy: 'round-robin' } }),
      /pd\.pairPolicy: .*needs prefill and decode backends/,
    );
    assert.match(
      configError({ backends: pdBackends(), pd: { pairPolicy: 'round-robin', extra: 1 } }),
      /pd: .*extra/,
    );
  });

  it('refuses a block that sets neither a pair policy nor a conditional rule', () => {
    for (const pd of [{}, { params: {} }])
      assert.match(
        configError({ backends: pdBackends(), pd }),
        /pd: the block sets neither pairPolicy \(round-robin.*\) nor conditional \(dynamo, switchyard, slo\)/,
      );
    // Either one alone is enough.
    assert.equal(
      parseGatewayConfig({ backends: pdBackends(), pd: { conditional: 'dynamo' } }, {}).pd?.conditional,
      'dynamo',
    );
  });

  it('refuses to start mooncake when a backend has no performance model', () => {
    const config = parseGatewayConfig({ backends: pdBackends('m'), pd: { pairPolicy: 'mooncake' } }, {});
    assert.throws(
      () => new LiveGateway(config, { log: () => {} }),
      (e: unknown) =>
        e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_CONFIG' && /perfModel/.test(e.message),
    );
    // round-robin predicts nothing: the same backends are fine.
    const rr = parseGatewayConfig({ backends: pdBackends('m'), pd: { pairPolicy: 'round-robin' } }, {});
    new LiveGateway(rr, { log: () => {} });
  });
});

describe('PdRuntime with a pair policy', () => {
  it('hands the prefill pick the pair prefill side and decode attempts its decode side, whatever is active', () => {
    const backends = parseGatewayConfig({ backends: pdBackends() }, {}).backends;
    const active = createRoutingPolicy('least-request');
    const create = () => createRoutingPolicy('least-request');
    const plain = new PdRuntime(backends, 1);
    assert.equal(plain.attemptPolicy('decode', active), active);
    assert.equal(plain.prefillPolicy(active, create).name, 'least-request');
    assert.notEqual(plain.prefillPolicy(active, create), active, 'the prefill pool has its own copy');
    assert.equal(plain.statsJson()?.pairPolicy, undefined);

    const runtime = new PdRuntime(backends, 1);
    runtime.usePairPolicy(
      { pairPolicy: 'round-robin', params: {} },
      { context: defaultPolicyContext(), require: () => {} },
    );
    assert.equal(runtime.prefillPolicy(active, create).name, 'round-robin/prefill');
    assert.equal(runtime.attemptPolicy('decode', active).name, 'round-robin/decode');
    // Completions of `both` models and embeddings keep the active policy.
    assert.equal(runtime.attemptPolicy('both', active), active);
    assert.equal(runtime.attemptPolicy(undefined, active), active);
    assert.equal(runtime.statsJson()?.pairPolicy, 'round-robin');
  });
});
