/**
 * End-to-end: the gateway's priority (higher is more important, the twin's meaning) reaches a
 * priority-scheduling engine in that engine's own convention. One sim engine running
 * `--scheduling-policy priority --max-num-seqs 1` (vLLM's sign: a lower body `priority` first) behind
 * the real gateway; a long request holds the only sequence slot while the others queue inside the
 * engine, so the engine alone decides their order.
 *
 * - A body `priority: 5` (Switchyard: important) overtakes a `priority: 0` request sent before it.
 *   Before, the body went as sent and the engine read 5 as unimportant: it ran last.
 * - A Batch API request (the gateway's batch band, -1) yields to an online request sent after it.
 *   Before, no priority reached the engine and the batch request, first in line, ran first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import {
  MODEL,
  metricSum,
  post,
  type Reply,
  scrape,
  spawnSim,
  startTestGateway,
  Teardown,
  until,
} from './support/cluster.ts';
import { fileSetUp } from './support/file-set-up.ts';

/** Hang guard for one request (not a bound on speed). */
const DEADLINE_MS = 60_000;
/** Time for a request the gateway sent to reach the engine's queue. */
const SETTLE_MS = 300;

/** One priority-scheduling sim engine with one sequence slot behind the gateway (batch API on). */
const setup = fileSetUp(new Teardown(), ['engine', 'gw'], async (teardown) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-priority-'));
  teardown.add(() => rmSync(dir, { recursive: true, force: true }));
  const engine = await spawnSim(
    ['--kv-events', 'none', '--scheduling-policy', 'priority', '--max-num-seqs', '1'],
    0,
    teardown,
  );
  const gw = await startTestGateway(
    {
      backends: [{ id: 'sim0', type: 'sim', url: engine.url, models: [MODEL] }],
      limits: { clientPriorityMax: 10 },
      batch: { dir, inFlightMax: 4, retryDelayMs: 50 },
    },
    teardown,
  );
  return { engine, gw };
});

async function engineRunning(): Promise<number> {
  return metricSum(await scrape(setup.engine.url), 'vllm:num_requests_running');
}

/** Requests the gateway has sent upstream and not finished (its /stats `inFlight`). */
async function gatewayInFlight(): Promise<number> {
  const res = await fetch(`${setup.gw.url}/stats`, { signal: AbortSignal.timeout(DEADLINE_MS) });
  return ((await res.json()) as { inFlight: number }).inFlight;
}

/**
 * Waits until the gateway has `count` requests upstream, then a moment for the last to reach the
 * engine's queue (the blocker runs ~2.5 s, far past this).
 */
async function upstream(count: number, what: string): Promise<void> {
  await until(what, async () => (await gatewayInFlight()) >= count);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

/** Sends a completion through the gateway; resolves with its reply, noting the order it finished in. */
function send(prompt: string, maxTokens: number, finished: string[], priority?: number): Promise<Reply> {
  const body = {
    model: MODEL,
    prompt,
    max_tokens: maxTokens,
    ignore_eos: true,
    ...(priority === undefined ? {} : { priority }),
  };
  return post(setup.gw.url, '/v1/completions', body, { deadlineMs: DEADLINE_MS }).then((r) => {
    finished.push(prompt);
    return r;
  });
}

/** Starts a long request on an idle engine: it holds the one sequence slot while the rest queue. */
async function occupyEngine(finished: string[]): Promise<{ readonly blocker: Promise<Reply> }> {
  await until('an idle gateway', async () => (await gatewayInFlight()) === 0, DEADLINE_MS);
  await until('an idle engine', async () => (await engineRunning()) === 0, DEADLINE_MS);
  const blocker = send('blocker', 400, finished);
  await upstream(1, 'the blocker upstream');
  return { blocker };
}

describe('gateway priority on a priority-scheduling engine', { timeout: 120_000 }, () => {
  it('a higher body priority (the gateway meaning) overtakes a lower one queued before it', async () => {
    const finished: string[] = [];
    const { blocker } = await occupyEngine(finished);
    const low = send('low', 100, finished, 0);
    await upstream(2, 'low upstream');
    const high = send('high', 100, finished, 5);
    const replies = await Promise.all([blocker, low, high]);
    for (const r of replies) assert.equal(r.status, 200, r.text);
    assert.ok(
      finished.indexOf('high') < finished.indexOf('low'),
      `high (priority 5) should finish before low (0): ${finished.join(' < ')}`,
    );
  });

  it('a Batch API request yields to an online request sent after it', async () => {
    const finished: string[] = [];
    const { blocker } = await occupyEngine(finished);
    const client = new OpenAI({
      baseURL: `${setup.gw.url}/v1`,
      apiKey: 'none',
      maxRetries: 0,
      timeout: 20_000,
    });
    const line = JSON.stringify({
      custom_id: 'offline',
      method: 'POST',
      url: '/v1/completions',
      body: { model: MODEL, prompt: 'offline', max_tokens: 100, ignore_eos: true },
    });
    const file = await client.files.create({
      file: await toFile(Buffer.from(`${line}\n`), 'input.jsonl'),
      purpose: 'batch',
    });
    const batch = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    await upstream(2, 'the batch request upstream');
    const online = await send('online', 100, finished);
    assert.equal(online.status, 200, online.text);
    const atOnline = await client.batches.retrieve(batch.id);
    assert.equal(
      atOnline.request_counts?.completed ?? 0,
      0,
      'the batch request (gateway priority -1) finished before the online request (0) sent after it',
    );
    assert.equal((await blocker).status, 200);
    await until(
      'the batch done',
      async () => (await client.batches.retrieve(batch.id)).status === 'completed',
      DEADLINE_MS,
    );
  });
});
