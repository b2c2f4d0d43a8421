/**
 * Synthetic prompt text with controlled prefix sharing, deterministic from a seed.
 *
 * Lengths are in characters at CHARS_PER_TOKEN (4) per wanted token: the estimate Switchyard's
 * gateway and `sim` engine use, and close to what real BPE tokenizers make of the short common
 * words used here.
 *
 * Three kinds of text (a twin workload's prefix chain is written as prefix ids, with its own
 * block size, so two requests with the same chain hash at block j share their first j + 1 blocks):
 * - a block per prefix id (Mooncake `hash_ids`, 512 tokens each): exactly `blockTokens * 4`
 *   characters (2,048), a function of (seed, id) only, so two requests that share leading ids share
 *   an identical leading text, block for block. 2,048 is a multiple of the gateway's 64-character
 *   text blocks, so a shared block of ids is a whole number of shared gateway blocks.
 * - a group prefix (a shared system prompt of a synthetic workload): `prefixTokens * 4` characters
 *   made of the group's own blocks, the same for every request of the group.
 * - the unique remainder of a request: a function of (seed, request index) that starts with the
 *   request's number, so no two requests share it (and no unique prompt shares a first block).
 */
import { Rng } from '../core/rng.ts';
import { CHARS_PER_TOKEN } from '../core/text-prefix.ts';
import { MOONCAKE_BLOCK_TOKENS } from '../workload/traces/mooncake.ts';
import type { PlannedRequest } from './types.ts';
import { WORDS } from './words.ts';

/** Characters of a Mooncake block: 512 tokens at 4 characters each. */
export const BLOCK_CHARS = MOONCAKE_BLOCK_TOKENS * CHARS_PER_TOKEN;

/** Block texts (and group prefixes) kept for reuse; a block is cheap to rebuild, so this stays small. */
export const TEXT_CACHE_ENTRIES_MAX = 4096;

/**
 * Words from `rng` after `tag`, exactly `chars` characters, ending in a newline when `chars` > 0
 * (the last word may be cut to fit). The newline keeps the next block's first word apart.
 */
export function wordText(rng: Rng, tag: string, chars: number): string {
  if (chars <= 0) return '';
  const parts: string[] = [tag];
  let length = tag.length;
  while (length < chars - 1) {
    const word = WORDS[rng.nextUint32() % WORDS.length] as string;
    parts.push(' ', word);
    length += word.length + 1;
  }
  const text = parts.join('');
  return text.length >= chars - 1 ? `${text.slice(0, chars - 1)}\n` : `${text}\n`;
}

/** A bounded map that forgets its oldest entry when full. */
class BoundedCache {
  private readonly entries = new Map<string, string>();
  constructor(private readonly entriesMax: number) {}

  getOrMake(key: string, make: () => string): string {
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    const value = make();
    if (this.entries.size >= this.entriesMax) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
    this.entries.set(key, value);
    return value;
  }
}

/** Builds prompt texts for planned requests. Pure function of the seed and the request. */
export class PromptSynth {
  /** Characters per prefix block. */
  readonly blockChars: number;
  private readonly cache = new BoundedCache(TEXT_CACHE_ENTRIES_MAX);

  constructor(
    readonly seed: number,
    blockTokens = MOONCAKE_BLOCK_TOKENS,
  ) {
    this.blockChars = blockTokens * CHARS_PER_TOKEN;
  }

  /**
   * The text of prefix block `id`: exactly `chars` characters (blockChars by default). The words
   * depend on (seed, id) only, so a block of another size starts with the same words.
   */
  blockText(id: number, chars = this.blockChars): string {
    return this.cache.getOrMake(`b${chars}/${id}`, () =>
      wordText(new Rng(`${this.seed}/block/${id}`), `Block ${id}:`, chars),
    );
  }

  /** Group `group`'s shared prefix of `tokens` tokens: tokens * 4 characters. */
  groupPrefix(group: number, tokens: number): string {
    const chars = tokens * CHARS_PER_TOKEN;
    return this.cache.getOrMake(`g${group}/${tokens}`, () => {
      const parts: string[] = [];
      for (let b = 0, length = 0; length < chars; b++) {
        const take = Math.min(this.blockChars, chars - length);
        const block = wordText(
          new Rng(`${this.seed}/group/${group}/${b}`),
          `System ${group}.${b}:`,
          this.blockChars,
        );
        parts.push(take === this.blockChars ? block : block.slice(0, take));
        length += take;
      }
      return parts.join('');
    });
  }

  /** Text of `chars` characters unique to request `index`. */
  uniqueText(index: number, chars: number): string {
    return wordText(new Rng(`${this.seed}/unique/${index}`), `Request ${index}:`, chars);
  }

  /**
   * The prompt of one planned request: inputTokens * 4 characters (at least one token). With
   * prefix ids: the ids' blocks in order (the last one cut when the input ends inside it), then a
   * unique remainder if the ids cover less than the input. With a group: the group's prefix, then
   * the unique remainder. Otherwise all unique. A request's own `blockTokens` (a twin workload's
   * prefix chain, whose ids are chained block hashes) sizes its blocks instead of the default.
   */
  promptFor(request: PlannedRequest): string {
    const chars = Math.max(1, request.inputTokens) * CHARS_PER_TOKEN;
    const blockChars =
      request.blockTokens === undefined ? this.blockChars : request.blockTokens * CHARS_PER_TOKEN;
    const parts: string[] = [];
    let length = 0;
    if (request.hashIds.length > 0) {
      for (const id of request.hashIds) {
        if (length >= chars) break;
        const take = Math.min(blockChars, chars - length);
        const block = this.blockText(id, blockChars);
        parts.push(take === blockChars ? block : block.slice(0, take));
        length += take;
      }
    } else if (request.group !== undefined && request.prefixTokens > 0) {
      const prefix = this.groupPrefix(request.group, Math.min(request.prefixTokens, chars / CHARS_PER_TOKEN));
      parts.push(prefix);
      length += prefix.length;
    }
    if (length < chars) parts.push(this.uniqueText(request.index, chars - length));
    return parts.join('');
  }
}
