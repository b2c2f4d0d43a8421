/**
 * End-to-end: more clients the project had not met, against a live gateway (notes of task I, stop
 * 26: the openai Node SDK, LangChain, httpx/requests, and vLLM's extra fields sent through the
 * SDKs' `extra_body`), each request here byte for byte as the client sent it.
 *
 * - vLLM's structured-output and token-level fields (`guided_json`, `guided_choice`,
 *   `structured_outputs`, `prompt_logprobs`, `bad_words`, `return_token_ids`, ...) were silently
 *   ignored by the built-in engines: `extra_body={"guided_json": schema}` got free text a client
 *   then fails to parse as JSON, while `response_format` was already refused. They are refused now
 *   with 400 SY_ERR_UNSUPPORTED_PARAMETER naming the field (src/engine-servers/vllm-extras.ts); a
 *   (stop 34: `guided_json`, `guided_choice` and `structured_outputs` json/choice are served now,
 *   test/e2e/engine-structured-output.test.ts; the cases here are the regex and grammar fields) a
 *   real backend (a recorder standing for vLLM) still gets the bytes unchanged, and a field that
 *   asks for nothing (null, an empty list, structured_outputs without a constraint) is served.
 * - vLLM's sampling extras `top_k`, `min_p` and `repetition_penalty` were ignored by the llama engine
 *   (and wrong values such as `"top_k": "x"` or `"min_p": 2` served by both built-in engines, where
 *   vLLM answers 400). The llama engine applies them now (node-llama-cpp's topK, minP and repeat
 *   penalty over the prompt and output, as vLLM's), and a wrong value is 400 naming the field.
 * - LangChain's `OpenAI` (and `VLLMOpenAI`) sends `batch()` / `generate()` as ONE completions request
 *   with `"prompt": [...]` (up to 20 prompts); the built-in engines refused any list of more than one
 *   prompt. They serve it now as vLLM does: one generation per prompt, `choices[i]` with index i
 *   answering `prompt[i]`, usage summed (streamed lists are still refused, naming `prompt`). The
 *   same for `n` > 1 (the openai SDKs' `n=2`, LangChain's `ChatOpenAI(n=2)`), which was refused:
 *   choice k = prompt x n + j, each prompt's tokens counted once in usage, as vLLM's.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assertErrorBody,
  MODEL,
  metricSum,
  post,
  simAndRecorder,
  sseData,
  until,
} from './support/cluster.ts';
import { LLAMA_MODEL, llamaGateway } from './support/llama.ts';

/** The model the recorder serves (a `vllm` backend: bodies go to it unchanged). */
const REAL = 'real-model';
const wire = simAndRecorder(REAL);

/** Bodies as the openai Python SDK 2.x writes them for `create(..., extra_body={...})`. */
interface Usage {
  readonly completion_tokens: number;
}

const PY_CHAT = (model: string, extra: string): string =>
  `{"messages":[{"role":"user","content":"hi"}],"model":"${model}","max_tokens":4,${extra}}`;
const PY_COMPLETION = (model: string, extra: string): string =>
  `{"model":"${model}","prompt":"Once upon","max_tokens":4,${extra}}`;

/** A refused field's case: a body for a model on `path`, and the field the 400 names. */
interface RefusedCase {
  readonly path: string;
  readonly body: (model: string) => string;
  readonly param: string;
}

/** Cases on `path`: `extra` in the SDK's chat or completions body, the 400 naming `param`. */
const refusedIn =
  (path: '/v1/chat/completions' | '/v1/completions') =>
  (param: string, extra: string): RefusedCase => ({
    path,
    body: (m) => (path === '/v1/completions' ? PY_COMPLETION(m, extra) : PY_CHAT(m, extra)),
    param,
  });
const inChat = refusedIn('/v1/chat/completions');
const inCompletion = refusedIn('/v1/completions');

const REFUSED: readonly RefusedCase[] = [
  inChat('guided_regex', '"guided_regex":"[a-z]+"'),
  inChat('structured_outputs', '"structured_outputs":{"regex":"[a-z]+"}'),
  inChat('prompt_logprobs', '"prompt_logprobs":0'),
  inCompletion('guided_grammar', '"guided_grammar":"root ::= \\"a\\""'),
  inCompletion('bad_words', '"bad_words":["the"]'),
  inCompletion('return_token_ids', '"return_token_ids":true'),
  inChat('chat_template', '"chat_template":"{{ messages[0].content }}"'),
];

describe("vLLM's extra fields a built-in engine cannot honour", () => {
  for (const { path, body, param } of REFUSED) {
    it(`${param} on ${path}: refused naming it; a real backend gets the bytes`, async () => {
      const sim = await post(wire.gw.url, path, body(MODEL));
      assert.equal(sim.status, 400, sim.text);
      const e = assertErrorBody(sim.text, 400);
      assert.equal(e.error.code, 'SY_ERR_UNSUPPORTED_PARAMETER');
      assert.equal(e.error.param, param);
      assert.match(e.error.message, new RegExp(`'${param}' is not supported by the built-in engines`));

      const bytes = body(REAL);
      const real = await post(wire.gw.url, path, bytes);
      assert.equal(real.status, 200, real.text);
      assert.equal(wire.upstream.received.at(-1)?.body, bytes);
    });
  }

  it('a stream asking for guided_regex is refused before any chunk', async () => {
    const reply = await post(
      wire.gw.url,
      '/v1/chat/completions',
      PY_CHAT(MODEL, '"stream":true,"guided_regex":"[a-z]+"'),
    );
    assert.equal(reply.status, 400, reply.text);
    assert.equal(assertErrorBody(reply.text, 400).error.param, 'guided_regex');
  });

  it('fields that ask for nothing are served', async () => {
    const extras =
      '"guided_json":null,"bad_words":[],"prompt_logprobs":null,"return_token_ids":false,' +
      '"structured_outputs":{"json":null,"disable_any_whitespace":true},"chat_template":null,' +
      '"top_k":5,"min_p":0.1,"repetition_penalty":1.1,"chat_template_kwargs":{"enable_thinking":false}';
    const chat = await post(wire.gw.url, '/v1/chat/completions', PY_CHAT(MODEL, extras));
    assert.equal(chat.status, 200, chat.text);
    const stream = await post(
      wire.gw.url,
      '/v1/completions',
      PY_COMPLETION(MODEL, `"stream":true,${extras}`),
    );
    assert.equal(stream.status, 200, stream.text);
    assert.equal(sseData(stream.text).at(-1), '[DONE]');
  });
});

/** LangChain 1.x `OpenAI(...).batch(["a", "b"])`: its body, byte for byte. */
const LANGCHAIN_BATCH = (model: string): string =>
  `{"model":"${model}","prompt":["a","b"],"frequency_penalty":0,"logprobs":null,"max_tokens":5,"n":1,"presence_penalty":0,"seed":null,"temperature":0.7,"top_p":1}`;

interface ListAnswer {
  readonly object: string;
  readonly choices: readonly { index: number; text: string; finish_reason: string }[];
  readonly usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

describe('a completions prompt list (LangChain OpenAI.batch)', () => {
  it('sim: one choice per prompt, in order, usage summed', async () => {
    const reply = await post(wire.gw.url, '/v1/completions', LANGCHAIN_BATCH(MODEL));
    assert.equal(reply.status, 200, reply.text);
    const answer = JSON.parse(reply.text) as ListAnswer;
    assert.equal(answer.object, 'text_completion');
    assert.deepEqual(
      answer.choices.map((c) => [c.index, c.finish_reason]),
      [
        [0, 'length'],
        [1, 'length'],
      ],
    );
    for (const c of answer.choices) assert.ok(c.text.length > 0);
    assert.equal(answer.usage.completion_tokens, 10);
    assert.equal(answer.usage.total_tokens, answer.usage.prompt_tokens + 10);
  });

  it('sim: lists of token ids too; a streamed list is still refused naming prompt', async () => {
    const ids = await post(
      wire.gw.url,
      '/v1/completions',
      `{"model":"${MODEL}","prompt":[[1,2,3],[4,5],[6]],"max_tokens":2}`,
    );
    assert.equal(ids.status, 200, ids.text);
    const answer = JSON.parse(ids.text) as ListAnswer;
    assert.deepEqual(
      answer.choices.map((c) => c.index),
      [0, 1, 2],
    );
    assert.equal(answer.usage.prompt_tokens, 6);
    const stream = await post(
      wire.gw.url,
      '/v1/completions',
      `{"model":"${MODEL}","prompt":["a","b"],"stream":true}`,
    );
    assert.equal(stream.status, 400, stream.text);
    assert.equal(assertErrorBody(stream.text, 400).error.param, 'prompt');
  });

  it('a real backend gets the bytes unchanged', async () => {
    const bytes = LANGCHAIN_BATCH(REAL);
    const real = await post(wire.gw.url, '/v1/completions', bytes);
    assert.equal(real.status, 200, real.text);
    assert.equal(wire.upstream.received.at(-1)?.body, bytes);
  });
});

describe('n > 1 (openai SDK `n=2`)', () => {
  it('sim chat: two choices, prompt tokens counted once; a seed repeats the pair', async () => {
    const one = JSON.parse(
      (await post(wire.gw.url, '/v1/chat/completions', PY_CHAT(MODEL, '"seed":5'))).text,
    ) as {
      usage: { prompt_tokens: number };
    };
    const texts: string[][] = [];
    for (let k = 0; k < 2; k++) {
      const reply = await post(wire.gw.url, '/v1/chat/completions', PY_CHAT(MODEL, '"n":2,"seed":5'));
      assert.equal(reply.status, 200, reply.text);
      const answer = JSON.parse(reply.text) as {
        object: string;
        choices: { index: number; message: { content: string } }[];
        usage: { prompt_tokens: number; completion_tokens: number };
      };
      assert.equal(answer.object, 'chat.completion');
      assert.deepEqual(
        answer.choices.map((c) => c.index),
        [0, 1],
      );
      assert.equal(answer.usage.prompt_tokens, one.usage.prompt_tokens);
      assert.equal(answer.usage.completion_tokens, 8);
      texts.push(answer.choices.map((c) => c.message.content));
    }
    assert.notEqual(texts[0]![0], texts[0]![1], 'the two samples differ');
    assert.deepEqual(texts[1], texts[0], 'the same seed gives the same pair');
  });

  it('sim: a streamed n=2 is still refused naming n', async () => {
    const reply = await post(wire.gw.url, '/v1/chat/completions', PY_CHAT(MODEL, '"n":2,"stream":true'));
    assert.equal(reply.status, 400, reply.text);
    const e = assertErrorBody(reply.text, 400);
    assert.equal(e.error.param, 'n');
    assert.match(e.error.message, /n=2 is not supported on a stream/);
  });
});

describe("vLLM's sampling extras on the built-in engines", () => {
  const llama = llamaGateway();
  const LLAMA = LLAMA_MODEL;

  /** The text of a llama chat answer to the openai SDK's bytes with `extra`. */
  async function llamaText(extra: string): Promise<string> {
    const body = `{"messages":[{"role":"user","content":"Tell me a story"}],"model":"${LLAMA}","max_tokens":16,${extra}}`;
    const reply = await post(llama.gw.url, '/v1/chat/completions', body);
    assert.equal(reply.status, 200, reply.text);
    return (JSON.parse(reply.text) as { choices: { message: { content: string } }[] }).choices[0]!.message
      .content;
  }

  it('llama: top_k 1 and min_p 1 are greedy whatever the seed', async () => {
    const greedy = await llamaText('"temperature":0');
    const seeded = await Promise.all([1, 2, 3].map((seed) => llamaText(`"seed":${seed}`)));
    assert.ok(new Set(seeded).size > 1 || seeded[0] !== greedy, 'seeds 1-3 sample differently');
    for (const seed of [1, 2, 3]) {
      assert.equal(await llamaText(`"top_k":1,"seed":${seed}`), greedy, `top_k 1, seed ${seed}`);
      assert.equal(await llamaText(`"min_p":1,"seed":${seed}`), greedy, `min_p 1, seed ${seed}`);
    }
  });

  it('llama: repetition_penalty changes a greedy answer; 1 is none', async () => {
    const greedy = await llamaText('"temperature":0');
    assert.equal(await llamaText('"temperature":0,"repetition_penalty":1'), greedy);
    assert.notEqual(await llamaText('"temperature":0,"repetition_penalty":1.9'), greedy);
  });

  /*
   * One sequence, so that each prompt of the list runs alone, as the single requests do: llama.cpp is
   * not batch-invariant (a prompt decoded beside another can take another greedy token on the tiny
   * model's flat logits; a CI run under load saw two of three differ), and what these check is which
   * choice answers which prompt, and that a prompt's n greedy samples agree.
   */
  describe('on an engine that runs one sequence at a time', () => {
    const serial = llamaGateway(['--sequences', '1']);

    it('llama: a prompt list answers each prompt as a request of its own would (greedy)', async () => {
      const one = async (prompt: string): Promise<string> => {
        const r = await post(serial.gw.url, '/v1/completions', {
          model: LLAMA,
          prompt,
          max_tokens: 8,
          temperature: 0,
        });
        assert.equal(r.status, 200, r.text);
        return (JSON.parse(r.text) as ListAnswer).choices[0]!.text;
      };
      const prompts = ['Once upon a time', 'The cat', 'Hello'];
      const reply = await post(serial.gw.url, '/v1/completions', {
        model: LLAMA,
        prompt: prompts,
        max_tokens: 8,
        temperature: 0,
      });
      assert.equal(reply.status, 200, reply.text);
      const answer = JSON.parse(reply.text) as ListAnswer;
      assert.deepEqual(
        answer.choices.map((c) => c.text),
        [await one(prompts[0]!), await one(prompts[1]!), await one(prompts[2]!)],
      );
      assert.equal(answer.usage.completion_tokens, 24);
    });

    it('llama: a prompt list with n=2 orders choices prompt by prompt (greedy)', async () => {
      const reply = await post(serial.gw.url, '/v1/completions', {
        model: LLAMA,
        prompt: ['The cat', 'Hello'],
        n: 2,
        max_tokens: 6,
        temperature: 0,
      });
      assert.equal(reply.status, 200, reply.text);
      const answer = JSON.parse(reply.text) as ListAnswer;
      const texts = answer.choices.map((c) => c.text);
      assert.deepEqual(
        answer.choices.map((c) => c.index),
        [0, 1, 2, 3],
      );
      assert.equal(texts[0], texts[1]);
      assert.equal(texts[2], texts[3]);
      assert.notEqual(texts[0], texts[2]);
      assert.equal(answer.usage.completion_tokens, 24);
    });
  });

  it('llama: a client that leaves stops every generation of its list', async () => {
    const gauge = async (name: string): Promise<number> => {
      const text = await (await fetch(`${llama.engine.url}/metrics`)).text();
      return metricSum(text, name);
    };
    const before = await gauge('vllm:generation_tokens_total');
    const controller = new AbortController();
    const pending = fetch(`${llama.gw.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, prompt: ['a', 'b', 'c'], n: 2, max_tokens: 900 }),
      signal: controller.signal,
    }).catch(() => undefined);
    await until('the list runs', async () => (await gauge('vllm:num_requests_running')) > 0);
    controller.abort();
    await pending;
    await until(
      'every generation stopped',
      async () =>
        (await gauge('vllm:num_requests_running')) === 0 && (await gauge('vllm:num_requests_waiting')) === 0,
    );
    // Six generations of up to 900 tokens: stopped, they made far fewer.
    const made = (await gauge('vllm:generation_tokens_total')) - before;
    assert.ok(made < 900, `${made} tokens generated after the client left`);
  });

  it('llama: one prompt of the list it cannot serve fails the request with its 400', async () => {
    const long = 'word '.repeat(1200);
    const reply = await post(llama.gw.url, '/v1/completions', {
      model: LLAMA,
      prompt: ['hi', long],
      max_tokens: 4,
    });
    assert.equal(reply.status, 400, reply.text);
    assert.equal(assertErrorBody(reply.text, 400).error.code, 'SY_ERR_INVALID_ARGUMENT');
    // The engine is idle again: a request after it is served.
    assert.equal(
      (await post(llama.gw.url, '/v1/completions', { model: LLAMA, prompt: 'hi', max_tokens: 2 })).status,
      200,
    );
  });

  for (const [extra, param] of [
    ['"top_k":"x"', 'top_k'],
    ['"top_k":-2', 'top_k'],
    ['"min_p":2', 'min_p'],
    ['"repetition_penalty":0', 'repetition_penalty'],
  ] as const) {
    it(`${extra} is refused naming ${param} (sim and llama)`, async () => {
      for (const [url, model] of [
        [wire.gw.url, MODEL],
        [llama.gw.url, LLAMA],
      ] as const) {
        const reply = await post(url, '/v1/chat/completions', PY_CHAT(model, extra));
        assert.equal(reply.status, 400, `${model}: ${reply.text}`);
        const e = assertErrorBody(reply.text, 400);
        assert.equal(e.error.code, 'SY_ERR_INVALID_ARGUMENT');
        assert.equal(e.error.param, param);
      }
    });
  }
});

describe('a body with a UTF-8 byte order mark (curl -d @file saved with one)', () => {
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const send = (bytes: Buffer): Promise<Response> =>
    fetch(`${wire.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: bytes,
    });

  it('is served by a built-in engine, as vLLM serves it (the gateway parses it too)', async () => {
    const res = await send(Buffer.concat([bom, Buffer.from(PY_CHAT(MODEL, '"stream":false'))]));
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal((JSON.parse(text) as { usage: Usage }).usage.completion_tokens, 4);
  });

  it('reaches a real backend byte for byte, the mark included', async () => {
    const bytes = Buffer.concat([bom, Buffer.from(PY_CHAT(REAL, '"stream":false'))]);
    // The recorder's own JSON.parse refuses the mark (vLLM's does not); what matters is what it got.
    await (await send(bytes)).text();
    assert.equal(wire.upstream.received.at(-1)?.body, bytes.toString('utf8'));
  });
});
