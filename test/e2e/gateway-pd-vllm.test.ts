/**
 * End-to-end: vLLM's prefill/decode flow through `switchyard serve`. One prefill and two decode
 * `sim` engines speak vLLM's protocol (`--pd-role`, `--pd-protocol vllm`); the gateway sends each
 * request to the prefill engine with max_tokens 1 and kv_transfer_params, then to a decode engine
 * with the parameters the prefill answered. Checked: the decode's answer reaches the client
 * (streamed and not), the prefill engine saw max_tokens 1 and released the KV the decode collected,
 * KV nobody collects is released after --kv-release-timeout-ms, and a killed decode engine costs a
 * retry, never a failed request or an unbalanced counter.
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
  protocol: 'vllm',
  prefills: 2,
  decodes: 2,
  releaseMs: RELEASE_MS,
});

/** The prefill engines' stats summed: the count of max_tokens 1, collected and held transfers. */
async function prefillTotals(): Promise<{
  maxTokens1: number;
  others: number;
  collected: number;
  held: number;
}> {
  const all = await Promise.all(cluster.prefill.engines.filter((e) => e.alive()).map((e) => pdStats(e.url)));
  const t = { maxTokens1: 0, others: 0, collected: 0, held: 0 };
  for (const s of all) {
    for (const [k, n] of Object.entries(s['maxTokensSeen'] as Record<string, number>))
      if (k === '1') t.maxTokens1 += n;
      else t.others += n;
    t.collected += s['releasedCollected'] as number;
    t.held += s['heldTransfers'] as number;
  }
  return t;
}

describe('vLLM P/D through the gateway', { timeout: 60_000 }, () => {
  it('answers with the decode engine, after a one-token prefill whose KV the decode collected', async () => {
    const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const usage = r.body['usage'] as { completion_tokens: number; prompt_tokens: number };
    assert.equal(usage.completion_tokens, 12, 'the decode generated max_tokens, not the prefill one token');
    const content = (r.body['choices'] as { message: { content: string } }[])[0]?.message.content ?? '';
    assert.ok(content.length > 0);
    assert.deepEqual(
      await prefillTotals(),
      { maxTokens1: 1, others: 0, collected: 1, held: 0 },
      'the prefill engine saw max_tokens 1 and released the KV the decode collected',
    );
    const d = await Promise.all(cluster.decode.engines.map((e) => pdStats(e.url)));
    assert.equal(
      d.reduce((n, s) => n + (s['requests'] as number), 0),
      1,
    );
    const served = d.find((s) => s['requests'] === 1) as Record<string, unknown>;
    assert.deepEqual(served['maxTokensSeen'], { 12: 1 }, 'the decode engine got the client max_tokens');
    assert.ok((served['skippedPrefillTokens'] as number) > 0, 'the decode skipped the prefill');
    assert.ok((served['transferredBytes'] as number) > 0);
    assert.equal(served['kvLoadFailures'], 0);
  });

  it('streams the decode answer', async () => {
    const r = await streamChat(cluster.serve.url);
    assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
    const p = await prefillTotals();
    assert.equal(p.maxTokens1, 2, 'the streamed request prefilled with max_tokens 1 too');
    assert.equal(p.others, 0);
  });

  it('releases KV no decode collects after the release timeout', async () => {
    const url = cluster.prefill.engines[0]?.url as string;
    const before = await pdStats(url);
    const body = JSON.parse(chat().body as string) as Record<string, unknown>;
    body['max_tokens'] = 1;
    body['kv_transfer_params'] = { do_remote_decode: true, do_remote_prefill: false };
    const r = await json(`${url}/v1/chat/completions`, { ...chat(), body: JSON.stringify(body) });
    assert.equal(r.status, 200);
    const params = r.body['kv_transfer_params'] as Record<string, unknown>;
    assert.equal(params['do_remote_prefill'], true);
    assert.equal(params['do_remote_decode'], false);
    assert.ok(
      Array.isArray(params['remote_block_ids']) && (params['remote_block_ids'] as unknown[]).length > 0,
    );
    assert.equal(params['remote_port'], cluster.prefill.engines[0]?.port);
    assert.equal((await pdStats(url))['heldTransfers'], 1, 'held until collected or timed out');
    await untilReleasedOnTimeout(url, before, RELEASE_MS);
    const after = await pdStats(url);
    assert.equal(after['heldTransfers'], 0);
    assert.equal(after['heldBytes'], 0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /switchyard_pd_kv_released_total\{[^}]*reason="timeout"\} 1/);
  });

  it('retries on the other decode engine when one is killed; the counters stay balanced', async () => {
    await cluster.decode.engines[0]?.kill('SIGKILL');
    const results = await Promise.all(
      Array.from({ length: 4 }, () => json(`${cluster.serve.url}/v1/chat/completions`, chat())),
    );
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    const stats = await balancedStats(cluster.serve.url);
    assert.equal(stats['completed'], 6);
    assert.ok((stats['retries'] as number) >= 1, 'a request routed to the dead engine was retried');
    const pd = stats['pd'] as Record<string, number>;
    assert.equal(pd['prefillFailures'], 0);
    const alive = await pdStats(cluster.decode.engines[1]?.url as string);
    assert.ok((alive['requests'] as number) >= 4, 'every request after the kill decoded on the live engine');
  });

  it('retries a failed prefill leg once on another prefill engine', async () => {
    await cluster.prefill.engines[0]?.kill('SIGKILL');
    const results = await Promise.all(
      Array.from({ length: 2 }, () => json(`${cluster.serve.url}/v1/chat/completions`, chat())),
    );
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    const pd = (await json(`${cluster.serve.url}/stats`)).body['pd'] as Record<string, number>;
    assert.ok((pd['prefillFailures'] as number) >= 1, 'a prefill leg went to the dead engine');
    assert.ok((pd['prefillRetries'] as number) >= 1, 'and was retried on the live one');
  });

  it('ends in a clean error when no prefill engine is left; nothing hangs, counters balance', async () => {
    await cluster.prefill.engines[1]?.kill('SIGKILL');
    const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
    assert.ok(r.status === 502 || r.status === 503, `status ${r.status}`);
    const error = r.body['error'] as { code: string; message: string };
    assert.match(error.code, /^SY_ERR_(PD_PREFILL_FAILED|NO_INSTANCE)$/, error.message);
    await balancedStats(cluster.serve.url);
  });
});
