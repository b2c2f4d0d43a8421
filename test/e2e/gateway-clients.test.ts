/**
 * End-to-end: clients Switchyard had not been run against, through a gateway in front of a real sim
 * engine. `vllm bench serve`'s request functions (vllm/benchmarks/lib/endpoint_request_func.py) are
 * restated here as plain fetch calls: the exact JSON they send (completions with `logprobs: null`,
 * `repetition_penalty`, `ignore_eos`; chat with `max_completion_tokens` and content parts; both with
 * `stream_options.include_usage`) and their way of reading the stream (events split at blank lines,
 * a chunk with `choices` is a token, a chunk without is the usage). vLLM's
 * `stream_options.continuous_usage_stats` puts the usage so far in every chunk, as vLLM does, and
 * its `min_tokens` (genai-perf's way to fix output lengths) holds stop strings back and is checked
 * against max_tokens. A completions request without `max_tokens` gets vLLM's and OpenAI's 16. A
 * compressed request body is refused with 415 and the connection serves the next request.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type GatewayStatsJson, getJson, MODEL, post } from './support/cluster.ts';
import { openSocket, readUntilClose } from './support/raw-http.ts';
import { simGateway } from './support/sim-gateway.ts';

const setup = simGateway();

interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

interface Chunk {
  readonly choices?: readonly {
    readonly text?: string;
    readonly delta?: { readonly content?: string };
    readonly finish_reason: string | null;
  }[];
  readonly usage?: Usage | null;
}

/** What `vllm bench serve` takes from one streamed answer. */
interface BenchOutput {
  /** A chunk with choices arrived (vLLM marks the request failed otherwise). */
  readonly success: boolean;
  readonly generatedText: string;
  readonly outputTokens: number | undefined;
  readonly promptLen: number | undefined;
  /** Every chunk, parsed. */
  readonly chunks: readonly Chunk[];
}

/** vLLM's stream reading: messages split at blank lines, `data: ` cut, `[DONE]` skipped. */
function readAsVllmBench(status: number, text: string, kind: 'completion' | 'chat'): BenchOutput {
  assert.equal(status, 200, text);
  let generatedText = '';
  let success = false;
  let outputTokens: number | undefined;
  let promptLen: number | undefined;
  const chunks: Chunk[] = [];
  for (const raw of text.split('\n\n')) {
    const message = raw.trim();
    if (message === '' || message.startsWith(':')) continue;
    const data = message.replace(/^data: /, '');
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data) as Chunk;
    chunks.push(chunk);
    const choice = chunk.choices?.[0];
    if (choice !== undefined) {
      success = true;
      generatedText += (kind === 'completion' ? choice.text : choice.delta?.content) ?? '';
    } else if (chunk.usage) {
      outputTokens = chunk.usage.completion_tokens;
      promptLen = chunk.usage.prompt_tokens;
    }
  }
  return { success, generatedText, outputTokens, promptLen, chunks };
}

describe('vllm bench serve through the gateway', { timeout: 30_000 }, () => {
  it('its completions request: tokens in choices[0].text, usage in the last chunk', async () => {
    const reply = await post(
      setup.gw.url,
      '/v1/completions',
      {
        model: MODEL,
        prompt: 'The switchyard sorts freight cars onto classification tracks.',
        repetition_penalty: 1.0,
        max_tokens: 12,
        logprobs: null,
        stream: true,
        stream_options: { include_usage: true },
        ignore_eos: true,
      },
      { headers: { 'x-request-id': 'bench-0' } },
    );
    const out = readAsVllmBench(reply.status, reply.text, 'completion');
    assert.ok(out.success, reply.text);
    assert.equal(out.outputTokens, 12, 'completion_tokens of the usage chunk');
    assert.ok((out.promptLen ?? 0) > 0);
    assert.ok(out.generatedText.length > 0);
  });

  it('its chat request: max_completion_tokens, content parts, delta.content', async () => {
    const reply = await post(setup.gw.url, '/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe a hump yard.' }] }],
      max_completion_tokens: 9,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    });
    const out = readAsVllmBench(reply.status, reply.text, 'chat');
    assert.ok(out.success, reply.text);
    assert.equal(out.outputTokens, 9);
    assert.ok(out.generatedText.length > 0);
  });
});

describe('a completions request without max_tokens', { timeout: 30_000 }, () => {
  it("gets 16 tokens, OpenAI's and vLLM's default; an explicit null lifts it, as in vLLM", async () => {
    const tokens = async (extra: Record<string, unknown>) => {
      const reply = await post(setup.gw.url, '/v1/completions', {
        model: MODEL,
        prompt: 'Once upon',
        ...extra,
      });
      assert.equal(reply.status, 200, reply.text);
      return (JSON.parse(reply.text) as { usage: Usage }).usage.completion_tokens;
    };
    assert.equal(await tokens({}), 16);
    assert.equal(await tokens({ stream: false }), 16);
    assert.ok((await tokens({ max_tokens: null })) > 16, 'null: no default cap');
  });
});

describe("vLLM's continuous_usage_stats through the gateway", { timeout: 30_000 }, () => {
  for (const kind of ['completion', 'chat'] as const) {
    it(`${kind}: every chunk carries the usage so far; the last counts agree`, async () => {
      const completedBefore = (await getJson<GatewayStatsJson>(`${setup.gw.url}/stats`)).completed;
      const maxTokens = 7;
      const body =
        kind === 'chat'
          ? { messages: [{ role: 'user', content: 'Count the cars.' }] }
          : { prompt: 'Count the cars.' };
      const reply = await post(setup.gw.url, kind === 'chat' ? '/v1/chat/completions' : '/v1/completions', {
        model: MODEL,
        ...body,
        max_tokens: maxTokens,
        stream: true,
        stream_options: { include_usage: true, continuous_usage_stats: true },
      });
      const out = readAsVllmBench(reply.status, reply.text, kind);
      const withChoices = out.chunks.filter((c) => (c.choices?.length ?? 0) > 0);
      assert.ok(withChoices.length > 0);
      let previous = 0;
      for (const chunk of withChoices) {
        const usage = chunk.usage;
        assert.ok(usage !== undefined && usage !== null, `a chunk without usage: ${JSON.stringify(chunk)}`);
        assert.ok(usage.completion_tokens >= previous, 'completion tokens never go back');
        assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
        assert.equal(usage.prompt_tokens, out.promptLen);
        previous = usage.completion_tokens;
      }
      const finish = withChoices.at(-1);
      assert.equal(finish?.choices?.[0]?.finish_reason, 'length');
      assert.equal(finish?.usage?.completion_tokens, maxTokens, 'the finish chunk has the final count');
      assert.equal(out.outputTokens, maxTokens, 'and so has the usage chunk');
      const stats = await getJson<GatewayStatsJson>(`${setup.gw.url}/stats`);
      assert.equal(stats.completed - completedBefore, 1);
    });
  }

  it('without include_usage, continuous_usage_stats adds nothing (as vLLM reads it)', async () => {
    const reply = await post(setup.gw.url, '/v1/completions', {
      model: MODEL,
      prompt: 'hi',
      max_tokens: 3,
      stream: true,
      stream_options: { continuous_usage_stats: true },
    });
    const out = readAsVllmBench(reply.status, reply.text, 'completion');
    assert.ok(out.success);
    // vLLM's completion chunks always carry "usage": null (serving_completion.py dumps them with
    // exclude_unset=False); what continuous_usage_stats must not add is a figure.
    assert.ok(
      out.chunks.every((c) => c.usage == null),
      reply.text,
    );
  });
});

describe("vLLM's min_tokens through the gateway (genai-perf's fixed output length)", {
  timeout: 30_000,
}, () => {
  /** A completion with the same seed (the same filler text), with or without min_tokens. */
  const complete = (extra: Record<string, unknown>) =>
    post(setup.gw.url, '/v1/completions', {
      model: MODEL,
      prompt: 'Which track?',
      max_tokens: 40,
      seed: 11,
      stop: [' '],
      ...extra,
    });

  it('a stop string waits for min_tokens tokens, as in vLLM', async () => {
    const free = await complete({});
    assert.equal(free.status, 200, free.text);
    const freeBody = JSON.parse(free.text) as { choices: { finish_reason: string }[]; usage: Usage };
    assert.equal(freeBody.choices[0]?.finish_reason, 'stop');
    assert.ok(freeBody.usage.completion_tokens < 10, free.text);
    const held = await complete({ min_tokens: 10 });
    assert.equal(held.status, 200, held.text);
    const heldBody = JSON.parse(held.text) as { usage: Usage };
    assert.ok(heldBody.usage.completion_tokens > 10, held.text);
  });

  it('min_tokens past max_tokens, or not a count, is a 400 naming it', async () => {
    for (const minTokens of [41, -1, 2.5, 'ten']) {
      const reply = await complete({ min_tokens: minTokens });
      assert.equal(reply.status, 400, reply.text);
      const e = (JSON.parse(reply.text) as { error: { code: string; param: string } }).error;
      assert.deepEqual([e.code, e.param], ['SY_ERR_INVALID_ARGUMENT', 'min_tokens'], reply.text);
    }
    // genai-perf's fixed length: min_tokens = max_tokens with ignore_eos.
    const fixed = await post(setup.gw.url, '/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 6,
      min_tokens: 6,
      ignore_eos: true,
    });
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal((JSON.parse(fixed.text) as { usage: Usage }).usage.completion_tokens, 6);
  });
});

describe('a compressed request body', { timeout: 30_000 }, () => {
  it('is 415 SY_ERR_UNSUPPORTED_MEDIA_TYPE with Accept-Encoding: identity; the connection goes on', async () => {
    const rejectedBefore = (await getJson<GatewayStatsJson>(`${setup.gw.url}/stats`)).rejected;
    const json = JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 2 });
    const gz = gzipSync(json);
    const host = new URL(setup.gw.url).host;
    const socket = await openSocket(setup.gw.url);
    const answers = readUntilClose(socket, 15_000);
    // Two requests on one connection: the gzip one, then a plain one that closes it.
    socket.write(
      `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\ncontent-type: application/json\r\n` +
        `content-encoding: gzip\r\ncontent-length: ${gz.length}\r\n\r\n`,
    );
    socket.write(gz);
    socket.write(
      `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\ncontent-type: application/json\r\n` +
        `connection: close\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
    );
    const text = await answers;
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['415', '200'], text);
    const first = text.slice(0, text.indexOf('HTTP/1.1 200'));
    assert.match(first, /^accept-encoding: identity\r$/im);
    const body = JSON.parse(first.slice(first.indexOf('{'))) as { error: { code: string; param: string } };
    assert.deepEqual(
      [body.error.code, body.error.param],
      ['SY_ERR_UNSUPPORTED_MEDIA_TYPE', 'content-encoding'],
    );
    const stats = await getJson<GatewayStatsJson>(`${setup.gw.url}/stats`);
    assert.equal(
      (stats.rejected['SY_ERR_UNSUPPORTED_MEDIA_TYPE'] ?? 0) -
        (rejectedBefore['SY_ERR_UNSUPPORTED_MEDIA_TYPE'] ?? 0),
      1,
    );
  });
});
