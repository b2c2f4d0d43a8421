/**
 * A small OpenAI-compatible upstream on loopback, for the gateway's tests and benchmarks: answers
 * chat and completion requests (streaming or not) with a fixed number of tokens, serves /health,
 * /metrics (vLLM names) and /v1/models (any other GET outside /v1/: 404), and can be told to misbehave (fail with a status, cut a
 * stream, stall, end a stream without `[DONE]`, send a truncated JSON answer). Not a model of an
 * engine: src/engine-servers/sim is that; a test that passes against this upstream says nothing
 * about how a real engine behaves.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake answers the next requests. */
export interface FakeBehaviour {
  /** Answer every completion with this status and an error body. */
  failStatus?: number;
  /** Stream this many chunks then destroy the socket (streaming only). */
  cutAfterChunks?: number;
  /** Wait this long before the response head. */
  delayMs?: number;
  /** Tokens (chunks) per response. Default 3. */
  tokens?: number;
  /** Gap between streamed chunks. Default 0. */
  chunkGapMs?: number;
  /** With failStatus: a Retry-After header on the failure. */
  failRetryAfter?: string;
  /** With failStatus: the error message echoes the request body (as some servers do). */
  failEchoBody?: boolean;
  /** The text of each generated token. Default 'tok '. */
  tokenText?: string;
  /** Streaming: end the body cleanly without the `data: [DONE]` event. */
  omitDone?: boolean;
  /** Non-streaming: send only this many bytes of the JSON answer, then end the body cleanly (chunked). */
  truncateJsonAt?: number;
  /** Non-streaming: declare a content-length this much larger than the answer, send it, then close. */
  shortByBytes?: number;
  /**
   * Send this many chunks and then nothing, the connection left open: streaming, that many events;
   * non-streaming, the first half of the answer (with the whole answer's content-length).
   */
  silentAfterChunks?: number;
}

/** A running fake upstream. */
export interface FakeUpstream {
  readonly url: string;
  readonly port: number;
  readonly behaviour: FakeBehaviour;
  /** Completion requests received, with their raw bodies. */
  readonly received: { path: string; body: string; headers: IncomingMessage['headers'] }[];
  /** Health answers 503 while false. */
  healthy: boolean;
  /** The `max_model_len` its /v1/models entry carries (vLLM's ModelCard field); absent while undefined. */
  maxModelLen?: number | undefined;
  close(): Promise<void>;
}

/** Starts a fake upstream serving `model` on 127.0.0.1 (port 0 unless given). */
export async function startFakeUpstream(model = 'm', port = 0): Promise<FakeUpstream> {
  const state: FakeUpstream = {
    url: '',
    port: 0,
    behaviour: {},
    received: [],
    healthy: true,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(state, model, req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  (state as { url: string }).url = `http://127.0.0.1:${address.port}`;
  (state as { port: number }).port = address.port;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return state;
}

function answer(
  state: FakeUpstream,
  model: string,
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
): void {
  const path = req.url ?? '/';
  if (req.method === 'GET') {
    if (path === '/health') {
      res.writeHead(state.healthy ? 200 : 503).end();
      return;
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(
        `vllm:num_requests_running{model_name="${model}"} 1\nvllm:num_requests_waiting{model_name="${model}"} 0\nvllm:kv_cache_usage_perc{model_name="${model}"} 0.25\n`,
      );
      return;
    }
    if (path === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const len = state.maxModelLen === undefined ? {} : { max_model_len: state.maxModelLen };
      res.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model', ...len }] }));
      return;
    }
    // Any other GET (an SGLang role probe's /server_info): no such route, as a real server answers.
    if (!path.startsWith('/v1/')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `no route GET ${path}`, type: 'not_found_error' } }));
      return;
    }
  }
  state.received.push({ path, body, headers: req.headers });
  const b = state.behaviour;
  const go = (): void => respond(state, model, path, body, res);
  if (b.delayMs !== undefined && b.delayMs > 0) setTimeout(go, b.delayMs);
  else go();
}

function respond(state: FakeUpstream, model: string, path: string, body: string, res: ServerResponse): void {
  const b = state.behaviour;
  if (b.failStatus !== undefined) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (b.failRetryAfter !== undefined) headers['retry-after'] = b.failRetryAfter;
    res.writeHead(b.failStatus, headers);
    const echo = b.failEchoBody === true ? `: ${body}` : '';
    res.end(
      JSON.stringify({ error: { message: `fake failure ${b.failStatus}${echo}`, type: 'server_error' } }),
    );
    return;
  }
  let parsed: { stream?: boolean; stream_options?: { include_usage?: boolean } } = {};
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'bad json', type: 'invalid_request_error' } }));
    return;
  }
  const chat = path.endsWith('/chat/completions');
  const embeddings = path.endsWith('/embeddings');
  const tokens = b.tokens ?? 3;
  const tokenText = b.tokenText ?? 'tok ';
  const usage = { prompt_tokens: 5, completion_tokens: tokens, total_tokens: 5 + tokens };
  if (embeddings) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        object: 'list',
        data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
        model,
      }),
    );
    return;
  }
  const id = `fake-${state.port}-${state.received.length}`;
  if (parsed.stream !== true) {
    const text = tokenText.repeat(tokens);
    const choice = chat
      ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'length' }
      : { index: 0, text, finish_reason: 'length' };
    const answer = Buffer.from(
      JSON.stringify({
        id,
        object: chat ? 'chat.completion' : 'text_completion',
        model,
        choices: [choice],
        usage,
      }),
    );
    misbehaveOrSend(b, res, answer);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let sent = 0;
  const gap = b.chunkGapMs ?? 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (b.cutAfterChunks !== undefined && sent >= b.cutAfterChunks) {
      // Let what was written reach the socket first: destroy() drops unflushed writes.
      setTimeout(() => res.destroy(), 20);
      return;
    }
    if (b.silentAfterChunks !== undefined && sent >= b.silentAfterChunks) return;
    if (sent < tokens) {
      const choice = chat
        ? { index: 0, delta: { content: tokenText }, finish_reason: sent === tokens - 1 ? 'length' : null }
        : { index: 0, text: tokenText, finish_reason: sent === tokens - 1 ? 'length' : null };
      res.write(
        `data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', model, choices: [choice] })}\n\n`,
      );
      sent++;
      if (gap > 0) setTimeout(next, gap);
      else next();
      return;
    }
    if (parsed.stream_options?.include_usage === true)
      res.write(
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', model, choices: [], usage })}\n\n`,
      );
    if (b.omitDone === true) res.end();
    else res.end('data: [DONE]\n\n');
  };
  next();
}

/** Sends a non-streaming answer, or the broken version of it `b` asks for. */
function misbehaveOrSend(b: FakeBehaviour, res: ServerResponse, answer: Buffer): void {
  if (b.truncateJsonAt !== undefined) {
    // No content-length: chunked framing, so the early end is a clean one.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(answer.subarray(0, b.truncateJsonAt));
    return;
  }
  if (b.shortByBytes !== undefined) {
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': answer.length + b.shortByBytes,
    });
    res.write(answer);
    setTimeout(() => res.destroy(), 20);
    return;
  }
  if (b.silentAfterChunks !== undefined) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
    res.write(answer.subarray(0, answer.length >> 1));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(answer);
}
