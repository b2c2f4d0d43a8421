import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { CHARS_PER_TOKEN } from '../core/text-prefix.ts';
import { EMBEDDING_INPUT_TOKENS_MAX } from '../engine-servers/embeddings.ts';
import { startFakeUpstream } from './fake-upstream.ts';
import { startGateway } from './gateway.ts';
import {
  EMBEDDING_INPUT_TOKENS_COST_MAX,
  embeddingsCost,
  embeddingsInputCapped,
  parseBodyFields,
  priorityRule,
  requestOf,
} from './request-build.ts';

const CAP = EMBEDDING_INPUT_TOKENS_COST_MAX;
const huge = 'x'.repeat(1024 * 1024);

describe('embeddingsCost and the engines per-input bound', () => {
  it('is the bound the built-in engines refuse past', () => {
    assert.equal(EMBEDDING_INPUT_TOKENS_COST_MAX, EMBEDDING_INPUT_TOKENS_MAX);
  });

  it('capped, charges an input past the bound no more than one at the bound (the engine refuses it, runs nothing)', () => {
    assert.deepEqual(embeddingsCost(huge, CAP), { inputs: 1, tokens: CAP });
    assert.deepEqual(embeddingsCost('y'.repeat(CAP * CHARS_PER_TOKEN), CAP), { inputs: 1, tokens: CAP });
    assert.deepEqual(embeddingsCost(['a', huge], CAP), { inputs: 2, tokens: 16 + CAP });
    assert.deepEqual(embeddingsCost(new Array(CAP * 4).fill(7), CAP), { inputs: 1, tokens: CAP });
    assert.deepEqual(embeddingsCost([[1], new Array(CAP + 1).fill(7)], CAP), { inputs: 2, tokens: 16 + CAP });
  });

  it('uncapped by default: each input in full', () => {
    assert.deepEqual(embeddingsCost(huge), { inputs: 1, tokens: (1024 * 1024) / CHARS_PER_TOKEN });
    assert.deepEqual(embeddingsCost(new Array(CAP * 4).fill(7)), { inputs: 1, tokens: CAP * 4 });
  });
});

describe('embeddings admission: capped only where every backend of the model is a built-in engine', () => {
  const backend = (type: string, models: string[]) => ({ config: { type, models } });
  const backends = [
    backend('sim', ['e-sim', 'e-mixed']),
    backend('llama', ['e-llama']),
    backend('vllm', ['e-vllm', 'e-mixed']),
  ];

  it('embeddingsInputCapped: sim and llama alone yes; vllm, mixed, or no backend no', () => {
    assert.equal(embeddingsInputCapped(backends, 'e-sim'), true);
    assert.equal(embeddingsInputCapped(backends, 'e-llama'), true);
    assert.equal(embeddingsInputCapped(backends, 'e-vllm'), false);
    assert.equal(embeddingsInputCapped(backends, 'e-mixed'), false);
    assert.equal(embeddingsInputCapped(backends, 'e-none'), false);
  });

  it('a request for a vLLM-served model is charged its whole input; for a sim-served one at most the bound', () => {
    const ctx = {
      models: new Set(['e-sim', 'e-vllm']),
      tokenizers: new Map(),
      slo: undefined,
      priority: priorityRule([{ minPriority: 0 }], false, 0),
      nextId: () => 'r1',
      embeddingsCapped: (model: string) => embeddingsInputCapped(backends, model),
    };
    const cost = (model: string) => {
      const fields = parseBodyFields('embeddings', Buffer.from(JSON.stringify({ model, input: huge })));
      return requestOf(ctx, fields, undefined, { headers: {} }, 0).request.inputTokens;
    };
    assert.equal(cost('e-sim'), CAP);
    assert.equal(cost('e-vllm'), (1024 * 1024) / CHARS_PER_TOKEN);
  });
});

describe('embeddings admission through the gateway (tenant TPM 10,000)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('passes a 15,000-token input to a sim backend (charged 8,192) and refuses it for a vLLM one', async () => {
    const sim = await startFakeUpstream('e-sim');
    const vllm = await startFakeUpstream('e-vllm');
    cleanups.push(
      () => sim.close(),
      () => vllm.close(),
    );
    const gw = await startGateway(
      {
        port: 0,
        backends: [
          { id: 's0', type: 'sim', url: sim.url, models: ['e-sim'], metricsPath: null },
          { id: 'v0', type: 'vllm', url: vllm.url, models: ['e-vllm'], metricsPath: null },
        ],
        tenants: [{ key: 'sk-t', name: 't', tpm: 10_000 }],
        healthCheck: { intervalMs: 60_000 },
      },
      { log: () => {} },
    );
    cleanups.push(() => gw.close());
    const input = 'z'.repeat(15_000 * CHARS_PER_TOKEN);
    const embed = (model: string) =>
      fetch(`${gw.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-t' },
        body: JSON.stringify({ model, input }),
      });
    const vllmReply = await embed('e-vllm');
    const vllmBody = (await vllmReply.json()) as { error: { code: string } };
    // 15,000 tokens is more than the whole 10,000 bucket: refused for good, not a 429.
    assert.equal(vllmReply.status, 413);
    assert.equal(vllmBody.error.code, 'SY_ERR_REQUEST_OVER_TPM');
    const simReply = await embed('e-sim');
    assert.equal(simReply.status, 200, await simReply.text());
  });
});
