/**
 * End-to-end: what the Python clients found wanting in `switchyard serve` over sim engines (stop
 * 30, task F: openai-python 3.22 sync and async, langchain-openai 1.6, and the request formats of
 * `vllm bench serve` and SGLang's `bench_serving`, run by hand against the gateway; the project
 * does not depend on Python, so each finding is held here with the Node SDK and fetch, in
 * docs/gateway.md "Clients checked").
 *
 * - A Responses answer's `usage.input_tokens_details` had `cached_tokens` only; both SDKs type
 *   `cache_write_tokens` as required, and openai-python's pydantic `Response` model fails
 *   validation without it (`Response.model_validate(...)`: "Field required"), in a JSON answer and
 *   in a stream's final event alike.
 * - `responses.retrieve(id)` got "unknown route GET /v1/responses/resp_..." with nothing saying
 *   why (the gateway now stores responses and answers it: gateway-response-store.test.ts), and
 *   `responses.input_tokens.count()` a bare "unknown route"; SGLang's
 *   `bench_serving` as it defaults (`--backend sglang`, its native `/generate`) got a bare
 *   "unknown route POST /generate". These 404s now say what the gateway serves instead.
 * - A `seed` past 2^53 (a Python int: a nanosecond timestamp, `random.getrandbits(63)`) was 400
 *   "expected int to be <=9007199254740991"; vLLM takes any int64 seed, OpenAI any integer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { MODEL } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const setUp = simGateway();

/** The SDK's own request timeout: a bound on a hang, not what any test measures. */
const SDK_TIMEOUT_MS = 60_000;
const client = (): OpenAI =>
  new OpenAI({ baseURL: `${setUp.gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: SDK_TIMEOUT_MS });

/** Asserts a Responses usage object has every field the SDKs' types require. */
function assertResponsesUsage(usage: OpenAI.Responses.ResponseUsage | null | undefined, what: string): void {
  assert.ok(usage, `${what}: no usage`);
  assert.equal(usage.output_tokens, 3, what);
  assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens, what);
  assert.deepEqual(
    Object.keys(usage.input_tokens_details).sort(),
    ['cache_write_tokens', 'cached_tokens'],
    `${what}: ${JSON.stringify(usage)}`,
  );
  assert.equal(usage.input_tokens_details.cache_write_tokens, 0, what);
  assert.equal(typeof usage.input_tokens_details.cached_tokens, 'number', what);
  assert.equal(usage.output_tokens_details.reasoning_tokens, 0, what);
}

describe('Responses usage as the SDKs type it', () => {
  it('input_tokens_details carries cache_write_tokens, answered whole and streamed', async () => {
    const whole = await client().responses.create({ model: MODEL, input: 'hi there', max_output_tokens: 3 });
    assertResponsesUsage(whole.usage, 'JSON answer');

    const stream = await client().responses.create({
      model: MODEL,
      input: 'hi there',
      max_output_tokens: 3,
      stream: true,
    });
    let last: OpenAI.Responses.ResponseStreamEvent | undefined;
    for await (const event of stream) last = event;
    // The sim never ends on its own: cut at max_output_tokens, the stream ends `response.incomplete`.
    assert.equal(last?.type, 'response.incomplete');
    assertResponsesUsage(last.response.usage, 'final stream event');
  });
});

describe('404s for clients that took the gateway for another API', () => {
  it("responses' cancel and id-less routes are told what is served; SGLang's /generate the backend to use", async () => {
    const created = await client().responses.create({ model: MODEL, input: 'x', max_output_tokens: 1 });
    // The Node SDK's Response type has no `store`; the answer carries it (the gateway stored it).
    assert.equal((created as unknown as { store: unknown }).store, true);
    const e = await client()
      .responses.cancel(created.id)
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.ok(e instanceof OpenAI.NotFoundError, `cancel: ${String(e)}`);
    assert.equal(e.code, 'SY_ERR_NOT_FOUND');
    assert.equal(e.param, 'path');
    assert.match(e.message, /GET and DELETE \/v1\/responses\/\{id\}.*none is cancelled/);

    // The Responses routes that name no response: told what is served, not that nothing is stored.
    const count = await fetch(`${setUp.gw.url}/v1/responses/input_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: 'x' }),
    });
    assert.equal(count.status, 404);
    assert.equal(
      ((await count.json()) as { error: { message: string } }).error.message,
      'unknown route POST /v1/responses/input_tokens; the gateway routes only POST /v1/responses of the Responses API',
    );

    // SGLang bench_serving's default backend posts its native body to /generate.
    const sglang = await fetch(`${setUp.gw.url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        text: 'hi',
        sampling_params: { max_new_tokens: 4, ignore_eos: true },
        stream: true,
      }),
    });
    assert.equal(sglang.status, 404);
    const body = (await sglang.json()) as { error: { message: string; code: string } };
    assert.equal(body.error.code, 'SY_ERR_NOT_FOUND');
    assert.match(body.error.message, /^unknown route POST \/generate; this is SGLang's native API/);
    assert.match(body.error.message, /--backend sglang-oai or sglang-oai-chat/);

    // Other unknown paths say only that.
    const other = await fetch(`${setUp.gw.url}/v2/generate`, { method: 'POST', body: '{}' });
    assert.equal(other.status, 404);
    assert.equal(
      ((await other.json()) as { error: { message: string } }).error.message,
      'unknown route POST /v2/generate',
    );
  });
});

/** POSTs a raw JSON text (digits a JavaScript number cannot hold) and returns the status and body. */
async function postRaw(
  path: string,
  body: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${setUp.gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('int64 seeds, as Python clients send them', () => {
  it('are served up to 2^63 - 1 (same seed, same text; n samples differ), and refused past it naming seed', async () => {
    const chat = (seed: string, n = 1): string =>
      `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"n":${n},"seed":${seed}}`;
    const texts = async (body: string): Promise<string[]> => {
      const r = await postRaw('/v1/chat/completions', body);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return (r.json['choices'] as { message: { content: string } }[]).map((c) => c.message.content);
    };
    for (const seed of ['9223372036854775807', '-9223372036854775808', '1733550000123456789']) {
      const [first] = await texts(chat(seed));
      const [again] = await texts(chat(seed));
      assert.equal(again, first, `seed ${seed}`);
      const two = await texts(chat(seed, 2));
      assert.equal(two.length, 2);
      assert.notEqual(two[0], two[1], `seed ${seed}: the n samples repeat one another`);
    }
    const completion = await postRaw(
      '/v1/completions',
      `{"model":"${MODEL}","prompt":"x","max_tokens":2,"seed":9223372036854775807}`,
    );
    assert.equal(completion.status, 200, JSON.stringify(completion.json));

    for (const seed of ['18446744073709551616', '1.5']) {
      const r = await postRaw('/v1/chat/completions', chat(seed));
      assert.equal(r.status, 400, `seed ${seed}`);
      const error = r.json['error'] as { code: string; param: string };
      assert.equal(error.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.equal(error.param, 'seed');
    }
  });
});
