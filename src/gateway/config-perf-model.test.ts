/** The gateway config accepts only what is implemented, and maps each backend to a performance model. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import type { InstanceView } from '../core/view.ts';
import { gatewayPerfModels, parseGatewayConfig, perfModelIdOf } from './config.ts';

const backend = (over: Record<string, unknown> = {}) => ({
  id: 'b0',
  type: 'vllm',
  url: 'http://127.0.0.1:8000',
  models: ['meta-llama/Llama-3.1-8B-Instruct'],
  ...over,
});

function invalidConfig(run: () => unknown, ...fragments: string[]): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof SwitchyardError, String(e));
    assert.equal(e.code, 'SY_ERR_INVALID_CONFIG');
    for (const f of fragments) assert.ok(e.message.includes(f), `'${f}' not in: ${e.message}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

describe('backend role', () => {
  it('accepts both (the default); prefill and decode need a protocol and a pool of the other role', () => {
    assert.equal(parseGatewayConfig({ backends: [backend()] }, {}).backends[0]?.role, 'both');
    assert.equal(parseGatewayConfig({ backends: [backend({ role: 'both' })] }, {}).backends[0]?.role, 'both');
    for (const role of ['prefill', 'decode'])
      invalidConfig(
        () => parseGatewayConfig({ backends: [backend({ role })] }, {}),
        'backends.0.pdProtocol',
        'needs pdProtocol',
      );
  });
});

describe('routing.policies', () => {
  it('checks every named policy at parse time, not when the admin API first switches to it', () => {
    const routing = (policies: Record<string, unknown>) => ({
      routing: { policy: 'least-request', policies },
    });
    parseGatewayConfig(routing({ mine: { type: 'profile', params: { scorers: [{ type: 'queue' }] } } }), {});
    invalidConfig(
      () =>
        parseGatewayConfig(
          routing({ mine: { type: 'profile', params: { scorers: [{ type: 'qeue' }] } } }),
          {},
        ),
      'routing.policies.mine',
      "unknown scorer 'qeue'",
      'valid: in-flight',
    );
    invalidConfig(
      () => parseGatewayConfig(routing({ x: { type: 'nope' } }), {}),
      'routing.policies.x',
      'valid: goodput',
    );
    invalidConfig(
      () => parseGatewayConfig(routing({ p2: { type: 'power-of-two', params: { load: 'cpu' } } }), {}),
      'routing.policies.p2',
      'load',
    );
  });
});

describe('backend perfModel', () => {
  it('resolves an explicit catalogue id, a catalogue id served as is, and a Hugging Face name in any case', () => {
    assert.equal(perfModelIdOf({ models: ['acme/bot'], perfModel: 'qwen2.5-7b' }), 'qwen2.5-7b');
    assert.equal(perfModelIdOf({ models: ['llama-3.1-8b'] }), 'llama-3.1-8b');
    assert.equal(perfModelIdOf({ models: ['META-LLAMA/llama-3.1-8b-instruct'] }), 'llama-3.1-8b');
    assert.equal(perfModelIdOf({ models: ['acme/bot', 'Qwen/Qwen2.5-7B-Instruct'] }), 'qwen2.5-7b');
    assert.equal(perfModelIdOf({ models: ['meta-llama/Meta-Llama-3.1-8B-Instruct'] }), 'llama-3.1-8b');
    assert.equal(perfModelIdOf({ models: ['mistralai/Mixtral-8x7B-v0.1'] }), 'mixtral-8x7b');
    assert.equal(perfModelIdOf({ models: ['acme/bot'] }), undefined);
    // A Hugging Face name without its organisation, and an explicit perfModel written as one.
    assert.equal(perfModelIdOf({ models: ['Llama-2-7b-chat-hf'] }), 'llama-2-7b');
    assert.equal(perfModelIdOf({ models: ['acme/bot'], perfModel: 'Qwen/Qwen2.5-7B' }), 'qwen2.5-7b');
    // Another organisation's copy is not guessed at.
    assert.equal(perfModelIdOf({ models: ['acme/Llama-2-7b-hf'] }), undefined);
  });

  it('reads vendor GPU and Hugging Face perfModel names as the catalogue ids', () => {
    const config = parseGatewayConfig(
      {
        backends: [
          backend({
            models: ['acme/bot'],
            perfModel: 'meta-llama/Llama-2-7b-hf',
            gpu: 'NVIDIA H100 80GB HBM3',
          }),
        ],
      },
      {},
    );
    assert.equal(config.backends[0]?.gpu, 'h100');
    assert.equal(config.backends[0]?.perfModel, 'llama-2-7b');
    gatewayPerfModels(config).require(['goodput']);
  });

  it('gives policies the mapped performance model by instance id', () => {
    const config = parseGatewayConfig(
      {
        backends: [
          backend({ id: 'a', models: ['acme/bot'], perfModel: 'llama-3.1-70b', gpu: 'h100', tp: 4 }),
          backend({ id: 'b' }),
        ],
      },
      {},
    );
    const perf = gatewayPerfModels(config);
    perf.require(['goodput', 'mooncake', 'preble']);
    const at = (id: string) => perf.context.perfModel({ id } as InstanceView);
    // A 70B model on 4 GPUs and an 8B model on one are different models: different step times.
    assert.notEqual(at('a').decodeStepTimeMs(8, 1024), at('b').decodeStepTimeMs(8, 1024));
  });

  it('refuses a policy that predicts time when a backend has no performance model, naming backend and field', () => {
    const config = parseGatewayConfig(
      { backends: [backend({ id: 'ok' }), backend({ id: 'custom', models: ['acme/bot'] })] },
      {},
    );
    const perf = gatewayPerfModels(config);
    perf.require(['round-robin', 'llm-d', 'kv-cost']);
    for (const policy of ['goodput', 'mooncake', 'preble'])
      invalidConfig(
        () => perf.require([policy]),
        policy,
        "backend 'custom'",
        'backends.1.perfModel',
        'llama-3.1-8b',
      );
  });

  it('checks the GPU and TP of the mapping too', () => {
    const gpu = gatewayPerfModels(parseGatewayConfig({ backends: [backend({ gpu: 'cpu' })] }, {}));
    invalidConfig(() => gpu.require(['goodput']), 'backends.0.gpu', "unknown gpu 'cpu'");
    const model = gatewayPerfModels(parseGatewayConfig({ backends: [backend({ perfModel: 'gpt-9' })] }, {}));
    invalidConfig(() => model.require(['goodput']), 'backends.0.perfModel', "unknown model 'gpt-9'");
    const tp = gatewayPerfModels(parseGatewayConfig({ backends: [backend({ tp: 3 })] }, {}));
    invalidConfig(() => tp.require(['preble']), 'backends.0.tp');
  });

  it('resolves named policy instances to their type', () => {
    const config = parseGatewayConfig(
      {
        backends: [backend({ models: ['acme/bot'] })],
        routing: { policy: 'fast', policies: { fast: { type: 'goodput' }, lb: { type: 'least-request' } } },
      },
      {},
    );
    const perf = gatewayPerfModels(config);
    perf.require(['lb']);
    invalidConfig(() => perf.require(['fast']), "'fast'", 'backends.0.perfModel');
  });
});
