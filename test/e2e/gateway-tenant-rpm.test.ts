/**
 * End-to-end: a tenant limited to less than one request a minute (`rpm: 0.5`) is served one request,
 * then refused 429 SY_ERR_RATE_LIMITED with a Retry-After of the wait for its next token (about two
 * minutes). Before, every request of such a tenant was refused with no Retry-After at all.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertErrorBody, MODEL, post } from './support/cluster.ts';
import { simGateway } from './support/sim-gateway.ts';

const setUp = simGateway({
  tenants: [
    { key: 'sk-slow', name: 'slow', rpm: 0.5 },
    { key: 'sk-fast', name: 'fast', rpm: 1.5 },
  ],
});

describe('gateway tenant rpm below 1', { timeout: 60_000 }, () => {
  it('serves one request, then refuses with Retry-After until the next token', async () => {
    const send = (key: string, i: number) =>
      post(
        setUp.gw.url,
        '/v1/completions',
        { model: MODEL, prompt: `hi ${i}`, max_tokens: 2 },
        {
          headers: { authorization: `Bearer ${key}` },
        },
      );

    const first = await send('sk-slow', 0);
    assert.equal(first.status, 200, first.text);
    const second = await send('sk-slow', 1);
    assert.equal(second.status, 429, second.text);
    const body = assertErrorBody(second.text, 429, 'rate limited');
    assert.equal(body.error.code, 'SY_ERR_RATE_LIMITED');
    assert.match(body.error.message, /slow.*rpm 0\.5/);
    // One token at 0.5 a minute is 120 s from the first request; more than a minute means the
    // bucket refills at rpm/60 per second, not at one token a minute.
    const retryAfter = Number(second.headers.get('retry-after'));
    assert.ok(retryAfter > 60 && retryAfter <= 120, `Retry-After ${second.headers.get('retry-after')}`);

    // 1.5 rpm: a burst of 1.5 tokens holds one request, the second waits for the half token (20 s at most).
    const fast = [await send('sk-fast', 0), await send('sk-fast', 1)];
    assert.equal(fast[0]?.status, 200, fast[0]?.text);
    assert.equal(fast[1]?.status, 429, fast[1]?.text);
    const fastAfter = Number(fast[1]?.headers.get('retry-after'));
    assert.ok(fastAfter >= 1 && fastAfter <= 20, `Retry-After ${fast[1]?.headers.get('retry-after')}`);
  });
});
