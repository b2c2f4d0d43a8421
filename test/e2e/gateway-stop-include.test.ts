/**
 * End-to-end: vLLM's `include_stop_str_in_output` on the built-in engines, through the gateway (task
 * A of stop 28, the live path reviewed as unseen clients use it).
 *
 * A client that sends `"include_stop_str_in_output": true` (vLLM's extra, through the SDKs'
 * `extra_body`) reads the stop string at the end of the text, as vLLM writes it. Both built-in
 * engines ignored the field: the text was cut before the stop string, streamed or not, and a wrong
 * value (`"yes"`) was served. Both keep the stop string now, and a value that is not a boolean is
 * 400 naming the field (src/engine-servers/vllm-extras.ts, sim/sim-backend.ts, llama/llama-backend.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post, simAndRecorder } from './support/cluster.ts';
import { LLAMA_MODEL, llamaGateway } from './support/llama.ts';

const wire = simAndRecorder('real-model');
const llama = llamaGateway();

interface Choice {
  text: string;
  finish_reason: string;
  stop_reason: string | null;
}

/** A greedy completion's choice (streamed chunks joined), the body fields in `extra`. */
async function complete(url: string, model: string, extra: Record<string, unknown>): Promise<Choice> {
  const body: Record<string, unknown> = {
    model,
    prompt: 'Once upon a time',
    max_tokens: 24,
    temperature: 0,
    ...extra,
  };
  const reply = await post(url, '/v1/completions', JSON.stringify(body));
  assert.equal(reply.status, 200, reply.text);
  if (body['stream'] !== true) return (JSON.parse(reply.text) as { choices: Choice[] }).choices[0] as Choice;
  const chunks = reply.text
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)) as { choices: Choice[] });
  const last = chunks.at(-1)?.choices[0] as Choice;
  return { ...last, text: chunks.map((c) => c.choices[0]?.text ?? '').join('') };
}

/** Checks `include_stop_str_in_output` against the full greedy text of `model` at `url`. */
async function checkIncluded(url: string, model: string): Promise<void> {
  const full = (await complete(url, model, {})).text;
  // A stop string from the middle of the text: the answer must end there.
  const stop = full.slice(4, 7);
  const at = full.indexOf(stop);
  for (const stream of [false, true]) {
    const cut = await complete(url, model, { stop: [stop], stream });
    assert.equal(cut.text, full.slice(0, at), `stream ${stream}: cut before the stop string`);
    assert.equal(cut.finish_reason, 'stop');
    const kept = await complete(url, model, { stop: [stop], stream, include_stop_str_in_output: true });
    assert.equal(kept.text, full.slice(0, at + stop.length), `stream ${stream}: the stop string kept`);
    assert.equal(kept.finish_reason, 'stop');
    if (!stream) assert.equal(kept.stop_reason, stop);
    const off = await complete(url, model, { stop: [stop], stream, include_stop_str_in_output: false });
    assert.equal(off.text, cut.text, `stream ${stream}: false is the default`);
  }
}

describe('include_stop_str_in_output', { timeout: 120_000 }, () => {
  it('sim: the stop string stays in the text, streamed or not', async () => {
    await checkIncluded(wire.gw.url, MODEL);
  });

  it('llama: the stop string stays in the text, streamed or not', async () => {
    await checkIncluded(llama.gw.url, LLAMA_MODEL);
  });

  it('a value that is not a boolean is 400 naming the field', async () => {
    for (const url of [wire.gw.url, llama.gw.url]) {
      const model = url === llama.gw.url ? LLAMA_MODEL : MODEL;
      const body = { model, prompt: 'hi', max_tokens: 2, stop: ['x'], include_stop_str_in_output: 'yes' };
      const reply = await post(url, '/v1/completions', JSON.stringify(body));
      assert.equal(reply.status, 400, reply.text);
      const e = assertErrorBody(reply.text, 400);
      assert.equal(e.error.param, 'include_stop_str_in_output');
    }
  });
});
