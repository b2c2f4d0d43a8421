/**
 * The gateway's tokenizer: a served model's `tokenizer.json` and chat template, loaded from disk, that
 * turns a request body into the token ids a vLLM engine will see and into the engine's own block
 * hashes (`core/token-blocks.ts`).
 *
 * Tokenization is @huggingface/tokenizers (pure JS, the tokenizers of transformers.js; its BPE
 * keeps a word cache bounded at 10,000 entries), templates are @huggingface/jinja. Both run
 * offline. The chat path follows vLLM's: the template is rendered with the messages,
 * `add_generation_prompt` (default true), the tools and `chat_template_kwargs` of the request and the
 * tokenizer's special tokens, then encoded without adding special tokens; a completion's text prompt
 * is encoded with them, and a prompt of token ids is used as it is.
 */
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { SwitchyardError } from '../../core/errors.ts';
import { chatPartsText } from '../../core/openai-api.ts';
import type { PrefixChain } from '../../core/request.ts';
import { CHARS_PER_TOKEN } from '../../core/text-prefix.ts';
import { type Sha256, type VllmHashing, vllmNoneHash, vllmPrefixChain } from '../../core/token-blocks.ts';
import type { TokenizerConfig } from './config.ts';

/**
 * Ids dropped before the cut when a prompt is longer than `promptCharsMax`: the cut can change the
 * tokens of the pre-token (word, number, punctuation or whitespace run) it falls in, which this
 * covers unless that pre-token is longer; then the last kept blocks just fail to match.
 */
export const TOKENIZE_CUT_MARGIN_TOKENS = 32;

/** SHA-256 by node:crypto's one-shot hash (cheaper than createHash for small inputs). */
export const nodeSha256: Sha256 = (data) => hash('sha256', data, 'buffer');

/** A chat message as the template receives it. */
export type TemplateMessage = Record<string, unknown> & { readonly role: string; readonly content: string };

/** Token count and exact prefix chain of one request. */
export interface TokenizedPrompt {
  readonly promptTokens: number;
  readonly prefix: PrefixChain;
}

/** A served model's tokenizer with its engine's hashing settings. */
export interface PromptTokenizer {
  readonly hashing: VllmHashing;
  /** Token ids of a chat, as vLLM's chat endpoint builds them. */
  chatIds(messages: readonly TemplateMessage[], extra?: Readonly<Record<string, unknown>>): number[];
  /** Token ids of a completion's text prompt (special tokens added, as vLLM's completion endpoint). */
  textIds(text: string): number[];
  /** The engine's block hashes of some token ids (under a request's cache_salt), as an exact prefix chain. */
  chain(ids: ArrayLike<number>, cacheSalt?: string): PrefixChain;
  /**
   * Token count and exact chain of a chat or completion body that the gateway's parser has already
   * accepted (so its shape is known good).
   */
  tokenizeBody(kind: 'chat' | 'completion', body: Readonly<Record<string, unknown>>): TokenizedPrompt;
}

function configError(cfg: TokenizerConfig, what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_CONFIG', `tokenizer '${cfg.path}': ${what}`, {
    param: 'tokenizer',
  });
}

function readJson(cfg: TokenizerConfig, file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw configError(cfg, `cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    const doc: unknown = JSON.parse(text);
    if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) return doc as Record<string, unknown>;
  } catch (error) {
    throw configError(cfg, `${file} is not valid JSON: ${(error as Error).message}`);
  }
  throw configError(cfg, `${file} is not a JSON object`);
}

/** The chat template: the explicit file, else the config's `chat_template`, else chat_template.jinja. */
function chatTemplateOf(cfg: TokenizerConfig, config: Record<string, unknown>): string {
  const file = cfg.chatTemplatePath ?? join(dirname(cfg.path), 'chat_template.jinja');
  const inline = config['chat_template'];
  if (cfg.chatTemplatePath === undefined && typeof inline === 'string') return inline;
  if (cfg.chatTemplatePath === undefined && Array.isArray(inline)) {
    // A list of named templates: vLLM uses the one named 'default'.
    for (const t of inline as { name?: unknown; template?: unknown }[])
      if (t.name === 'default' && typeof t.template === 'string') return t.template;
  }
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw configError(
      cfg,
      `no chat template (none in the tokenizer config, and ${file}: ${(error as Error).message}); set chatTemplatePath`,
    );
  }
}

/** The special-token strings templates refer to (bos_token, eos_token, ...), from the tokenizer config. */
function specialTokens(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = config[name];
    const s = typeof v === 'string' ? v : (v as { content?: unknown } | null)?.content;
    if (typeof s === 'string') out[name] = s;
  }
  return out;
}

/**
 * The text of a message's content: a string, or its text parts joined by newlines (vLLM's 'string'
 * format; chatPartsText).
 */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return chatPartsText(content);
}

/** Reads a tokenizer and its template from disk; throws SY_ERR_INVALID_CONFIG naming what is wrong. */
export function loadPromptTokenizer(cfg: TokenizerConfig): PromptTokenizer {
  const json = readJson(cfg, cfg.path);
  const config = readJson(cfg, cfg.configPath ?? join(dirname(cfg.path), 'tokenizer_config.json'));
  let tokenizer: Tokenizer;
  let template: Template;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (error) {
    throw configError(cfg, `not a tokenizer.json this gateway can load: ${(error as Error).message}`);
  }
  try {
    template = new Template(chatTemplateOf(cfg, config));
  } catch (error) {
    throw configError(cfg, `chat template does not parse: ${(error as Error).message}`);
  }
  const special = specialTokens(config);
  const hashing: VllmHashing = {
    blockSize: cfg.blockSize,
    noneHash: vllmNoneHash(cfg.hashSeed, nodeSha256),
    sha256: nodeSha256,
  };

  const render = (messages: readonly TemplateMessage[], extra: Readonly<Record<string, unknown>> = {}) => {
    try {
      return template.render({ add_generation_prompt: true, ...special, ...extra, messages });
    } catch (error) {
      // The template itself refuses (raise_exception) or fails on these messages: vLLM answers 400 too.
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `chat template failed: ${(error as Error).message}`,
        {
          param: 'messages',
        },
      );
    }
  };
  const encode = (text: string, addSpecial: boolean) =>
    tokenizer.encode(text, { add_special_tokens: addSpecial }).ids;
  const chatIds = (messages: readonly TemplateMessage[], extra: Readonly<Record<string, unknown>> = {}) =>
    encode(render(messages, extra), false);
  const textIds = (text: string) => encode(text, true);
  const chain = (ids: ArrayLike<number>, cacheSalt?: string) =>
    vllmPrefixChain(ids, hashing, undefined, cacheSalt);
  /**
   * Tokenizes at most `promptCharsMax` characters: past it, the first promptCharsMax are encoded and
   * the last TOKENIZE_CUT_MARGIN_TOKENS ids dropped (the cut can change only the pre-token it falls
   * in, so the ids before it are the full text's), and the rest of the text is counted at
   * CHARS_PER_TOKEN.
   */
  const bounded = (text: string, addSpecial: boolean, salt: string | undefined): TokenizedPrompt => {
    if (text.length <= cfg.promptCharsMax) {
      const ids = encode(text, addSpecial);
      return { promptTokens: Math.max(1, ids.length), prefix: chain(ids, salt) };
    }
    const ids = encode(text.slice(0, cfg.promptCharsMax), addSpecial);
    const rest = Math.ceil((text.length - cfg.promptCharsMax) / CHARS_PER_TOKEN);
    const kept = ids.slice(0, Math.max(0, ids.length - TOKENIZE_CUT_MARGIN_TOKENS));
    return { promptTokens: ids.length + rest, prefix: chain(kept, salt) };
  };

  return {
    hashing,
    chatIds,
    textIds,
    chain,
    tokenizeBody(kind, body) {
      // The parser has checked the salt (a non-empty string, or none).
      const salt = typeof body['cache_salt'] === 'string' ? body['cache_salt'] : undefined;
      if (kind === 'chat')
        return bounded(render(templateMessages(body['messages']), chatExtras(body)), false, salt);
      const prompt = body['prompt'];
      const first: unknown = Array.isArray(prompt) ? prompt[0] : prompt;
      if (typeof first === 'string') return bounded(first, true, salt);
      // Token ids (one prompt, or a batch of one): as they are.
      const ids = (typeof first === 'number' ? prompt : Array.isArray(first) ? first : []) as number[];
      return { promptTokens: Math.max(1, ids.length), prefix: chain(ids, salt) };
    },
  };
}

/** A chat body's messages as the template wants them: every field kept, content as text. */
function templateMessages(messages: unknown): TemplateMessage[] {
  const list = Array.isArray(messages) ? messages : [];
  const out: TemplateMessage[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const m = list[i] as Record<string, unknown>;
    out[i] = { ...m, role: String(m['role']), content: contentText(m['content']) };
  }
  return out;
}

/** What else of a chat body reaches the template: tools, add_generation_prompt, chat_template_kwargs. */
function chatExtras(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  const kwargs = body['chat_template_kwargs'];
  if (typeof kwargs === 'object' && kwargs !== null && !Array.isArray(kwargs)) Object.assign(extra, kwargs);
  if (Array.isArray(body['tools'])) extra['tools'] = body['tools'];
  if (typeof body['add_generation_prompt'] === 'boolean')
    extra['add_generation_prompt'] = body['add_generation_prompt'];
  return extra;
}
