/**
 * End-to-end: a standalone `switchyard engine sim` whose `--shutdown-timeout` runs out with
 * generations still running ends each of them with an explicit error, never a bare cut: a chat or
 * completions stream gets an SSE error event (OpenAI-style error JSON, code `SY_ERR_DRAINING`) and
 * `data: [DONE]`, a Responses stream its `error` event, and a request not yet answering a 503 JSON
 * error. Before the fix the connections were closed mid-answer.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MODEL, spawnSim, Teardown } from './support/cluster.ts';
import { openSocket, readUntilClose } from './support/raw-http.ts';

const teardown = new Teardown();
after(() => teardown.run());

/** Guard on one request's whole answer, against a hang: not a performance bound. */
const ANSWER_GUARD_MS = 30_000;

/** Posts `body` to `path` and reads the answer to its end (a cut rejects). */
async function post(
  url: string,
  path: string,
  body: Record<string, unknown>,
  onFirstBytes: () => void,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ANSWER_GUARD_MS),
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (text === '') onFirstBytes();
    text += decoder.decode(value, { stream: true });
  }
  return { status: res.status, text };
}

const messages = [{ role: 'user', content: 'tell me a long story' }];

describe('engine shutdown timeout', { timeout: 90_000 }, () => {
  it('ends running streams and unanswered requests with an error, not a cut', async () => {
    // Real time (time scale 1): 4,000 tokens of an 8B model take well past the 1 s shutdown timeout.
    const engine = await spawnSim(
      ['--time-scale', '1', '--kv-events', 'none', '--shutdown-timeout', '1'],
      0,
      teardown,
    );
    // Resolves once all three streams delivered their first bytes.
    let streaming = 0;
    let allStreaming!: () => void;
    const started = new Promise<void>((resolve) => {
      allStreaming = resolve;
    });
    const first = (): void => {
      if (++streaming === 3) allStreaming();
    };
    const chat = post(
      engine.url,
      '/v1/chat/completions',
      { model: MODEL, messages, max_tokens: 4000, stream: true },
      first,
    );
    const completion = post(
      engine.url,
      '/v1/completions',
      { model: MODEL, prompt: 'once upon a time', max_tokens: 4000, stream: true },
      first,
    );
    const responses = post(
      engine.url,
      '/v1/responses',
      { model: MODEL, input: 'tell me a long story', max_output_tokens: 4000, stream: true },
      first,
    );
    await started;
    // Not streaming: its answer is one JSON body at the end, which the shutdown comes before.
    const whole = post(
      engine.url,
      '/v1/chat/completions',
      { model: MODEL, messages, max_tokens: 4000 },
      () => {},
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await engine.kill('SIGTERM');

    for (const [name, answer] of [
      ['chat', await chat],
      ['completions', await completion],
    ] as const) {
      assert.equal(answer.status, 200, name);
      const events = answer.text.trimEnd().split('\n\n');
      assert.equal(events.at(-1), 'data: [DONE]', `${name} ends with [DONE]`);
      const error = JSON.parse((events.at(-2) as string).slice('data: '.length)) as {
        error: { code: string; message: string; type: string };
      };
      assert.equal(error.error.code, 'SY_ERR_DRAINING', name);
      assert.match(error.error.message, /shut down/, name);
      assert.ok(events.length > 3, `${name} streamed tokens first`);
    }
    const r = await responses;
    assert.equal(r.status, 200);
    const last = r.text.trimEnd().split('\n\n').at(-1) as string;
    assert.match(last, /^event: error\n/, 'a Responses stream ends with its error event');
    assert.match(last, /"code":"SY_ERR_DRAINING"/);
    const w = await whole;
    assert.equal(w.status, 503);
    assert.equal((JSON.parse(w.text) as { error: { code: string } }).error.code, 'SY_ERR_DRAINING');
  });
});

describe('P/D engine shutdown timeout', { timeout: 90_000 }, () => {
  it('relays streams past 1 s until the shutdown timeout, then the inner server error event', async () => {
    // A decode side passes a request without P/D fields through to its inner engine whole.
    const engine = await spawnSim(
      [
        '--time-scale',
        '1',
        '--kv-events',
        'none',
        '--pd-role',
        'decode',
        '--pd-protocol',
        'vllm',
        '--shutdown-timeout',
        '3',
      ],
      0,
      teardown,
    );
    let streaming!: () => void;
    const started = new Promise<void>((resolve) => {
      streaming = resolve;
    });
    const chat = post(
      engine.url,
      '/v1/chat/completions',
      { model: MODEL, messages, max_tokens: 4000, stream: true },
      () => streaming(),
    );
    await started;
    await engine.kill('SIGTERM');
    const answer = await chat;
    const events = answer.text.trimEnd().split('\n\n');
    assert.equal(events.at(-1), 'data: [DONE]');
    const error = JSON.parse((events.at(-2) as string).slice('data: '.length)) as { error: { code: string } };
    assert.equal(error.error.code, 'SY_ERR_DRAINING');
    assert.match(answer.text, /shutdown timeout \(3 s\) ran out/);
  });
});

describe('engine shutdown while a request body is still arriving', { timeout: 60_000 }, () => {
  it('answers it 503 instead of closing the connection on it', async () => {
    const engine = await spawnSim(['--kv-events', 'none', '--shutdown-timeout', '1'], 0, teardown);
    const socket = await openSocket(engine.url);
    const answer = readUntilClose(socket, ANSWER_GUARD_MS);
    const body = JSON.stringify({ model: MODEL, messages, max_tokens: 4 });
    // The head and half the body: the rest never comes.
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await engine.kill('SIGTERM');
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 503 /, text);
    assert.match(text, /"code":"SY_ERR_NO_INSTANCE"/, 'not started: as a request after the shutdown began');
  });
});
