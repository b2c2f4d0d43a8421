/**
 * End-to-end: the Batch API (/v1/files, /v1/batches) through the official `openai` client, against
 * the real gateway in front of real sim engines. A batch's requests go through the gateway's own
 * admission (offline band), routing and proxying; results land in output and error files; a batch
 * can be cancelled; and a gateway SIGKILLed mid-batch and started again on the same directory
 * finishes the batch with every request in exactly one result line.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import {
  MODEL,
  type SimCluster,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
} from './support/cluster.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
const TENANT_KEY = 'sk-e2e-batch-tenant';
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired']);
/** Deadline for a batch to reach a terminal status (not an assertion on speed: a hang guard). */
const BATCH_DEADLINE_MS = 90_000;

const teardown = new Teardown();
const dirs: string[] = [];
let sims: SimCluster;
let gw: TestGateway;
let client: OpenAI;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-batch-'));
  dirs.push(dir);
  return dir;
}

function chatLine(
  customId: string,
  extra: Record<string, unknown> = {},
  body: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: `say ${customId}` }], max_tokens: 8, ...body },
    ...extra,
  });
}

interface ResultLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

async function resultLines(c: OpenAI, fileId: string | null | undefined): Promise<ResultLine[]> {
  if (fileId === null || fileId === undefined) return [];
  const text = await (await c.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as ResultLine);
}

async function upload(c: OpenAI, lines: readonly string[]): Promise<string> {
  const file = await c.files.create({
    file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'input.jsonl'),
    purpose: 'batch',
  });
  return file.id;
}

async function waitFor(c: OpenAI, id: string, done: (b: Batch) => boolean): Promise<Batch> {
  const deadline = Date.now() + BATCH_DEADLINE_MS;
  for (;;) {
    const b = await c.batches.retrieve(id);
    if (done(b)) return b;
    if (Date.now() > deadline) assert.fail(`batch ${id} still ${b.status} after ${BATCH_DEADLINE_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const finished = (b: Batch): boolean => TERMINAL.has(b.status);

before(async () => {
  sims = await startSims(2, ['--time-scale', '0.5'], teardown);
  gw = await startTestGateway(
    {
      backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
      tenants: [{ key: TENANT_KEY, name: 'e2e' }],
      batch: { dir: tempDir(), inFlightMax: 3, retryDelayMs: 50 },
    },
    teardown,
  );
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: TENANT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await teardown.run();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('Batch API through the gateway', { timeout: 180_000 }, () => {
  it('runs a mixed file: good lines to the output file, bad ones to the error file, online traffic served', async () => {
    const good = Array.from({ length: 8 }, (_, i) => `ok-${i}`);
    const lines = [
      ...good.slice(0, 4).map((id) => chatLine(id)),
      chatLine('wrong-url', { url: '/v1/completions' }),
      chatLine('wrong-method', { method: 'GET' }),
      chatLine('bad-body', {}, { messages: 'not a list' }),
      chatLine('streaming', {}, { stream: true }),
      chatLine('unknown-model', {}, { model: 'no-such-model' }),
      ...good.slice(4).map((id) => chatLine(id)),
    ];
    const inputId = await upload(client, lines);
    const input = await client.files.retrieve(inputId);
    assert.equal(input.purpose, 'batch');
    assert.equal(input.filename, 'input.jsonl');
    const created = await client.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { job: 'e2e-mixed' },
    });
    assert.equal(created.object, 'batch');
    assert.equal(created.status, 'validating');
    assert.deepEqual(created.metadata, { job: 'e2e-mixed' });

    // Online requests while the batch runs are answered.
    const online = await Promise.all(
      Array.from({ length: 4 }, () =>
        client.chat.completions.create({
          model: MODEL,
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 4,
        }),
      ),
    );
    for (const o of online) assert.equal(o.object, 'chat.completion');

    const done = await waitFor(client, created.id, finished);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: 13, completed: 8, failed: 5 });
    assert.ok(done.in_progress_at !== null && done.completed_at !== null);

    const out = await resultLines(client, done.output_file_id);
    assert.deepEqual(out.map((l) => l.custom_id).sort(), [...good].sort());
    for (const l of out) {
      assert.equal(l.error, null);
      assert.equal(l.response?.status_code, 200);
      assert.equal(l.response?.body['object'], 'chat.completion');
      assert.ok(Array.isArray(l.response?.body['choices']));
    }
    const errors = await resultLines(client, done.error_file_id);
    const byId = new Map(errors.map((l) => [l.custom_id, l]));
    assert.equal(byId.size, 5);
    for (const id of ['wrong-url', 'wrong-method', 'bad-body', 'streaming'])
      assert.equal(byId.get(id)?.error?.code, 'SY_ERR_INVALID_ARGUMENT', id);
    assert.match(byId.get('wrong-url')?.error?.message ?? '', /url/);
    // The unknown model got as far as the gateway's own request parsing, which answered 404.
    assert.equal(byId.get('unknown-model')?.error?.code, 'SY_ERR_NOT_FOUND');
    assert.equal(byId.get('unknown-model')?.response?.status_code, 404);

    const listed = await client.batches.list({ limit: 10 });
    assert.ok(listed.data.some((b) => b.id === created.id));
    await assert.rejects(
      client.batches.retrieve('batch_nope'),
      (e: unknown) => e instanceof OpenAI.NotFoundError,
    );
    // The input of a finished batch may be deleted.
    const deleted = await client.files.delete(inputId);
    assert.equal(deleted.deleted, true);
    await assert.rejects(client.files.retrieve(inputId), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  it("queues batch requests in admission's offline band while online requests go straight out", async () => {
    // One offline request per instance at a time: the rest of the batch waits inside admission.
    const held = await startTestGateway(
      {
        backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
        admission: { gate: { offlineInFlightPerInstanceMax: 1 } },
        batch: { dir: tempDir(), inFlightMax: 8, retryDelayMs: 50 },
      },
      teardown,
    );
    const c = new OpenAI({ baseURL: `${held.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 20_000 });
    const ids = Array.from({ length: 16 }, (_, i) => `q-${i}`);
    const inputId = await upload(
      c,
      ids.map((id) => chatLine(id, {}, { max_tokens: 32 })),
    );
    const created = await c.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const stats = async (): Promise<{ admission: { queued: number; offered: number } }> =>
      (await fetch(`${held.url}/stats`)).json() as Promise<{
        admission: { queued: number; offered: number };
      }>;
    let queuedSeen = 0;
    const deadline = Date.now() + BATCH_DEADLINE_MS;
    while (queuedSeen === 0) {
      queuedSeen = (await stats()).admission.queued;
      if (Date.now() > deadline) assert.fail('no batch request ever waited in admission');
    }
    // Batch requests are waiting in the offline band; an online request is not held behind them.
    const online = await c.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'online' }],
      max_tokens: 4,
    });
    assert.equal(online.object, 'chat.completion');
    const done = await waitFor(c, created.id, finished);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: 16, completed: 16, failed: 0 });
    assert.ok(queuedSeen > 0);
    // Every batch request (plus the online one) was offered to the gateway's own admission.
    assert.ok((await stats()).admission.offered >= ids.length + 1);
  });

  it('offers a timed-out request again up to timeoutRetriesMax, then writes the timeout as its result', async () => {
    // Also the bound on this test's own API calls (Node's head timeout is min(it, 60 s)). At 300 ms
    // a loaded machine (load 15+) timed out the short request too (6 offers, or 3 failed) or an API
    // call's head (408), in 5 of 8 runs.
    const REQUEST_TIMEOUT_MS = 5000;
    const strict = await startTestGateway(
      {
        backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
        limits: { requestTimeoutMs: REQUEST_TIMEOUT_MS },
        batch: { dir: tempDir(), timeoutRetriesMax: 1, retryDelayMs: 20 },
      },
      teardown,
    );
    const c = new OpenAI({ baseURL: `${strict.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 20_000 });
    // The sim generates exactly max_tokens: 20,000 tokens take over a minute at time scale 0.5
    // (a loaded machine only slows them), 12x the bound; 1 token takes well under it.
    const inputId = await upload(c, [
      chatLine('long-0', {}, { max_tokens: 20_000 }),
      chatLine('short', {}, { max_tokens: 1 }),
      chatLine('long-1', {}, { max_tokens: 20_000 }),
    ]);
    const created = await c.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await waitFor(c, created.id, finished);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: 3, completed: 1, failed: 2 });
    const errors = await resultLines(c, done.error_file_id);
    assert.deepEqual(errors.map((l) => l.custom_id).sort(), ['long-0', 'long-1']);
    for (const l of errors) assert.equal(l.error?.code, 'SY_ERR_TIMEOUT');
    // Each long request was sent twice (first try + one retry): the gateway's own stats count them.
    const stats = (await (await fetch(`${strict.url}/stats`)).json()) as { admission: { offered: number } };
    assert.equal(stats.admission.offered, 5);
  });

  it('writes 20,000 requests the gateway refuses at once without deep recursion', async () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => `m-${i}`);
    const inputId = await upload(
      client,
      ids.map((id) => chatLine(id, {}, { model: 'no-such-model' })),
    );
    const created = await client.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await waitFor(client, created.id, finished);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.request_counts, { total: ids.length, completed: 0, failed: ids.length });
    const errors = await resultLines(client, done.error_file_id);
    assert.equal(new Set(errors.map((l) => l.custom_id)).size, ids.length);
    assert.ok(errors.every((l) => l.error?.code === 'SY_ERR_NOT_FOUND'));
  });

  it('fails a file that is not a batch file, naming the bad lines', async () => {
    const inputId = await upload(client, [chatLine('a'), '{oops', chatLine('a')]);
    const created = await client.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await waitFor(client, created.id, finished);
    assert.equal(done.status, 'failed');
    assert.deepEqual(
      done.errors?.data?.map((e) => e.line),
      [2, 3],
    );
    assert.equal(done.output_file_id ?? null, null);
  });

  it('fails an input file that is not valid UTF-8 rather than serve altered prompts', async () => {
    // The bad bytes sit in the prompt, where a decoder's U+FFFD would be served without a word.
    const line = Buffer.from(chatLine('a'));
    const at = line.indexOf('say ') + 4;
    const bad = Buffer.concat([
      line.subarray(0, at),
      Buffer.from([0xc3, 0x28]),
      line.subarray(at),
      Buffer.from('\n'),
    ]);
    const file = await client.files.create({ file: await toFile(bad, 'input.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await waitFor(client, created.id, finished);
    assert.equal(done.status, 'failed');
    assert.match(done.errors?.data?.[0]?.message ?? '', /not valid UTF-8/);
  });

  it('refuses bad uploads and creates with OpenAI-style errors', async () => {
    await assert.rejects(
      client.files.create({ file: await toFile(Buffer.from('x'), 'a.jsonl'), purpose: 'fine-tune' }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && /purpose/.test(e.message),
    );
    await assert.rejects(
      client.batches.create({
        input_file_id: 'file-nope',
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
      (e: unknown) => e instanceof OpenAI.NotFoundError,
    );
    const unauthorized = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(
      unauthorized.batches.list(),
      (e: unknown) => e instanceof OpenAI.AuthenticationError,
    );
  });

  it('cancels a running batch: it ends cancelled, each result written at most once', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `c-${i}`);
    const inputId = await upload(
      client,
      ids.map((id) => chatLine(id, {}, { max_tokens: 32 })),
    );
    const created = await client.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const running = await waitFor(
      client,
      created.id,
      (b) => finished(b) || (b.status === 'in_progress' && (b.request_counts?.completed ?? 0) >= 1),
    );
    assert.equal(running.status, 'in_progress');
    const cancelling = await client.batches.cancel(created.id);
    assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);
    const done = await waitFor(client, created.id, finished);
    assert.equal(done.status, 'cancelled');
    assert.ok(done.cancelled_at !== null);
    const out = await resultLines(client, done.output_file_id);
    const errors = await resultLines(client, done.error_file_id);
    const seen = [...out, ...errors].map((l) => l.custom_id);
    assert.equal(new Set(seen).size, seen.length);
    assert.equal(out.length, done.request_counts?.completed);
    assert.equal(errors.length, done.request_counts?.failed);
    // Requests not yet sent when it was cancelled never run (3 at most are out at once).
    assert.equal(done.request_counts?.total, ids.length);
    assert.ok(seen.length < ids.length, `${seen.length} of ${ids.length} ran`);
  });

  it('survives SIGKILL mid-batch: restarted on the same directory, every line ends up exactly once', async () => {
    const dir = tempDir();
    const configPath = join(dir, 'gateway.yaml');
    writeFileSync(
      configPath,
      JSON.stringify({
        backends: sims.engines.map((e, i) => simBackend(`sim${i}`, e)),
        batch: { dir: join(dir, 'state'), inFlightMax: 2, retryDelayMs: 50 },
      }),
    );
    const first = await startServe(configPath);
    const c1 = new OpenAI({ baseURL: `${first.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 20_000 });
    const ids = Array.from({ length: 40 }, (_, i) => `r-${i}`);
    const bad = ['bad-0', 'bad-1'];
    const inputId = await upload(c1, [
      ...ids.map((id) => chatLine(id, {}, { max_tokens: 24 })),
      ...bad.map((id) => chatLine(id, { url: '/v1/embeddings' })),
    ]);
    const created = await c1.batches.create({
      input_file_id: inputId,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    // Kill it once some requests are done (if it finished first, the check below still holds).
    const before = await waitFor(
      c1,
      created.id,
      (b) => finished(b) || (b.request_counts?.completed ?? 0) >= 3,
    );
    await first.kill();

    const second = await startServe(configPath);
    const c2 = new OpenAI({ baseURL: `${second.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 20_000 });
    const done = await waitFor(c2, created.id, finished);
    assert.equal(done.status, 'completed', `before the kill: ${before.status}`);
    assert.deepEqual(done.request_counts, { total: 42, completed: 40, failed: 2 });
    const out = await resultLines(c2, done.output_file_id);
    const errors = await resultLines(c2, done.error_file_id);
    assert.deepEqual(out.map((l) => l.custom_id).sort(), [...ids].sort());
    assert.deepEqual(errors.map((l) => l.custom_id).sort(), [...bad].sort());
    for (const l of out) assert.equal(l.response?.status_code, 200);
    await second.kill();
  });
});

interface ServeChild {
  readonly url: string;
  kill(): Promise<void>;
}

/** `switchyard serve --config <path> --port 0` as a child process; resolves when it listens. */
async function startServe(configPath: string): Promise<ServeChild> {
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--config', configPath, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let alive = true;
  const exited = new Promise<void>((resolve) =>
    child.once('close', () => {
      alive = false;
      resolve();
    }),
  );
  const kill = async (): Promise<void> => {
    if (!alive) return;
    child.kill('SIGKILL');
    await exited;
  };
  teardown.add(kill);
  const stderr: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
    if (stderr.length < 200) stderr.push(l);
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start\n${stderr.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve exited before listening\n${stderr.join('\n')}`));
    });
  });
  return { url, kill };
}
