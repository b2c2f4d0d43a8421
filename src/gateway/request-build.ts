/**
 * Turns a request body the gateway has read into the `Request` admission and routing see: model,
 * tenant, priority, token counts, prefix chain. Moved out of gateway.ts so the rules for what a
 * client may claim about its own request (priority, cost) live in one place next to their tests.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { PromptTokenizer } from '../adapters/tokenizer/load.ts';
import { SwitchyardError } from '../core/errors.ts';
import { NO_PREFIX, type Request, type Slo } from '../core/request.ts';
import { estimateTokens } from '../core/text-prefix.ts';
import { noteBodyPriority } from './engine-priority.ts';
import { parseRouting, type RoutingFields } from './fast-parse.ts';
import type { ExchangeKind } from './proxy.ts';
import { parseResponsesFields } from './responses-fields.ts';

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
  /** What a body's `priority` may claim (see `requestPriority`). */
  readonly priority: PriorityRule;
  /**
   * Whether an embeddings request for `model` is charged at most EMBEDDING_INPUT_TOKENS_COST_MAX an
   * input (`embeddingsInputCapped` over the gateway's backends); absent: never.
   */
  embeddingsCapped?(model: string): boolean;
  /** The next request id (`r1`, `r2`, ...). */
  nextId(): string;
}

/** A built request and whether its client asked for a stream. */
export interface BuiltRequest {
  readonly request: Request;
  readonly stream: boolean;
}

/**
 * What admission and routing need of a body, as parsing it gives them before the gateway's own
 * checks (served model, tenant, request id): everything here depends on the body alone, so it may
 * be computed off the event loop (parse-worker.ts) and must come out the same there.
 */
export interface BodyFields {
  readonly model: string;
  readonly inputTokens: number;
  readonly maxTokens: number | undefined;
  readonly stream: boolean;
  /** The body's `priority`, before `requestPriority` applies the rule (undefined for embeddings). */
  readonly priority: number | undefined;
  readonly user: string | undefined;
  readonly prefix: Request['prefix'];
  /**
   * Embeddings only: the cost with each input charged at most EMBEDDING_INPUT_TOKENS_COST_MAX, used
   * instead of `inputTokens` when every backend of the model refuses longer inputs.
   */
  readonly inputTokensCapped?: number | undefined;
  /**
   * Generations asked for (n x prompts of a completions list), present only when more than one
   * (`Request.generations`).
   */
  readonly generations?: number | undefined;
}

/**
 * The text of a JSON body: UTF-8, a leading byte order mark skipped (vLLM's server reads such a
 * body: Python's json.loads takes bytes with a BOM; `curl -d @file` sends one from a file saved
 * with it). The bytes forwarded to a backend are left as they came.
 */
export function jsonText(body: Buffer): string {
  return body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf
    ? body.toString('utf8', 3)
    : body.toString('utf8');
}

/**
 * The JSON value of `body`; invalid JSON throws the 400 the gateway answers. So do bytes that are
 * not UTF-8 (JSON text is UTF-8, RFC 8259 section 8.1): decoding them would replace each bad byte
 * with U+FFFD and serve a prompt the client never sent. vLLM refuses such a body too (400: FastAPI
 * fails json.loads' decode with "There was an error parsing the body").
 */
export function decodeBody(body: Buffer): unknown {
  if (!isUtf8(body))
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'request body is not valid JSON: not UTF-8', {
      param: 'body',
    });
  try {
    return JSON.parse(jsonText(body));
  } catch (error) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      `request body is not valid JSON: ${(error as Error).message}`,
      {
        param: 'body',
      },
    );
  }
}

/** The fields of a decoded body of `kind`; a bad body throws the SwitchyardError to answer. */
export function fieldsOf(kind: ExchangeKind, json: unknown): BodyFields {
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
    return {
      model: m.model,
      inputTokens: embeddingsCost(m.input).tokens,
      inputTokensCapped: embeddingsCost(m.input, EMBEDDING_INPUT_TOKENS_COST_MAX).tokens,
      maxTokens: 1,
      stream: false,
      priority: undefined,
      user: undefined,
      prefix: NO_PREFIX,
    };
  }
  // The Responses API's fields have the same meaning as chat's; only their names and shapes differ.
  const parsed: RoutingFields = kind === 'responses' ? parseResponsesFields(json) : parseRouting(kind, json);
  const generations = kind === 'responses' ? 1 : generationsOf(kind, json);
  return {
    model: parsed.model,
    inputTokens: parsed.promptTokens,
    maxTokens: parsed.maxTokens,
    stream: parsed.stream,
    priority: parsed.priority,
    user: parsed.user,
    prefix: parsed.prefix,
    ...(generations > 1 ? { generations } : {}),
  };
}

/**
 * Generations a chat or completion body that passed `parseRouting` asks for: `n` (choices per
 * prompt) times the prompts of a completions list (a list of strings or of token-id lists; a flat
 * list of ids is one prompt). vLLM generates each, and its usage counts them all.
 */
export function generationsOf(kind: 'chat' | 'completion', json: unknown): number {
  const b = json as Record<string, unknown>;
  const n = typeof b['n'] === 'number' && b['n'] > 1 ? b['n'] : 1;
  const prompt = b['prompt'];
  const prompts =
    kind === 'completion' && Array.isArray(prompt) && prompt.length > 1 && typeof prompt[0] !== 'number'
      ? prompt.length
      : 1;
  return n * prompts;
}

/** `fieldsOf` a raw body: what the main thread and a parse worker both run. */
export function parseBodyFields(kind: ExchangeKind, body: Buffer): BodyFields {
  return fieldsOf(kind, decodeBody(body));
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
  return requestOf(ctx, bodyFields(ctx, kind, body), tenant, req, arrivalMs);
}

/** `parseBodyFields`, with the token count and chain of the model's tokenizer when one is configured. */
export function bodyFields(
  ctx: Pick<RequestBuildContext, 'tokenizers'>,
  kind: ExchangeKind,
  body: Buffer,
): BodyFields {
  const json = decodeBody(body);
  const fields = fieldsOf(kind, json);
  noteBodyPriority(body, fields.priority);
  const tokenizer = ctx.tokenizers.get(fields.model);
  if (tokenizer === undefined || kind === 'embeddings') return fields;
  // The body passed parseRouting (parseResponsesFields), so its shape is known good.
  const decoded = json as Record<string, unknown>;
  const tokenized =
    kind === 'responses'
      ? tokenizer.tokenizeBody('chat', responsesAsChat(decoded))
      : tokenizer.tokenizeBody(kind, decoded);
  return { ...fields, inputTokens: tokenized.promptTokens, prefix: tokenized.prefix };
}

/**
 * A Responses body as the chat body a tokenizer renders: `instructions` as a system message, then
 * the input's messages with their content as sent (text parts joined by the template's rule), as
 * vLLM builds a Responses prompt through the chat template (its serving code turns instructions and
 * input items into chat messages, add_generation_prompt on). Items that are not messages carry no
 * text here, as for the text estimate (responses-fields.ts); `tools` are not rendered (their
 * Responses shape is not chat's), so a body with tools may match fewer engine blocks, never wrongly.
 */
function responsesAsChat(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const messages: { role: unknown; content: unknown }[] = [];
  const instructions = body['instructions'];
  if (typeof instructions === 'string') messages.push({ role: 'system', content: instructions });
  const input = body['input'];
  if (typeof input === 'string') messages.push({ role: 'user', content: input });
  else if (Array.isArray(input))
    for (const item of input as Record<string, unknown>[])
      if (typeof item['role'] === 'string') messages.push({ role: item['role'], content: item['content'] });
  // The salt changes the chain as it does chat's (parseResponsesFields checked it).
  return body['cache_salt'] === undefined ? { messages } : { messages, cache_salt: body['cache_salt'] };
}

/**
 * The Request for parsed `fields`: the served-model check, the tenant, the priority rule, the
 * session and the request id. A model not served here throws the 404.
 */
export function requestOf(
  ctx: RequestBuildContext,
  fields: BodyFields,
  tenant: TenantEntry | undefined,
  req: Pick<IncomingMessage, 'headers'>,
  arrivalMs: number,
): BuiltRequest {
  const model = fields.model;
  if (!ctx.models.has(model)) {
    throw new SwitchyardError(
      'SY_ERR_NOT_FOUND',
      `model '${model}' is not served here; served: ${[...ctx.models].sort().join(', ')}`,
      { param: 'model' },
    );
  }
  const request: Request = {
    id: ctx.nextId(),
    model,
    tenant: tenant?.name ?? 'default',
    priority: requestPriority(ctx.priority, tenant, fields.priority),
    inputTokens:
      fields.inputTokensCapped !== undefined && ctx.embeddingsCapped?.(model) === true
        ? fields.inputTokensCapped
        : fields.inputTokens,
    maxTokens: fields.maxTokens,
    ...(fields.generations === undefined ? {} : { generations: fields.generations }),
    arrivalMs,
    slo: ctx.slo,
    prefix: fields.prefix,
    sessionId: sessionIdOf(req.headers['x-session-id'], fields.user),
  };
  return { request, stream: fields.stream };
}

/** Longest session id kept as sent: the `user` field's own bound (src/core/openai-api.ts). */
export const SESSION_ID_CHARS_MAX = 256;

/**
 * The request's session: its `X-Session-Id` header, else its body's `user`. A header longer than
 * SESSION_ID_CHARS_MAX is kept as a digest of itself (the same header, the same session): session
 * ids are keys of tables bounded by count (the output-length estimator's 16,384 groups), so each
 * key must be bounded in bytes too, or distinct 16 KiB headers would hold 256 MiB there.
 */
export function sessionIdOf(
  header: string | string[] | undefined,
  user: string | undefined,
): string | undefined {
  if (typeof header !== 'string' || header.length === 0) return user;
  if (header.length <= SESSION_ID_CHARS_MAX) return header;
  return `sha256:${createHash('sha256').update(header).digest('base64url')}`;
}

/**
 * What a client may claim with `priority` in its body. Admission puts a request in the band its
 * priority reaches, so an unchecked body priority let any client jump the queue (a high value) or
 * reach the offline batch band (-1). The rule:
 * - a tenant with a configured priority gets that priority; the body is ignored (operator's word);
 * - any other client's body priority is clamped to [floor, ceiling]: `floor` is the lowest online
 *   band's minPriority (never the batch band: that band is reached only through the Batch API, whose
 *   requests carry the offline hint), and `ceiling` is 0 for a keyed tenant without a configured
 *   priority (it may lower its own priority within the online bands, never raise it) and
 *   `limits.clientPriorityMax` when no tenants are configured (default 0: nobody raises it).
 */
export interface PriorityRule {
  /** Tenants are configured (requests carry an API key naming one). */
  readonly keyed: boolean;
  /** The lowest priority a body may ask for: the lowest online band's minPriority, at most 0. */
  readonly floor: number;
  /** The highest a body may ask for when no tenants are configured (limits.clientPriorityMax). */
  readonly anonymousMax: number;
}

/** A request's priority under `rule` (see PriorityRule). */
export function requestPriority(
  rule: PriorityRule,
  tenant: TenantEntry | undefined,
  bodyPriority: number | undefined,
): number {
  if (tenant?.priority !== undefined) return tenant.priority;
  const ceiling = rule.keyed ? 0 : Math.max(0, rule.anonymousMax);
  const asked = bodyPriority ?? 0;
  return Math.min(ceiling, Math.max(Math.min(0, rule.floor), asked));
}

/** Tokens one KV block holds (vLLM's default block size): the least a sequence occupies. */
const BLOCK_TOKENS = 16;
/**
 * Tokens one embeddings input may carry on the built-in engines (OpenAI's 8,192:
 * EMBEDDING_INPUT_TOKENS_MAX in engine-servers/embeddings.ts). An input past it is refused by such an
 * engine, not run, so admission charges no input more than this where every backend of the model is
 * one: a 1 MiB string costs one input's worth, not 262,144 tokens of a tenant's budget, and its
 * client hears the engine's 400. Other engines (vLLM: up to the model's context length, which the
 * gateway does not know) may run a longer input, so there each input is charged in full.
 */
export const EMBEDDING_INPUT_TOKENS_COST_MAX = 8192;
/** Backend types whose engines refuse an embeddings input past EMBEDDING_INPUT_TOKENS_COST_MAX. */
export const EMBEDDINGS_CAPPED_BACKEND_TYPES: readonly string[] = ['sim', 'llama'];

/**
 * Whether `model`'s embeddings inputs are charged at most EMBEDDING_INPUT_TOKENS_COST_MAX each: when
 * `backends` serve it and all are built-in engines (EMBEDDINGS_CAPPED_BACKEND_TYPES). A model with
 * no backend yet (scale from zero) is charged in full: its engine is not known.
 */
export function embeddingsInputCapped(
  backends: readonly { readonly config: { readonly type: string; readonly models: readonly string[] } }[],
  model: string,
): boolean {
  let serving = 0;
  for (const { config } of backends) {
    if (!config.models.includes(model)) continue;
    if (!EMBEDDINGS_CAPPED_BACKEND_TYPES.includes(config.type)) return false;
    serving++;
  }
  return serving > 0;
}

/**
 * What an embeddings request costs admission: its inputs and their tokens. `input` may be a string,
 * a list of strings, a list of token ids (one input), or a list of token-id lists; each input is
 * estimated (text by characters, token ids by count) and rounded up to whole KV blocks, since an
 * engine runs every input as its own sequence and a sequence holds whole blocks: 2,048 one-word
 * inputs cost 32,768 tokens, not 2,048. Shapes the engine will refuse still get a cost (at least one
 * block, at most `inputTokensMax` an input: EMBEDDING_INPUT_TOKENS_COST_MAX where the engines refuse
 * longer inputs, default no cap): admission runs before the engine's own validation.
 */
export function embeddingsCost(
  input: unknown,
  inputTokensMax: number = Number.POSITIVE_INFINITY,
): { inputs: number; tokens: number } {
  const blocks = (tokens: number): number =>
    Math.max(1, Math.ceil(Math.min(tokens, inputTokensMax) / BLOCK_TOKENS)) * BLOCK_TOKENS;
  if (typeof input === 'string') return { inputs: 1, tokens: blocks(estimateTokens(input)) };
  if (!Array.isArray(input) || input.length === 0) return { inputs: 1, tokens: blocks(0) };
  if (input.every((x) => typeof x === 'number')) return { inputs: 1, tokens: blocks(input.length) };
  let tokens = 0;
  for (const x of input)
    tokens += blocks(typeof x === 'string' ? estimateTokens(x) : Array.isArray(x) ? x.length : 0);
  return { inputs: input.length, tokens };
}

/** The priority rule for a gateway: `bands` are admission's, `keyed` whether tenants are configured. */
export function priorityRule(
  bands: readonly { readonly minPriority: number }[],
  keyed: boolean,
  anonymousMax: number,
): PriorityRule {
  const ascending = bands.map((b) => b.minPriority).sort((a, b) => a - b);
  // The lowest band is the offline batch band; the next one up is the lowest a client may reach.
  return { keyed, floor: Math.min(0, ascending[1] ?? 0), anonymousMax };
}
