/**
 * End-to-end: wire gaps with vLLM that the clients QA found (notes of tasks I and I3, stop 25),
 * each request here as the client sent it, through the gateway.
 *
 * - Stream chunk shape: vLLM's chat and completions streams put `finish_reason` on the chunk of the
 *   last token (vllm/entrypoints/openai/serving_chat.py, serving_completion.py: one chunk per engine
 *   output, the finishing output's carrying it), then, with `stream_options.include_usage`, one
 *   chunk with `"choices": []` and the usage. The built-in engines sent the finish in an extra empty
 *   chunk after the last token (a `vllm bench serve` client then records one ~0 ITL too many).
 * - `priority` outside +-1,000,000: vLLM's `priority: int` takes any integer; the gateway refused it
 *   with 400. Now relayed as sent, and clamped for the gateway's own queue ordering.
 * - Completions `max_tokens: 0` with `echo: true`: vLLM's "echo without generation" (the prompt comes
 *   back, e.g. for prompt logprobs); the gateway refused it. Now relayed to real backends; a
 *   built-in engine refuses `echo` by name (it does not implement it); without `echo`, 0 is still a
 *   400 naming max_tokens and saying why.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post, simAndRecorder, sseData } from './support/cluster.ts';

/** The model the recorder serves (a `vllm` backend: bodies go to it unchanged). */
const REAL = 'real-model';
const wire = simAndRecorder(REAL);

interface Chunk {
  readonly choices: {
    readonly finish_reason: string | null;
    readonly text?: string;
    readonly delta?: { readonly role?: string; readonly content?: string };
  }[];
  readonly usage?: { readonly completion_tokens: number } | null;
}

function chunksOf(text: string): { chunks: Chunk[]; done: boolean } {
  const data = sseData(text);
  const done = data.at(-1) === '[DONE]';
  return { chunks: data.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d) as Chunk), done };
}

describe('a sim engine stream, as vLLM sends it', () => {
  for (const kind of ['chat', 'completions'] as const) {
    it(`${kind}: finish_reason on the last token's chunk, then the usage chunk`, async () => {
      const maxTokens = 5;
      const body =
        kind === 'chat'
          ? `{"model": "${MODEL}", "messages": [{"role": "user", "content": "Hello there"}], "max_completion_tokens": ${maxTokens}, "stream": true, "stream_options": {"include_usage": true}}`
          : `{"model": "${MODEL}", "prompt": "Once upon a time", "max_tokens": ${maxTokens}, "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true}`;
      const reply = await post(
        wire.gw.url,
        kind === 'chat' ? '/v1/chat/completions' : '/v1/completions',
        body,
      );
      assert.equal(reply.status, 200, reply.text);
      const { chunks, done } = chunksOf(reply.text);
      assert.ok(done);
      const withChoices = chunks.filter((c) => c.choices.length > 0);
      // Chat: the role chunk, then one per token; completions: one per token.
      const tokenChunks = kind === 'chat' ? withChoices.slice(1) : withChoices;
      if (kind === 'chat') assert.equal(withChoices[0]?.choices[0]?.delta?.role, 'assistant');
      assert.equal(tokenChunks.length, maxTokens, reply.text);
      for (const c of tokenChunks) {
        const choice = c.choices[0]!;
        const text = kind === 'chat' ? choice.delta?.content : choice.text;
        assert.ok(
          typeof text === 'string' && text.length > 0,
          `every token chunk has text: ${JSON.stringify(c)}`,
        );
      }
      assert.deepEqual(
        withChoices.map((c) => c.choices[0]?.finish_reason),
        [...Array<null>(withChoices.length - 1).fill(null), 'length'],
      );
      const last = chunks.at(-1)!;
      assert.deepEqual(last.choices, []);
      assert.equal(last.usage?.completion_tokens, maxTokens);
    });
  }
});

describe('priority outside +-1,000,000 (vLLM: any int)', () => {
  for (const priority of ['5000000', '-9223372036854775808', '9223372036854775807']) {
    it(`priority ${priority}: relayed unchanged to a real backend, served by a sim engine`, async () => {
      const body = `{"model": "${REAL}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "priority": ${priority}}`;
      const real = await post(wire.gw.url, '/v1/chat/completions', body);
      assert.equal(real.status, 200, real.text);
      assert.equal(wire.upstream.received.at(-1)?.body, body);

      const sim = await post(
        wire.gw.url,
        '/v1/completions',
        `{"model": "${MODEL}", "prompt": "hi", "max_tokens": 3, "priority": ${priority}}`,
      );
      assert.equal(sim.status, 200, sim.text);
    });
  }

  it('a priority that is not an integer is still refused naming it', async () => {
    const reply = await post(
      wire.gw.url,
      '/v1/chat/completions',
      `{"model": "${REAL}", "messages": [{"role": "user", "content": "hi"}], "priority": 1.5}`,
    );
    assert.equal(reply.status, 400);
    assert.equal(assertErrorBody(reply.text, reply.status).error.param, 'priority');
  });
});

describe('completions max_tokens 0 with echo (vLLM: echo without generation)', () => {
  it('relayed unchanged to a real backend', async () => {
    const body = `{"model": "${REAL}", "prompt": "The capital of France is", "max_tokens": 0, "echo": true, "logprobs": 1}`;
    const reply = await post(wire.gw.url, '/v1/completions', body);
    assert.equal(reply.status, 200, reply.text);
    assert.equal(wire.upstream.received.at(-1)?.body, body);
  });

  it('a sim engine refuses echo by name (not implemented there)', async () => {
    const reply = await post(
      wire.gw.url,
      '/v1/completions',
      `{"model": "${MODEL}", "prompt": "The capital of France is", "max_tokens": 0, "echo": true}`,
    );
    assert.equal(reply.status, 400, reply.text);
    const e = assertErrorBody(reply.text, reply.status);
    assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
    assert.equal(e.error.param, 'echo');
  });

  it('without echo, 0 is refused naming max_tokens and saying why', async () => {
    for (const echo of ['', ', "echo": false']) {
      const reply = await post(
        wire.gw.url,
        '/v1/completions',
        `{"model": "${REAL}", "prompt": "hi", "max_tokens": 0${echo}}`,
      );
      assert.equal(reply.status, 400, reply.text);
      const e = assertErrorBody(reply.text, reply.status);
      assert.equal(e.error.param, 'max_tokens');
      assert.match(e.error.message, /0 only with "echo": true/);
    }
  });

  it('chat max_tokens 0 stays refused (vLLM refuses it too)', async () => {
    const reply = await post(
      wire.gw.url,
      '/v1/chat/completions',
      `{"model": "${REAL}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0, "echo": true}`,
    );
    assert.equal(reply.status, 400, reply.text);
    assert.equal(assertErrorBody(reply.text, reply.status).error.param, 'max_tokens');
  });
});
