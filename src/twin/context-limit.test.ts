import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serverlessFromFlags } from '../cli/sim-serverless.ts';
import { Rng } from '../core/rng.ts';
import { DEFAULT_ENGINE_CONFIG } from '../engine-core/types.ts';
import { SimBackend } from '../engine-servers/sim/sim-backend.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import { makeTwinRequest } from '../workload/common.ts';
import { createWorkload, parseWorkloadSpec } from '../workload/create.ts';
import type { TwinRequest } from '../workload/types.ts';
import { oneModelOptions, pdSettings, pdVariants, simEngineAnswer } from './refusal-test-support.ts';
import { formatSummaryTable } from './report/table.ts';
import { runTwin } from './run.ts';
import { serverlessTwinSettings } from './serverless-test-support.ts';
import { runSimulation, type SimOptions } from './simulator.ts';

/**
 * The twin refuses what the live engine refuses: a prompt plus output past the model's context
 * (Llama-2-7B: 4,096 tokens) fails where an instance receives it, counted as the gateway counts an
 * engine's 400 (`failed{upstream_4xx}`), and the requests that fit are served as before.
 */

const MODEL = 'llama-2-7b';
const CONTEXT = 4096;

const options = (count: number, more: Partial<SimOptions> = {}): SimOptions =>
  oneModelOptions(MODEL, DEFAULT_ENGINE_CONFIG, count, more);

function shortOnes(n: number): TwinRequest[] {
  return Array.from({ length: n }, (_, k) =>
    makeTwinRequest({ id: `s${k}`, inputTokens: 512 + 16 * k, trueOutputTokens: 64, arrivalMs: 100 * k }),
  );
}

test('a twin run with one request past the context among short ones: it fails upstream_4xx, the rest as before', () => {
  const short = shortOnes(20);
  const long = makeTwinRequest({ id: 'long', inputTokens: 5000, trueOutputTokens: 100, arrivalMs: 450 });
  const withLong = [...short.slice(0, 5), long, ...short.slice(5)];
  const base = runSimulation(short, options(1)).summary;
  const s = runSimulation(withLong, options(1)).summary;
  assert.equal(s.requests, 21);
  assert.equal(s.completed, 20);
  assert.equal(s.rejected, 1);
  assert.deepEqual(s.failedByReason, { upstream_4xx: 1 });
  assert.equal(s.rejectedByCode, undefined, 'an engine 400 is a failure after acceptance, not a refusal');
  // It reached no engine: the short requests' latencies are those of the run without it.
  assert.deepEqual([s.ttftMs, s.tpotMs, s.e2eMs], [base.ttftMs, base.tpotMs, base.e2eMs]);
  assert.equal(s.outputTokens, base.outputTokens);
  assert.equal(s.perInstance[0]?.requests, 21, 'it was routed to the instance, which refused it');
  // The text summary says why it was not served.
  assert.match(
    formatSummaryTable(s),
    /rejected 1 \(4\.8%\)\n1 of them refused by their engine: prompt \+ output past the model's context/,
  );
  assert.doesNotMatch(formatSummaryTable(base), /refused by their engine/);
});

test('the sim engine and the twin agree on the boundary: prompt + max_tokens == context is served, +1 refused', async () => {
  const b = new SimBackend({ modelId: MODEL, gpu: 'h100', model: MODEL, tp: 1, timeScale: 0.01 });
  const prompt = 4000;
  const fits = CONTEXT - prompt;
  assert.deepEqual(
    await Promise.all([simEngineAnswer(b, MODEL, prompt, fits), simEngineAnswer(b, MODEL, prompt, fits + 1)]),
    ['ok', 400],
  );
  await b.close();
  const twin = runSimulation(
    [
      makeTwinRequest({ id: 'at', inputTokens: prompt, trueOutputTokens: fits, arrivalMs: 0 }),
      makeTwinRequest({ id: 'past', inputTokens: prompt, trueOutputTokens: fits + 1, arrivalMs: 1 }),
    ],
    options(1),
  ).summary;
  assert.equal(twin.completed, 1);
  assert.deepEqual(twin.failedByReason, { upstream_4xx: 1 });
});

test('P/D: a prompt that fills the context fails on its prefill leg, one whose output passes it on its decode leg', () => {
  const short = shortOnes(10);
  // The prefill leg asks for 1 token: 4,096 + 1 is past the context. The decode leg asks for the output.
  const fullPrompt = makeTwinRequest({
    id: 'full',
    inputTokens: CONTEXT,
    trueOutputTokens: 10,
    arrivalMs: 150,
  });
  const longAnswer = makeTwinRequest({
    id: 'answer',
    inputTokens: 4000,
    trueOutputTokens: 200,
    arrivalMs: 160,
  });
  // A short prompt with a long answer: conditional P/D keeps it local, where its one leg is refused.
  const local = makeTwinRequest({ id: 'local', inputTokens: 100, trueOutputTokens: 4000, arrivalMs: 170 });
  const requests = [...short.slice(0, 2), fullPrompt, longAnswer, local, ...short.slice(2)];
  for (const { settings, label } of pdVariants()) {
    const result = runSimulation(
      requests,
      options(2, { pd: settings, policy: createRoutingPolicy('least-request') }),
    );
    const s = result.summary;
    assert.equal(s.completed, 10, label);
    assert.deepEqual(s.failedByReason, { upstream_4xx: 3 }, label);
    assert.equal(s.outputTokens, 10 * 64, label);
  }
  // Without the rule: the refused decode legs' prompts were prefilled but crossed no link.
  const plain = runSimulation(
    requests,
    options(2, { pd: pdSettings(), policy: createRoutingPolicy('least-request') }),
  );
  assert.equal(plain.pd?.transfers, 10);
  assert.deepEqual(
    plain.summary.perInstance.map((x) => x.requests),
    [13, 12],
    'the prefill instance saw all three (refusing the full prompt), the decode instance the other two',
  );
});

test('serverless: a model on a Llama-2 base refuses its past-context requests, the Llama-3.1 model serves its own', () => {
  const workload = {
    kind: 'multi-model',
    models: 2,
    bases: ['llama-3.1-8b', MODEL],
    modelRatesRps: [0.2, 0.2],
    onMeanS: 60,
    offMeanS: 60,
    durationS: 600,
    input: { kind: 'fixed', tokens: 5000 },
    output: { kind: 'fixed', tokens: 64 },
  };
  const settings = serverlessTwinSettings(
    workload,
    serverlessFromFlags({ serverlessPolicy: 'keep-alive', gpus: 2, keepAliveS: 30, gpu: 'h100' }, workload),
  );
  const requests = [...createWorkload(parseWorkloadSpec(workload), new Rng(3).fork('workload'))];
  const onLlama2 = requests.filter((r) => r.model === 'm1').length;
  assert.ok(onLlama2 > 0 && onLlama2 < requests.length);
  const s = runTwin(settings).summary;
  assert.equal(s.requests, requests.length);
  assert.deepEqual(s.failedByReason, { upstream_4xx: onLlama2 });
  assert.equal(s.completed, requests.length - onLlama2);
});
