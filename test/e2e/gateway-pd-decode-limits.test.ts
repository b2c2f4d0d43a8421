/**
 * End-to-end: a sim P/D decode engine checks the whole request, as vLLM's decode engine does and as
 * the twin models it. For each protocol (vLLM's and SGLang's), one prefill and two decode sim engines
 * of Llama-2-7B (4,096-token context), one decode with a 64-block KV cache, each decode behind its
 * own in-process gateway. Each case is sent through the gateway's P/D flow and, as a plain request,
 * to the same decode engine (the colocated sim engine's answer): the two must agree.
 *
 * - A prompt of 4,000 tokens plus max_tokens 200 is past the context: 400, the same error; the
 *   decode reads no KV, so the prefill engine frees it at its release timeout. The twin's P/D run
 *   fails the same request as the engine's 400.
 * - 900 + 400 tokens need 82 KV blocks: past the 64-block decode engine, 400, the same error, and the
 *   twin fails it too.
 * - Without max_tokens, the output gets what the context leaves after the whole prompt.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { DEFAULT_ENGINE_CONFIG } from '../../src/engine-core/types.ts';
import { type Gateway, startGateway } from '../../src/gateway/index.ts';
import { createRoutingPolicy } from '../../src/policies/routing/registry.ts';
import { runSimulation } from '../../src/twin/simulator.ts';
import { makeTwinRequest } from '../../src/workload/common.ts';
import { type SimEngine, startSims, Teardown } from './support/cluster.ts';
import { json, pdStats, untilInService, untilReleasedOnTimeout } from './support/pd.ts';

const MODEL = 'llama-2-7b';
const BLOCKS = 64;
const RELEASE_MS = 1500;
/** The sim engine counts 4 characters a token. */
const prompt = (tokens: number): string => 'abcd'.repeat(tokens);

const teardown = new Teardown();
after(() => teardown.run());

/** A gateway with one prefill and one decode backend of `protocol`. */
async function pdGateway(
  protocol: 'vllm' | 'sglang',
  prefill: SimEngine,
  decode: SimEngine,
): Promise<Gateway> {
  const backend = (id: string, role: 'prefill' | 'decode', e: SimEngine) => ({
    id,
    type: 'sim' as const,
    url: e.url,
    models: [MODEL],
    role,
    pdProtocol: protocol,
  });
  const gw = await startGateway(
    {
      port: 0,
      backends: [backend('p0', 'prefill', prefill), backend('d0', 'decode', decode)],
      routing: { policy: 'round-robin' },
    },
    { log: () => {} },
  );
  teardown.add(() => gw.close());
  await untilInService(gw.url, ['p0', 'd0']);
  return gw;
}

const post = (body: Record<string, unknown>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: MODEL, ...body }),
});

/** The twin's P/D run of one request on Llama-2-7B (decode blocks as given): its failures by reason. */
function twinFailures(inputTokens: number, outputTokens: number, blocks?: number): Record<string, number> {
  return runSimulation(
    [makeTwinRequest({ id: 'r', inputTokens, trueOutputTokens: outputTokens, arrivalMs: 0 })],
    {
      seed: 1,
      cluster: { groups: [{ count: 2, gpu: 'h100', model: MODEL, tp: 1 }] },
      engine:
        blocks === undefined
          ? DEFAULT_ENGINE_CONFIG
          : { ...DEFAULT_ENGINE_CONFIG, numGpuBlocksOverride: blocks },
      policy: createRoutingPolicy('round-robin'),
      pd: {
        prefillInstances: 1,
        decodeInstances: 1,
        link: 'ib-400',
        decodePolicy: createRoutingPolicy('round-robin'),
      },
      slo: { ttftMs: 2000, tpotMs: 100 },
      workload: 'test',
    },
  ).summary.failedByReason as Record<string, number>;
}

for (const protocol of ['vllm', 'sglang'] as const) {
  describe(`a ${protocol} sim P/D decode checks the whole request`, { timeout: 120_000 }, () => {
    let started: { prefill: SimEngine; decode: SimEngine; small: SimEngine; gw: Gateway; gwSmall: Gateway };
    const setup = async (): Promise<typeof started> => {
      if (started !== undefined) return started;
      const engine = [
        '--time-scale',
        '0.05',
        '--kv-events',
        'none',
        '--model',
        MODEL,
        '--pd-protocol',
        protocol,
      ];
      const p = await startSims(
        1,
        [...engine, '--pd-role', 'prefill', '--kv-release-timeout-ms', String(RELEASE_MS)],
        teardown,
      );
      const d = await startSims(1, [...engine, '--pd-role', 'decode', '--kv-link-gbps', '400'], teardown);
      const s = await startSims(
        1,
        [
          ...engine,
          '--pd-role',
          'decode',
          '--kv-link-gbps',
          '400',
          '--num-gpu-blocks-override',
          String(BLOCKS),
        ],
        teardown,
      );
      const prefill = p.engines[0] as SimEngine;
      const decode = d.engines[0] as SimEngine;
      const small = s.engines[0] as SimEngine;
      started = {
        prefill,
        decode,
        small,
        gw: await pdGateway(protocol, prefill, decode),
        gwSmall: await pdGateway(protocol, prefill, small),
      };
      return started;
    };

    it("refuses a prompt plus max_tokens past the context as the engine alone does, and the prefill's KV times out", async () => {
      const { prefill, decode, gw } = await setup();
      const body = post({ prompt: prompt(4000), max_tokens: 200 });
      const alone = await json(`${decode.url}/v1/completions`, body);
      assert.equal(alone.status, 400, JSON.stringify(alone.body));
      const before = await pdStats(prefill.url);
      const r = await json(`${gw.url}/v1/completions`, body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.deepEqual(
        r.body['error'],
        alone.body['error'],
        'the colocated engine refusal, code and message',
      );
      // No decode read the KV: the prefill engine frees it at its release timeout.
      await untilReleasedOnTimeout(prefill.url, before, RELEASE_MS);
      const after = await pdStats(prefill.url);
      assert.equal(after['releasedCollected'], before['releasedCollected'], 'the decode read no KV');
      assert.equal(after['heldTransfers'], 0);
      assert.deepEqual(twinFailures(4000, 200), { upstream_4xx: 1 }, 'the twin refuses it too');
    });

    it('refuses a request whose KV could never fit the decode cache as the engine alone does', async () => {
      const { small, gwSmall } = await setup();
      const body = post({ prompt: prompt(900), max_tokens: 400 });
      const alone = await json(`${small.url}/v1/completions`, body);
      assert.equal(alone.status, 400, JSON.stringify(alone.body));
      const r = await json(`${gwSmall.url}/v1/completions`, body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.deepEqual(r.body['error'], alone.body['error']);
      assert.deepEqual(twinFailures(900, 400, BLOCKS), { upstream_4xx: 1 }, 'the twin refuses it too');
      // A request that fits is served through the same engines (the refusal is the request's).
      const fits = await json(
        `${gwSmall.url}/v1/completions`,
        post({ prompt: prompt(600), max_tokens: 200 }),
      );
      assert.equal(fits.status, 200, JSON.stringify(fits.body));
    });

    it('without max_tokens, gives the output what the context leaves after the whole prompt', async () => {
      const { decode, gw } = await setup();
      const body = post({ messages: [{ role: 'user', content: prompt(4000) }] });
      const alone = await json(`${decode.url}/v1/chat/completions`, body);
      assert.equal(alone.status, 200, JSON.stringify(alone.body));
      const usage = alone.body['usage'] as { prompt_tokens: number; completion_tokens: number };
      assert.equal(usage.prompt_tokens + usage.completion_tokens, 4096, JSON.stringify(usage));
      const r = await json(`${gw.url}/v1/chat/completions`, body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const pd = r.body['usage'] as { prompt_tokens: number; completion_tokens: number };
      assert.deepEqual(
        [pd.prompt_tokens, pd.completion_tokens],
        [usage.prompt_tokens, usage.completion_tokens],
      );
    });
  });
}
