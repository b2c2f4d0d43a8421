/**
 * End-to-end: how the real llama engine samples, as a client behind the gateway sees it (task A of
 * stop 28, the live path reviewed as unseen clients use it).
 *
 * - Without a `seed`, node-llama-cpp seeds its sampler with the current second. So `n: 4` at
 *   temperature 1 answered four identical choices, and every request of that second with the same
 *   prompt the same text: a client asking for several samples (self-consistency, best-of) got one.
 *   vLLM's unseeded requests each draw from its generator. The engine now gives every unseeded
 *   generation a fresh random seed (src/engine-servers/llama/llama-backend.ts).
 * - node-llama-cpp clamps a negative seed to 0, so seeds -1 and -2 (vLLM takes any int64) sampled
 *   alike. A seed is now taken modulo 2^32.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { post } from './support/cluster.ts';
import { LLAMA_MODEL, llamaGateway } from './support/llama.ts';

const llama = llamaGateway();

interface ChatAnswer {
  choices: { index: number; message: { content: string } }[];
  usage: { completion_tokens: number };
}

/** A chat answer at temperature 1 to one fixed prompt, with the body fields in `extra`. */
async function chat(extra: string): Promise<ChatAnswer> {
  const body = `{"model":"${LLAMA_MODEL}","messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":16,"temperature":1${extra}}`;
  const reply = await post(llama.gw.url, '/v1/chat/completions', body);
  assert.equal(reply.status, 200, reply.text);
  return JSON.parse(reply.text) as ChatAnswer;
}

const texts = (a: ChatAnswer): string[] => a.choices.map((c) => c.message.content);

describe('llama sampling without a seed', () => {
  it('n=4 answers four different samples', async () => {
    // ignore_eos: an unseeded sample may draw end-of-generation early; the count must not depend on it.
    const answer = await chat(',"n":4,"ignore_eos":true');
    assert.deepEqual(
      answer.choices.map((c) => c.index),
      [0, 1, 2, 3],
    );
    assert.equal(answer.usage.completion_tokens, 64);
    const samples = texts(answer);
    assert.equal(new Set(samples).size, 4, `four samples, not copies: ${JSON.stringify(samples)}`);
  });

  it('the same request sent three times at once gets three different samples', async () => {
    const answers = await Promise.all([0, 1, 2].map(() => chat('')));
    const samples = answers.map((a) => texts(a)[0] as string);
    assert.equal(new Set(samples).size, 3, JSON.stringify(samples));
  });
});

describe('llama sampling with a seed', () => {
  it('a seed repeats its sample; seeds -1 and -2 differ', async () => {
    // One after the other: two sequences evaluated in one batch need not sample bit for bit alike.
    const a = await chat(',"seed":-1');
    const b = await chat(',"seed":-1');
    assert.deepEqual(texts(a), texts(b), 'the same seed, the same text');
    const other = await chat(',"seed":-2');
    assert.notDeepEqual(texts(other), texts(a), 'seeds -1 and -2 sample differently');
  });

  it('n=3 with a seed gives three different samples, the same three again', async () => {
    const first = texts(await chat(',"n":3,"seed":7'));
    assert.equal(new Set(first).size, 3, JSON.stringify(first));
    assert.deepEqual(texts(await chat(',"n":3,"seed":7')), first);
  });
});
