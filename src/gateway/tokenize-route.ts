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
import type { TokenizerOutcome } from './metrics.ts';
import type { Backend } from './proxy.ts';

/** The gateway paths this module serves. */
export const TOKENIZE_PATHS: ReadonlySet<string> = new Set(['/tokenize', '/detokenize']);

/** vLLM's tokenizer configuration route, a GET that names no model (serveTokenizerInfo). */
export const TOKENIZER_INFO_PATH = '/tokenizer_info';

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
  /** Counts one request on `route` that ended with `outcome` (/stats, /metrics). */
  count(route: string, outcome: TokenizerOutcome): void;
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
  return servedModel((parsed as { model?: unknown }).model, models);
}

/** `model` when served here, the only model when it is absent; throws the 400 or the 404. */
function servedModel(model: unknown, models: ReadonlySet<string>): string {
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
      host.count(path, 'rejected');
      host.reject(res, result.error);
      return;
    }
    pickAndForward(host, res, () => tokenizeModel(result.body, host.models), 'POST', path, result.body);
  });
}

/**
 * Serves vLLM's `GET /tokenizer_info` (or HEAD): it names no model, so the model is the `model`
 * query parameter when given (a model not served: 404 naming it), else the one model served (400
 * naming `model` when several are); one of its instances answers, passed back as it sent it.
 */
export function serveTokenizerInfo(
  host: TokenizeRouteHost,
  res: ServerResponse,
  method: 'GET' | 'HEAD',
  query: string,
): void {
  const model = (): string => {
    const named = new URLSearchParams(query).get('model');
    return servedModel(named === '' ? null : named, host.models);
  };
  pickAndForward(host, res, model, method, '/tokenizer_info', undefined);
}

/**
 * Resolves the request's model (`model` throws the 400 or 404), picks a healthy instance of it (or
 * answers its 503) and forwards the request there.
 */
function pickAndForward(
  host: TokenizeRouteHost,
  res: ServerResponse,
  model: () => string,
  method: 'POST' | 'GET' | 'HEAD',
  path: string,
  body: Buffer | undefined,
): void {
  let backend: Backend | SwitchyardError;
  try {
    backend = host.pick(model());
  } catch (error) {
    host.count(path, 'rejected');
    host.reject(res, error as SwitchyardError);
    return;
  }
  if (backend instanceof SwitchyardError) {
    host.count(path, 'rejected');
    host.reject(res, backend);
    return;
  }
  void forward(host, backend, method, path, body, res);
}

/** Sends `method path` (with `body`) to `backend` and pipes its answer (status, content-type, body) to `res`. */
async function forward(
  host: TokenizeRouteHost,
  backend: Backend,
  method: 'POST' | 'GET' | 'HEAD',
  path: string,
  body: Buffer | undefined,
  res: ServerResponse,
): Promise<void> {
  try {
    const answer = await backend.pool.request({
      method,
      path: backend.basePath + path,
      headers:
        body === undefined
          ? { ...backend.headers }
          : { ...backend.headers, 'content-length': String(body.length) },
      ...(body === undefined ? {} : { body }),
      headersTimeout: host.answerTimeoutMs,
      bodyTimeout: host.answerTimeoutMs,
    });
    const type = answer.headers['content-type'];
    res.writeHead(answer.statusCode, typeof type === 'string' ? { 'content-type': type } : {});
    for await (const chunk of answer.body) res.write(chunk);
    res.end();
    host.count(path, answer.statusCode >= 200 && answer.statusCode < 300 ? 'ok' : 'backend_error');
  } catch (error) {
    host.count(path, 'failed');
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
