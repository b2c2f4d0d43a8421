/**
 * End-to-end: vLLM's `min_tokens` (genai-perf's way to fix output lengths) through both P/D flows,
 * vLLM's and SGLang's, each on one prefill and one decode `sim` engine behind `switchyard serve`.
 * A prefill leg makes one token (the gateway's for vLLM, the prefill engine's own for SGLang), so
 * its `min_tokens` is lowered to 1 (vLLM refuses one past max_tokens); the decode engine honours
 * the client's, holding its stop strings back as a sim engine outside a pair does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chat, json, simPdCluster } from './support/pd.ts';

interface Answer {
  choices: { finish_reason: string }[];
  usage: { completion_tokens: number };
}

for (const protocol of ['vllm', 'sglang'] as const) {
  const cluster = simPdCluster({ protocol, prefills: 1, decodes: 1, releaseMs: 1500 });

  /** A chat of 12 tokens at most that a space ends (every filler token has one), with `extra`. */
  const ask = async (extra: Record<string, unknown>): Promise<Answer> => {
    const r = await json(
      `${cluster.serve.url}/v1/chat/completions`,
      chat({ seed: 5, stop: [' '], ...extra }),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as unknown as Answer;
  };

  describe(`vLLM's min_tokens through ${protocol} P/D`, { timeout: 60_000 }, () => {
    it('is served: the decode holds the stop string back until min_tokens, the prefill leg is not refused', async () => {
      const free = await ask({});
      assert.equal(free.choices[0]?.finish_reason, 'stop');
      assert.ok(free.usage.completion_tokens < 6, JSON.stringify(free));
      const held = await ask({ min_tokens: 6 });
      assert.ok(held.usage.completion_tokens > 6, JSON.stringify(held));
      // genai-perf's fixed length: min_tokens = max_tokens.
      const fixed = await ask({ min_tokens: 12, ignore_eos: true });
      assert.deepEqual([fixed.usage.completion_tokens, fixed.choices[0]?.finish_reason], [12, 'length']);
    });
  });
}
