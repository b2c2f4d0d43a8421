/**
 * vLLM's `cache_salt` (chat, completions and Responses bodies): a string that keeps requests with
 * different salts from sharing prefix-cache blocks, so one tenant cannot learn another's prompts
 * from cache-hit timing. vLLM mixes it into the hash of a prompt's first block only
 * (`generate_block_hash_extra_keys`, `vllm/v1/core/kv_cache_utils.py`: `cache_salt_keys =
 * [request.cache_salt] if start_token_idx == 0 and request.cache_salt`), and since every later
 * block's hash chains from the first, no block of a salted prompt matches a block of the same prompt
 * under another salt or none. It refuses a salt that is not a non-empty string
 * (`check_cache_salt_support`, 400 naming `cache_salt`).
 *
 * Switchyard's own (text-chain) prefix hashes get the same property by mixing the salt's hash into
 * every block hash of the chain (`saltPrefixChain`): equal prompts under one salt still share their
 * blocks, a prompt extended by a turn still extends the shorter one's chain, and nothing is shared
 * across salts. Exact vLLM hashes (a tokenizer's chain, `core/token-blocks.ts`) mix the salt into
 * the first block as vLLM does instead.
 */
import { SwitchyardError } from './errors.ts';
import { chainHash } from './hash.ts';
import type { PrefixChain } from './request.ts';

/** vLLM's message for a bad salt (its protocol's `check_cache_salt_support`). */
export const CACHE_SALT_MESSAGE = "Parameter 'cache_salt' must be a non-empty string if provided.";

/**
 * The body's `cache_salt`: undefined when absent or null, the string when a non-empty string, else
 * the 400 naming `cache_salt` (as vLLM). Reads a decoded JSON body; anything not an object has none.
 */
export function cacheSaltOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const salt = (body as Record<string, unknown>)['cache_salt'];
  if (salt === undefined || salt === null) return undefined;
  if (typeof salt === 'string' && salt.length > 0) return salt;
  throw new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid request body: cache_salt: ${CACHE_SALT_MESSAGE}`,
    {
      param: 'cache_salt',
    },
  );
}

/** FNV-1a over a string's UTF-16 code units. */
function saltKey(salt: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * `chain` under `salt`: every hash mixed with the salt's key (the chain itself when there is no
 * salt). Only for Switchyard's own chains; an `exact` chain (vLLM's hashes) is returned as it is,
 * since its salt goes in where vLLM puts it (`vllmBlockHashes`).
 */
export function saltPrefixChain(chain: PrefixChain, salt: string | undefined): PrefixChain {
  if (salt === undefined || chain.exact === true || chain.hashes.length === 0) return chain;
  const key = saltKey(salt);
  const hashes = new Array<number>(chain.hashes.length);
  for (let i = 0; i < hashes.length; i++) hashes[i] = chainHash(key, chain.hashes[i] as number);
  return { ...chain, hashes };
}
