/**
 * CORS, as vLLM's OpenAI server answers it, so a browser page (a playground, a chat UI) can call the
 * gateway. vLLM installs Starlette's CORSMiddleware with `--allowed-origins`, `--allowed-methods`,
 * `--allowed-headers` (each a JSON list, default `["*"]`) and `--allow-credentials` (default off):
 * vllm/entrypoints/openai/cli_args.py (FrontendArgs) and api_server.py (build_app). The rules below
 * restate that middleware's (starlette/middleware/cors.py), read from its source:
 *
 * - Only a request with an `Origin` header is touched.
 * - A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered by the gateway itself,
 *   whatever the path: 200 when the origin, the method and every requested header are allowed,
 *   else 400 naming what was refused; either way with `Access-Control-Allow-Methods`,
 *   `Access-Control-Max-Age` (600 s) and the allowed origin (`*`, or the request's own with
 *   `Vary: Origin` when origins are listed or credentials allowed). With `allowedHeaders: ["*"]` the
 *   requested headers are echoed back.
 * - Any other request goes on as usual and its answer (success, error, stream) carries
 *   `Access-Control-Allow-Origin`: `*` when every origin is allowed (the request's own origin when it
 *   sends a cookie, or credentials are allowed and it sends Authorization), the request's origin when
 *   it is one of those listed, nothing when it is not (the browser then hides the answer).
 *
 * Differences: a refused preflight is the gateway's JSON error (400 SY_ERR_INVALID_ARGUMENT naming
 * what was refused in `param`) rather than Starlette's plain text; origin regexes and private-network
 * preflights are not offered (vLLM sets neither).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { SwitchyardError } from '../core/errors.ts';
import { sendError } from './http-util.ts';

/** The methods `*` stands for (Starlette's ALL_METHODS). */
const ALL_METHODS: readonly string[] = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT'];
/** Headers a browser may always send (the CORS safelist), allowed whatever `allowedHeaders` says. */
const SAFELISTED_HEADERS: readonly string[] = [
  'accept',
  'accept-language',
  'content-language',
  'content-type',
];
/** How long a browser may cache a preflight's answer, in seconds (Starlette's default, as vLLM runs it). */
export const CORS_MAX_AGE_S = 600;
/** Bound on each configured list: a config or flag naming more is refused at start-up. */
const CORS_LIST_MAX = 256;

const corsList = z.array(z.string().min(1).max(2048)).max(CORS_LIST_MAX);

/**
 * The config's `cors:` block (flags `--allowed-origins`, `--allowed-methods`, `--allowed-headers`,
 * `--allow-credentials` of `switchyard serve` override it). Defaults are vLLM's: every origin,
 * method and header, no credentials. `allowedOrigins: []` refuses every cross-origin page.
 */
export const corsConfigSchema = z.strictObject({
  /** Origins allowed (`https://app.example:8443`), or `*` for any. */
  allowedOrigins: corsList.default(['*']),
  /** Methods a preflight may ask for, or `*` for any (DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT). */
  allowedMethods: corsList.default(['*']),
  /** Request headers a preflight may ask for (besides the safelisted ones), or `*` for any. */
  allowedHeaders: corsList.default(['*']),
  /** Answers say `Access-Control-Allow-Credentials: true` (cookies, client certificates). */
  allowCredentials: z.boolean().default(false),
});
export type CorsConfig = z.infer<typeof corsConfigSchema>;

/** What the gateway answers cross-origin requests with, built once from the config. */
export class Cors {
  private readonly allowAllOrigins: boolean;
  private readonly allowAllHeaders: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly methods: ReadonlySet<string>;
  private readonly headers: ReadonlySet<string>;
  /** The preflight answer names the request's origin (listed origins, or credentials), with Vary. */
  private readonly explicitPreflightOrigin: boolean;
  private readonly allowCredentials: boolean;
  /** Headers every preflight answer carries before its origin and requested headers are known. */
  private readonly preflightBase: Readonly<Record<string, string>>;

  constructor(config: CorsConfig) {
    this.allowAllOrigins = config.allowedOrigins.includes('*');
    this.allowAllHeaders = config.allowedHeaders.includes('*');
    this.origins = new Set(config.allowedOrigins);
    const methods = config.allowedMethods.includes('*') ? ALL_METHODS : config.allowedMethods;
    this.methods = new Set(methods);
    const headers = [
      ...new Set([...SAFELISTED_HEADERS, ...config.allowedHeaders.map((h) => h.toLowerCase())]),
    ];
    this.headers = new Set(headers);
    this.allowCredentials = config.allowCredentials;
    this.explicitPreflightOrigin = !this.allowAllOrigins || config.allowCredentials;
    const base: Record<string, string> = {
      'access-control-allow-methods': methods.join(', '),
      'access-control-max-age': String(CORS_MAX_AGE_S),
    };
    if (this.explicitPreflightOrigin) base['vary'] = 'Origin';
    else base['access-control-allow-origin'] = '*';
    if (!this.allowAllHeaders) base['access-control-allow-headers'] = headers.sort().join(', ');
    if (config.allowCredentials) base['access-control-allow-credentials'] = 'true';
    this.preflightBase = base;
  }

  private allowedOrigin(origin: string): boolean {
    return this.allowAllOrigins || this.origins.has(origin);
  }

  /**
   * A preflight's answer: its headers, and what was refused (empty: allowed). `requestedHeaders` is
   * the Access-Control-Request-Headers value, if any.
   */
  preflight(
    origin: string,
    method: string,
    requestedHeaders: string | undefined,
  ): { readonly headers: Record<string, string>; readonly refused: readonly string[] } {
    const headers: Record<string, string> = { ...this.preflightBase };
    const refused: string[] = [];
    if (!this.allowedOrigin(origin)) refused.push('origin');
    else if (this.explicitPreflightOrigin) headers['access-control-allow-origin'] = origin;
    if (!this.methods.has(method)) refused.push('method');
    if (requestedHeaders !== undefined) {
      if (this.allowAllHeaders) headers['access-control-allow-headers'] = requestedHeaders;
      else if (requestedHeaders.split(',').some((h) => !this.headers.has(h.trim().toLowerCase())))
        refused.push('headers');
    }
    return { headers, refused };
  }

  /** Puts the allow headers for a non-preflight request from `origin` on `res`, before it answers. */
  decorate(req: IncomingMessage, res: ServerResponse, origin: string): void {
    if (this.allowCredentials) res.setHeader('access-control-allow-credentials', 'true');
    if (this.allowAllOrigins) {
      const explicit =
        req.headers.cookie !== undefined ||
        (this.allowCredentials && req.headers.authorization !== undefined);
      if (!explicit) {
        res.setHeader('access-control-allow-origin', '*');
        return;
      }
    } else if (!this.origins.has(origin)) return;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
  }
}

/** The parts of a preflight a refusal names, as `param`. */
const REFUSED_PARAM: Record<string, string> = {
  origin: 'origin',
  method: 'access-control-request-method',
  headers: 'access-control-request-headers',
};

/**
 * CORS for one request, first thing: answers a preflight (true: answered, the caller stops) or
 * decorates the answer to come (false). `countRejection` hears a refused preflight's code.
 */
export function handleCors(
  cors: Cors,
  req: IncomingMessage,
  res: ServerResponse,
  countRejection: (code: SwitchyardError['code']) => void,
): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  const method = req.headers['access-control-request-method'];
  if (req.method !== 'OPTIONS' || method === undefined) {
    cors.decorate(req, res, origin);
    return false;
  }
  // A preflight has no body worth reading; what arrives is dropped so the connection stays usable.
  req.resume();
  const requested = req.headers['access-control-request-headers'];
  const answer = cors.preflight(origin, method, requested);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  if (answer.refused.length === 0) {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 2 });
    res.end('OK');
    return true;
  }
  const error = new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `CORS preflight refused: ${answer.refused.join(', ')} not allowed (origin '${origin}', method '${method}'${requested === undefined ? '' : `, headers '${requested}'`}); see the cors config block or --allowed-origins, --allowed-methods, --allowed-headers`,
    { param: REFUSED_PARAM[answer.refused[0] as string] ?? 'origin' },
  );
  countRejection(error.code);
  sendError(res, error);
  return true;
}

/**
 * A `switchyard serve` list flag (`--allowed-origins` and its siblings): a JSON list as vLLM takes
 * it (`'["https://a.example"]'`), or a comma-separated list (`https://a.example,https://b.example`).
 */
export function parseCorsListFlag(value: string, flag: string): string[] {
  const text = value.trim();
  if (text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `--${flag}: not a JSON list: ${(error as Error).message}`,
        { param: flag },
      );
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string' && x.length > 0))
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `--${flag}: expected a JSON list of strings`, {
        param: flag,
      });
    return parsed as string[];
  }
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
