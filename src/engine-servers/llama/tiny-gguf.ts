/**
 * A tiny random-weight llama-architecture model in GGUF v3, for tests and demos of the `llama` engine
 * on machines with no model to download. Same seed, same bytes.
 *
 * Tokenizer: GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the 256 byte tokens in
 * GPT-2's byte-to-unicode spelling, a few dozen merges of common English pairs, and `<s>` / `</s>`.
 * Any text tokenizes (every byte has a token) and every token detokenizes back to its bytes.
 *
 * Weights are random (normal, seeded) with one shaping trick so the gibberish is readable: hidden
 * dimension 0 carries a constant (set in every token embedding, never written by a layer because
 * row 0 of `attn_output` and `ffn_down` is zero), and column 0 of the output matrix then acts as a
 * per-token logit bias that keeps generation on printable ASCII and away from `</s>`. So a
 * generation runs to `max_tokens` or a stop string, and its text is valid UTF-8.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Rng } from '../../core/rng.ts';

/** The shape of the tiny model. */
export interface TinyLlamaShape {
  readonly embeddingLength: number;
  readonly blockCount: number;
  readonly headCount: number;
  readonly headCountKv: number;
  readonly feedForwardLength: number;
  readonly contextLength: number;
  readonly seed: number;
}

/** 4 layers of width 64: ~1.2 MB in F32, hundreds of tokens per second on one core. */
export const TINY_LLAMA_SHAPE: TinyLlamaShape = {
  embeddingLength: 64,
  blockCount: 4,
  headCount: 4,
  headCountKv: 2,
  feedForwardLength: 192,
  contextLength: 4096,
  seed: 20_240_601,
};

/** Where the script and the tests keep the model (the repository ignores `.cache/`). */
export const TINY_LLAMA_DEFAULT_PATH = '.cache/models/tiny-llama.gguf';

/** Common English byte pairs, merged in this order (GPT-2 spelling: `Ġ` is a space). */
const MERGES: readonly (readonly [string, string])[] = [
  ['Ġ', 't'],
  ['h', 'e'],
  ['i', 'n'],
  ['e', 'r'],
  ['a', 'n'],
  ['Ġ', 'a'],
  ['r', 'e'],
  ['o', 'n'],
  ['Ġ', 's'],
  ['e', 'n'],
  ['Ġt', 'he'],
  ['a', 't'],
  ['o', 'r'],
  ['e', 's'],
  ['Ġ', 'w'],
  ['Ġ', 'o'],
  ['i', 's'],
  ['i', 't'],
  ['Ġ', 'c'],
  ['a', 'l'],
  ['e', 'd'],
  ['in', 'g'],
  ['Ġ', 'p'],
  ['Ġ', 'b'],
  ['Ġ', 'f'],
  ['o', 'u'],
  ['Ġ', 'm'],
  ['a', 'r'],
  ['l', 'e'],
  ['Ġ', 'in'],
];

const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_CONTROL = 3;

/** GPT-2's byte-to-unicode map: printable bytes stand for themselves, the rest move to U+0100.. */
export function byteToUnicode(): string[] {
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return out;
}

interface Vocab {
  readonly tokens: string[];
  readonly types: number[];
  /** Logit bias per token (column 0 of the output matrix). */
  readonly bias: number[];
  readonly merges: string[];
  readonly bos: number;
  readonly eos: number;
}

function buildVocab(): Vocab {
  const tokens = byteToUnicode();
  const bias = tokens.map((_, b) => {
    if (b === 0x20) return 0.5;
    if ((b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a)) return 0;
    if (b >= 0x21 && b <= 0x7e) return -1;
    return -6;
  });
  const merges: string[] = [];
  for (const [a, b] of MERGES) {
    merges.push(`${a} ${b}`);
    tokens.push(a + b);
    bias.push(0);
  }
  const types = tokens.map(() => TOKEN_TYPE_NORMAL);
  const bos = tokens.length;
  tokens.push('<s>');
  const eos = tokens.length;
  tokens.push('</s>');
  types.push(TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL);
  bias.push(-6, -6);
  return { tokens, types, bias, merges, bos, eos };
}

// GGUF metadata value types.
const GGUF_UINT32 = 4;
const GGUF_INT32 = 5;
const GGUF_FLOAT32 = 6;
const GGUF_BOOL = 7;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;
const GGML_TYPE_F32 = 0;
const GGUF_ALIGNMENT = 32;

type MetaValue =
  | { readonly t: 'u32'; readonly v: number }
  | { readonly t: 'f32'; readonly v: number }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'str'; readonly v: string }
  | { readonly t: 'str[]'; readonly v: readonly string[] }
  | { readonly t: 'i32[]'; readonly v: readonly number[] };

interface Tensor {
  readonly name: string;
  /** ggml order: ne[0] is the contiguous (input) dimension. */
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** A growable little-endian byte buffer. */
class Writer {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf[this.length++] = v;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeMeta(w: Writer, key: string, value: MetaValue): void {
  w.str(key);
  switch (value.t) {
    case 'u32':
      w.u32(GGUF_UINT32);
      w.u32(value.v);
      return;
    case 'f32':
      w.u32(GGUF_FLOAT32);
      w.f32(value.v);
      return;
    case 'bool':
      w.u32(GGUF_BOOL);
      w.u8(value.v ? 1 : 0);
      return;
    case 'str':
      w.u32(GGUF_STRING);
      w.str(value.v);
      return;
    case 'str[]':
      w.u32(GGUF_ARRAY);
      w.u32(GGUF_STRING);
      w.u64(value.v.length);
      for (const s of value.v) w.str(s);
      return;
    case 'i32[]':
      w.u32(GGUF_ARRAY);
      w.u32(GGUF_INT32);
      w.u64(value.v.length);
      for (const n of value.v) w.i32(n);
      return;
    default: {
      const never: never = value;
      throw new Error(`unknown metadata type ${String(never)}`);
    }
  }
}

/** Serialises metadata and tensors as GGUF v3 (tensor data F32, aligned to 32 bytes). */
export function encodeGguf(
  meta: readonly (readonly [string, MetaValue])[],
  tensors: readonly Tensor[],
): Uint8Array {
  const w = new Writer();
  w.bytes(new TextEncoder().encode('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const [key, value] of meta) writeMeta(w, key, value);
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offset += t.data.byteLength;
    offset = Math.ceil(offset / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  w.pad(GGUF_ALIGNMENT);
  for (const t of tensors) {
    w.bytes(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.pad(GGUF_ALIGNMENT);
  }
  return w.result();
}

/** The tiny model's GGUF bytes. */
export function tinyLlamaGguf(shape: TinyLlamaShape = TINY_LLAMA_SHAPE): Uint8Array {
  const vocab = buildVocab();
  const nVocab = vocab.tokens.length;
  const nEmbd = shape.embeddingLength;
  const nFf = shape.feedForwardLength;
  const headDim = nEmbd / shape.headCount;
  const nEmbdKv = headDim * shape.headCountKv;
  const rng = new Rng(shape.seed);
  /** A [nIn, nOut] matrix of N(0, 1/nIn) entries (unit-variance outputs for unit-variance inputs). */
  const matrix = (nIn: number, nOut: number): Float32Array => {
    const m = new Float32Array(nIn * nOut);
    const scale = 1 / Math.sqrt(nIn);
    for (let i = 0; i < m.length; i++) m[i] = rng.normal() * scale;
    return m;
  };
  const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
  /** Zeroes output feature 0 so no layer writes the constant dimension. */
  const sparingDim0 = (m: Float32Array, nIn: number): Float32Array => {
    m.fill(0, 0, nIn);
    return m;
  };

  const embd = new Float32Array(nEmbd * nVocab);
  for (let t = 0; t < nVocab; t++) {
    embd[t * nEmbd] = 4;
    for (let d = 1; d < nEmbd; d++) embd[t * nEmbd + d] = rng.normal();
  }
  const output = new Float32Array(nEmbd * nVocab);
  for (let t = 0; t < nVocab; t++) {
    output[t * nEmbd] = vocab.bias[t] ?? 0;
    for (let d = 1; d < nEmbd; d++) output[t * nEmbd + d] = rng.normal() * 0.3;
  }

  const tensors: Tensor[] = [{ name: 'token_embd.weight', dims: [nEmbd, nVocab], data: embd }];
  for (let l = 0; l < shape.blockCount; l++) {
    const p = `blk.${l}`;
    tensors.push(
      { name: `${p}.attn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.attn_q.weight`, dims: [nEmbd, nEmbd], data: matrix(nEmbd, nEmbd) },
      { name: `${p}.attn_k.weight`, dims: [nEmbd, nEmbdKv], data: matrix(nEmbd, nEmbdKv) },
      { name: `${p}.attn_v.weight`, dims: [nEmbd, nEmbdKv], data: matrix(nEmbd, nEmbdKv) },
      {
        name: `${p}.attn_output.weight`,
        dims: [nEmbd, nEmbd],
        data: sparingDim0(matrix(nEmbd, nEmbd), nEmbd),
      },
      { name: `${p}.ffn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.ffn_gate.weight`, dims: [nEmbd, nFf], data: matrix(nEmbd, nFf) },
      { name: `${p}.ffn_up.weight`, dims: [nEmbd, nFf], data: matrix(nEmbd, nFf) },
      { name: `${p}.ffn_down.weight`, dims: [nFf, nEmbd], data: sparingDim0(matrix(nFf, nEmbd), nFf) },
    );
  }
  tensors.push(
    { name: 'output_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'output.weight', dims: [nEmbd, nVocab], data: output },
  );

  const meta: [string, MetaValue][] = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: 'switchyard-tiny-llama' }],
    ['general.file_type', { t: 'u32', v: 0 }],
    ['llama.context_length', { t: 'u32', v: shape.contextLength }],
    ['llama.embedding_length', { t: 'u32', v: nEmbd }],
    ['llama.block_count', { t: 'u32', v: shape.blockCount }],
    ['llama.feed_forward_length', { t: 'u32', v: nFf }],
    ['llama.attention.head_count', { t: 'u32', v: shape.headCount }],
    ['llama.attention.head_count_kv', { t: 'u32', v: shape.headCountKv }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: headDim }],
    ['llama.rope.freq_base', { t: 'f32', v: 10_000 }],
    ['llama.vocab_size', { t: 'u32', v: nVocab }],
    ['tokenizer.ggml.model', { t: 'str', v: 'gpt2' }],
    ['tokenizer.ggml.pre', { t: 'str', v: 'gpt-2' }],
    ['tokenizer.ggml.tokens', { t: 'str[]', v: vocab.tokens }],
    ['tokenizer.ggml.token_type', { t: 'i32[]', v: vocab.types }],
    ['tokenizer.ggml.merges', { t: 'str[]', v: vocab.merges }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: vocab.bos }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: vocab.eos }],
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: true }],
    ['tokenizer.ggml.add_eos_token', { t: 'bool', v: false }],
  ];
  return encodeGguf(meta, tensors);
}

/**
 * Writes the tiny model to `path` unless the same bytes are already there; returns the path. Writes
 * to a temporary name first, so a concurrent reader never sees a half-written model.
 */
export function ensureTinyLlamaGguf(path: string = TINY_LLAMA_DEFAULT_PATH): string {
  const bytes = tinyLlamaGguf();
  try {
    if (Buffer.compare(readFileSync(path), bytes) === 0) return path;
  } catch {
    // not there yet
  }
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return path;
}
