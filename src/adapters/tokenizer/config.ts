/**
 * The `tokenizer` field of a gateway backend, and the start-up rule that goes with it: precise
 * prefix routing (`kv-events`) against an engine that is not Switchyard's own needs the served
 * model's tokenizer, because such an engine (vLLM) names its KV blocks by hashes of token ids.
 * Pure: schema and checks only; loading the files is `load.ts`.
 */
import { z } from 'zod';
import { VLLM_HASH_ALGORITHMS } from '../../core/token-blocks.ts';

/** How the gateway reproduces one engine's block hashes: its tokenizer and its hashing settings. */
export const tokenizerConfigSchema = z.strictObject({
  /** The served model's `tokenizer.json` (Hugging Face tokenizers format). */
  path: z.string().min(1).max(4096),
  /**
   * Its `tokenizer_config.json` (chat template, special tokens). Default: `tokenizer_config.json`
   * in the directory of `path`.
   */
  configPath: z.string().min(1).max(4096).optional(),
  /** A Jinja chat template file that replaces the config's `chat_template` (vLLM's `--chat-template`). */
  chatTemplatePath: z.string().min(1).max(4096).optional(),
  /**
   * Prompt characters tokenized per request at most (the rendered chat, or a completion's text):
   * tokenization runs on the gateway's event loop at a few microseconds a token, so past this only
   * the prompt's start is hashed (enough to find its prefix's holder) and the rest is counted at 4
   * characters a token.
   */
  promptCharsMax: z
    .number()
    .int()
    .min(1024)
    .max(1 << 24)
    .default(32_768),
  /** The engine's KV block size in tokens (vLLM `--block-size`). */
  blockSize: z.number().int().min(1).max(4096).default(16),
  /** The engine's `--prefix-caching-hash-algo`. */
  hashAlgorithm: z.enum(VLLM_HASH_ALGORITHMS).default('sha256_cbor'),
  /**
   * The engine's PYTHONHASHSEED, which roots every block-hash chain (vLLM: NONE_HASH =
   * sha256_cbor(seed)). Required: an engine without a pinned seed draws a random root no one else
   * can reproduce.
   */
  hashSeed: z.union([z.string().max(1024), z.number().int()]).transform(String),
});
/** A validated `tokenizer` field. */
export type TokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

/**
 * Backend types whose KV events name blocks by Switchyard's own text-chain hashes (the built-in
 * engines), so `kv-events` works for them without a tokenizer.
 */
export const TEXT_CHAIN_BACKEND_TYPES: readonly string[] = ['sim', 'llama'];

/** What the kv-events refusal needs of a backend. */
interface BackendLike {
  readonly id: string;
  readonly type: string;
  readonly kvEvents?: string | undefined;
  readonly tokenizer?: TokenizerConfig | undefined;
}

/**
 * The one-line reason `kv-events` cannot route for this backend, or undefined when it can. A backend
 * that publishes KV events and is not a built-in engine names its blocks by hashes of token ids, so
 * the gateway must tokenize as it does (its `tokenizer` field); without that no request would ever
 * match its events. A backend that publishes none gives the policy nothing to match, tokenizer or not.
 */
export function kvEventsRefusal(backend: BackendLike): string | undefined {
  if (backend.kvEvents === undefined || backend.tokenizer !== undefined) return undefined;
  if (TEXT_CHAIN_BACKEND_TYPES.includes(backend.type)) return undefined;
  return (
    `routing policy kv-events needs backend '${backend.id}' (type ${backend.type}) to have a 'tokenizer' field ` +
    `(tokenizer.json path, blockSize, hashSeed = the engine's PYTHONHASHSEED): its KV events name blocks ` +
    `by hashes of token ids; add it or choose another routing policy`
  );
}

/**
 * The registered policy type a routing name resolves to: a configured instance's type, else the
 * name itself (a registered type).
 */
export function policyTypeOf(
  name: string,
  named: Readonly<Record<string, { readonly type: string }>>,
): string {
  return Object.hasOwn(named, name) ? (named[name] as { type: string }).type : name;
}
