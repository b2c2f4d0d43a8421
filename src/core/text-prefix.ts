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

/**
 * A chat message as far as prefix identity cares: its role, its text, and an assistant turn's tool
 * calls as sent (chat's `tool_calls`, the legacy `function_call`; read by `toolCallsText`). A tool
 * result (`{"role": "tool", "tool_call_id", "content"}`, legacy `{"role": "function", "name",
 * "content"}`) is its role and content, as any message.
 */
export interface ChatText {
  readonly role: string;
  readonly content: string;
  /** `[{"id", "type": "function", "function": {"name", "arguments"}}]`, as chat sends it. */
  readonly tool_calls?: unknown;
  /** `{"name", "arguments"}`, the legacy form of one call. */
  readonly function_call?: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One call as rendered: `<tool_call>{"name":N,"arguments":A}</tool_call>`; '' for a malformed one. */
function callText(fn: unknown): string {
  if (!isRecord(fn) || typeof fn['name'] !== 'string') return '';
  const args = fn['arguments'];
  // Arguments are JSON text as the model wrote them; a client that sends an object is read as its JSON.
  const argsText = typeof args === 'string' ? args : JSON.stringify(args ?? {});
  return `<tool_call>{"name":${JSON.stringify(fn['name'])},"arguments":${argsText}}</tool_call>`;
}

/**
 * The text an assistant turn's tool calls add to the prompt after its content: each call on a line
 * of its own (`<tool_call>{"name":...,"arguments":...}</tool_call>`, the arguments as sent), chat's
 * `tool_calls` first, then a legacy `function_call`; items that are not calls are left out. '' when
 * the message has none, so a conversation without tool calls renders as before. `afterText`: the
 * message's content is non-empty (the first call then starts on a new line).
 */
export function toolCallsText(toolCalls: unknown, functionCall: unknown, afterText: boolean): string {
  let out = '';
  let sep = afterText;
  const add = (fn: unknown): void => {
    const t = callText(fn);
    if (t === '') return;
    out += sep ? `\n${t}` : t;
    sep = true;
  };
  if (Array.isArray(toolCalls)) for (const call of toolCalls) if (isRecord(call)) add(call['function']);
  if (functionCall !== undefined && functionCall !== null) add(functionCall);
  return out;
}

/**
 * Renders chat messages as one canonical string: role markers and content (then an assistant
 * turn's tool calls, `toolCallsText`), in order. Equal conversations render equal, and a
 * conversation extended by a turn renders as an extension of the shorter one, which is what makes
 * multi-turn prefixes visible.
 */
export function renderChat(messages: readonly ChatText[]): string {
  let out = '';
  for (const m of messages) {
    const calls =
      m.tool_calls === undefined && m.function_call === undefined
        ? ''
        : toolCallsText(m.tool_calls, m.function_call, m.content !== '');
    out += `<|${m.role}|>\n${m.content}${calls}\n`;
  }
  return out;
}

/** Estimated prompt tokens of a text: at least 1 for a non-empty string. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
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

/** Scratch space the text's code units are copied into for hashing (grown on demand, never shrunk). */
let units = new Uint16Array(4096);
/** The same memory as bytes, to write into. */
let unitBytes = Buffer.from(units.buffer);

/**
 * The chain of the first `count` blocks of `u`: FNV-1a over each block's code units, chained. The
 * blocks' own hashes are independent, so four run side by side (four dependency chains keep the
 * multipliers busy).
 */
function hashUnits(u: Uint16Array, count: number): PrefixChain {
  const hashes = new Array<number>(count);
  let parent = CHAIN_ROOT;
  let b = 0;
  for (; b + 4 <= count; b += 4) {
    let h0 = 0x811c9dc5;
    let h1 = 0x811c9dc5;
    let h2 = 0x811c9dc5;
    let h3 = 0x811c9dc5;
    const s0 = b * TEXT_BLOCK_CHARS;
    const s1 = s0 + TEXT_BLOCK_CHARS;
    const s2 = s1 + TEXT_BLOCK_CHARS;
    const s3 = s2 + TEXT_BLOCK_CHARS;
    for (let i = 0; i < TEXT_BLOCK_CHARS; i++) {
      h0 = Math.imul(h0 ^ (u[s0 + i] as number), 0x01000193);
      h1 = Math.imul(h1 ^ (u[s1 + i] as number), 0x01000193);
      h2 = Math.imul(h2 ^ (u[s2 + i] as number), 0x01000193);
      h3 = Math.imul(h3 ^ (u[s3 + i] as number), 0x01000193);
    }
    parent = chainHash(parent, h0 >>> 0);
    hashes[b] = parent;
    parent = chainHash(parent, h1 >>> 0);
    hashes[b + 1] = parent;
    parent = chainHash(parent, h2 >>> 0);
    hashes[b + 2] = parent;
    parent = chainHash(parent, h3 >>> 0);
    hashes[b + 3] = parent;
  }
  for (; b < count; b++) {
    let h = 0x811c9dc5;
    const s0 = b * TEXT_BLOCK_CHARS;
    for (let i = 0; i < TEXT_BLOCK_CHARS; i++) h = Math.imul(h ^ (u[s0 + i] as number), 0x01000193);
    parent = chainHash(parent, h >>> 0);
    hashes[b] = parent;
  }
  return { blockTokens: TEXT_BLOCK_TOKENS, hashes };
}

/**
 * The prefix chain of a text: one chained hash per full TEXT_BLOCK_CHARS block (the tail that does
 * not fill a block is left out; it is unique to this request as far as a cache can tell).
 * `maxBlocks` bounds the work for huge prompts.
 *
 * The values are FNV-1a over each block's UTF-16 code units, chained; for speed the code units are
 * first copied out in one native call (reading a typed array is several times cheaper than
 * `charCodeAt`).
 */
export function textPrefixChain(text: string, maxBlocks = 1 << 16): PrefixChain {
  const count = Math.min(Math.floor(text.length / TEXT_BLOCK_CHARS), maxBlocks);
  const chars = count * TEXT_BLOCK_CHARS;
  if (units.length < chars) {
    units = new Uint16Array(Math.max(chars, units.length * 2));
    unitBytes = Buffer.from(units.buffer);
  }
  // UTF-16LE is the string's own code units, lone surrogates included; only whole blocks are copied.
  if (chars > 0) unitBytes.write(text, 0, chars * 2, 'utf16le');
  return hashUnits(units, count);
}

/** Below this many code units a string is copied in JavaScript rather than by a native call. */
const SHORT_COPY_MAX = 24;

/**
 * Renders chat messages as `renderChat` does, straight into code units, and hashes them: the same
 * length and the same chain as `renderChat` then `textPrefixChain`, without building the text.
 * Single-threaded reuse: `reset()`, then `message` / `append` calls, then `chain()`.
 */
export class ChatChainWriter {
  /** Code units written so far (the rendered text's length). */
  length = 0;
  private u = new Uint16Array(8192);
  private bytes = Buffer.from(this.u.buffer);

  reset(): void {
    this.length = 0;
  }

  /** Starts a message: `<|role|>\n`. Its content follows by `append`, then `endMessage()`. */
  startMessage(role: string): void {
    this.ensure(role.length + 4);
    const u = this.u;
    let n = this.length;
    u[n++] = 0x3c; // <
    u[n++] = 0x7c; // |
    for (let i = 0; i < role.length; i++) u[n++] = role.charCodeAt(i);
    u[n++] = 0x7c; // |
    u[n++] = 0x3e; // >
    u[n++] = 0x0a; // \n
    this.length = n;
  }

  /** Appends text (a message's content, or one part of it). */
  append(text: string): void {
    const k = text.length;
    if (k === 0) return;
    this.ensure(k);
    if (k <= SHORT_COPY_MAX) {
      const u = this.u;
      const n = this.length;
      for (let i = 0; i < k; i++) u[n + i] = text.charCodeAt(i);
    } else this.bytes.write(text, this.length * 2, 'utf16le');
    this.length += k;
  }

  /** Ends a message: `\n`. */
  endMessage(): void {
    this.ensure(1);
    this.u[this.length++] = 0x0a;
  }

  /** The chain of what was written, as `textPrefixChain(renderedText, maxBlocks)` gives it. */
  chain(maxBlocks = 1 << 16): PrefixChain {
    return hashUnits(this.u, Math.min(Math.floor(this.length / TEXT_BLOCK_CHARS), maxBlocks));
  }

  private ensure(more: number): void {
    const need = this.length + more;
    if (need <= this.u.length) return;
    const u = new Uint16Array(Math.max(need, this.u.length * 2));
    u.set(this.u.subarray(0, this.length));
    this.u = u;
    this.bytes = Buffer.from(u.buffer);
  }
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
