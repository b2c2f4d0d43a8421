/**
 * vLLM's `POST /tokenize` and `POST /detokenize` through the gateway: the body goes, bytes unchanged,
 * to one backend of the model it names, and that backend's answer comes back as it sent it.
 *
 * The model is resolved as a completion's is (a model not served: 404 naming `model`), except that
 * vLLM makes `model` optional on these routes: a body without one goes to the one model served, and
 * is 400 naming `model` when several are. These requests generate nothing, so they skip admission
 * and the routing policy: the least loaded healthy instance of the model answers, one try. A
 * backend that serves no such route (an SGLang or OpenAI backend) answers its own 404, passed back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SwitchyardError } from '../core/errors.ts';
import { type ReadBodyBounds, readBody } from './http-util.ts';
import type { Backend } from './proxy.ts';

/** The gateway paths this module serves. */
export const TOKENIZE_PATHS: ReadonlySet<string> = new Set(['/tokenize', '/detokenize']);

/** What the route needs of the gateway. */
export interface TokenizeRouteHost {
  /** Every model served. */
  readonly models: ReadonlySet<string>;
  /** The body's bounds (size, time), as a completion body's. */
  readonly bounds: ReadBodyBounds;
  /** Longest wait for the backend's answer (the gateway's first-byte timeout). */
  readonly answerTimeoutMs: number;
  /** A healthy backend of `model`, or the 503 when none is. */
  pick(model: string): Backend | SwitchyardError;
  /** Answers `error` (the gateway's early refusal: counted, OpenAI-style JSON). */
  reject(res: ServerResponse, error: SwitchyardError): void;
}

function badModel(message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param: 'model' });
}

/**
 * The model a tokenizer body is for: its `model` when served here, the only model when it names
 * none; throws the 400 (not JSON, not an object, no model among several) or the 404 (not served).
 */
export function tokenizeModel(body: Buffer, models: ReadonlySet<string>): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: not valid JSON', {
      param: 'body',
    });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: expected a JSON object', {
      param: null,
    });
  const model = (parsed as { model?: unknown }).model;
  if (model === undefined || model === null) {
    if (models.size === 1) return [...models][0] as string;
    throw badModel(
      `invalid request body: model: required, since this gateway serves ${models.size} models (${[...models].sort().join(', ')})`,
    );
  }
  if (typeof model !== 'string') throw badModel('invalid request body: model: expected a string');
  if (!models.has(model))
    throw new SwitchyardError(
      'SY_ERR_NOT_FOUND',
      `model '${model}' is not served here; served: ${[...models].sort().join(', ')}`,
      { param: 'model' },
    );
  return model;
}

/** Serves `POST path` (one of TOKENIZE_PATHS): reads the body, forwards it, relays the answer. */
export function serveTokenization(
  host: TokenizeRouteHost,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): void {
  readBody(req, res, host.bounds, (result) => {
    if (!result.ok) {
      host.reject(res, result.error);
      return;
    }
    let backend: Backend | SwitchyardError;
    try {
      backend = host.pick(tokenizeModel(result.body, host.models));
    } catch (error) {
      host.reject(res, error as SwitchyardError);
      return;
    }
    if (backend instanceof SwitchyardError) {
      host.reject(res, backend);
      return;
    }
    void forward(host, backend, path, result.body, res);
  });
}

/** Sends `body` to `backend`'s `path` and pipes its answer (status, content-type, body) to `res`. */
async function forward(
  host: TokenizeRouteHost,
  backend: Backend,
  path: string,
  body: Buffer,
  res: ServerResponse,
): Promise<void> {
  try {
    const answer = await backend.pool.request({
      method: 'POST',
      path: backend.basePath + path,
      headers: { ...backend.headers, 'content-length': String(body.length) },
      body,
      headersTimeout: host.answerTimeoutMs,
      bodyTimeout: host.answerTimeoutMs,
    });
    const type = answer.headers['content-type'];
    res.writeHead(answer.statusCode, typeof type === 'string' ? { 'content-type': type } : {});
    for await (const chunk of answer.body) res.write(chunk);
    res.end();
  } catch (error) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    host.reject(
      res,
      new SwitchyardError(
        'SY_ERR_UPSTREAM',
        `backend '${backend.id}' failed on ${path}: ${(error as Error).message}`,
      ),
    );
  }
}
