/**
 * End-to-end: a completions prompt given as token ids with one outside the model's vocabulary
 * (llama-3.1-8b: 128,256 tokens, the catalogue's vocabSize) is refused 400 SY_ERR_INVALID_ARGUMENT
 * naming `prompt`, in vLLM's words ("Token id X is out of vocabulary", a 400 from its OpenAI
 * server), by the sim engine reached directly and through the gateway, streamed or not, first
 * prompt of a list or a later one. The sim engine served `[1e15]` and `[128256]` (R1). The last id
 * of the vocabulary is still served.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

/** llama-3.1-8b's vocabulary (src/model/models.ts). */
const VOCAB = 128_256;
const setup = simGateway();

async function refused(base: string, prompt: unknown, id: number, extra: object = {}): Promise<void> {
  const reply = await post(base, '/v1/completions', { model: MODEL, prompt, max_tokens: 2, ...extra });
  const what = `${base} ${JSON.stringify(prompt)} ${JSON.stringify(extra)}`;
  assert.equal(reply.status, 400, `${what}: ${reply.text}`);
  const e = assertErrorBody(reply.text, reply.status, what);
  assert.equal(e.error.code, 'SY_ERR_INVALID_ARGUMENT', what);
  assert.equal(e.error.param, 'prompt', what);
  assert.match(e.error.message, new RegExp(`^Token id ${id} is out of vocabulary`), what);
}

it('the sim engine refuses a prompt token id past its vocabulary', async () => {
  await refused(setup.engine.url, [VOCAB], VOCAB);
  await refused(setup.engine.url, [1, 2, 1e15], 1e15);
  await refused(setup.engine.url, [5, VOCAB + 7], VOCAB + 7, { stream: true });
  await refused(
    setup.engine.url,
    [
      [1, 2],
      [3, VOCAB],
    ],
    VOCAB,
  );
});

it('through the gateway the client gets the same 400', async () => {
  await refused(setup.gw.url, [VOCAB], VOCAB);
});

it('the last id of the vocabulary is served', async () => {
  const reply = await post(setup.engine.url, '/v1/completions', {
    model: MODEL,
    prompt: [0, VOCAB - 1],
    max_tokens: 2,
  });
  assert.equal(reply.status, 200, reply.text);
});
