/**
 * The OpenAI-compatible request bodies both live hosts read (the gateway, the built-in engines):
 * one schema each for `/v1/chat/completions` and `/v1/completions`, and one normalised form. Fields
 * the schema does not name pass through untouched (engines have many extensions), but the ones it
 * names must have the right type, so a bad body gets a 400 that names the field.
 */
import { z } from 'zod';
import { cacheSaltOf, saltPrefixChain } from './cache-salt.ts';
import { SwitchyardError } from './errors.ts';
import type { PrefixChain } from './request.ts';
import { estimateTokens, renderChat, textPrefixChain, tokenPrefixChain } from './text-prefix.ts';

/** Output tokens a request gets when it names no limit. */
export const DEFAULT_MAX_TOKENS = 256;
/** The largest max_tokens accepted. */
export const MAX_TOKENS_LIMIT = 1 << 20;
/** The largest `n` (choices per prompt) accepted; a real backend may set a lower one. */
export const N_MAX = 128;
/** Prompts one completions request may carry as a list (OpenAI's own limit is 2048 too). */
export const PROMPTS_MAX = 2048;
/**
 * The bound on |priority| Switchyard itself uses (queue ordering, the built-in engines' scheduler).
 * A body may name any integer, as vLLM's `priority: int` takes: the normalised `priority` is clamped
 * to this bound, and the body is relayed with the value it named.
 */
export const PRIORITY_USED_ABS_MAX = 1_000_000;
/**
 * The largest `seed` magnitude taken: vLLM's int64 bounds as JSON numbers read them (2^63 - 1
 * arrives as 2^63; -2^63 exactly).
 */
export const SEED_ABS_MAX = 2 ** 63;

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z
    .union([z.string(), z.array(contentPart), z.null()], {
      error: 'expected a string, a list of content parts ({"type": ..., "text": ...}) or null',
    })
    .optional(),
  name: z.string().optional(),
});

const common = {
  model: z.string().min(1).max(512),
  // null is absent, as vLLM's `bool | None` / `str | None` fields read it (clients that write every
  // field, set or not, send `"stream": null`, `"user": null`).
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  n: z.number().int().min(1).max(N_MAX).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  /**
   * vLLM's `seed` is an int64 (`ge`/`le` torch.long's bounds) and OpenAI's an integer: a Python
   * client's 64-bit seed (a nanosecond timestamp, `random.getrandbits(63)`) is served there.
   * `.int()` would stop at 2^53 (safe integers); past it JSON numbers arrive rounded, still integers
   * (2^63 - 1 reads as 2^63), and the bytes forwarded to a backend are the client's, unrounded.
   */
  seed: z
    .number()
    .refine(Number.isInteger, { error: 'expected an integer' })
    .refine((v) => Math.abs(v) <= SEED_ABS_MAX, { error: 'expected an integer from -2^63 to 2^63 - 1' })
    .nullish(),
  user: z.string().max(256).nullish(),
  /**
   * vLLM's extension: scheduling priority (vLLM: lower first; Switchyard maps it, see gateway). Any
   * integer, as vLLM's `int` (JSON numbers past 2^53 arrive rounded, still integers); clamped for
   * Switchyard's own use (PRIORITY_USED_ABS_MAX).
   */
  priority: z.number().refine(Number.isInteger, { error: 'expected an integer' }).optional(),
};

/** What a completions `prompt` may be, for the 400 that names a bad one. */
const PROMPT_SHAPES = `expected a string, 1 to ${PROMPTS_MAX} strings, a list of token ids, or 1 to ${PROMPTS_MAX} lists of token ids`;

/** `POST /v1/chat/completions`. */
export const chatCompletionBodySchema = z.looseObject({
  ...common,
  messages: z.array(message).min(1).max(100_000),
  max_completion_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
});

/**
 * `POST /v1/completions`: a prompt as text or token ids, or a list of them (OpenAI: one choice per
 * prompt). The gateway passes a list through to real backends; the built-in engines refuse more
 * than one prompt (see `builtinEngineRefusal`).
 */
export const completionBodySchema = z
  .looseObject({
    ...common,
    prompt: z.union(
      [
        z.string(),
        z.array(z.string()).min(1).max(PROMPTS_MAX),
        z.array(z.number().int().min(0)).min(1),
        z
          .array(z.array(z.number().int().min(0)).min(1))
          .min(1)
          .max(PROMPTS_MAX),
      ],
      { error: PROMPT_SHAPES },
    ),
    echo: z.boolean().nullish(),
    // 0 is vLLM's "echo without generation" (with echo: the prompt comes back, e.g. for its logprobs).
    max_tokens: z.number().int().min(0).max(MAX_TOKENS_LIMIT).nullish(),
  })
  .check((ctx) => {
    if (ctx.value.max_tokens === 0 && ctx.value.echo !== true)
      ctx.issues.push({
        code: 'custom',
        input: ctx.value.max_tokens,
        path: ['max_tokens'],
        message:
          'expected an integer of at least 1 (0 only with "echo": true, which returns the prompt without generating)',
      });
  });

/** The request field that sets the output token limit (ParsedCompletionRequest.maxTokensField). */
export type MaxTokensField = 'max_tokens' | 'max_completion_tokens' | 'max_output_tokens';

/** A request body, parsed and normalised for routing and generation. */
export interface ParsedCompletionRequest {
  readonly kind: 'chat' | 'completion';
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly maxTokens: number;
  /** True when the client named a limit (max_tokens / max_completion_tokens). */
  readonly maxTokensGiven: boolean;
  /**
   * The field the limit is named by in the client's API, for errors that blame it: chat's
   * `max_completion_tokens` when sent (it wins over `max_tokens`), Responses' `max_output_tokens`
   * (parseResponsesBody), else `max_tokens`.
   */
  readonly maxTokensField: MaxTokensField;
  /** The prompt as text (chat rendered canonically); empty when given as token ids. */
  readonly promptText: string;
  /** The prompt's token ids when the client sent ids. */
  readonly promptTokenIds: readonly number[] | undefined;
  /**
   * Prompt tokens: exact for ids, estimated for text. For a list of prompts, the sum over the list
   * (what the request costs); `promptText`, `promptTokenIds` and `prefix` are the first prompt's.
   */
  readonly promptTokens: number;
  readonly prefix: PrefixChain;
  readonly stop: readonly string[];
  readonly temperature: number | undefined;
  readonly topP: number | undefined;
  /** OpenAI's frequency_penalty (-2..2); undefined when absent. */
  readonly frequencyPenalty: number | undefined;
  /** OpenAI's presence_penalty (-2..2); undefined when absent. */
  readonly presencePenalty: number | undefined;
  readonly seed: number | undefined;
  readonly priority: number | undefined;
  readonly user: string | undefined;
  /** vLLM's cache_salt (already mixed into `prefix`): an engine's own KV reuse keeps salts apart too. */
  readonly cacheSalt?: string | undefined;
}

/**
 * The field that holds a text content part's text: `text`, but `refusal` for a `refusal` part (an
 * assistant's earlier refusal replayed in the history) and `thinking` for a `thinking` part (a
 * reasoning model's earlier thinking: litellm's `hosted_vllm` provider turns an assistant message's
 * `thinking_blocks` into such parts). vLLM's chat_utils renders both as text
 * (`_parse_chat_message_content_part`).
 */
export function chatPartTextField(type: unknown): 'text' | 'refusal' | 'thinking' {
  return type === 'refusal' || type === 'thinking' ? type : 'text';
}

/**
 * The text a chat content part puts in the prompt (its chatPartTextField); undefined for a part
 * without text (media, refused elsewhere).
 */
export function chatPartText(part: unknown): string | undefined {
  if (typeof part !== 'object' || part === null) return undefined;
  const p = part as Record<string, unknown>;
  const text = p[chatPartTextField(p['type'])];
  return typeof text === 'string' ? text : undefined;
}

/**
 * The prompt text of a message's content parts, as vLLM's chat_utils builds it for a text model
 * (`_parse_chat_message_content_parts`, 'string' content format): each part's text (chatPartText),
 * parts without text or with empty text left out (it keeps only truthy results), joined by "\n".
 * A Responses input message's parts are read the same way (vLLM hands them to the same parser).
 * SGLang's 'string' format joins `text` parts by a space instead; Switchyard follows vLLM.
 */
export function chatPartsText(parts: readonly unknown[]): string {
  let out = '';
  let first = true;
  for (const part of parts) {
    const t = chatPartText(part);
    if (t === undefined || t === '') continue;
    out += first ? t : `\n${t}`;
    first = false;
  }
  return out;
}

function contentText(content: z.infer<typeof message>['content']): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return chatPartsText(content);
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
 * vLLM's check of `stream_options` (its protocol's validate_stream_options, a "before" validator, so
 * it runs ahead of the fields' own checks): options given (a truthy value: a non-empty object)
 * without `stream` true are a 400 naming `stream_options`; undefined when the body is fine. Python's
 * truthiness, as vLLM reads the raw body. The gateway and the built-in engines both refuse it, so a
 * body the gateway accepts is one a vLLM behind it accepts too.
 */
export function streamOptionsRefusal(body: unknown): SwitchyardError | undefined {
  const b = body as { stream?: unknown; stream_options?: unknown };
  if (!pyTruthy(b.stream_options) || pyTruthy(b.stream)) return undefined;
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    'Stream options can only be defined when `stream=True`.',
    {
      param: 'stream_options',
    },
  );
}

/** Python's truth of a JSON value: an empty object, list or string, 0, false and null are false. */
function pyTruthy(v: unknown): boolean {
  if (typeof v === 'object' && v !== null) return Object.keys(v).length > 0;
  return Boolean(v);
}

/**
 * The 400 for a completions body without a prompt, saying what the body looks like instead: a chat
 * body (`messages`) sent to /v1/completions, or vLLM's `prompt_embeds` alone (which needs the
 * engine's --enable-prompt-embeds, and whose length the gateway cannot count). Undefined when it has one.
 */
function missingPromptRefusal(body: Record<string, unknown>): SwitchyardError | undefined {
  if (body['prompt'] !== undefined && body['prompt'] !== null) return undefined;
  let hint = '';
  if (body['messages'] !== undefined) hint = '; this body has messages: send it to /v1/chat/completions';
  else if (body['prompt_embeds'] !== undefined)
    hint = '; prompt_embeds without a prompt is not served (send the prompt as text or token ids)';
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid request body: prompt: required, ${PROMPT_SHAPES}${hint}`,
    { param: 'prompt' },
  );
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
  const streamOptions = streamOptionsRefusal(body);
  if (streamOptions !== undefined) throw streamOptions;
  const cacheSalt = cacheSaltOf(body);
  let promptText = '';
  let promptTokenIds: readonly number[] | undefined;
  let maxGiven: number | null | undefined;
  let maxTokensField: MaxTokensField = 'max_tokens';
  /** Prompt tokens of the prompts after the first (a completions list). */
  let morePromptTokens = 0;
  let common: z.infer<typeof completionBodySchema> | z.infer<typeof chatCompletionBodySchema>;
  if (kind === 'chat') {
    const r = chatCompletionBodySchema.safeParse(body);
    if (!r.success) throw invalidBody(r.error.issues);
    common = r.data;
    // An assistant turn's tool calls render after its content (text-prefix.ts toolCallsText).
    promptText = renderChat(
      r.data.messages.map((m) => ({
        role: m.role,
        content: contentText(m.content),
        tool_calls: m['tool_calls'],
        function_call: m['function_call'],
      })),
    );
    maxGiven = r.data.max_completion_tokens ?? r.data.max_tokens;
    if (r.data.max_completion_tokens !== undefined && r.data.max_completion_tokens !== null)
      maxTokensField = 'max_completion_tokens';
  } else {
    const missing = missingPromptRefusal(body as Record<string, unknown>);
    if (missing !== undefined) throw missing;
    const r = completionBodySchema.safeParse(body);
    if (!r.success) throw invalidBody(r.error.issues);
    common = r.data;
    const p = r.data.prompt;
    if (typeof p === 'string') promptText = p;
    else if (typeof p[0] === 'string') {
      promptText = p[0];
      for (let i = 1; i < p.length; i++) morePromptTokens += Math.max(1, estimateTokens(p[i] as string));
    } else if (typeof p[0] === 'number') promptTokenIds = p as number[];
    else {
      promptTokenIds = p[0] as number[];
      for (let i = 1; i < p.length; i++) morePromptTokens += (p[i] as number[]).length;
    }
    maxGiven = r.data.max_tokens;
  }
  const stop = common.stop === undefined || common.stop === null ? [] : [common.stop].flat();
  return {
    kind,
    model: common.model,
    stream: common.stream === true,
    includeUsage: common.stream_options?.include_usage === true,
    // Completions' echo-only `max_tokens: 0` counts as 1 for Switchyard's own use (vLLM too runs one
    // step for it); the body relays the 0.
    maxTokens: maxGiven === 0 ? 1 : (maxGiven ?? DEFAULT_MAX_TOKENS),
    maxTokensGiven: maxGiven !== undefined && maxGiven !== null,
    maxTokensField,
    promptText,
    promptTokenIds,
    promptTokens:
      morePromptTokens +
      (promptTokenIds !== undefined ? promptTokenIds.length : Math.max(1, estimateTokens(promptText))),
    prefix: saltPrefixChain(
      promptTokenIds !== undefined ? tokenPrefixChain(promptTokenIds) : textPrefixChain(promptText),
      cacheSalt,
    ),
    stop,
    temperature: common.temperature ?? undefined,
    topP: common.top_p ?? undefined,
    frequencyPenalty: common.frequency_penalty ?? undefined,
    presencePenalty: common.presence_penalty ?? undefined,
    seed: common.seed ?? undefined,
    priority:
      common.priority === undefined
        ? undefined
        : Math.max(-PRIORITY_USED_ABS_MAX, Math.min(PRIORITY_USED_ABS_MAX, common.priority)),
    user: common.user ?? undefined,
    cacheSalt,
  };
}

/**
 * A field counts as asked for unless absent, null, false, an empty list or object, or one of its
 * `defaults` (for an object: its `type`). Completions' `logprobs: 0` is asked for (OpenAI then
 * returns the sampled token's logprob).
 */
function asked(value: unknown, defaults: readonly unknown[] = []): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') {
    const type = (value as Record<string, unknown>)['type'];
    if (type !== undefined) return !defaults.includes(type);
    return Object.keys(value).length > 0;
  }
  return !defaults.includes(value);
}

/**
 * OpenAI parameters the built-in engines (sim, llama) do not implement, with why (`response_format`
 * they serve: src/engine-servers/structured-output.ts reads it). Each is refused
 * with 400 SY_ERR_UNSUPPORTED_PARAMETER naming it rather than silently ignored; the gateway passes
 * them through untouched to real backends (vLLM, SGLang, llama.cpp's server, OpenAI).
 */
const BUILTIN_UNSUPPORTED: readonly { param: string; defaults?: readonly unknown[]; why: string }[] = [
  { param: 'tools', why: 'tools are served on chat completions only' },
  { param: 'tool_choice', defaults: ['none', 'auto'], why: 'tools are served on chat completions only' },
  { param: 'functions', why: 'functions are served on chat completions only' },
  {
    param: 'function_call',
    defaults: ['none', 'auto'],
    why: 'functions are served on chat completions only',
  },
  { param: 'logprobs', why: 'log probabilities are not computed' },
  { param: 'top_logprobs', defaults: [0], why: 'log probabilities are not computed' },
  { param: 'logit_bias', why: 'logit bias is not implemented' },
  { param: 'echo', why: 'echoing the prompt is not implemented' },
  { param: 'suffix', defaults: [''], why: 'insertion (suffix) is not implemented' },
  { param: 'best_of', defaults: [1], why: 'best_of is not implemented (one sequence per request)' },
];

/**
 * Why a built-in engine refuses this (already JSON-decoded) chat or completion body, or undefined
 * when it can serve it: a parameter it does not implement (see BUILTIN_UNSUPPORTED), `n` > 1, or a
 * completions `prompt` list of more than one prompt. Both refusals are 400
 * SY_ERR_UNSUPPORTED_PARAMETER with `param` set; a type error is left to `parseCompletionBody`.
 */
export function builtinEngineRefusal(
  kind: 'chat' | 'completion',
  body: unknown,
): SwitchyardError | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  for (const { param, defaults, why } of BUILTIN_UNSUPPORTED) {
    if (!asked(b[param], defaults)) continue;
    // Tools the request forbids calling (`tool_choice: "none"`) only describe: vLLM serves such a
    // request as plain text (it renders the tools into the prompt), and so does a built-in engine.
    if (param === 'tools' && b['tool_choice'] === 'none') continue;
    // A chat's tools, and the legacy functions, the engine reads itself
    // (src/engine-servers/tool-calls.ts): forced and auto calls are served, a bad shape refused there.
    if (
      kind === 'chat' &&
      (param === 'tools' || param === 'tool_choice' || param === 'functions' || param === 'function_call')
    )
      continue;
    if (param === 'functions' && b['function_call'] === 'none') continue;
    return new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `parameter '${param}' is not supported by the built-in engines: ${why}; ` +
        'remove it, or route the model to a vllm, sglang, llamacpp or openai backend',
      { param },
    );
  }
  const n = b['n'];
  if (typeof n === 'number' && n > 1) {
    return new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `n=${n} is not supported by the built-in engines: they generate one choice per request; ` +
        'send n requests, or route the model to a real backend',
      { param: 'n' },
    );
  }
  const prompt = b['prompt'];
  if (kind === 'completion' && Array.isArray(prompt) && prompt.length > 1 && typeof prompt[0] !== 'number') {
    return new SwitchyardError(
      'SY_ERR_UNSUPPORTED_PARAMETER',
      `a prompt list of ${prompt.length} prompts is not supported by the built-in engines: ` +
        'they answer one prompt per request; send one request per prompt, or route the model to a real backend',
      { param: 'prompt' },
    );
  }
  return undefined;
}

/** One server-sent event carrying a JSON payload. */
export function sseEvent(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

/** The end of an OpenAI stream. */
export const SSE_DONE = 'data: [DONE]\n\n';
