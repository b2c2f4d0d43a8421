/**
 * The hot-path body parser: the same result as core's `parseCompletionBody`, without zod for the
 * common case. A hand-written check accepts a body only if every field the schema names has the
 * type and range the schema demands (it may be stricter than the schema, never looser); anything it
 * does not accept goes to `parseCompletionBody`, which either accepts it after all or throws the
 * 400 that names the bad field. fast-parse.test.ts checks, over generated bodies, that both paths
 * agree. Measured on the gateway benchmark's 4 KB chat bodies: about 14 us of zod per request saved.
 */

import { saltPrefixChain } from '../core/cache-salt.ts';
import {
  chatPartTextField,
  DEFAULT_MAX_TOKENS,
  MAX_TOKENS_LIMIT,
  type ParsedCompletionRequest,
  parseCompletionBody,
  SEED_ABS_MAX,
} from '../core/openai-api.ts';
import type { PrefixChain } from '../core/request.ts';
import {
  CHARS_PER_TOKEN,
  ChatChainWriter,
  estimateTokens,
  TEXT_BLOCK_TOKENS,
  textPrefixChain,
  tokenPrefixChain,
  toolCallsText,
} from '../core/text-prefix.ts';

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const MESSAGES_MAX = 100_000;
const STOP_MAX = 16;
/** Bound on |priority| a body may name. */
export const PRIORITY_ABS_MAX = 1_000_000;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nullish(v: unknown): boolean {
  return v === undefined || v === null;
}

/** A boolean, or absent (null too, as vLLM's `bool | None` fields take it). */
function optionalBoolean(v: unknown): boolean {
  return nullish(v) || typeof v === 'boolean';
}

function tokenLimit(v: unknown): boolean {
  return nullish(v) || (Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= MAX_TOKENS_LIMIT);
}

function nonNegativeInt(v: unknown): boolean {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** A body's `cache_salt` once commonValid passed it (a non-empty string, or none). */
function saltOf(b: Json): string | undefined {
  const salt = b['cache_salt'];
  return typeof salt === 'string' ? salt : undefined;
}

/** The fields both endpoints share, checked as strictly as the schema (or more). */
function commonValid(b: Json): boolean {
  const model = b['model'];
  if (typeof model !== 'string' || model.length < 1 || model.length > 512) return false;
  if (!optionalBoolean(b['stream'])) return false;
  const so = b['stream_options'];
  if (!nullish(so) && !(isObject(so) && optionalBoolean(so['include_usage']))) return false;
  // Options without a stream are vLLM's 400 (core's streamOptionsRefusal): the slow path throws it.
  if (isObject(so) && Object.keys(so).length > 0 && b['stream'] !== true) return false;
  if (!tokenLimit(b['max_tokens'])) return false;
  const t = b['temperature'];
  if (!nullish(t) && !(typeof t === 'number' && t >= 0 && t <= 2)) return false;
  const p = b['top_p'];
  if (!nullish(p) && !(typeof p === 'number' && p > 0 && p <= 1)) return false;
  for (const penalty of [b['frequency_penalty'], b['presence_penalty']])
    if (!nullish(penalty) && !(typeof penalty === 'number' && penalty >= -2 && penalty <= 2)) return false;
  const n = b['n'];
  if (!nullish(n) && n !== 1) return false;
  const stop = b['stop'];
  if (!nullish(stop) && typeof stop !== 'string') {
    if (!Array.isArray(stop) || stop.length > STOP_MAX) return false;
    for (const s of stop) if (typeof s !== 'string') return false;
  }
  const seed = b['seed'];
  if (!nullish(seed) && !(Number.isInteger(seed) && Math.abs(seed as number) <= SEED_ABS_MAX)) return false;
  const user = b['user'];
  if (!nullish(user) && !(typeof user === 'string' && user.length <= 256)) return false;
  const salt = b['cache_salt'];
  if (!nullish(salt) && !(typeof salt === 'string' && salt.length > 0)) return false;
  const priority = b['priority'];
  if (
    priority !== undefined &&
    !(Number.isSafeInteger(priority) && Math.abs(priority as number) <= PRIORITY_ABS_MAX)
  )
    return false;
  return true;
}

/**
 * The text a chat content part adds to the prompt, as the schema path's chatPartText reads it (a
 * refusal's `refusal`, a thinking part's `thinking`, else `text`; '' when that is not a string), or
 * undefined when the part does not pass the schema (no string `type`, a `text` that is not a string).
 */
function fastPartText(part: unknown): string | undefined {
  if (!isObject(part) || typeof part['type'] !== 'string') return undefined;
  const t = part['text'];
  if (t !== undefined && typeof t !== 'string') return undefined;
  const own = part[chatPartTextField(part['type'])];
  return typeof own === 'string' ? own : '';
}

/** The rendered chat text, or undefined when some message does not pass the schema. */
function chatText(messages: unknown): string | undefined {
  if (!Array.isArray(messages) || messages.length < 1 || messages.length > MESSAGES_MAX) return undefined;
  let out = '';
  for (const m of messages) {
    if (!isObject(m)) return undefined;
    const role = m['role'];
    if (typeof role !== 'string' || !ROLES.has(role)) return undefined;
    const name = m['name'];
    if (name !== undefined && typeof name !== 'string') return undefined;
    const content = m['content'];
    let text = '';
    if (typeof content === 'string') text = content;
    else if (Array.isArray(content)) {
      // Non-empty part texts joined by "\n", as chatPartsText joins them.
      for (const part of content) {
        const t = fastPartText(part);
        if (t === undefined) return undefined;
        if (t !== '') text += text === '' ? t : `\n${t}`;
      }
    } else if (!nullish(content)) return undefined;
    const calls = m['tool_calls'];
    const fnCall = m['function_call'];
    // renderChat's rendering of one message, without its array and object.
    out += `<|${role}|>\n${text}${calls === undefined && fnCall === undefined ? '' : toolCallsText(calls, fnCall, text !== '')}\n`;
  }
  return out;
}

/** The prompt of a completion body as text or ids, or undefined when it does not pass the schema. */
function completionPrompt(prompt: unknown): { text: string; ids: readonly number[] | undefined } | undefined {
  if (typeof prompt === 'string') return { text: prompt, ids: undefined };
  if (!Array.isArray(prompt) || prompt.length < 1) return undefined;
  const first = prompt[0];
  if (typeof first === 'string') return prompt.length === 1 ? { text: first, ids: undefined } : undefined;
  if (typeof first === 'number') {
    for (const id of prompt) if (!nonNegativeInt(id)) return undefined;
    return { text: '', ids: prompt as number[] };
  }
  if (prompt.length !== 1 || !Array.isArray(first) || first.length < 1) return undefined;
  for (const id of first) if (!nonNegativeInt(id)) return undefined;
  return { text: '', ids: first as number[] };
}

/**
 * Parses a chat or completion body (already JSON-decoded) exactly as `parseCompletionBody` does,
 * and throws the same SwitchyardError for a bad one.
 */
export function parseBody(kind: 'chat' | 'completion', body: unknown): ParsedCompletionRequest {
  if (!isObject(body) || !commonValid(body)) return parseCompletionBody(kind, body);
  let promptText: string;
  let promptTokenIds: readonly number[] | undefined;
  let maxGiven: unknown;
  if (kind === 'chat') {
    if (!tokenLimit(body['max_completion_tokens'])) return parseCompletionBody(kind, body);
    const text = chatText(body['messages']);
    if (text === undefined) return parseCompletionBody(kind, body);
    promptText = text;
    maxGiven = body['max_completion_tokens'] ?? body['max_tokens'];
  } else {
    if (!optionalBoolean(body['echo'])) return parseCompletionBody(kind, body);
    const prompt = completionPrompt(body['prompt']);
    if (prompt === undefined) return parseCompletionBody(kind, body);
    promptText = prompt.text;
    promptTokenIds = prompt.ids;
    maxGiven = body['max_tokens'];
  }
  const stop = body['stop'];
  const so = body['stream_options'];
  const temperature = body['temperature'];
  const seed = body['seed'];
  return {
    kind,
    model: body['model'] as string,
    stream: body['stream'] === true,
    includeUsage: isObject(so) && so['include_usage'] === true,
    maxTokens: nullish(maxGiven) ? DEFAULT_MAX_TOKENS : (maxGiven as number),
    maxTokensGiven: !nullish(maxGiven),
    maxTokensField:
      kind === 'chat' && !nullish(body['max_completion_tokens']) ? 'max_completion_tokens' : 'max_tokens',
    promptText,
    promptTokenIds,
    promptTokens:
      promptTokenIds !== undefined ? promptTokenIds.length : Math.max(1, estimateTokens(promptText)),
    prefix: saltPrefixChain(
      promptTokenIds !== undefined ? tokenPrefixChain(promptTokenIds) : textPrefixChain(promptText),
      saltOf(body),
    ),
    stop: nullish(stop) ? [] : typeof stop === 'string' ? [stop] : [...(stop as string[])],
    temperature: nullish(temperature) ? undefined : (temperature as number),
    topP: (body['top_p'] ?? undefined) as number | undefined,
    frequencyPenalty: (body['frequency_penalty'] ?? undefined) as number | undefined,
    presencePenalty: (body['presence_penalty'] ?? undefined) as number | undefined,
    seed: nullish(seed) ? undefined : (seed as number),
    priority: body['priority'] as number | undefined,
    user: (body['user'] ?? undefined) as string | undefined,
    cacheSalt: saltOf(body),
  };
}

/** What the gateway needs of a chat or completion body to admit and route it. */
export interface RoutingFields {
  readonly model: string;
  readonly stream: boolean;
  /** The client's max_tokens / max_completion_tokens; undefined when it sent none (no default here). */
  readonly maxTokens: number | undefined;
  readonly promptTokens: number;
  readonly prefix: PrefixChain;
  readonly priority: number | undefined;
  readonly user: string | undefined;
}

/** The routing fields of a full parse (what parseRouting gives without the full parse). */
export function routingOf(p: ParsedCompletionRequest): RoutingFields {
  return {
    model: p.model,
    stream: p.stream,
    maxTokens: p.maxTokensGiven ? p.maxTokens : undefined,
    promptTokens: p.promptTokens,
    prefix: p.prefix,
    priority: p.priority,
    user: p.user,
  };
}

const writer = new ChatChainWriter();

/**
 * Blocks of a prompt's prefix chain hashed for routing: 16,384 blocks of 16 estimated tokens
 * (262,144 tokens, 1 MiB of text), twice the longest context of the catalogue models (131,072
 * tokens), so no engine can hold a longer shared prefix. The chain is a prefix of the uncapped one;
 * only prompts past the cap see a difference. Hashing an 8 MB prompt to the old cap (65,536 blocks)
 * cost about 6 ms of event-loop time (bench/gateway-large-body.ts).
 */
export const ROUTING_PREFIX_BLOCKS_MAX = 16_384;

/** `chain` cut to its first `blocksMax` hashes. */
function capped(chain: PrefixChain, blocksMax: number): PrefixChain {
  return chain.hashes.length <= blocksMax
    ? chain
    : { blockTokens: chain.blockTokens, hashes: chain.hashes.slice(0, blocksMax) };
}

/**
 * Renders the messages into `writer` (as `chatText` renders them), or returns false when some message
 * does not pass the schema (exactly when `chatText` returns undefined).
 */
function writeChat(messages: unknown): boolean {
  if (!Array.isArray(messages) || messages.length < 1 || messages.length > MESSAGES_MAX) return false;
  writer.reset();
  for (const m of messages) {
    if (!isObject(m)) return false;
    const role = m['role'];
    if (typeof role !== 'string' || !ROLES.has(role)) return false;
    const name = m['name'];
    if (name !== undefined && typeof name !== 'string') return false;
    const content = m['content'];
    writer.startMessage(role);
    const contentStart = writer.length;
    if (typeof content === 'string') writer.append(content);
    else if (Array.isArray(content)) {
      // Non-empty part texts joined by "\n", as chatPartsText joins them.
      let first = true;
      for (const part of content) {
        const t = fastPartText(part);
        if (t === undefined) return false;
        if (t === '') continue;
        if (!first) writer.append('\n');
        writer.append(t);
        first = false;
      }
    } else if (!nullish(content)) return false;
    const calls = m['tool_calls'];
    const fnCall = m['function_call'];
    // An assistant turn's tool calls, after its content (renderChat's toolCallsText).
    if (calls !== undefined || fnCall !== undefined)
      writer.append(toolCallsText(calls, fnCall, writer.length > contentStart));
    writer.endMessage();
  }
  return true;
}

/**
 * The routing fields of a chat or completion body (already JSON-decoded): the same values as the
 * matching fields of `parseBody`, but for a prefix chain cut at `prefixBlocksMax` blocks, and the
 * same error for a bad body. A valid body (the common case) is hashed without building the prompt
 * text, and only up to the cap.
 */
export function parseRouting(
  kind: 'chat' | 'completion',
  body: unknown,
  prefixBlocksMax = ROUTING_PREFIX_BLOCKS_MAX,
): RoutingFields {
  if (isObject(body) && commonValid(body)) {
    const fields =
      kind === 'chat' ? chatRouting(body, prefixBlocksMax) : completionRouting(body, prefixBlocksMax);
    if (fields !== undefined) return fields;
  }
  const full = routingOf(parseBody(kind, body));
  return { ...full, prefix: capped(full.prefix, prefixBlocksMax) };
}

/** A chat body's routing fields when every message passes the schema (else undefined). */
function chatRouting(body: Json, prefixBlocksMax: number): RoutingFields | undefined {
  if (!tokenLimit(body['max_completion_tokens']) || !writeChat(body['messages'])) return undefined;
  const maxGiven = body['max_completion_tokens'] ?? body['max_tokens'];
  return {
    model: body['model'] as string,
    stream: body['stream'] === true,
    maxTokens: nullish(maxGiven) ? undefined : (maxGiven as number),
    promptTokens: Math.max(1, Math.ceil(writer.length / CHARS_PER_TOKEN)),
    prefix: saltPrefixChain(writer.chain(prefixBlocksMax), saltOf(body)),
    priority: body['priority'] as number | undefined,
    user: (body['user'] ?? undefined) as string | undefined,
  };
}

/** A completion body's routing fields when its prompt passes the schema (else undefined). */
function completionRouting(body: Json, prefixBlocksMax: number): RoutingFields | undefined {
  if (!optionalBoolean(body['echo'])) return undefined;
  const prompt = completionPrompt(body['prompt']);
  if (prompt === undefined) return undefined;
  const maxGiven = body['max_tokens'];
  return {
    model: body['model'] as string,
    stream: body['stream'] === true,
    maxTokens: nullish(maxGiven) ? undefined : (maxGiven as number),
    promptTokens: prompt.ids !== undefined ? prompt.ids.length : Math.max(1, estimateTokens(prompt.text)),
    prefix: saltPrefixChain(
      prompt.ids !== undefined
        ? tokenPrefixChain(prompt.ids, TEXT_BLOCK_TOKENS, prefixBlocksMax)
        : textPrefixChain(prompt.text, prefixBlocksMax),
      saltOf(body),
    ),
    priority: body['priority'] as number | undefined,
    user: (body['user'] ?? undefined) as string | undefined,
  };
}
