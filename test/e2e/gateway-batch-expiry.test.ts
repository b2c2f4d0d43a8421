/**
 * End-to-end: OpenAI's expiry rules in the Batch and Files APIs, against the real gateway in front
 * of a real sim engine, through the official `openai` client. The gateway's Batch API runs on a
 * wall clock the test holds (GatewayOptions.batchWallClockMs), so an hour's expiry (OpenAI's
 * shortest) or the 24-hour completion window is reached by moving that clock, not by waiting.
 *
 * - `files.create` with `expires_after`: the file object's `expires_at` is created_at + seconds; at
 *   that second the file is gone (retrieve and content 404, left out of the list, bytes removed).
 * - `batches.create` with `output_expires_after`: its output and error files expire that long after
 *   they are written.
 * - A batch whose requests cannot run (its only instance drained) is `expired` when the completion
 *   window closes, each unfinished request in the error file as `batch_expired`.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI, { NotFoundError, toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import {
  MODEL,
  type SimCluster,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

const ADMIN_KEY = 'e2e-batch-expiry-admin';
const HOUR_S = 3600;

const teardown = new Teardown();
const dir = mkdtempSync(join(tmpdir(), 'switchyard-batch-expiry-'));
let sims: SimCluster;
let gw: TestGateway;
let client: OpenAI;
/** The Batch API's wall clock (Unix ms): moved by the tests. */
let clockMs = Date.UTC(2026, 0, 1);

before(async () => {
  sims = await startSims(1, ['--time-scale', '0.05', '--kv-events', 'none'], teardown);
  gw = await startTestGateway(
    {
      backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
      adminKey: ADMIN_KEY,
      batch: { dir, retryDelayMs: 50 },
    },
    teardown,
    { batchWallClockMs: () => clockMs },
  );
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await teardown.run();
  rmSync(dir, { recursive: true, force: true });
});

function chatLine(customId: string): string {
  return JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: `say ${customId}` }], max_tokens: 4 },
  });
}

async function upload(ids: readonly string[], expiresAfterS?: number): Promise<OpenAI.Files.FileObject> {
  return client.files.create({
    file: await toFile(Buffer.from(`${ids.map(chatLine).join('\n')}\n`), 'input.jsonl'),
    purpose: 'batch',
    ...(expiresAfterS === undefined
      ? {}
      : { expires_after: { anchor: 'created_at', seconds: expiresAfterS } }),
  });
}

async function gone(fileId: string): Promise<void> {
  await assert.rejects(client.files.retrieve(fileId), NotFoundError);
  await assert.rejects(client.files.content(fileId), NotFoundError);
  const listed = await client.files.list();
  assert.ok(!listed.data.some((f) => f.id === fileId), `${fileId} still listed`);
}

/** Polls until the batch is in a terminal status (a hang guard, not a speed assertion). */
async function settled(id: string): Promise<Batch> {
  let b = await client.batches.retrieve(id);
  await until(
    `batch ${id} finishes`,
    async () => {
      b = await client.batches.retrieve(id);
      return ['completed', 'failed', 'cancelled', 'expired'].includes(b.status);
    },
    60_000,
  );
  return b;
}

describe('Batch and Files API expiry', { timeout: 180_000 }, () => {
  it('a file with expires_after is gone at created_at + seconds: 404, unlisted, its bytes removed', async () => {
    const kept = await upload(['kept']);
    const file = await upload(['a'], HOUR_S);
    assert.equal(file.created_at, Math.floor(clockMs / 1000));
    assert.equal(file.expires_at, file.created_at + HOUR_S);
    assert.equal(kept.expires_at, undefined, 'a file without expires_after has no expires_at');
    const data = join(dir, 'files', `${file.id}.data`);
    assert.ok(existsSync(data));

    clockMs += (HOUR_S - 1) * 1000;
    assert.equal((await client.files.retrieve(file.id)).id, file.id, 'one second before: still there');
    clockMs += 1000;
    await gone(file.id);
    await until('the expired bytes are removed', async () => !existsSync(data), 10_000);
    assert.equal((await client.files.retrieve(kept.id)).id, kept.id, 'a file without a policy stays');
  });

  it('refuses an expires_after or output_expires_after outside OpenAI bounds, storing nothing', async () => {
    const before = (await client.files.list()).data.length;
    for (const [anchor, seconds] of [
      ['created_at', '60'],
      ['created_at', String(31 * 24 * HOUR_S)],
      ['last_active_at', '3600'],
    ]) {
      const form = new FormData();
      form.append('purpose', 'batch');
      form.append('expires_after[anchor]', anchor as string);
      form.append('expires_after[seconds]', seconds as string);
      form.append('file', new Blob([`${chatLine('x')}\n`]), 'input.jsonl');
      const res = await fetch(`${gw.url}/v1/files`, { method: 'POST', body: form });
      const body = (await res.json()) as { error: { code: string; param: string } };
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(body.error.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.equal(body.error.param, 'expires_after');
    }
    assert.equal((await client.files.list()).data.length, before);
    const input = await upload(['x']);
    const res = await fetch(`${gw.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        output_expires_after: { anchor: 'created_at', seconds: 10 },
      }),
    });
    const body = (await res.json()) as { error: { param: string } };
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(body.error.param, 'output_expires_after');
    assert.equal((await client.batches.list()).data.length, 0, 'no batch was created');
  });

  it("a batch's output and error files expire output_expires_after after they are written", async () => {
    const input = await upload(['ok-1', 'ok-2']);
    // A line for another endpoint goes to the error file, so the batch writes both files.
    const wrong = JSON.stringify({
      custom_id: 'wrong-url',
      method: 'POST',
      url: '/v1/completions',
      body: { model: MODEL, prompt: 'x', max_tokens: 2 },
    });
    const mixed = await client.files.create({
      file: await toFile(Buffer.from(`${chatLine('ok-3')}\n${wrong}\n`), 'mixed.jsonl'),
      purpose: 'batch',
    });
    const created = await client.batches.create({
      input_file_id: mixed.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      output_expires_after: { anchor: 'created_at', seconds: 2 * HOUR_S },
    });
    assert.ok(!('output_expires_after' in created), 'the batch object has no output_expires_after');
    // Written later than the batch's creation: the policy counts from the files' own creation.
    clockMs += 60_000;
    const done = await settled(created.id);
    assert.equal(done.status, 'completed');
    assert.ok(done.output_file_id && done.error_file_id, JSON.stringify(done));
    for (const id of [done.output_file_id, done.error_file_id]) {
      const f = await client.files.retrieve(id);
      assert.equal(f.created_at, Math.floor(clockMs / 1000));
      assert.equal(f.expires_at, f.created_at + 2 * HOUR_S, id);
    }
    clockMs += 2 * HOUR_S * 1000;
    for (const id of [done.output_file_id, done.error_file_id]) await gone(id);
    assert.equal((await client.batches.retrieve(created.id)).output_file_id, done.output_file_id);
    assert.equal((await client.files.retrieve(input.id)).id, input.id, 'an input without a policy stays');
  });

  it('a batch that cannot run is expired when its 24-hour window closes: batch_expired per request', async () => {
    const admin = { authorization: `Bearer ${ADMIN_KEY}` };
    assert.equal(
      (await fetch(`${gw.url}/admin/instances/sim0/drain`, { method: 'POST', headers: admin })).status,
      200,
    );
    try {
      const ids = ['late-1', 'late-2', 'late-3'];
      const input = await upload(ids);
      const created = await client.batches.create({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      assert.equal(created.expires_at, created.created_at + 24 * HOUR_S);
      await until(
        'the batch runs (offering its requests into no room)',
        async () => (await client.batches.retrieve(created.id)).status === 'in_progress',
        30_000,
      );
      clockMs += (24 * HOUR_S - 1) * 1000;
      assert.equal((await client.batches.retrieve(created.id)).status, 'in_progress', 'one second before');
      clockMs += 1000;
      const b = await settled(created.id);
      assert.equal(b.status, 'expired');
      assert.equal(b.expired_at, Math.floor(clockMs / 1000));
      assert.equal(b.output_file_id, null);
      assert.ok(b.error_file_id);
      const lines = (await (await client.files.content(b.error_file_id)).text())
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as { custom_id: string; response: unknown; error: { code: string } });
      assert.deepEqual(lines.map((l) => l.custom_id).sort(), ids);
      for (const l of lines) {
        assert.equal(l.error.code, 'batch_expired');
        assert.equal(l.response, null);
      }
      assert.deepEqual(b.request_counts, { total: 3, completed: 0, failed: 3 });
    } finally {
      await fetch(`${gw.url}/admin/instances/sim0/undrain`, { method: 'POST', headers: admin });
    }
  });
});
