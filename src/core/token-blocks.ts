/**
 * vLLM's prefix-cache block hashes, computed from a prompt's token ids, so that the gateway can name
 * the exact blocks a vLLM engine reports in its KV events (precise prefix routing, as llm-d's
 * kv-cache manager does).
 *
 * vLLM v1 (`vllm/v1/core/kv_cache_utils.py`) cuts the prompt's token ids into full blocks of
 * `block_size` tokens (a partial tail block gets no hash) and hashes them as a chain:
 *
 *   hash_0 = H((NONE_HASH, tuple(ids[0:bs]), extra_keys))
 *   hash_i = H((hash_{i-1}, tuple(ids[i*bs:(i+1)*bs]), extra_keys))
 *
 * With `--prefix-caching-hash-algo sha256_cbor`, H(x) = sha256(cbor2.dumps(x, canonical=True)) and
 * the result is the 32-byte digest. `NONE_HASH`, the root, is `H(os.environ['PYTHONHASHSEED'])` (the
 * seed as a string) when the engine runs with PYTHONHASHSEED set, and 32 random bytes otherwise: an
 * engine without a pinned seed has hashes no one else can reproduce, so the operator must pin it
 * (llm-d requires the same). `extra_keys` is None for a text prompt without LoRA, multimodal inputs,
 * cache_salt or prompt embeddings. A request's `cache_salt` makes the first block's extra keys
 * `(salt,)` (vLLM's `generate_block_hash_extra_keys`: the salt goes in at token 0 only, and every
 * later hash chains from that one); LoRA, multimodal and prompt-embedding keys are not reproduced.
 *
 * The CBOR of `(bytes, tuple of ints, None)` uses four item kinds, written here by hand into one
 * reusable buffer (an array header, a byte string, unsigned ints, null): canonical CBOR for them is
 * simply the shortest head, which is also what every encoder emits. The fixtures in
 * src/adapters/kv-events/fixtures/ (made by scripts/vllm-block-hashes.py with cbor2) hold the bytes
 * equal. SHA-256 is passed in, so this module stays free of I/O and platform imports.
 *
 * Switchyard's index keys blocks by 32 bits (`core/hash.ts`); a digest becomes its last four bytes
 * read big-endian, the same rule `blockHashTo32` applies to the hashes in KV events (bytes, or the
 * int vLLM makes of the last eight bytes with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES).
 */
import type { PrefixChain } from './request.ts';

/** SHA-256 of some bytes: 32 bytes. */
export type Sha256 = (data: Uint8Array) => Uint8Array;

/** vLLM prefix-caching hash algorithms this module reproduces (`--prefix-caching-hash-algo`). */
export const VLLM_HASH_ALGORITHMS = ['sha256_cbor'] as const;
export type VllmHashAlgorithm = (typeof VLLM_HASH_ALGORITHMS)[number];

/** Blocks hashed per prompt at most (a 1M-token prompt at 16 tokens a block). */
export const VLLM_BLOCKS_MAX = 65_536;

/** CBOR major types, shifted into the initial byte. */
const MAJOR_UINT = 0x00;
const MAJOR_BYTES = 0x40;
const MAJOR_TEXT = 0x60;
const MAJOR_ARRAY = 0x80;
const CBOR_NULL = 0xf6;

/** Bytes one CBOR head takes for an argument `n` (shortest form). */
function headBytes(n: number): number {
  if (n < 24) return 1;
  if (n < 0x100) return 2;
  if (n < 0x1_0000) return 3;
  if (n < 0x1_0000_0000) return 5;
  return 9;
}

/** Writes a CBOR head (major type and shortest argument) at `at`; returns the next offset. */
function writeHead(buf: Uint8Array, at: number, major: number, n: number): number {
  if (n < 24) {
    buf[at] = major | n;
    return at + 1;
  }
  if (n < 0x100) {
    buf[at] = major | 24;
    buf[at + 1] = n;
    return at + 2;
  }
  if (n < 0x1_0000) {
    buf[at] = major | 25;
    buf[at + 1] = n >>> 8;
    buf[at + 2] = n & 0xff;
    return at + 3;
  }
  if (n < 0x1_0000_0000) {
    buf[at] = major | 26;
    buf[at + 1] = n >>> 24;
    buf[at + 2] = (n >>> 16) & 0xff;
    buf[at + 3] = (n >>> 8) & 0xff;
    buf[at + 4] = n & 0xff;
    return at + 5;
  }
  buf[at] = major | 27;
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n >>> 0;
  for (let k = 0; k < 4; k++) buf[at + 1 + k] = (hi >>> (24 - 8 * k)) & 0xff;
  for (let k = 0; k < 4; k++) buf[at + 5 + k] = (lo >>> (24 - 8 * k)) & 0xff;
  return at + 9;
}

/**
 * Canonical CBOR of the tuple vLLM hashes for one block, `(parent, tuple(ids[start:end]), None)`,
 * or `(parent, tuple(ids[start:end]), (salt,))` when `salt` (the UTF-8 of a cache_salt) is given,
 * written into `out` when it is large enough (else a new buffer); returns the encoded bytes (a view
 * of `out` or the new buffer). Token ids must be non-negative safe integers.
 */
export function cborBlockKey(
  parent: Uint8Array,
  ids: ArrayLike<number>,
  start: number,
  end: number,
  out?: Uint8Array,
  salt?: Uint8Array,
): Uint8Array {
  const count = end - start;
  const extra = salt === undefined ? 1 : 1 + headBytes(salt.length) + salt.length;
  let size = 1 + headBytes(parent.length) + parent.length + headBytes(count) + extra;
  for (let i = start; i < end; i++) size += headBytes(ids[i] as number);
  const buf = out !== undefined && out.length >= size ? out : new Uint8Array(size);
  let at = writeHead(buf, 0, MAJOR_ARRAY, 3);
  at = writeHead(buf, at, MAJOR_BYTES, parent.length);
  buf.set(parent, at);
  at += parent.length;
  at = writeHead(buf, at, MAJOR_ARRAY, count);
  for (let i = start; i < end; i++) at = writeHead(buf, at, MAJOR_UINT, ids[i] as number);
  if (salt === undefined) buf[at++] = CBOR_NULL;
  else {
    at = writeHead(buf, at, MAJOR_ARRAY, 1);
    at = writeHead(buf, at, MAJOR_TEXT, salt.length);
    buf.set(salt, at);
    at += salt.length;
  }
  return buf.subarray(0, at);
}

/** Canonical CBOR of a text string (how vLLM hashes the PYTHONHASHSEED string into NONE_HASH). */
export function cborText(text: string): Uint8Array {
  const utf8 = new TextEncoder().encode(text);
  const buf = new Uint8Array(headBytes(utf8.length) + utf8.length);
  buf.set(utf8, writeHead(buf, 0, MAJOR_TEXT, utf8.length));
  return buf;
}

/** vLLM's NONE_HASH for an engine started with `PYTHONHASHSEED=<seed>` and sha256_cbor. */
export function vllmNoneHash(seed: string, sha256: Sha256): Uint8Array {
  return sha256(cborText(seed));
}

/** How to reproduce one engine's block hashes. */
export interface VllmHashing {
  /** The engine's KV block size in tokens (`--block-size`). */
  readonly blockSize: number;
  /** The chain's root, `vllmNoneHash(seed, sha256)`. */
  readonly noneHash: Uint8Array;
  readonly sha256: Sha256;
}

/**
 * vLLM's block hashes (full 32-byte digests) of the first full blocks of `ids`, at most `maxBlocks`,
 * for a request with `cacheSalt` (vLLM's cache_salt) or none.
 */
export function vllmBlockHashes(
  ids: ArrayLike<number>,
  hashing: VllmHashing,
  maxBlocks = VLLM_BLOCKS_MAX,
  cacheSalt?: string,
): Uint8Array[] {
  const bs = hashing.blockSize;
  const count = Math.min(Math.floor(ids.length / bs), maxBlocks);
  const out: Uint8Array[] = new Array(count);
  // 3 array/bytes heads + 32-byte parent + bs ids of at most 5 bytes each + null.
  const scratch = new Uint8Array(8 + hashing.noneHash.length + bs * 9);
  let parent = hashing.noneHash;
  let b = 0;
  if (count > 0 && cacheSalt !== undefined) {
    // The salt is the first block's only extra key; later blocks have none.
    const salt = new TextEncoder().encode(cacheSalt);
    parent = hashing.sha256(cborBlockKey(parent, ids, 0, bs, undefined, salt));
    out[b++] = parent;
  }
  for (; b < count; b++) {
    parent = hashing.sha256(cborBlockKey(parent, ids, b * bs, (b + 1) * bs, scratch));
    out[b] = parent;
  }
  return out;
}

/** A digest as Switchyard's 32-bit block hash: its last four bytes, big-endian (as `blockHashTo32`). */
export function blockHashLow32(digest: Uint8Array): number {
  const n = digest.length;
  let h = 0;
  for (let i = Math.max(0, n - 4); i < n; i++) h = h * 256 + (digest[i] as number);
  return h;
}

/**
 * The exact prefix chain of a prompt for a vLLM engine: one hash per full engine block, the low 32
 * bits of vLLM's own block hash, marked `exact` so KV-event matching uses them as they are.
 */
export function vllmPrefixChain(
  ids: ArrayLike<number>,
  hashing: VllmHashing,
  maxBlocks = VLLM_BLOCKS_MAX,
  cacheSalt?: string,
): PrefixChain {
  const digests = vllmBlockHashes(ids, hashing, maxBlocks, cacheSalt);
  const hashes = new Array<number>(digests.length);
  for (let i = 0; i < digests.length; i++) hashes[i] = blockHashLow32(digests[i] as Uint8Array);
  return { blockTokens: hashing.blockSize, hashes, exact: true };
}
