/**
 * Prefix identity from request text, for hosts without a tokenizer (the live gateway, the built-in
 * `sim` engine). Chat messages render canonically; the text is cut into fixed-size character blocks
 * hashed as a chain, so two prompts that share their first k blocks share their first k hashes. A
 * block of TEXT_BLOCK_CHARS characters stands for TEXT_BLOCK_TOKENS tokens (the usual ~4 characters
 * per token of English BPE vocabularies), which makes the chain line up one to one with a 16-token
 * engine block. Prompts given as token ids hash blocks of ids instead: exact, not approximate.
 */
import { CHAIN_ROOT, chainHash } from './hash.ts';
import type { PrefixChain } from './request.ts';

/** Characters per estimated token. */
export const CHARS_PER_TOKEN = 4;
/** Tokens each text-chain hash stands for (vLLM's default block size). */
export const TEXT_BLOCK_TOKENS = 16;
/** Characters per text block. */
export const TEXT_BLOCK_CHARS = TEXT_BLOCK_TOKENS * CHARS_PER_TOKEN;

/** A chat message as far as prefix identity cares: its role and its text. */
export interface ChatText {
  readonly role: string;
  readonly content: string;
}

/**
 * Renders chat messages as one canonical string: role markers and content, in order. Equal
 * conversations render equal, and a conversation extended by a turn renders as an extension of the
 * shorter one, which is what makes multi-turn prefixes visible.
 */
export function renderChat(messages: readonly ChatText[]): string {
  let out = '';
  for (const m of messages) out += `<|${m.role}|>\n${m.content}\n`;
  return out;
}

/** Estimated prompt tokens of a text: at least 1 for a non-empty string. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/** FNV-1a over the UTF-16 code units of text[start, end). */
function hashChars(text: string, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** FNV-1a over ids[start, end), four bytes each. */
function hashIds(ids: ArrayLike<number>, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    const v = ids[i] as number;
    h = Math.imul(h ^ (v & 0xff), 0x01000193);
    h = Math.imul(h ^ ((v >>> 8) & 0xff), 0x01000193);
    h = Math.imul(h ^ ((v >>> 16) & 0xff), 0x01000193);
    h = Math.imul(h ^ (v >>> 24), 0x01000193);
  }
  return h >>> 0;
}

/**
 * The prefix chain of a text: one chained hash per full TEXT_BLOCK_CHARS block (the tail that does
 * not fill a block is left out; it is unique to this request as far as a cache can tell).
 * `maxBlocks` bounds the work for huge prompts.
 */
export function textPrefixChain(text: string, maxBlocks = 1 << 16): PrefixChain {
  const count = Math.min(Math.floor(text.length / TEXT_BLOCK_CHARS), maxBlocks);
  const hashes = new Array<number>(count);
  let parent = CHAIN_ROOT;
  for (let b = 0; b < count; b++) {
    parent = chainHash(parent, hashChars(text, b * TEXT_BLOCK_CHARS, (b + 1) * TEXT_BLOCK_CHARS));
    hashes[b] = parent;
  }
  return { blockTokens: TEXT_BLOCK_TOKENS, hashes };
}

/** The prefix chain of a prompt given as token ids: exact blocks of `blockTokens` ids. */
export function tokenPrefixChain(
  ids: ArrayLike<number>,
  blockTokens = TEXT_BLOCK_TOKENS,
  maxBlocks = 1 << 16,
): PrefixChain {
  const count = Math.min(Math.floor(ids.length / blockTokens), maxBlocks);
  const hashes = new Array<number>(count);
  let parent = CHAIN_ROOT;
  for (let b = 0; b < count; b++) {
    parent = chainHash(parent, hashIds(ids, b * blockTokens, (b + 1) * blockTokens));
    hashes[b] = parent;
  }
  return { blockTokens, hashes };
}
