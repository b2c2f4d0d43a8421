/**
 * Turns a request body the gateway has read into the `Request` admission and routing see: model,
 * tenant, priority, token counts, prefix chain. Moved out of gateway.ts so the rules for what a
 * client may claim about its own request (priority, cost) live in one place next to their tests.
 */
import type { IncomingMessage } from 'node:http';
import type { PromptTokenizer } from '../adapters/tokenizer/load.ts';
import { SwitchyardError } from '../core/errors.ts';
import type { Request, Slo } from '../core/request.ts';
import { estimateTokens, textPrefixChain } from '../core/text-prefix.ts';
import { parseRouting, type RoutingFields } from './fast-parse.ts';
import type { ExchangeKind } from './proxy.ts';

/** A configured tenant, as the gateway knows it by API key. */
export interface TenantEntry {
  readonly name: string;
  readonly priority: number | undefined;
}

/** What building a request needs from the gateway: served models, tokenizers, the SLO, request ids. */
export interface RequestBuildContext {
  readonly models: ReadonlySet<string>;
  readonly tokenizers: ReadonlyMap<string, PromptTokenizer>;
  readonly slo: Slo | undefined;
  /** The next request id (`r1`, `r2`, ...). */
  nextId(): string;
}

/** A built request and whether its client asked for a stream. */
export interface BuiltRequest {
  readonly request: Request;
  readonly stream: boolean;
}

/** Parses `body` (JSON) into a Request; a bad body throws the SwitchyardError to answer. */
export function buildRequest(
  ctx: RequestBuildContext,
  kind: ExchangeKind,
  body: Buffer,
  tenant: TenantEntry | undefined,
  req: Pick<IncomingMessage, 'headers'>,
  arrivalMs: number,
): BuiltRequest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `request body is not valid JSON: ${(error as Error).message}`,
      {
        param: 'body',
      },
    );
  }
  let model: string;
  let inputTokens: number;
  let maxTokens: number | undefined;
  let stream = false;
  let parsed: RoutingFields | undefined;
  let prefix = undefined as Request['prefix'] | undefined;
  if (kind === 'embeddings') {
    const m = typeof json === 'object' && json !== null ? (json as { model?: unknown; input?: unknown }) : {};
    if (typeof m.model !== 'string' || m.model.length === 0)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: model: expected a string', {
        param: 'model',
      });
    if (m.input === undefined)
      throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: input: required', {
        param: 'input',
      });
    model = m.model;
    const text = typeof m.input === 'string' ? m.input : '';
    inputTokens = Math.max(1, typeof m.input === 'string' ? estimateTokens(text) : 1);
    prefix = textPrefixChain('');
  } else {
    parsed = parseRouting(kind, json);
    model = parsed.model;
    inputTokens = parsed.promptTokens;
    maxTokens = parsed.maxTokens;
    stream = parsed.stream;
    prefix = parsed.prefix;
    const tokenizer = ctx.tokenizers.get(model);
    if (tokenizer !== undefined) {
      // The body passed parseRouting, so its shape is known good.
      const tokenized = tokenizer.tokenizeBody(kind, json as Record<string, unknown>);
      inputTokens = tokenized.promptTokens;
      prefix = tokenized.prefix;
    }
  }
  if (!ctx.models.has(model)) {
    throw new SwitchyardError(
      'SY_ERR_NOT_FOUND',
      `model '${model}' is not served here; served: ${[...ctx.models].sort().join(', ')}`,
      { param: 'model' },
    );
  }
  const session = req.headers['x-session-id'];
  const request: Request = {
    id: ctx.nextId(),
    model,
    tenant: tenant?.name ?? 'default',
    priority: tenant?.priority ?? parsed?.priority ?? 0,
    inputTokens,
    maxTokens,
    arrivalMs,
    slo: ctx.slo,
    prefix,
    sessionId: typeof session === 'string' && session.length > 0 ? session : parsed?.user,
  };
  return { request, stream };
}
