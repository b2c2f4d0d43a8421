/**
 * JSON answers of the built-in engines' HTTP server, shared by openai-server.ts and the sleep-mode
 * routes (sleep-mode.ts) so both answer errors in one OpenAI shape.
 */
import type { ServerResponse } from 'node:http';
import { ERRORS, type ErrorCode, SwitchyardError } from '../core/errors.ts';

/** An error body in OpenAI's shape for any error: SwitchyardError's own, or one built from its fields. */
export function errorBody(error: Error & { status?: number; code?: string }): {
  status: number;
  body: string;
} {
  if (error instanceof SwitchyardError) return { status: error.status, body: JSON.stringify(error.toJSON()) };
  const code = (
    error.code !== undefined && error.code in ERRORS ? error.code : 'SY_ERR_INTERNAL'
  ) as ErrorCode;
  const status = error.status ?? ERRORS[code].status;
  const body = { error: { message: error.message, type: ERRORS[code].type, code, param: null } };
  return { status, body: JSON.stringify(body) };
}

/** Writes `body` (JSON text) with `status` and its length. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** Writes `error` as an OpenAI-style error body with its status. */
export function sendError(res: ServerResponse, error: Error, headers: Record<string, string> = {}): void {
  const { status, body } = errorBody(error);
  sendJson(res, status, body, headers);
}

/** 405 SY_ERR_METHOD_NOT_ALLOWED with `Allow: allow`, for a known path asked with the wrong method. */
export function sendMethodNotAllowed(res: ServerResponse, method: string, path: string, allow: string): void {
  sendError(
    res,
    new SwitchyardError(
      'SY_ERR_METHOD_NOT_ALLOWED',
      `method ${method} not allowed on ${path}; use ${allow}`,
      {
        param: 'method',
      },
    ),
    { allow },
  );
}
