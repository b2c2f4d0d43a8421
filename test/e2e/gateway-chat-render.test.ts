/**
 * End-to-end: vLLM's chat rendering fields on the built-in engines, through the gateway (task A of
 * stop 28, the live path reviewed as unseen clients use it).
 *
 * `continue_final_message: true` (with `add_generation_prompt: false`) is how a vLLM client
 * "prefills" the answer: the last assistant message is left open and the model continues it. The
 * llama engine ignored both fields and always rendered a fresh assistant turn, so the client's
 * prefix was not continued; both true (a contradiction vLLM refuses) and non-boolean values were
 * served. The llama engine now renders the prompt by them, and the sim and llama engines refuse the
 * contradiction and wrong types with 400 naming the field (src/engine-servers/vllm-extras.ts,
 * llama/llama-backend.ts `chatPrompt`). The check: a greedy chat answer equals the greedy
 * completion of the prompt the engine renders (`<|role|>\ncontent\n` per message, then
 * `<|assistant|>\n` unless told otherwise).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  MODEL,
  post,
  simAndRecorder,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';
import {
  LLAMA_MODEL,
  type LlamaEngine,
  startLlamaEngine,
  stopLlamaEngines,
  tinyLlamaModel,
} from './support/llama.ts';

const wire = simAndRecorder('real-model');
const local = new Teardown();
let llama: LlamaEngine | undefined;
let lgw: TestGateway;

before(async () => {
  llama = await startLlamaEngine(['--model', tinyLlamaModel()]);
  lgw = await startTestGateway(
    { backends: [{ id: 'l0', type: 'llama', url: llama.url, models: [LLAMA_MODEL] }] },
    local,
  );
});

after(async () => {
  await local.run();
  await stopLlamaEngines([llama]);
});

const MESSAGES = [
  { role: 'user', content: 'Tell me a story' },
  { role: 'assistant', content: 'Once upon a time' },
];
/** The messages as the built-in engines render them. */
const RENDERED = '<|user|>\nTell me a story\n<|assistant|>\nOnce upon a time\n';

interface Answer {
  text: string;
  promptTokens: number;
}

async function chat(extra: Record<string, unknown>): Promise<Answer> {
  const body = { model: LLAMA_MODEL, messages: MESSAGES, max_tokens: 12, temperature: 0, ...extra };
  const reply = await post(lgw.url, '/v1/chat/completions', JSON.stringify(body));
  assert.equal(reply.status, 200, reply.text);
  const a = JSON.parse(reply.text) as {
    choices: { message: { content: string } }[];
    usage: { prompt_tokens: number };
  };
  return { text: a.choices[0]?.message.content ?? '', promptTokens: a.usage.prompt_tokens };
}

async function completion(prompt: string): Promise<Answer> {
  const body = { model: LLAMA_MODEL, prompt, max_tokens: 12, temperature: 0 };
  const reply = await post(lgw.url, '/v1/completions', JSON.stringify(body));
  assert.equal(reply.status, 200, reply.text);
  const a = JSON.parse(reply.text) as { choices: { text: string }[]; usage: { prompt_tokens: number } };
  return { text: a.choices[0]?.text ?? '', promptTokens: a.usage.prompt_tokens };
}

describe('chat rendering fields', { timeout: 120_000 }, () => {
  it('llama: continue_final_message continues the last message', async () => {
    const continued = await chat({ continue_final_message: true, add_generation_prompt: false });
    assert.deepEqual(continued, await completion(RENDERED.slice(0, -1)));
    // Without add_generation_prompt: false too, as vLLM's validator reads an absent field.
    assert.deepEqual(await chat({ continue_final_message: true }), continued);
  });

  it('llama: add_generation_prompt false renders no assistant cue; the default does', async () => {
    assert.deepEqual(await chat({ add_generation_prompt: false }), await completion(RENDERED));
    const cued = await completion(`${RENDERED}<|assistant|>\n`);
    assert.deepEqual(await chat({}), cued);
    assert.deepEqual(await chat({ add_generation_prompt: true, continue_final_message: false }), cued);
  });

  it('both true, or a value that is not a boolean, is 400 naming the field (sim and llama)', async () => {
    const cases = [
      [{ continue_final_message: true, add_generation_prompt: true }, 'continue_final_message'],
      [{ add_generation_prompt: 'no' }, 'add_generation_prompt'],
      [{ continue_final_message: 1 }, 'continue_final_message'],
    ] as const;
    for (const [url, model] of [
      [wire.gw.url, MODEL],
      [lgw.url, LLAMA_MODEL],
    ] as const) {
      for (const [extra, param] of cases) {
        const body = { model, messages: MESSAGES, max_tokens: 2, ...extra };
        const reply = await post(url, '/v1/chat/completions', JSON.stringify(body));
        assert.equal(reply.status, 400, `${model} ${JSON.stringify(extra)}: ${reply.text}`);
        assert.equal(assertErrorBody(reply.text, 400).error.param, param);
      }
    }
  });

  it('a completions body carrying the chat fields is served (vLLM has them on chat only)', async () => {
    const cases = [
      { continue_final_message: true, add_generation_prompt: true },
      { add_generation_prompt: 'no', continue_final_message: 1 },
    ];
    for (const [url, model] of [
      [wire.gw.url, MODEL],
      [lgw.url, LLAMA_MODEL],
    ] as const) {
      for (const extra of cases) {
        const body = { model, prompt: 'Hello', max_tokens: 2, ...extra };
        const reply = await post(url, '/v1/completions', JSON.stringify(body));
        assert.equal(reply.status, 200, `${model} ${JSON.stringify(extra)}: ${reply.text}`);
        assert.equal(JSON.parse(reply.text).object, 'text_completion');
      }
    }
  });
});
