/**
 * vLLM's `POST /tokenize` and `POST /detokenize` on the built-in engines (vLLM's protocol.py
 * TokenizeCompletionRequest / TokenizeChatRequest / DetokenizeRequest, serving_tokenization.py).
 *
 * - `/tokenize` takes `{model?, prompt, add_special_tokens?, return_token_strs?}` or
 *   `{model?, messages, add_generation_prompt?, continue_final_message?, add_special_tokens?,
 *   return_token_strs?}` and answers `{count, max_model_len, tokens, token_strs?}`.
 * - `/detokenize` takes `{model?, tokens}` and answers `{prompt}`.
 *
 * The prompt is parsed by the same code as a completion's (`parseCompletionBody`, and for chat the
 * same rendering and generation cue), so `count` is the `usage.prompt_tokens` that a completion
 * with the same prompt reports. Unlike vLLM, chat's `add_special_tokens` defaults to true here:
 * vLLM leaves it off because a model's chat template writes the BOS itself, while the built-in
 * engines render chat canonically (no BOS in the text) and add the BOS as they do for a prompt.
 */
import { SwitchyardError } from '../core/errors.ts';
import { type ParsedCompletionRequest, parseCompletionBody } from '../core/openai-api.ts';
import { CHARS_PER_TOKEN } from '../core/text-prefix.ts';
import { type VllmSampling, vllmSamplingOf } from './vllm-extras.ts';

/** The most token ids one `/detokenize` takes (a bound on the work one request asks for). */
export const DETOKENIZE_TOKENS_MAX = 1 << 20;

/** A parsed `/tokenize` request. */
export interface TokenizeRequest {
  /** The prompt as a completion (or chat completion) of it would be parsed. */
  readonly request: ParsedCompletionRequest;
  /** Chat only: vLLM's add_generation_prompt / continue_final_message. */
  readonly chatEnd: VllmSampling['chatEnd'];
  /** vLLM's add_special_tokens (the BOS); default true for both forms (see the file comment). */
  readonly addSpecialTokens: boolean;
  /** vLLM's return_token_strs: also answer each token's vocabulary string. */
  readonly returnTokenStrs: boolean;
}

/** What a backend's tokenizer gives for a `/tokenize` request. */
export interface Tokenized {
  readonly tokens: readonly number[];
  /** Each token's vocabulary string; only when asked for. */
  readonly tokenStrs?: readonly string[];
}

function invalid(param: string, message: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `invalid request body: ${param}: ${message}`, {
    param,
  });
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new SwitchyardError('SY_ERR_INVALID_ARGUMENT', 'invalid request body: expected a JSON object', {
      param: null,
    });
  return body as Record<string, unknown>;
}

/** An optional boolean field (absent or null: `fallback`); 400 naming it when not a boolean. */
function flag(b: Record<string, unknown>, param: string, fallback: boolean): boolean {
  const v = b[param];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean')
    throw invalid(param, `expected true or false, got ${String(JSON.stringify(v)).slice(0, 40)}`);
  return v;
}

/**
 * The body's model: the field when a string, `served` when absent or null (vLLM's model is optional
 * on these routes); 400 naming `model` for anything else. The caller checks it is the one served.
 */
export function tokenizeModelOf(b: Record<string, unknown>, served: string): string {
  const model = b['model'];
  if (model === undefined || model === null) return served;
  if (typeof model !== 'string') throw invalid('model', 'expected a string');
  return model;
}

/** Parses a `/tokenize` body (`served`: the model used when the body names none); throws a 400. */
export function parseTokenizeBody(body: unknown, served: string): TokenizeRequest {
  const b = objectBody(body);
  const model = tokenizeModelOf(b, served);
  const chat = b['messages'] !== undefined;
  if (!chat && typeof b['prompt'] !== 'string')
    throw invalid(
      'prompt',
      b['prompt'] === undefined ? 'required (or messages)' : 'expected a string (vLLM tokenizes text)',
    );
  // Only the prompt and the rendering fields matter: a completion parse of just those.
  const kind = chat ? 'chat' : 'completion';
  const core = chat ? { model, messages: b['messages'] } : { model, prompt: b['prompt'] };
  const request = parseCompletionBody(kind, core);
  const chatEnd = chat
    ? vllmSamplingOf(
        {
          add_generation_prompt: b['add_generation_prompt'],
          continue_final_message: b['continue_final_message'],
        },
        'chat',
      ).chatEnd
    : undefined;
  return {
    request,
    chatEnd,
    addSpecialTokens: flag(b, 'add_special_tokens', true),
    returnTokenStrs: flag(b, 'return_token_strs', false),
  };
}

/** Parses a `/detokenize` body: the model (as `tokenizeModelOf`) and the token ids; throws a 400. */
export function parseDetokenizeBody(
  body: unknown,
  served: string,
): { readonly model: string; readonly tokens: readonly number[] } {
  const b = objectBody(body);
  const model = tokenizeModelOf(b, served);
  const tokens = b['tokens'];
  if (!Array.isArray(tokens)) throw invalid('tokens', 'required: a list of token ids');
  if (tokens.length > DETOKENIZE_TOKENS_MAX)
    throw invalid('tokens', `at most ${DETOKENIZE_TOKENS_MAX} token ids, got ${tokens.length}`);
  for (const id of tokens)
    if (!(Number.isSafeInteger(id) && (id as number) >= 0))
      throw invalid(
        'tokens',
        `expected token ids (integers from 0), got ${String(JSON.stringify(id)).slice(0, 40)}`,
      );
  return { model, tokens: tokens as number[] };
}

/** The `/tokenize` answer, in vLLM's TokenizeResponse field order. */
export function tokenizeResponse(t: Tokenized, maxModelLen: number | undefined): string {
  return JSON.stringify({
    count: t.tokens.length,
    max_model_len: maxModelLen ?? null,
    tokens: t.tokens,
    ...(t.tokenStrs === undefined ? {} : { token_strs: t.tokenStrs }),
  });
}

/**
 * The sim engine's tokens of `text`: one per CHARS_PER_TOKEN UTF-16 units (the count its usage
 * reports, `estimateTokens`; an empty text is one piece, as a prompt is never charged less), each
 * id an FNV-1a hash of its piece modulo `vocabSize`, each string the piece itself. No vocabulary
 * backs the ids, so they cannot be decoded.
 */
export function simPieceTokens(text: string, vocabSize: number): Required<Tokenized> {
  const tokens: number[] = [];
  const tokenStrs: string[] = [];
  const modulo = Number.isSafeInteger(vocabSize) && vocabSize > 0 ? vocabSize : 2 ** 31;
  for (let at = 0; at < text.length || tokens.length === 0; at += CHARS_PER_TOKEN) {
    const piece = text.slice(at, at + CHARS_PER_TOKEN);
    let h = 0x811c9dc5;
    for (let i = 0; i < piece.length; i++) h = Math.imul(h ^ piece.charCodeAt(i), 0x01000193);
    tokens.push((h >>> 0) % modulo);
    tokenStrs.push(piece);
  }
  return { tokens, tokenStrs };
}

/** The `tokenizer.*` metadata of a GGUF that `/tokenizer_info` reads (llama.cpp's key names). */
export interface GgufTokenizerMetadata {
  readonly ggml?: {
    readonly model?: string;
    readonly tokens?: readonly string[];
    readonly bos_token_id?: number;
    readonly eos_token_id?: number;
    readonly padding_token_id?: number;
    readonly unknown_token_id?: number;
    readonly add_bos_token?: boolean;
    readonly add_eos_token?: boolean;
  };
  readonly chat_template?: string;
}

/** The tokenizer class transformers builds from a GGUF's `tokenizer.ggml.model`, as vLLM names it. */
function tokenizerClassOf(ggmlModel: string | undefined): string {
  // vLLM answers type(tokenizer).__name__, and its get_cached_tokenizer names the class Cached<...>.
  // transformers converts an SPM ("llama") vocabulary to LlamaTokenizerFast and a byte-level BPE
  // ("gpt2") one to a GPT-2 style fast tokenizer (some architectures use their own subclass).
  if (ggmlModel === 'llama') return 'CachedLlamaTokenizerFast';
  if (ggmlModel === 'gpt2') return 'CachedGPT2TokenizerFast';
  return 'CachedPreTrainedTokenizerFast';
}

/**
 * vLLM's `GET /tokenizer_info` answer for a GGUF's tokenizer: the Hugging Face tokenizer_config
 * fields vLLM passes on (its TokenizerInfo: the tokenizer's init_kwargs, `tokenizer_class`,
 * `chat_template` when there is one), taken from the GGUF's `tokenizer.*` metadata.
 * `model_max_length` is the engine's context (what it serves), not the training context.
 * `bos_token_id` and `eos_token_id` are extra (a Hugging Face config has the strings only).
 * lm-eval's RemoteTokenizer reads `eos_token`, `bos_token`, `pad_token` and `chat_template`.
 */
export function ggufTokenizerInfo(
  tokenizer: GgufTokenizerMetadata | undefined,
  modelMaxLength: number,
  addBos: boolean,
): Record<string, unknown> {
  const ggml = tokenizer?.ggml;
  const piece = (id: number | undefined): string | null =>
    id === undefined ? null : (ggml?.tokens?.[id] ?? null);
  const info: Record<string, unknown> = {
    add_bos_token: addBos,
    add_eos_token: ggml?.add_eos_token ?? false,
    bos_token: piece(ggml?.bos_token_id),
    eos_token: piece(ggml?.eos_token_id),
    pad_token: piece(ggml?.padding_token_id),
    unk_token: piece(ggml?.unknown_token_id),
    bos_token_id: ggml?.bos_token_id ?? null,
    eos_token_id: ggml?.eos_token_id ?? null,
    model_max_length: modelMaxLength,
    tokenizer_class: tokenizerClassOf(ggml?.model),
  };
  if (typeof tokenizer?.chat_template === 'string' && tokenizer.chat_template !== '')
    info.chat_template = tokenizer.chat_template;
  return info;
}
