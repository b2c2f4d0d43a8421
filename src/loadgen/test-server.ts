/**
 * A small OpenAI-compatible server on loopback for the load generator's tests: /v1/models, and
 * /v1/completions and /v1/chat/completions streaming one token per chunk at a set pace (or whole
 * JSON answers), with hooks to fail chosen requests. Every body it receives is kept for assertions.
 * Test support only; nothing in the product imports it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake server behaves. */
export interface FakeServerOptions {
  readonly model?: string;
  /** Delay before the first token. */
  readonly firstTokenMs?: number;
  /** Delay between tokens. */
  readonly tokenMs?: number;
  /** Answer this request with an error status instead (n counts requests from 0). */
  readonly failWith?: (n: number, body: Record<string, unknown>) => number | undefined;
  /** Split every SSE event over two writes, cutting inside the line (exercises client parsing). */
  readonly splitWrites?: boolean;
  /** Leave usage out of the stream (the client then counts chunks). */
  readonly noUsage?: boolean;
  /** Answer /v1/models with an empty list. */
  readonly noModels?: boolean;
  /** The model's `owned_by` in /v1/models (none by default), as a server names itself there. */
  readonly ownedBy?: string;
}

/** One completion request the fake server received. */
export interface Received {
  readonly path: string;
  readonly body: Record<string, unknown>;
  /** The `x-session-id` header, when sent. */
  readonly sessionId?: string;
  /** The `authorization` header, when sent. */
  readonly authorization?: string;
}

/** A running fake server. */
export interface FakeServer {
  readonly url: string;
  /** Bodies received on the completion endpoints, in arrival order, with their path and x-session-id. */
  readonly received: Received[];
  /** Most requests in flight at once. */
  readonly peakInFlight: () => number;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts a fake server on 127.0.0.1, port 0. */
export async function startFakeServer(options: FakeServerOptions = {}): Promise<FakeServer> {
  const model = options.model ?? 'fake-model';
  const received: Received[] = [];
  let inFlight = 0;
  let peak = 0;
  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          object: 'list',
          data: options.noModels
            ? []
            : [
                {
                  id: model,
                  object: 'model',
                  ...(options.ownedBy !== undefined ? { owned_by: options.ownedBy } : {}),
                },
              ],
        }),
      );
      return;
    }
    const path = req.url ?? '';
    if (req.method !== 'POST' || (path !== '/v1/completions' && path !== '/v1/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'not found', code: 'not_found' } }));
      return;
    }
    const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    const n = received.length;
    const session = req.headers['x-session-id'];
    const authorization = req.headers.authorization;
    received.push({
      path,
      body,
      ...(typeof session === 'string' ? { sessionId: session } : {}),
      ...(authorization !== undefined ? { authorization } : {}),
    });
    const status = options.failWith?.(n, body);
    if (status !== undefined) {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `refused request ${n}`, code: 'FAKE_REFUSED' } }));
      return;
    }
    inFlight++;
    peak = Math.max(peak, inFlight);
    try {
      await answer(path === '/v1/chat/completions', body, res);
    } finally {
      inFlight--;
    }
  }
  async function answer(chat: boolean, body: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const maxTokens = Number(
      chat ? (body['max_completion_tokens'] ?? body['max_tokens']) : body['max_tokens'],
    );
    const prompt = chat
      ? String((body['messages'] as { content: string }[])[0]?.content ?? '')
      : String(body['prompt']);
    const usage = {
      prompt_tokens: Math.ceil(prompt.length / 4),
      completion_tokens: maxTokens,
      total_tokens: Math.ceil(prompt.length / 4) + maxTokens,
    };
    await sleep(options.firstTokenMs ?? 0);
    if (body['stream'] !== true) {
      const text = 'tok '.repeat(maxTokens);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'x',
          object: chat ? 'chat.completion' : 'text_completion',
          choices: [chat ? { index: 0, message: { role: 'assistant', content: text } } : { index: 0, text }],
          usage,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = async (payload: string): Promise<void> => {
      const event = `data: ${payload}\n\n`;
      if (options.splitWrites === true) {
        const cut = Math.floor(event.length / 2);
        res.write(event.slice(0, cut));
        await sleep(1);
        res.write(event.slice(cut));
      } else res.write(event);
    };
    if (chat)
      await send(JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }));
    for (let i = 0; i < maxTokens; i++) {
      if (i > 0) await sleep(options.tokenMs ?? 0);
      const choice = chat ? { index: 0, delta: { content: 'tok ' } } : { index: 0, text: 'tok ' };
      await send(JSON.stringify({ id: 'x', choices: [choice] }));
    }
    if (options.noUsage !== true) await send(JSON.stringify({ id: 'x', choices: [], usage }));
    await send('[DONE]');
    res.end();
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    peakInFlight: () => peak,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
