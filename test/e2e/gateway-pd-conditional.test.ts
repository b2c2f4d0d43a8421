/**
 * End-to-end: conditional disaggregation (config `pd.conditional`) through `switchyard serve` over
 * real `sim` engines speaking vLLM's P/D protocol, one prefill and one decode engine. Checked:
 * - `dynamo`: a short prompt (under 1,000 tokens) goes straight to the decode engine (the prefill
 *   engine serves nothing, the decode gets no kv_transfer_params, the answer arrives, streamed
 *   too); a long one goes through the prefill engine (max_tokens 1, then the decode with its KV);
 *   the same long prompt again stays local, the decode instance now holding its prefix.
 * - `switchyard` (a second serve over the same engines, the decode's metrics unscraped so its
 *   running count is the gateway's in-flight count): a short prompt onto an idle decode stays
 *   local; a long prompt while a decode runs there goes remote.
 * - a local request whose decode engine is gone ends in the gateway's retry and error path (502
 *   SY_ERR_UPSTREAM after retries), counters balanced, the prefill engine still untouched.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorBody, MODEL, metricSum, REQUEST_DEADLINE_MS, scrape } from './support/cluster.ts';
import { balancedStats, chat, json, pdStats, simPdCluster } from './support/pd.ts';
import { type ServeProcess, startServe } from './support/serve.ts';
import { killAll, until } from './support/wait.ts';

const cluster = simPdCluster({
  protocol: 'vllm',
  prefills: 1,
  decodes: 1,
  releaseMs: 1500,
  extra: { pd: { conditional: 'dynamo' } },
});

/** About 1,600 tokens by the gateway's estimate (4 characters a token): past Dynamo's 1,000. */
const LONG = 'a long prompt the decode engine should not prefill alone, '.repeat(110);

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'sy-pd-conditional-'));
let switchyard: ServeProcess;
after(async () => {
  await killAll(children);
  rmSync(dir, { recursive: true, force: true });
});

/** Requests each engine served (its vLLM request counter). */
async function served(): Promise<{ prefill: number; decode: number }> {
  const [p, d] = await Promise.all(
    [cluster.prefill.engines[0], cluster.decode.engines[0]].map((e) => scrape((e as { url: string }).url)),
  );
  return {
    prefill: metricSum(p as string, 'vllm:request_success_total'),
    decode: metricSum(d as string, 'vllm:request_success_total'),
  };
}

/** The gateway's `/stats` `pd` block. */
async function pdOf(url: string): Promise<Record<string, unknown>> {
  return (await json(`${url}/stats`)).body['pd'] as Record<string, unknown>;
}

/** A chat completion with `content` as the prompt, 8 tokens. */
const ask = (content: string, extra: Record<string, unknown> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 8, ...extra }),
});

describe('conditional P/D through the gateway', { timeout: 90_000 }, () => {
  before(async () => {
    // The same engines behind a serve running `switchyard`; the decode's metrics are not scraped,
    // so the view shows its running decodes as the gateway's in-flight count (deterministic here).
    const config = join(dir, 'switchyard.json');
    const backend = (id: string, url: string, role: 'prefill' | 'decode') => ({
      id,
      type: 'sim',
      url,
      models: [MODEL],
      role,
      pdProtocol: 'vllm',
      ...(role === 'decode' ? { metricsPath: null } : {}),
    });
    writeFileSync(
      config,
      JSON.stringify({
        backends: [
          backend('p0', cluster.prefill.engines[0]?.url as string, 'prefill'),
          backend('d0', cluster.decode.engines[0]?.url as string, 'decode'),
        ],
        routing: { policy: 'round-robin' },
        pd: { conditional: 'switchyard' },
      }),
    );
    switchyard = await startServe(['--config', config], children);
  });

  it('dynamo: a short prompt goes straight to the decode engine; the prefill engine serves nothing', async () => {
    const r = await json(`${cluster.serve.url}/v1/chat/completions`, chat());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((r.body['usage'] as { completion_tokens: number }).completion_tokens, 12);
    const s = await streamed(cluster.serve.url, chat({ stream: true }));
    assert.ok(s.tokens >= 12, `streamed ${s.tokens} events`);
    assert.deepEqual(await served(), { prefill: 0, decode: 2 });
    assert.equal((await pdStats(cluster.prefill.engines[0]?.url as string))['requests'], 0);
    assert.equal(
      (await pdStats(cluster.decode.engines[0]?.url as string))['requests'],
      0,
      'no kv_transfer_params reached the decode engine',
    );
    const pd = await pdOf(cluster.serve.url);
    assert.equal(pd['conditional'], 'dynamo');
    assert.equal(pd['localPrefills'], 2);
    assert.equal(pd['remotePrefills'], 0);
    assert.equal(pd['prefills'], 0, 'no prefill leg');
    const metrics = await scrape(cluster.serve.url);
    assert.equal(metricSum(metrics, 'switchyard_gateway_pd_local_prefills_total'), 2);
    await balancedStats(cluster.serve.url);
  });

  it('dynamo: a long prompt goes through the prefill engine; the same prompt again stays local', async () => {
    const r = await json(`${cluster.serve.url}/v1/chat/completions`, ask(LONG));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(await served(), { prefill: 1, decode: 3 });
    const p = await pdStats(cluster.prefill.engines[0]?.url as string);
    assert.deepEqual(p['maxTokensSeen'], { 1: 1 }, 'the prefill leg asked one token');
    const d = await pdStats(cluster.decode.engines[0]?.url as string);
    assert.equal(d['requests'], 1, 'the decode got the KV parameters');
    assert.ok((d['skippedPrefillTokens'] as number) > 0);
    let pd = await pdOf(cluster.serve.url);
    assert.equal(pd['remotePrefills'], 1);
    assert.equal(pd['prefills'], 1);
    // Its prefix is on the decode instance now (the router learned it): nothing left to prefill remotely.
    const again = await json(`${cluster.serve.url}/v1/chat/completions`, ask(LONG));
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(await served(), { prefill: 1, decode: 4 });
    pd = await pdOf(cluster.serve.url);
    assert.deepEqual([pd['localPrefills'], pd['remotePrefills']], [3, 1]);
    await balancedStats(cluster.serve.url);
  });

  it('switchyard: short onto an idle decode stays local; long while a decode runs there goes remote', async () => {
    const before = await served();
    const short = await json(`${switchyard.url}/v1/chat/completions`, chat());
    assert.equal(short.status, 200, JSON.stringify(short.body));
    let pd = await pdOf(switchyard.url);
    assert.deepEqual([pd['conditional'], pd['localPrefills'], pd['remotePrefills']], ['switchyard', 1, 0]);
    // A long-running stream holds one decode on d0 (in flight, so running in the unscraped view).
    const hold = new AbortController();
    const held = await fetch(`${switchyard.url}/v1/chat/completions`, {
      ...chat({ stream: true, max_tokens: 100_000 }),
      signal: hold.signal,
    });
    assert.equal(held.status, 200);
    const reader = (held.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    try {
      const long = await json(`${switchyard.url}/v1/chat/completions`, ask(`${LONG}${LONG}`));
      assert.equal(long.status, 200, JSON.stringify(long.body));
    } finally {
      hold.abort();
      await reader.cancel().catch(() => {});
    }
    pd = await pdOf(switchyard.url);
    assert.deepEqual([pd['localPrefills'], pd['remotePrefills']], [2, 1]);
    const after = await served();
    assert.equal(after.prefill - before.prefill, 1, 'only the long prompt went through the prefill engine');
    await until(
      'the held stream ended in the gateway',
      async () => (await json(`${switchyard.url}/stats`)).body['inFlight'] === 0,
      REQUEST_DEADLINE_MS,
      25,
    );
    await balancedStats(switchyard.url);
  });

  it("a local request whose decode engine is gone ends in the gateway's retry and error path", async () => {
    const prefillBefore = (await served()).prefill;
    const statsBefore = (await json(`${cluster.serve.url}/stats`)).body;
    await cluster.decode.engines[0]?.kill('SIGKILL');
    const r = await fetch(`${cluster.serve.url}/v1/chat/completions`, {
      ...chat(),
      signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
    });
    const text = await r.text();
    assert.equal(r.status, 502, text);
    assert.equal(assertErrorBody(text, 502, 'decode gone').error.code, 'SY_ERR_UPSTREAM');
    const stats = await balancedStats(cluster.serve.url);
    assert.ok((stats['retries'] as number) > (statsBefore['retries'] as number), 'the attempt was retried');
    const pd = stats['pd'] as Record<string, number>;
    assert.equal(pd['prefills'], 1, 'the retry stayed local too: no new prefill leg');
    // The retry decided again, but the counters count requests: this one once.
    const pdBefore = statsBefore['pd'] as Record<string, number>;
    assert.equal(pd['localPrefills'], (pdBefore['localPrefills'] as number) + 1, 'one request, counted once');
    assert.equal(pd['remotePrefills'], pdBefore['remotePrefills']);
    const prefill = await scrape(cluster.prefill.engines[0]?.url as string);
    assert.equal(metricSum(prefill, 'vllm:request_success_total'), prefillBefore);
  });
});

/** Streams `init` through `url`: a 200, and the count of data events before `[DONE]`. */
async function streamed(url: string, init: RequestInit): Promise<{ tokens: number }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    ...init,
    signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
  });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(text.trimEnd().endsWith('data: [DONE]'));
  return { tokens: text.split('\n\n').filter((e) => e.startsWith('data: {')).length };
}
