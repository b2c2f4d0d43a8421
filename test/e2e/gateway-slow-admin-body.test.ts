/**
 * End-to-end: the side bodies the gateway reads itself (`PUT /admin/policy`, `POST /v1/batches`) are
 * bounded in time as a completion's is: a client that sends the head and then trickles or stops its
 * body gets 408 SY_ERR_REQUEST_TIMEOUT naming limits.bodyReadTimeoutMs, and its connection closes.
 * An upload (`POST /v1/files`) that stops for that long is answered the same way, and one whose
 * client leaves mid-body has its partial file closed and removed; one whose multipart form ends
 * inside its file part is answered 400 (it was an uncaught exception in the gateway).
 * Before, the read had only Node's backstop (requestTimeoutMs + 1 s, 10 min by default). Exact bytes
 * go over raw sockets against a real gateway in front of a real sim engine; the client-side deadline
 * only guards against a hang.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  simBackend,
  startSims,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';
import { openSocket, readUntilClose } from './support/raw-http.ts';

const BODY_READ_TIMEOUT_MS = 400;
const ADMIN_KEY = 'slow-body-admin';
/** Client-side bound on one raw exchange: a hang guard, far past the deadline under test. */
const HANG_GUARD_MS = 15_000;

interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

/** The one HTTP answer in `text` (framed by Content-Length). */
function answerOf(text: string): RawAnswer {
  const headEnd = text.indexOf('\r\n\r\n');
  assert.ok(headEnd > 0, `not an HTTP answer: ${JSON.stringify(text.slice(0, 200))}`);
  const head = text.slice(0, headEnd);
  const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? Number.NaN);
  assert.ok(Number.isFinite(length), `answer without content-length: ${head}`);
  const body = text.slice(headEnd + 4, headEnd + 4 + length);
  assert.equal(text.length, headEnd + 4 + length, 'one answer only');
  return { status: Number(head.slice(9, 12)), body };
}

function head(
  method: string,
  path: string,
  length: number,
  authorization: string,
  type = 'application/json',
): string {
  return (
    `${method} ${path} HTTP/1.1\r\nhost: gw\r\ncontent-type: ${type}\r\n` +
    `authorization: Bearer ${authorization}\r\ncontent-length: ${length}\r\n\r\n`
  );
}

/** A multipart/form-data upload body: purpose=batch and a `file` part holding `content`. */
function multipart(content: string): { body: string; type: string } {
  const b = 'switchyard-slow-upload';
  const body =
    `--${b}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
    `--${b}\r\ncontent-disposition: form-data; name="file"; filename="in.jsonl"\r\n` +
    `content-type: application/jsonl\r\n\r\n${content}\r\n--${b}--\r\n`;
  return { body, type: `multipart/form-data; boundary=${b}` };
}

/**
 * Sends the head and the first `sent` bytes of `body`, then (when `trickleMs` is given) one more byte
 * every `trickleMs` until the connection closes; returns the answer read when it closed.
 */
async function slowExchange(
  url: string,
  method: string,
  path: string,
  body: string,
  sent: number,
  authorization: string,
  trickleMs?: number,
  type?: string,
): Promise<RawAnswer> {
  const socket = await openSocket(url);
  const all = readUntilClose(socket, HANG_GUARD_MS);
  socket.write(head(method, path, Buffer.byteLength(body), authorization, type) + body.slice(0, sent));
  let next = sent;
  const trickle =
    trickleMs === undefined
      ? undefined
      : setInterval(() => {
          if (next < body.length - 1 && !socket.destroyed) socket.write(body[next++] as string);
        }, trickleMs);
  try {
    return answerOf(await all);
  } finally {
    if (trickle !== undefined) clearInterval(trickle);
  }
}

function assertLate(answer: RawAnswer, message = /limits\.bodyReadTimeoutMs/): void {
  const error = assertErrorBody(answer.body, answer.status).error;
  assert.equal(answer.status, 408, answer.body);
  assert.equal(error.code, 'SY_ERR_REQUEST_TIMEOUT');
  assert.equal(error.param, 'body');
  assert.match(error.message, message);
}

describe('slow admin and batch-create bodies', { timeout: 60_000 }, () => {
  const teardown = new Teardown();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-slow-body-'));
  let gw: TestGateway;
  /** Upload files on disk (finished or partial). */
  const uploadsLeft = (): string[] => {
    const files = join(dir, 'files');
    return existsSync(files) ? readdirSync(files).filter((f) => f.endsWith('.data')) : [];
  };

  before(async () => {
    const sims = await startSims(1, ['--kv-events', 'none'], teardown);
    const engine = sims.engines[0];
    assert.ok(engine !== undefined);
    gw = await startTestGateway(
      {
        backends: [simBackend('e0', engine, false)],
        adminKey: ADMIN_KEY,
        batch: { dir },
        // The request deadline stays long: only the body's own bound can end these reads in time.
        limits: { bodyReadTimeoutMs: BODY_READ_TIMEOUT_MS },
      },
      teardown,
    );
  });
  after(async () => {
    await teardown.run();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers PUT /admin/policy whose body trickles 408 and closes the connection', async () => {
    const body = JSON.stringify({ policy: 'round-robin', pad: 'x'.repeat(200) });
    // One byte every 50 ms: the client never goes quiet, but the whole body takes 10 s.
    assertLate(await slowExchange(gw.url, 'PUT', '/admin/policy', body, 5, ADMIN_KEY, 50));
  });

  it('answers PUT /admin/policy whose body stops 408 and closes the connection', async () => {
    const body = JSON.stringify({ policy: 'round-robin' });
    assertLate(await slowExchange(gw.url, 'PUT', '/admin/policy', body, 3, ADMIN_KEY));
  });

  it('answers POST /v1/batches whose body stops 408 and closes the connection', async () => {
    const body = JSON.stringify({
      input_file_id: 'file-none',
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    assertLate(await slowExchange(gw.url, 'POST', '/v1/batches', body, 10, 'none'));
  });

  it('answers POST /v1/files whose body stops 408, closes the connection and removes the partial file', async () => {
    const upload = multipart(`${'{"custom_id":"a"}\n'.repeat(20)}`);
    const answer = await slowExchange(
      gw.url,
      'POST',
      '/v1/files',
      upload.body,
      upload.body.length - 40,
      'none',
      undefined,
      upload.type,
    );
    assertLate(answer, /no byte received for \d+ ms \(limits\.bodyReadTimeoutMs\)/);
    assert.deepEqual(uploadsLeft(), []);
  });

  it('removes the partial file of an upload whose client leaves mid-body', async () => {
    const upload = multipart('{"custom_id":"b"}\n'.repeat(20));
    const socket = await openSocket(gw.url);
    const closed = readUntilClose(socket, HANG_GUARD_MS);
    socket.write(
      head('POST', '/v1/files', upload.body.length, 'none', upload.type) + upload.body.slice(0, -40),
    );
    await until('the upload file is created', () => uploadsLeft().length === 1);
    socket.destroy();
    await closed;
    await until('the partial upload is removed', () => uploadsLeft().length === 0);
  });

  it('answers an upload whose body ends inside its file part 400, and stays up', async () => {
    // Whole by Content-Length, but the multipart form stops mid-part: busboy errors the part.
    const cut = multipart('{"custom_id":"c"}\n'.repeat(4)).body.slice(0, -30);
    const res = await fetch(`${gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': multipart('').type },
      body: cut,
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });
    const text = await res.text();
    const error = assertErrorBody(text, res.status).error;
    assert.equal(res.status, 400, text);
    assert.equal(error.param, 'body');
    assert.match(error.message, /malformed multipart body/);
    assert.deepEqual(uploadsLeft(), []);
    assert.equal(
      (await fetch(`${gw.url}/health`, { signal: AbortSignal.timeout(HANG_GUARD_MS) })).status,
      200,
    );
  });

  it('still reads a whole body sent at once on both routes', async () => {
    const policy = await fetch(`${gw.url}/admin/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ policy: 'round-robin' }),
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });
    assert.equal(policy.status, 200, await policy.text());
    const batch = await fetch(`${gw.url}/v1/batches`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        input_file_id: 'file-none',
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });
    // The body was read and checked: the file it names does not exist.
    const text = await batch.text();
    assert.equal(assertErrorBody(text, batch.status).error.code, 'SY_ERR_NOT_FOUND', text);
  });
});
