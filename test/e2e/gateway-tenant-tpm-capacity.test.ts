/**
 * End-to-end: a request whose token cost is more than its tenant's whole TPM bucket can never be
 * admitted, so it is refused 413 SY_ERR_REQUEST_OVER_TPM with no Retry-After, naming the bucket's
 * size, and the OpenAI SDK does not retry it. Before, it was a 429 SY_ERR_RATE_LIMITED without
 * Retry-After: clients retry 429s, so a client with retries left asked again for nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI, { APIError, RateLimitError } from 'openai';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const KEY = 'sk-small';
const setUp = simGateway({ tenants: [{ key: KEY, name: 'small', tpm: 200 }] });

describe('gateway tenant tpm smaller than one request', { timeout: 60_000 }, () => {
  it('refuses it 413 SY_ERR_REQUEST_OVER_TPM without Retry-After; the SDK does not retry; a small request passes', async () => {
    const headers = { authorization: `Bearer ${KEY}` };
    // About 500 prompt tokens (4 characters a token) plus max_tokens 8: past a 200-token bucket.
    const big = { model: MODEL, prompt: 'word '.repeat(400), max_tokens: 8 };
    const refused = await post(setUp.gw.url, '/v1/completions', big, { headers });
    assert.equal(refused.status, 413, refused.text);
    const body = assertErrorBody(refused.text, 413, 'over tpm');
    assert.equal(body.error.code, 'SY_ERR_REQUEST_OVER_TPM');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(
      body.error.message,
      /more than tenant 'small''s whole tpm of 200 tokens a minute, so no wait admits it/,
    );
    assert.equal(refused.headers.get('retry-after'), null);

    // The OpenAI SDK retries a 429 (twice by default); this answer it takes as final.
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts++;
      return fetch(input, init);
    };
    const sdk = new OpenAI({ baseURL: `${setUp.gw.url}/v1`, apiKey: KEY, maxRetries: 2, fetch: counting });
    const error = await sdk.completions.create(big).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof APIError && !(error instanceof RateLimitError), String(error));
    assert.equal(error.status, 413);
    assert.equal(attempts, 1);

    // The refusal took nothing from the bucket: a request within it is served.
    const small = await post(
      setUp.gw.url,
      '/v1/completions',
      { model: MODEL, prompt: 'hi', max_tokens: 4 },
      { headers },
    );
    assert.equal(small.status, 200, small.text);
  });
});
