/**
 * The OpenAI-compatible request bodies both live hosts read (the gateway, the built-in engines):
 * one schema each for `/v1/chat/completions` and `/v1/completions`, and one normalised form. Fields
 * the schema does not name pass through untouched (engines have many extensions), but the ones it
 * names must have the right type, so a bad body gets a 400 that names the field.
 */
import { z } from 'zod';
import { SwitchyardError } from './errors.ts';
import type { PrefixChain } from './request.ts';
import { estimateTokens, renderChat, textPrefixChain, tokenPrefixChain } from './text-prefix.ts';

/** Output tokens a request gets when it names no limit. */
export const DEFAULT_MAX_TOKENS = 256;
/** The largest max_tokens accepted. */
export const MAX_TOKENS_LIMIT = 1 << 20;

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().optional(),
});

const common = {
  model: z.string().min(1).max(512),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.literal(1).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  seed: z.number().int().nullish(),
  user: z.string().max(256).optional(),
  /** vLLM's extension: scheduling priority (vLLM: lower first; Switchyard maps it, see gateway). */
  priority: z.number().int().min(-1_000_000).max(1_000_000).optional(),
};

/** `POST /v1/chat/completions`. */
export const chatCompletionBodySchema = z.looseObject({
  ...common,
  messages: z.array(message).min(1).max(100_000),
  max_completion_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
});

/** `POST /v1/completions`: one prompt, as text or as token ids. */
export const completionBodySchema = z.looseObject({
  ...common,
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1),
    z.array(z.number().int().min(0)).min(1),
    z.array(z.array(z.number().int().min(0)).min(1)).length(1),
  ]),
  echo: z.boolean().optional(),
});

/** A request body, parsed and normalised for routing and generation. */
export interface ParsedCompletionRequest {
  readonly kind: 'chat' | 'completion';
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly maxTokens: number;
  /** True when the client named a limit (max_tokens / max_completion_tokens). */
  readonly maxTokensGiven: boolean;
  /** The prompt as text (chat rendered canonically); empty when given as token ids. */
  readonly promptText: string;
  /** The prompt's token ids when the client sent ids. */
  readonly promptTokenIds: readonly number[] | undefined;
  /** Prompt tokens: exact for ids, estimated for text. */
  readonly promptTokens: number;
  readonly prefix: PrefixChain;
  readonly stop: readonly string[];
  readonly temperature: number | undefined;
  readonly seed: number | undefined;
  readonly priority: number | undefined;
  readonly user: string | undefined;
}

function contentText(content: z.infer<typeof message>['content']): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  let out = '';
  for (const part of content) if (typeof part.text === 'string') out += part.text;
  return out;
}

function invalidBody(issues: z.core.$ZodIssue[]): SwitchyardError {
  const first = issues[0];
  const param = first === undefined ? null : first.path.map(String).join('.') || null;
  const detail = issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`)
    .join('; ');
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${detail}`, {
    param: param ?? undefined,
  });
}

/**
 * Parses a chat or completion body (already JSON-decoded). Throws SwitchyardError
 * SY_ERR_INVALID_ARGUMENT naming the first bad field.
 */
export function parseCompletionBody(kind: 'chat' | 'completion', body: unknown): ParsedCompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: expected a JSON object', {
      param: null,
    });
  }
  let promptText = '';
  let promptTokenIds: readonly number[] | undefined;
  let maxGiven: number | null | undefined;
  let common: z.infer<typeof completionBodySchema> | z.infer<typeof chatCompletionBodySchema>;
  if (kind === 'chat') {
    const r = chatCompletionBodySchema.safeParse(body);
    if (!r.success) throw invalidBody(r.error.issues);
    common = r.data;
    promptText = renderChat(r.data.messages.map((m) => ({ role: m.role, content: contentText(m.content) })));
    maxGiven = r.data.max_completion_tokens ?? r.data.max_tokens;
  } else {
    const r = completionBodySchema.safeParse(body);
    if (!r.success) throw invalidBody(r.error.issues);
    common = r.data;
    const p = r.data.prompt;
    if (typeof p === 'string') promptText = p;
    else if (typeof p[0] === 'string') promptText = p[0];
    else if (typeof p[0] === 'number') promptTokenIds = p as number[];
    else promptTokenIds = p[0] as number[];
    maxGiven = r.data.max_tokens;
  }
  const stop = common.stop === undefined || common.stop === null ? [] : [common.stop].flat();
  return {
    kind,
    model: common.model,
    stream: common.stream === true,
    includeUsage: common.stream_options?.include_usage === true,
    maxTokens: maxGiven ?? DEFAULT_MAX_TOKENS,
    maxTokensGiven: maxGiven !== undefined && maxGiven !== null,
    promptText,
    promptTokenIds,
    promptTokens:
      promptTokenIds !== undefined ? promptTokenIds.length : Math.max(1, estimateTokens(promptText)),
    prefix: promptTokenIds !== undefined ? tokenPrefixChain(promptTokenIds) : textPrefixChain(promptText),
    stop,
    temperature: common.temperature ?? undefined,
    seed: common.seed ?? undefined,
    priority: common.priority,
    user: common.user,
  };
}

/** One server-sent event carrying a JSON payload. */
export function sseEvent(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

/** The end of an OpenAI stream. */
export const SSE_DONE = 'data: [DONE]\n\n';
