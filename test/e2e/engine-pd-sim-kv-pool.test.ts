/**
 * End-to-end: a `sim` P/D prefill engine keeps the KV it holds for a decode in its own pool, as
 * vLLM's prefill keeps blocks a NIXL transfer reads allocated (counted in vllm:kv_cache_usage_perc)
 * and as the twin's prefill does (EngineRequest.holdKvAfterFinish). Checked on real engine
 * processes, without a gateway: a vLLM prefill leg no decode reads keeps the engine's KV usage above
 * zero until the release timeout, and a request that needs those blocks waits in the engine's queue
 * until then; a decode's notify (vLLM) or release (SGLang) frees them at once.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type SimCluster, startSims, Teardown } from './support/cluster.ts';
import { chat, json, pdStats } from './support/pd.ts';
import { scrapeMetrics, until } from './support/wait.ts';

/** Short, so the uncollected-KV case waits little; long enough to read the held state first. */
const RELEASE_MS = 1500;
/**
 * A small pool: `chat()`'s prompt (a few hundred tokens, blocks of 16) takes over half of it, so a
 * second such request cannot start while the first one's KV is held.
 */
const POOL_BLOCKS = 24;
const GUARD_MS = RELEASE_MS * 20;

const teardown = new Teardown();
after(() => teardown.run());
let vllmPrefill: SimCluster;
let vllmDecode: SimCluster;
let sglangPrefill: SimCluster;
let sglangDecode: SimCluster;

/** A metric sample of the engine at `url` whose name starts `name{`, the first found. */
async function sample(url: string, name: string): Promise<number> {
  for (const [key, value] of await scrapeMetrics(url)) if (key.startsWith(`${name}{`)) return value;
  throw new Error(`no ${name} on ${url}/metrics`);
}

const kvUsage = (url: string): Promise<number> => sample(url, 'vllm:kv_cache_usage_perc');

/** A vLLM prefill leg (max_tokens 1, do_remote_decode) on the engine at `url`: its answer body. */
async function vllmPrefillLeg(url: string): Promise<Record<string, unknown>> {
  const r = await json(`${url}/v1/chat/completions`, {
    ...chat({ max_tokens: 1, kv_transfer_params: { do_remote_decode: true, do_remote_prefill: false } }),
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

describe('a sim P/D prefill engine keeps held KV in its pool', { timeout: 120_000 }, () => {
  it('starts the engines', async () => {
    const common = ['--time-scale', '0.05', '--kv-events', 'none'];
    const prefill = ['--pd-role', 'prefill', '--kv-release-timeout-ms', String(RELEASE_MS)];
    const decode = ['--pd-role', 'decode', '--kv-link-gbps', '400'];
    vllmPrefill = await startSims(
      1,
      [...common, '--pd-protocol', 'vllm', ...prefill, '--num-gpu-blocks-override', String(POOL_BLOCKS)],
      teardown,
    );
    vllmDecode = await startSims(1, [...common, '--pd-protocol', 'vllm', ...decode], teardown);
    sglangPrefill = await startSims(1, [...common, '--pd-protocol', 'sglang', ...prefill], teardown);
    sglangDecode = await startSims(1, [...common, '--pd-protocol', 'sglang', ...decode], teardown);
  });

  it('vLLM: KV no decode reads stays counted until the release timeout; a request needing it waits', async () => {
    const url = vllmPrefill.engines[0]?.url as string;
    await vllmPrefillLeg(url);
    const held = await kvUsage(url);
    assert.ok(held > 0.5, `the held prompt's blocks count in the pool's usage (${held})`);
    assert.equal((await pdStats(url))['heldTransfers'], 1);
    // A second prefill cannot fit beside the held KV: it waits in the engine until the timeout frees it.
    // Another prompt: the held blocks stay in the prefix cache, and the same prompt would share them.
    const other = 'another prompt, as long, that shares no block with the first one '.repeat(15);
    const second = json(
      `${url}/v1/chat/completions`,
      chat({ max_tokens: 1, messages: [{ role: 'user', content: other }] }),
    );
    await until(
      'the second request waiting for the held KV',
      async () => (await sample(url, 'vllm:num_requests_waiting')) === 1,
      GUARD_MS,
    );
    const r = await second;
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const stats = await pdStats(url);
    assert.equal(stats['releasedTimeout'], 1, 'it ran only after the held KV was released on the timeout');
    assert.equal(stats['heldTransfers'], 0);
    assert.equal(stats['heldBytes'], 0);
    assert.equal(await kvUsage(url), 0, 'the pool is empty again');
  });

  it("vLLM: the decode's notify frees the held KV at once", async () => {
    const url = vllmPrefill.engines[0]?.url as string;
    const before = await pdStats(url);
    const leg = await vllmPrefillLeg(url);
    assert.ok((await kvUsage(url)) > 0, 'held after the prefill leg');
    const d = await json(`${vllmDecode.engines[0]?.url}/v1/chat/completions`, {
      ...chat({ kv_transfer_params: leg['kv_transfer_params'] }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal((await pdStats(vllmDecode.engines[0]?.url as string))['kvLoadFailures'], 0);
    const after = await pdStats(url);
    assert.equal(after['releasedCollected'], (before['releasedCollected'] as number) + 1);
    assert.equal(after['releasedTimeout'], before['releasedTimeout'], 'not on the timeout');
    assert.equal(await kvUsage(url), 0, 'the notify freed the blocks');
  });

  it("SGLang: the room's KV counts until the decode releases it", async () => {
    const url = sglangPrefill.engines[0]?.url as string;
    const room = 4242;
    const p = await json(`${url}/v1/chat/completions`, chat({ bootstrap_room: room }));
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.ok((await kvUsage(url)) > 0, "the room's KV counts in the prefill's pool");
    const port = sglangPrefill.engines[0]?.port as number;
    const d = await json(
      `${sglangDecode.engines[0]?.url}/v1/chat/completions`,
      chat({ bootstrap_host: '127.0.0.1', bootstrap_port: port, bootstrap_room: room }),
    );
    assert.equal(d.status, 200, JSON.stringify(d.body));
    const stats = await pdStats(url);
    assert.equal(stats['releasedCollected'], 1);
    assert.equal(stats['releasedTimeout'], 0);
    assert.equal(await kvUsage(url), 0, 'the release freed the blocks');
  });
});
