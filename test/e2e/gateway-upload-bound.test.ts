/**
 * End-to-end: `batch.uploadsInFlightMax` bounds the uploads (`POST /v1/files`) being received at
 * once. Before it, only stored files were bounded (`filesMax`): any number of clients could each
 * hold a connection, an open temp file and up to fileBytesMax of disk at the same time. With the
 * bound at 1, an upload while another is received is refused at once, 429 SY_ERR_OVERLOADED with
 * Retry-After, counted in `/stats` `rejected`; and every way an upload ends (answered, refused 400
 * or 413, timed out, client gone, malformed form, a content-type busboy cannot parse: that one was a
 * 500 from an uncaught throw) gives its slot back, so the next one is taken.
 * Exact bytes go over raw sockets against a real gateway on 127.0.0.1; client-side deadlines only
 * guard against a hang.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertErrorBody,
  type GatewayStatsJson,
  getJson,
  startTestGateway,
  Teardown,
  type TestGateway,
  until,
} from './support/cluster.ts';

/**
 * The shared gateway's bound on a body that stops: not under test there, and far longer than any
 * test holds an upload open. At 400 ms a loaded machine (load 15+) let the held upload of the first
 * test time out (408) before the second upload came, which was then taken (200, not 429), and its
 * file was left behind for the "client leaves" test to find.
 */
const BODY_READ_TIMEOUT_MS = 60_000;
/**
 * The 408 test's own gateway's bound: that test waits it out, and the whole upload that follows
 * must arrive within it, so it keeps a wide margin over a loaded machine's pauses.
 */
const STALLED_BODY_TIMEOUT_MS = 2000;
/** Small, so a too-large upload is refused while streaming (the declared-size check lets it in). */
const FILE_BYTES_MAX = 4096;
/** Client-side bound on one exchange: a hang guard, far past any deadline under test. */
const HANG_GUARD_MS = 15_000;

interface Stats extends GatewayStatsJson {
  batch: { uploadsInFlight: number; uploadsInFlightMax: number; uploadsRefused: number };
}

interface RawAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
}

/** A multipart/form-data upload body: purpose=`purpose` and a `file` part holding `content`. */
function multipart(content: string, purpose = 'batch'): { body: string; type: string } {
  const b = 'switchyard-upload-bound';
  const body =
    `--${b}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\n${purpose}\r\n` +
    `--${b}\r\ncontent-disposition: form-data; name="file"; filename="in.jsonl"\r\n` +
    `content-type: application/jsonl\r\n\r\n${content}\r\n--${b}--\r\n`;
  return { body, type: `multipart/form-data; boundary=${b}` };
}

const LINES = '{"custom_id":"a"}\n'.repeat(20);

function uploadHead(length: number, type: string): string {
  return `POST /v1/files HTTP/1.1\r\nhost: gw\r\ncontent-type: ${type}\r\ncontent-length: ${length}\r\n\r\n`;
}

async function open(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  return socket;
}

/** The first whole HTTP answer (framed by Content-Length) `socket` receives; rejects past HANG_GUARD_MS. */
function readAnswer(socket: Socket): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no whole answer after ${HANG_GUARD_MS} ms; got: ${text.slice(0, 300)}`));
    }, HANG_GUARD_MS);
    const onData = (chunk: string): void => {
      text += chunk;
      const headEnd = text.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = text.slice(0, headEnd);
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? Number.NaN);
      if (text.length < headEnd + 4 + length) return;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({
        status: Number(head.slice(9, 12)),
        head,
        body: text.slice(headEnd + 4, headEnd + 4 + length),
      });
    };
    socket.on('data', onData);
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`closed before a whole answer; got: ${text.slice(0, 300)}`));
    });
  });
}

/** Uploads `content` whole with fetch; returns the status and the body text. */
async function uploadWhole(
  url: string,
  content: string,
  purpose = 'batch',
): Promise<{ status: number; text: string; retryAfter: string | null }> {
  const form = multipart(content, purpose);
  const res = await fetch(`${url}/v1/files`, {
    method: 'POST',
    headers: { 'content-type': form.type },
    body: form.body,
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
  return { status: res.status, text: await res.text(), retryAfter: res.headers.get('retry-after') };
}

describe('batch.uploadsInFlightMax', { timeout: 60_000 }, () => {
  const teardown = new Teardown();
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-upload-bound-'));
  let gw: TestGateway;
  const stats = (url = gw.url): Promise<Stats> => getJson<Stats>(`${url}/stats`);
  /** Upload files on disk (finished or partial). */
  const uploadsLeft = (): string[] => {
    const files = join(dir, 'files');
    return existsSync(files) ? readdirSync(files).filter((f) => f.endsWith('.data')) : [];
  };
  /** The slot is back: /stats says so, and a whole upload is taken (200) and then deleted. */
  const assertSlotFree = async (url = gw.url): Promise<void> => {
    await until('no upload in flight', async () => (await stats(url)).batch.uploadsInFlight === 0);
    const next = await uploadWhole(url, LINES);
    assert.equal(next.status, 200, next.text);
    const id = (JSON.parse(next.text) as { id: string }).id;
    const gone = await fetch(`${url}/v1/files/${id}`, { method: 'DELETE' });
    assert.equal(gone.status, 200, await gone.text());
    assert.equal((await stats(url)).batch.uploadsInFlight, 0);
  };

  before(async () => {
    gw = await startTestGateway(
      {
        backends: [],
        batch: { dir, uploadsInFlightMax: 1, fileBytesMax: FILE_BYTES_MAX },
        limits: { bodyReadTimeoutMs: BODY_READ_TIMEOUT_MS },
      },
      teardown,
    );
  });
  after(async () => {
    await teardown.run();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an upload while another is received, 429 with Retry-After, counted; takes one after', async () => {
    const before = await stats();
    assert.equal(before.batch.uploadsInFlightMax, 1);
    const held = multipart(LINES);
    const socket = await open(gw.url);
    socket.write(uploadHead(held.body.length, held.type) + held.body.slice(0, -40));
    // Its file too: the file is opened asynchronously, after the slot is taken.
    await until(
      'the first upload is being received',
      async () => (await stats()).batch.uploadsInFlight === 1 && uploadsLeft().length === 1,
    );

    const refused = await uploadWhole(gw.url, LINES);
    const error = assertErrorBody(refused.text, refused.status).error;
    assert.equal(refused.status, 429, refused.text);
    assert.equal(error.code, 'SY_ERR_OVERLOADED');
    assert.match(error.message, /batch\.uploadsInFlightMax 1/);
    assert.ok(Number(refused.retryAfter) >= 1, `retry-after ${refused.retryAfter}`);
    // Refused before a byte was stored: only the held upload's partial file is on disk.
    assert.equal(uploadsLeft().length, 1);
    const mid = await stats();
    assert.equal(mid.batch.uploadsRefused, before.batch.uploadsRefused + 1);
    assert.equal(mid.rejected['SY_ERR_OVERLOADED'] ?? 0, (before.rejected['SY_ERR_OVERLOADED'] ?? 0) + 1);

    // The held upload goes on unharmed and is answered; then its slot is free again.
    const answer = readAnswer(socket);
    socket.write(held.body.slice(-40));
    const done = await answer;
    assert.equal(done.status, 200, done.body);
    socket.destroy();
    const id = (JSON.parse(done.body) as { id: string }).id;
    assert.equal((await fetch(`${gw.url}/v1/files/${id}`, { method: 'DELETE' })).status, 200);
    await assertSlotFree();
  });

  it('gives the slot back after a 400 (purpose not batch)', async () => {
    const r = await uploadWhole(gw.url, LINES, 'fine-tune');
    assert.equal(r.status, 400, r.text);
    assert.equal(assertErrorBody(r.text, r.status).error.param, 'purpose');
    await assertSlotFree();
  });

  it('gives the slot back after a 413 found while streaming', async () => {
    const r = await uploadWhole(gw.url, 'x'.repeat(FILE_BYTES_MAX * 2));
    assert.equal(r.status, 413, r.text);
    assert.equal(assertErrorBody(r.text, r.status).error.code, 'SY_ERR_REQUEST_TOO_LARGE');
    await assertSlotFree();
  });

  it('gives the slot back after a 408 (the body stopped)', async () => {
    // Its own gateway, with a bound short enough to wait out (the shared one's is 60 s).
    const stallDir = mkdtempSync(join(tmpdir(), 'switchyard-upload-bound-408-'));
    teardown.add(() => rmSync(stallDir, { recursive: true, force: true }));
    const strict = await startTestGateway(
      {
        backends: [],
        batch: { dir: stallDir, uploadsInFlightMax: 1, fileBytesMax: FILE_BYTES_MAX },
        limits: { bodyReadTimeoutMs: STALLED_BODY_TIMEOUT_MS },
      },
      teardown,
    );
    const form = multipart(LINES);
    const socket = await open(strict.url);
    const answer = readAnswer(socket);
    socket.write(uploadHead(form.body.length, form.type) + form.body.slice(0, -40));
    const late = await answer;
    assert.equal(late.status, 408, late.body);
    assert.equal(assertErrorBody(late.body, late.status).error.code, 'SY_ERR_REQUEST_TIMEOUT');
    socket.destroy();
    await assertSlotFree(strict.url);
  });

  it('gives the slot back when the client leaves mid-upload', async () => {
    // The client half-closes (FIN) mid-body; the shared gateway's 60 s body bound cannot be what
    // frees the slot (at 400 ms it was, and the gateway's own miss went unseen).
    const form = multipart(LINES);
    const socket = await open(gw.url);
    socket.write(uploadHead(form.body.length, form.type) + form.body.slice(0, -40));
    assert.deepEqual(uploadsLeft(), []);
    await until('the upload file is created', () => uploadsLeft().length === 1);
    socket.destroy();
    await until('the partial upload is removed', () => uploadsLeft().length === 0);
    await assertSlotFree();
  });

  it('answers a multipart content-type without a boundary 400 and gives the slot back', async () => {
    const res = await fetch(`${gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data' },
      body: multipart(LINES).body,
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.equal(assertErrorBody(text, res.status).error.param, 'content-type');
    await assertSlotFree();
  });

  it('gives the slot back after a malformed form (it ends inside its file part)', async () => {
    const cut = multipart(LINES).body.slice(0, -30);
    const res = await fetch(`${gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': multipart('').type },
      body: cut,
      signal: AbortSignal.timeout(HANG_GUARD_MS),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(assertErrorBody(text, res.status).error.message, /malformed multipart body/);
    await assertSlotFree();
  });
});
