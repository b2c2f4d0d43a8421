import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { SimBackend } from '../engine-servers/sim/sim-backend.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { makeTwinRequest } from '../workload/common.ts';
import { oneModelOptions, pdVariants, simEngineAnswer } from './refusal-test-support.ts';
import { renderHtmlReport } from './report/html.ts';
import { summaryToJson } from './report/json.ts';
import { formatSummaryTable } from './report/table.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/**
 * Twin/live parity for a request whose whole KV (prompt plus output) needs more blocks than the
 * engine's cache holds: the live sim engine answers 400 (naming max_tokens), which the gateway relays
 * and counts `failed{upstream_4xx}`; the twin counts it the same way, not as a SY_ERR_CAPACITY
 * rejection the live gateway never produces. The text says which of the engine's refusals it was.
 */

const MODEL = 'llama-3.1-8b';
/** 64 blocks of 16 tokens: 1,024 tokens of KV, far below the model's 131,072-token context. */
const ENGINE = { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: 64 };

const options = (count: number, more: Partial<SimOptions> = {}): SimOptions =>
  oneModelOptions(MODEL, ENGINE, count, more);

test('a request past the KV cache: the live engine answers 400, the twin counts failed upstream_4xx', async () => {
  const b = new SimBackend({
    modelId: MODEL,
    gpu: 'h100',
    model: MODEL,
    tp: 1,
    engine: ENGINE,
    timeScale: 0.01,
  });
  assert.deepEqual(
    await Promise.all([simEngineAnswer(b, MODEL, 500, 20), simEngineAnswer(b, MODEL, 2000, 20)]),
    ['ok', 400],
  );
  await b.close();
  const result = runSimulation(
    [
      makeTwinRequest({ id: 'fits', inputTokens: 500, trueOutputTokens: 20, arrivalMs: 0 }),
      makeTwinRequest({ id: 'huge', inputTokens: 2000, trueOutputTokens: 20, arrivalMs: 1 }),
    ],
    options(1),
  );
  const s = result.summary;
  assert.equal(s.completed, 1);
  assert.equal(s.rejected, 1);
  assert.deepEqual(s.failedByReason, { upstream_4xx: 1 });
  assert.equal(s.rejectedByCode, undefined, 'the live gateway never answers SY_ERR_CAPACITY for it');
  assert.equal(s.refusedPastKvCache, 1);
  // Text, JSON and HTML name it alike: the gateway's failed{upstream_4xx}, and why.
  const text = formatSummaryTable(s);
  assert.match(
    text,
    /1 of them refused by their engine: prompt \+ output need more KV blocks than its cache holds/,
  );
  assert.doesNotMatch(text, /past the model's context/);
  assert.match(text, /failed upstream_4xx/);
  // With both of the engine's refusals, each cause gets its count.
  assert.match(
    formatSummaryTable({ ...s, failedByReason: { upstream_4xx: 3 }, refusedPastKvCache: 1 }),
    /3 of them refused by their engine: 2 prompt \+ output past the model's context, 1 prompt \+ output need more KV blocks/,
  );
  const json = summaryToJson(s);
  assert.deepEqual(json['failedByReason'], { upstream_4xx: 1 });
  assert.equal(json['refusedPastKvCache'], 1);
  assert.equal(json['rejectedByCode'], undefined);
  const html = renderHtmlReport([result.report]);
  assert.match(html, /failed upstream_4xx: 1/);
  assert.doesNotMatch(html, /SY_ERR_CAPACITY/);
});

test('P/D: a request whose KV can never fit the decode instance fails upstream_4xx, as its decode leg would', () => {
  // The prefill leg (one output token) fits 64 blocks; the decode leg (prompt + 400 output) does not.
  const requests = [
    makeTwinRequest({ id: 'a', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 0 }),
    makeTwinRequest({ id: 'b', inputTokens: 900, trueOutputTokens: 400, arrivalMs: 10 }),
    makeTwinRequest({ id: 'c', inputTokens: 300, trueOutputTokens: 20, arrivalMs: 20 }),
  ];
  for (const { settings, label } of pdVariants()) {
    const s = runSimulation(
      requests,
      options(2, { pd: settings, policy: createRoutingPolicy('least-request') }),
    ).summary;
    assert.equal(s.completed, 2, label);
    assert.deepEqual(s.failedByReason, { upstream_4xx: 1 }, label);
    assert.equal(s.rejectedByCode, undefined, label);
    assert.equal(s.refusedPastKvCache, 1, label);
  }
});
