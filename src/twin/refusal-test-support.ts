/**
 * What the twin's engine-refusal tests (context-limit, kv-capacity-refusal) share: the options of a
 * one-model H100 run, the P/D settings they vary, and the live sim engine's answer to one request,
 * which they compare with the twin's count. Test code only.
 */
import assert from 'node:assert/strict';
import { parseCompletionBody } from '../core/openai-api.ts';
import type { GenerationSink } from '../engine-servers/backend.ts';
import type { SimBackend } from '../engine-servers/sim/sim-backend.ts';
import { createRoutingPolicy } from '../policies/routing/registry.ts';
import type { PdSettings } from './pd-host.ts';
import type { SimOptions } from './simulator.ts';

/**
 * SimOptions of `count` H100 instances of `model` (TP 1) under `engine`: seed 1, round-robin, an
 * SLO of 2 s TTFT and 100 ms TPOT; `more` overrides any of it.
 */
export function oneModelOptions(
  model: string,
  engine: SimOptions['engine'],
  count: number,
  more: Partial<SimOptions> = {},
): SimOptions {
  return {
    seed: 1,
    cluster: { groups: [{ count, gpu: 'h100', model, tp: 1 }] },
    engine,
    policy: createRoutingPolicy('round-robin'),
    slo: { ttftMs: 2000, tpotMs: 100 },
    workload: 'test',
    ...more,
  };
}

/** P/D settings: one prefill and one decode instance over ib-400, least-request decode; `more` overrides. */
export function pdSettings(more: Partial<PdSettings> = {}): PdSettings {
  return {
    prefillInstances: 1,
    decodeInstances: 1,
    link: 'ib-400',
    decodePolicy: createRoutingPolicy('least-request'),
    ...more,
  };
}

/**
 * The P/D variants the refusal tests run a case under (plain, decode at arrival, conditional as
 * Dynamo's), each with a label naming it for the assertions' messages.
 */
export function pdVariants(): { readonly settings: PdSettings; readonly label: string }[] {
  return [pdSettings(), pdSettings({ decodeAtArrival: true }), pdSettings({ conditional: 'dynamo' })].map(
    (settings) => ({
      settings,
      label: JSON.stringify({ decodeAtArrival: settings.decodeAtArrival, conditional: settings.conditional }),
    }),
  );
}

/**
 * The sim engine's answer to a completion for `model` with a prompt of `promptTokens` (4 characters
 * a token) and `maxTokens`: 'ok' when served (its usage must count that prompt), else the error's
 * HTTP status.
 */
export function simEngineAnswer(
  b: SimBackend,
  model: string,
  promptTokens: number,
  maxTokens: number,
): Promise<number | 'ok'> {
  const request = parseCompletionBody('completion', {
    model,
    prompt: 'abcd'.repeat(promptTokens),
    max_tokens: maxTokens,
  });
  return new Promise((resolve) => {
    const sink: GenerationSink = {
      onText() {},
      onFinish(_reason, usage) {
        assert.equal(usage.promptTokens, promptTokens);
        resolve('ok');
      },
      onError(error) {
        resolve((error as { status?: number }).status ?? -1);
      },
    };
    b.generate({ id: `p${promptTokens}-m${maxTokens}`, request, signal: new AbortController().signal }, sink);
  });
}
