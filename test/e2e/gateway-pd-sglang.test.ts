/**
 * End-to-end: SGLang's prefill/decode flow through `switchyard serve`. One prefill and two decode
 * `sim` engines speak SGLang's protocol (`--pd-role`, `--pd-protocol sglang`); the gateway sends
 * each request to a prefill and a decode engine at once with the prefill's bootstrap address and a
 * fresh room, and answers with the decode's answer. Checked: the answer reaches the client
 * (streamed and not), the decode collected the room's KV and skipped the prefill, a room nobody
 * collects is released after --kv-release-timeout-ms, and a killed prefill engine ends requests
 * with a clean error, promptly, with balanced counters.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  balancedStats,
  chat,
  json,
  pdStats,
  simPdCluster,
  streamChat,
  untilReleasedOnTimeout,
} from './support/pd.ts';

/** Short, so the uncollected-KV test waits little. */
const RELEASE_MS = 1500;
const cluster = simPdCluster({
  protocol: 'sglang',
  prefills: 1,
  decodes: 2,
  releaseMs: RELEASE_MS,
  extra: { healthCheck: { intervalMs: 200 } },
});

describe('SGLang P/D through the gateway', { timeout: 60_000 }, () => {
  it('answers with the decode engine, which collected the room the prefill engine filled', async () => {
    const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const usage = r.body['usage'] as { completion_tokens: number; prompt_tokens: number };
    assert.equal(usage.completion_tokens, 12, 'the decode answer, not the prefill one token');
    const p = await pdStats(cluster.prefill.engines[0]?.url as string);
    assert.equal(p['requests'], 1);
    assert.equal(p['releasedCollected'], 1, 'the decode collected the room');
    assert.equal(p['heldTransfers'], 0);
    const d = await Promise.all(cluster.decode.engines.map((e) => pdStats(e.url)));
    const served = d.find((s) => s['requests'] === 1) as Record<string, unknown>;
    assert.ok(served !== undefined, 'one decode engine served it');
    assert.ok((served['skippedPrefillTokens'] as number) > 0, 'the decode skipped the prefill');
    assert.ok((served['transferredBytes'] as number) > 0);
    assert.equal(served['kvLoadFailures'], 0);
  });

  it('streams the decode answer', async () => {
    await streamChat(cluster.serve.url);
    assert.equal((await pdStats(cluster.prefill.engines[0]?.url as string))['releasedCollected'], 2);
  });

  it('releases a room no decode collects after the release timeout', async () => {
    const url = cluster.prefill.engines[0]?.url as string;
    const before = await pdStats(url);
    const body = JSON.parse(chat().body as string) as Record<string, unknown>;
    Object.assign(body, {
      bootstrap_host: '127.0.0.1',
      bootstrap_port: cluster.prefill.engines[0]?.port,
      bootstrap_room: 7,
    });
    const r = await json(`${url}/v1/chat/completions`, { ...chat(), body: JSON.stringify(body) });
    assert.equal(r.status, 200);
    const usage = r.body['usage'] as { completion_tokens: number };
    assert.equal(usage.completion_tokens, 1, 'a prefill engine runs the prefill only');
    assert.equal((await pdStats(url))['heldTransfers'], 1, 'the room holds its KV');
    await untilReleasedOnTimeout(url, before, RELEASE_MS);
    assert.equal((await pdStats(url))['heldBytes'], 0);
  });

  it('ends requests with a clean error when the prefill engine is killed; counters stay balanced', async () => {
    await cluster.prefill.engines[0]?.kill('SIGKILL');
    const results = await Promise.all(
      Array.from({ length: 2 }, () => json(`${cluster.serve.url}/v1/chat/completions`, chat())),
    );
    for (const r of results) {
      assert.ok(r.status >= 500, `status ${r.status}`);
      const error = r.body['error'] as { code: string; message: string };
      // The decode engine's own failure (no bootstrap) or the gateway's abort after the prefill leg's.
      assert.match(error.code, /^SY_ERR_(UPSTREAM|NO_INSTANCE|PD_PREFILL_FAILED)$/, error.message);
    }
    const failures = await Promise.all(cluster.decode.engines.map((e) => pdStats(e.url)));
    const stats = await balancedStats(cluster.serve.url);
    assert.equal(stats['completed'], 2);
    const pd = stats['pd'] as Record<string, number>;
    assert.ok(
      failures.some((s) => (s['kvLoadFailures'] as number) > 0) || (pd['prefillFailures'] as number) > 0,
      'the failed prefill was seen: by a decode engine (no KV) or by the gateway (prefill leg)',
    );
  });
});
