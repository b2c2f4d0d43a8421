/**
 * The front server both built-in engines put on their public port when they run as one side of a
 * prefill/decode pair (`sim`: sim/pd-engine.ts, `llama`: llama/pd.ts): the engine's ordinary OpenAI
 * server listens on a loopback port, and the front server reads and writes the P/D fields
 * (`kv_transfer_params`, SGLang's bootstrap fields), proxies everything else, and serves /pd/stats.
 * What each engine does with the KV (a modelled wait, or a real state over TCP) stays in its module:
 * a subclass routes requests (`handle`) and uses the machinery here to reach the inner server.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { listenOn } from '../adapters/listen.ts';
import { untilSignal, whenParentGone } from '../adapters/process-signals.ts';
import { contentTypeRefusal } from '../core/content-type.ts';
import { SwitchyardError } from '../core/errors.ts';
import type { EngineBackend } from './backend.ts';
import { startOpenAiServer } from './openai-server.ts';
import { clientRequestName, renameAnswerId, TagRenamer } from './pd-rename.ts';
import type { EngineReadyLine } from './run-engine.ts';

/** Request bodies the front server reads, as the OpenAI server bounds them. */
export const FRONT_BODY_BYTES_MAX = 32 << 20;
/** Bytes of a prefill answer the front server reads to rewrite it (a one-token answer is a few KB). */
export const PREFILL_ANSWER_BYTES_MAX = 1 << 20;
/** Sockets the front server keeps to its inner server. */
const INNER_SOCKETS_MAX = 1024;
/** Idle keep-alive connections from the gateway stay open this long (longer than its pool's idle). */
const FRONT_KEEP_ALIVE_MS = 30_000;
/**
 * On close, connections still busy this long after the inner server's grace are cut: by then the
 * inner server ended what still ran with an error, which the front relays.
 */
const CLOSE_FLUSH_MS = 1000;

/** A whole answer from the inner server. */
export interface InnerAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A body read whole; over `bytesMax` the stream is destroyed and `tooLarge` rejects. */
export function readBody(
  stream: IncomingMessage,
  bytesMax: number,
  tooLarge: () => Error = () =>
    new SwitchyardError('SY_ERR_REQUEST_TOO_LARGE', `request body over ${bytesMax} bytes`),
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > bytesMax) {
        stream.destroy();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** A JSON answer with its length. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** An OpenAI-style error answer; once headers went out, the connection is cut instead. */
export function sendError(res: ServerResponse, error: SwitchyardError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, error.status, error.toJSON());
}

/** What the front server sends the inner server in a proxied request. */
export interface PassTarget {
  readonly path: string;
  readonly method: string;
  readonly headers: Record<string, string | number>;
  /** A buffer or the client's own stream; undefined: no body. */
  readonly body: Buffer | IncomingMessage | undefined;
}

/**
 * The machinery of a P/D front server: listening, closing, whole answers from the inner server and
 * streamed proxying. `label` starts its error messages ("P/D front", "llama P/D front").
 */
export abstract class PdFrontBase {
  private readonly http: Server;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: INNER_SOCKETS_MAX });
  private nextTag = 0;
  /**
   * Starts every tag: the inner server names its answer after the tag (`chatcmpl-TAG`), and a
   * counter alone gave each engine, and each restart of one, the same ids (two decode engines
   * behind one gateway answered `cmpl-pd0` both).
   */
  private readonly tagBase = `pd${randomBytes(4).toString('hex')}`;
  /**
   * The client's X-Request-Id of each request being answered: the answer is named after it, as the
   * colocated engine names it, while the inner server sees only the front's tags (pd-rename.ts).
   */
  private readonly names = new WeakMap<ServerResponse, string>();
  /** Requests whose name is the whole answer id (a Responses body's request_id), not its suffix. */
  private readonly wholeNames = new WeakSet<ServerResponse>();

  constructor(
    protected readonly innerPort: number,
    private readonly label: string,
  ) {
    this.http = createServer({ keepAlive: true, noDelay: true }, (req, res) => {
      const name = clientRequestName(req.headers['x-request-id']);
      if (name !== undefined) this.names.set(res, name);
      const path = (req.url ?? '/').split('?')[0];
      const served =
        req.method === 'POST' && path === '/v1/responses'
          ? this.responses(req, res)
          : req.method === 'POST' &&
              (path === '/v1/chat/completions' || path === '/v1/completions') &&
              contentTypeRefusal(req.headers['content-type']) !== undefined
            ? this.passRefused(req, res)
            : this.handle(req, res);
      served.catch((error: unknown) =>
        sendError(
          res,
          error instanceof SwitchyardError
            ? error
            : new SwitchyardError('SY_ERR_INTERNAL', `${this.label}: ${(error as Error).message}`),
        ),
      );
    });
    this.http.keepAliveTimeout = FRONT_KEEP_ALIVE_MS;
  }

  /**
   * A chat or completions body that is not JSON by its Content-Type goes to the inner server as it
   * came, whose refusal (415, core/content-type.ts: the gateway's rule) the client gets. Read here,
   * it would be parsed, rewritten and sent on as application/json, and served.
   */
  private async passRefused(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'content-length', 'accept'])
      if (typeof req.headers[h] === 'string') headers[h] = req.headers[h] as string;
    this.proxy(res, { path: req.url ?? '/', method: 'POST', headers, body: req });
  }

  /** Routes one client request. */
  protected abstract handle(req: IncomingMessage, res: ServerResponse): Promise<void>;

  /** A proxied request tagged `tag` ended or failed before its answer finished: drop its state. */
  protected untag(_tag: string): void {}

  /** Listens; resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.http, host, port);
  }

  /**
   * Stops listening; connections still busy after `graceMs` (the inner server's grace) plus
   * CLOSE_FLUSH_MS are cut. The answers under way go on meanwhile: the inner server ends them,
   * in time or with an error event at its grace.
   */
  close(graceMs = 0): Promise<void> {
    return new Promise((resolve) => {
      const cut = setTimeout(() => this.http.closeAllConnections(), graceMs + CLOSE_FLUSH_MS);
      cut.unref();
      this.http.close(() => {
        clearTimeout(cut);
        this.agent.destroy();
        resolve();
      });
      this.http.closeIdleConnections();
    });
  }

  /** A fresh tag for a P/D request (the inner server's generation id is `cmpl-TAG`). */
  protected newTag(): string {
    return `${this.tagBase}${(this.nextTag++).toString(36)}`;
  }

  /** A whole answer from the inner server (bounded by `bytesMax`), the request tagged when `tag` is set. */
  protected inner(
    path: string,
    body: Record<string, unknown>,
    bytesMax: number,
    tag?: string,
  ): Promise<InnerAnswer> {
    return new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify(body));
      const headers: Record<string, string | number> = {
        'content-type': 'application/json',
        'content-length': payload.length,
      };
      if (tag !== undefined) headers['x-request-id'] = tag;
      const upstream = request(
        { host: '127.0.0.1', port: this.innerPort, path, method: 'POST', agent: this.agent, headers },
        (r) => {
          const type = r.headers['content-type'];
          readBody(r, bytesMax, () => new Error(`inner answer over ${bytesMax} bytes`)).then(
            (b) =>
              resolve({
                status: r.statusCode ?? 502,
                headers: { 'content-type': typeof type === 'string' ? type : 'application/json' },
                body: b,
              }),
            reject,
          );
        },
      );
      upstream.on('error', reject);
      upstream.end(payload);
    });
  }

  /** Sends a whole inner answer to the client as it came, its id named after the client's. */
  protected relay(res: ServerResponse, answer: InnerAnswer): void {
    const name = this.names.get(res);
    if (name !== undefined && answer.status >= 200 && answer.status < 300) {
      const out = parseObject(answer.body);
      if (out !== undefined) {
        this.answer(res, out);
        return;
      }
    }
    res.writeHead(answer.status, { ...answer.headers, 'content-length': answer.body.length });
    res.end(answer.body);
  }

  /**
   * A completion body read by the front: without a usable X-Request-Id, its vLLM `request_id` names
   * the answer, as the OpenAI server takes it (a request_id that is not a string goes on to the
   * inner server, which refuses it naming it).
   */
  protected nameFromBody(res: ServerResponse, body: Record<string, unknown>): void {
    if (this.names.has(res)) return;
    const name = clientRequestName(body['request_id']);
    if (name !== undefined) this.names.set(res, name);
  }

  /**
   * Why a completion body asks for more than one generation, which a P/D side does not serve yet
   * (its KV transfer is keyed by the request: one prefilled prompt, one decode): `n` > 1, or a
   * completions `prompt` list of more than one prompt, streamed or not. Undefined otherwise. A
   * colocated built-in engine serves them as several generations (multi-choice.ts); refused here,
   * on both sides, so the client hears that it is the P/D pool, not the engines, that lacks them
   * (the inner server's own refusal says the built-in engines generate one choice per request).
   */
  protected choicesRefusal(path: string, body: Record<string, unknown>): SwitchyardError | undefined {
    const n = body['n'];
    if (typeof n === 'number' && Number.isSafeInteger(n) && n > 1)
      return new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `n=${n} is not served by prefill/decode pools yet: a P/D side transfers one prompt's KV to one decode; send ${n} requests, or route the model to instances of role both`,
        { param: 'n' },
      );
    const prompt = body['prompt'];
    if (
      path === '/v1/completions' &&
      Array.isArray(prompt) &&
      prompt.length > 1 &&
      typeof prompt[0] !== 'number'
    )
      return new SwitchyardError(
        'SY_ERR_UNSUPPORTED_PARAMETER',
        `a prompt list of ${prompt.length} prompts is not served by prefill/decode pools yet: a P/D side transfers one prompt's KV to one decode; send one request per prompt, or route the model to instances of role both`,
        { param: 'prompt' },
      );
    return undefined;
  }

  /**
   * A Responses request, the same on every P/D front (it is served by the inner engine alone): vLLM
   * names its answer after the body's `request_id` itself, over the header, as the OpenAI server
   * does. The id is taken out of the body, so the inner server names the answer after the front's
   * tag (a client's id must not reach the tag-keyed P/D state), and the answer's `resp_TAG` becomes
   * the id on the way out. A request_id that is not a usable name goes in as it came (the inner
   * server refuses one that is not a string, naming it).
   */
  private async responses(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req, FRONT_BODY_BYTES_MAX);
    // Bytes that are not UTF-8 go through as they came, for the inner server's 400.
    const body = isUtf8(raw) ? parseObject(raw) : undefined;
    const name = body === undefined ? undefined : clientRequestName(body['request_id']);
    let out = raw;
    if (body !== undefined && name !== undefined) {
      delete body['request_id'];
      out = Buffer.from(JSON.stringify(body));
      this.names.set(res, name);
      this.wholeNames.add(res);
    }
    const headers: Record<string, string | number> = { 'content-length': out.length };
    for (const h of ['content-type', 'accept'])
      if (typeof req.headers[h] === 'string') headers[h] = req.headers[h] as string;
    this.proxy(res, { path: req.url ?? '/v1/responses', method: 'POST', headers, body: out });
  }

  /** A 200 JSON answer built from an inner one, its id named after the client's X-Request-Id. */
  protected answer(res: ServerResponse, out: Record<string, unknown>): void {
    const name = this.names.get(res);
    if (name !== undefined) renameAnswerId(out, name);
    sendJson(res, 200, out);
  }

  /**
   * Proxies to the inner server, streaming the answer back; a client that leaves aborts it. The
   * inner request always carries a tag of the front's own (a fresh one when none is given), never
   * the client's id, so a client's id cannot reach the tag-keyed P/D state; the answer's ids are
   * renamed to the client's id on the way out.
   */
  protected proxy(res: ServerResponse, target: PassTarget, given?: string): void {
    const tag = given ?? this.newTag();
    const headers = { ...target.headers, 'x-request-id': tag };
    const name = this.names.get(res);
    const upstream = request(
      {
        host: '127.0.0.1',
        port: this.innerPort,
        path: target.path,
        method: target.method,
        agent: this.agent,
        headers,
      },
      (r) => {
        if (name === undefined) {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
          return;
        }
        // Renaming changes the length: the answer goes out chunked.
        const { 'content-length': _length, ...out } = r.headers;
        res.writeHead(r.statusCode ?? 502, out);
        // A whole-id name replaces the inner id `resp_TAG` itself, not only its tag.
        const from = this.wholeNames.has(res) ? `resp_${tag}` : tag;
        r.pipe(new TagRenamer(from, name)).pipe(res);
      },
    );
    upstream.on('error', (error) => {
      this.untag(tag);
      sendError(
        res,
        new SwitchyardError('SY_ERR_INTERNAL', `${this.label}: the engine failed: ${error.message}`),
      );
    });
    res.on('close', () => {
      this.untag(tag);
      if (!res.writableFinished) upstream.destroy();
    });
    if (target.body instanceof Buffer) upstream.end(target.body);
    else if (target.body !== undefined) (target.body as IncomingMessage).pipe(upstream);
    else upstream.end();
  }
}

/** How to serve an engine behind a P/D front server, and the engine's own parts of it. */
export interface ServePdFrontOptions {
  readonly engine: 'sim' | 'llama';
  readonly role: 'prefill' | 'decode';
  /** What the inner OpenAI server serves. */
  readonly backend: EngineBackend;
  readonly host: string;
  readonly port: number;
  readonly maxWaiting?: number | undefined;
  readonly shutdownTimeoutS: number;
  /** The front server over the inner server's port. */
  readonly front: (innerPort: number) => PdFrontBase;
  /** Runs before the front server listens (a KV server's start); a throw is a listen failure. */
  readonly start?: () => Promise<void>;
  /** What to name in the error when an address is taken. */
  readonly addressWhat: string;
  /** The front server listens on `port`; the ready line's fields past the common ones. */
  readonly listening: (port: number) => Partial<EngineReadyLine> & Record<string, unknown>;
  /** After the ready line (a backend that reports readiness). */
  readonly afterReady?: () => void;
  /** Frees the engine's own parts, after a failed start (`failed`) or the drain. */
  readonly release: (failed: boolean) => Promise<void>;
}

/**
 * Serves an engine as one side of a P/D pair until SIGTERM or SIGINT (or its supervisor's death):
 * the OpenAI server on a loopback port, the front server on `host:port`, the ready line naming the
 * front server.
 */
export async function servePdFront(options: ServePdFrontOptions): Promise<void> {
  const parent = whenParentGone();
  const inner = await startOpenAiServer(options.backend, {
    host: '127.0.0.1',
    port: 0,
    ownedBy: `switchyard-${options.engine}`,
    ...(options.maxWaiting === undefined ? {} : { maxWaiting: options.maxWaiting }),
  });
  const front = options.front(inner.port);
  let port: number;
  try {
    await options.start?.();
    port = await front.listen(options.host, options.port);
  } catch (error) {
    parent.stop();
    await inner.close(0);
    await options.release(true);
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `invalid port '${options.host}:${options.port}'${options.addressWhat}: expected a free address to listen on (${(error as Error).message})`,
      { param: 'port' },
    );
  }
  const urlHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  const ready: EngineReadyLine = {
    event: 'ready',
    engine: options.engine,
    url: `http://${urlHost}:${port}`,
    model: options.backend.modelId,
    kvEvents: null,
    ...options.listening(port),
  };
  // Listen for the stop signal before the ready line (as run-engine.ts, c3d45dc): a supervisor that
  // signals as soon as it reads the line must reach this handler, not Node's default (die at once,
  // with no drain).
  const signalled = untilSignal();
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  options.afterReady?.();
  const why = await Promise.race([signalled, parent.gone.then(() => 'parent-gone' as const)]);
  parent.stop();
  process.stderr.on('error', () => {});
  process.stderr.write(`switchyard engine ${options.engine} (P/D ${options.role}): ${why}, draining\n`);
  // Both at once: the front relays what the inner server still answers (in time, or its error event).
  const graceMs = why === 'parent-gone' ? 1000 : options.shutdownTimeoutS * 1000;
  await Promise.all([front.close(graceMs), inner.close(graceMs)]);
  await options.release(false);
  if (why === 'parent-gone') process.exit(0);
}

/** A JSON object from `bytes`, or undefined (not JSON, not an object). */
function parseObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
