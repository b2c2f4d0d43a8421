/**
 * End-to-end: the built-in engines' request bounds, against real `switchyard engine sim` and
 * `switchyard engine llama` children (the tiny random-weight GGUF). Embeddings past their bounds
 * (inputs, tokens, dimensions, the answer's size) get a 400 naming the field while a chat on the
 * same engine still succeeds; the largest answer allowed streams out while chats go on; requests
 * Node's HTTP parser refuses get a JSON 400, not an empty one. Deadlines here only guard against
 * hangs.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  EMBEDDING_DIMENSIONS_MAX,
  EMBEDDING_INPUTS_MAX,
  EMBEDDING_OUTPUT_FLOATS_MAX,
  EMBEDDING_TOKENS_MAX,
} from '../../src/engine-servers/embeddings.ts';
import { ensureTinyLlamaGguf, TINY_LLAMA_DEFAULT_PATH } from '../../src/engine-servers/llama/tiny-gguf.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'switchyard.mjs');
/** Guard against a hang, not a performance bound. */
const HANG_GUARD_MS = 60_000;

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

interface Engine {
  readonly child: ChildProcess;
  readonly url: string;
  readonly model: string;
}

const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

async function startEngine(kind: 'sim' | 'llama', args: string[]): Promise<Engine> {
  const child = spawn(process.execPath, [BIN, 'engine', kind, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stderr.join('\n')}`)), HANG_GUARD_MS);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`engine exited ${code}: ${stderr.join('\n')}`)));
  });
  const ready = JSON.parse(line) as { url: string; model: string };
  return { child, url: ready.url, model: ready.model };
}

function post(engine: Engine, path: string, body: unknown): Promise<Response> {
  return fetch(`${engine.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(HANG_GUARD_MS),
  });
}

/** A short non-streaming chat; resolves with its status and text. */
async function chat(engine: Engine): Promise<{ status: number; text: string }> {
  const res = await post(engine, '/v1/chat/completions', {
    model: engine.model,
    messages: [{ role: 'user', content: 'still there?' }],
    max_tokens: 8,
  });
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return { status: res.status, text: body.choices[0]!.message.content };
}

async function refusal(res: Response): Promise<ErrorBody['error']> {
  assert.equal(res.status, 400);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return ((await res.json()) as ErrorBody).error;
}

async function embeddingBounds(engine: Engine): Promise<void> {
  const inputs = Array.from({ length: EMBEDDING_INPUTS_MAX }, (_, i) => `doc ${i}`);
  // The outside tester's request: 2048 inputs x 8192 dimensions, a 361 MB answer before the bounds.
  const [wide, chatted] = await Promise.all([
    post(engine, '/v1/embeddings', { model: engine.model, input: inputs, dimensions: 8192 }),
    chat(engine),
  ]);
  const wideError = await refusal(wide);
  assert.equal(wideError.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.equal(wideError.param, 'dimensions');
  assert.equal(chatted.status, 200);
  assert.ok(chatted.text.length > 0);

  // Within the per-field bounds, but the answer would be past its size bound.
  const big = await refusal(
    await post(engine, '/v1/embeddings', {
      model: engine.model,
      input: inputs,
      dimensions: EMBEDDING_DIMENSIONS_MAX,
    }),
  );
  assert.equal(big.param, 'dimensions');
  assert.match(
    big.message,
    new RegExp(`${EMBEDDING_INPUTS_MAX} inputs x ${EMBEDDING_DIMENSIONS_MAX} dimensions`),
  );
  assert.match(big.message, new RegExp(`limit is ${EMBEDDING_OUTPUT_FLOATS_MAX}`));

  const many = await refusal(
    await post(engine, '/v1/embeddings', { model: engine.model, input: [...inputs, 'one more'] }),
  );
  assert.equal(many.param, 'input');
  const ids = Array.from({ length: EMBEDDING_TOKENS_MAX + 1 }, (_, i) => i % 1000);
  const long = await refusal(await post(engine, '/v1/embeddings', { model: engine.model, input: ids }));
  assert.equal(long.param, 'input');
  assert.equal((await chat(engine)).status, 200);
}

async function largestAnswer(engine: Engine): Promise<void> {
  const dimensions = EMBEDDING_OUTPUT_FLOATS_MAX / EMBEDDING_INPUTS_MAX;
  const inputs = Array.from({ length: EMBEDDING_INPUTS_MAX }, (_, i) => `doc ${i}`);
  // A flood: three of the largest answers at once, with chats among them.
  const floods = [0, 1, 2].map(async () => {
    const res = await post(engine, '/v1/embeddings', { model: engine.model, input: inputs, dimensions });
    assert.equal(res.status, 200);
    return (await res.json()) as {
      data: { index: number; embedding: number[] }[];
      usage: { prompt_tokens: number };
    };
  });
  const chats = [0, 1, 2, 3].map(() => chat(engine));
  for (const c of await Promise.all(chats)) assert.equal(c.status, 200);
  for (const body of await Promise.all(floods)) {
    assert.equal(body.data.length, EMBEDDING_INPUTS_MAX);
    assert.equal(body.data[EMBEDDING_INPUTS_MAX - 1]!.index, EMBEDDING_INPUTS_MAX - 1);
    for (const d of [body.data[0]!, body.data[1000]!]) {
      assert.equal(d.embedding.length, dimensions);
      assert.ok(Math.abs(d.embedding.reduce((s, v) => s + v * v, 0) - 1) < 1e-9);
    }
    assert.ok(body.usage.prompt_tokens >= EMBEDDING_INPUTS_MAX);
  }
  // base64 carries float32s: 4 bytes a number.
  const b64 = await post(engine, '/v1/embeddings', {
    model: engine.model,
    input: ['a', 'b'],
    dimensions: 16,
    encoding_format: 'base64',
  });
  const b64Body = (await b64.json()) as { data: { embedding: string }[] };
  assert.equal(Buffer.from(b64Body.data[1]!.embedding, 'base64').length, 16 * 4);
}

/** Sends `raw` on a fresh connection and resolves with everything the engine sent back before closing. */
function rawExchange(engine: Engine, raw: string): Promise<string> {
  const { port, hostname } = new URL(engine.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(raw));
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      got += d;
    });
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
    socket.setTimeout(HANG_GUARD_MS, () => socket.destroy(new Error('no answer')));
  });
}

function parseRawAnswer(raw: string): { status: number; headers: string; body: ErrorBody } {
  const split = raw.indexOf('\r\n\r\n');
  assert.ok(split > 0, `no HTTP head in ${JSON.stringify(raw)}`);
  const head = raw.slice(0, split);
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]),
    headers: head.toLowerCase(),
    body: JSON.parse(raw.slice(split + 4)) as ErrorBody,
  };
}

async function parserRefusals(engine: Engine): Promise<void> {
  const noHost = parseRawAnswer(await rawExchange(engine, 'GET /health HTTP/1.1\r\n\r\n'));
  assert.equal(noHost.status, 400);
  assert.match(noHost.headers, /content-type: application\/json/);
  assert.match(noHost.headers, /connection: close/);
  assert.equal(noHost.body.error.code, 'SY_ERR_INVALID_ARGUMENT');
  assert.equal(noHost.body.error.param, 'host');
  assert.equal(noHost.body.error.type, 'invalid_request_error');

  for (const garbage of [
    'HELLO THERE\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n',
    '\x00\x01\x02\r\n\r\n',
  ]) {
    const answer = parseRawAnswer(await rawExchange(engine, garbage));
    assert.equal(answer.status, 400, JSON.stringify(garbage));
    assert.equal(answer.body.error.code, 'SY_ERR_INVALID_ARGUMENT');
    assert.match(answer.body.error.message, /malformed HTTP request \(HPE_/);
  }
  // HTTP/1.0 needs no Host, and the engine still serves.
  assert.match(await rawExchange(engine, 'GET /health HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200/);
  assert.equal((await chat(engine)).status, 200);
}

describe('engine sim', () => {
  let engine: Engine;
  before(async () => {
    engine = await startEngine('sim', ['--kv-events', 'none', '--time-scale', '0.05']);
  });
  test('embeddings past a bound get a 400 naming the field while a chat on the engine succeeds', () =>
    embeddingBounds(engine));
  test('the largest answer allowed streams out whole while chats on the same engine succeed', () =>
    largestAnswer(engine));
  test("requests Node's HTTP parser refuses get an OpenAI-style JSON 400, then the connection closes", () =>
    parserRefusals(engine));
});

describe('engine llama (the same server)', () => {
  let engine: Engine;
  before(async () => {
    const model = ensureTinyLlamaGguf(join(ROOT, TINY_LLAMA_DEFAULT_PATH));
    engine = await startEngine('llama', ['--model', model, '--served-model-name', 'tiny-limits']);
  });
  test('embeddings past a bound get a 400 naming the field while a chat on the engine succeeds', () =>
    embeddingBounds(engine));
  test("requests Node's HTTP parser refuses get an OpenAI-style JSON 400, then the connection closes", () =>
    parserRefusals(engine));
});
