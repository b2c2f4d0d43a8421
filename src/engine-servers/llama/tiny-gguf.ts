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
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
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
  /** How layer weights are drawn; default 'normal' (the tiny model's). */
  readonly weights?: WeightDistribution;
  /**
   * YaRN RoPE scaling written as `llama.rope.scaling.*` (a context extended past training, as
   * Qwen2.5's long-context GGUFs carry it); none by default, so the tiny model's bytes are unchanged.
   */
  readonly ropeScalingYarn?: { readonly factor: number; readonly originalContextLength: number };
  /**
   * The logit bias of `</s>` (default -6, as `<s>`: generation keeps away from it). A high one (say
   * 20) makes greedy generation end at once, for tests of end-of-generation handling (ignore_eos).
   */
  readonly eosBias?: number;
}

/** Normal draws (the tiny model) or uniform ones of the same variance (ten times cheaper: large models). */
export type WeightDistribution = 'normal' | 'uniform';

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

function buildVocab(eosBias = -6): Vocab {
  const tokens = byteToUnicode();
  const bias = tokens.map((_, b): number => {
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
  bias.push(-6, eosBias);
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

/** One tensor of the file: its name, shape and a function drawing its data when it is written. */
interface TensorSpec {
  readonly name: string;
  /** ggml order: ne[0] is the contiguous (input) dimension. */
  readonly dims: readonly number[];
  readonly data: () => Float32Array;
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

/** Bytes of one tensor's data in the file (F32, padded to the alignment). */
function paddedBytes(t: TensorSpec): number {
  const bytes = 4 * t.dims.reduce((a, b) => a * b, 1);
  return Math.ceil(bytes / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
}

/** The GGUF v3 header: magic, counts, metadata and tensor descriptions, padded to the alignment. */
function encodeHeader(
  meta: readonly (readonly [string, MetaValue])[],
  tensors: readonly TensorSpec[],
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
    offset += paddedBytes(t);
  }
  w.pad(GGUF_ALIGNMENT);
  return w.result();
}

/** Yields a GGUF v3 file's bytes piece by piece: the header, then each tensor's data padded to 32 bytes. */
function* ggufPieces(
  meta: readonly (readonly [string, MetaValue])[],
  tensors: readonly TensorSpec[],
): Generator<Uint8Array> {
  yield encodeHeader(meta, tensors);
  for (const t of tensors) {
    const data = t.data();
    yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const pad = paddedBytes(t) - data.byteLength;
    if (pad > 0) yield new Uint8Array(pad);
  }
}

/** Serialises metadata and tensors as GGUF v3 (tensor data F32, aligned to 32 bytes), in memory. */
export function encodeGguf(
  meta: readonly (readonly [string, MetaValue])[],
  tensors: readonly TensorSpec[],
): Uint8Array {
  return Buffer.concat([...ggufPieces(meta, tensors)]);
}

/** Fills `n` weights with mean 0 and standard deviation `std`, as the shape's distribution says. */
function randomWeights(rng: Rng, n: number, std: number, distribution: WeightDistribution): Float32Array {
  const m = new Float32Array(n);
  if (distribution === 'normal') {
    for (let i = 0; i < n; i++) m[i] = rng.normal() * std;
    return m;
  }
  // Uniform on [-a, a) has variance a^2 / 3; one uint32 per weight is ten times cheaper than a normal.
  const a = std * Math.sqrt(3);
  const step = (2 * a) / 4_294_967_296;
  for (let i = 0; i < n; i++) m[i] = rng.nextUint32() * step - a;
  return m;
}

/** The `llama.rope.scaling.*` pairs of a shape with YaRN scaling; none otherwise. */
function ropeScalingMeta(shape: TinyLlamaShape): [string, MetaValue][] {
  const yarn = shape.ropeScalingYarn;
  if (yarn === undefined) return [];
  return [
    ['llama.rope.scaling.type', { t: 'str', v: 'yarn' }],
    ['llama.rope.scaling.factor', { t: 'f32', v: yarn.factor }],
    ['llama.rope.scaling.original_context_length', { t: 'u32', v: yarn.originalContextLength }],
  ];
}

/** The model's metadata pairs (architecture, shape, tokenizer). */
function llamaMeta(shape: TinyLlamaShape, vocab: Vocab, name: string): [string, MetaValue][] {
  const headDim = shape.embeddingLength / shape.headCount;
  return [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: name }],
    ['general.file_type', { t: 'u32', v: 0 }],
    ['llama.context_length', { t: 'u32', v: shape.contextLength }],
    ['llama.embedding_length', { t: 'u32', v: shape.embeddingLength }],
    ['llama.block_count', { t: 'u32', v: shape.blockCount }],
    ['llama.feed_forward_length', { t: 'u32', v: shape.feedForwardLength }],
    ['llama.attention.head_count', { t: 'u32', v: shape.headCount }],
    ['llama.attention.head_count_kv', { t: 'u32', v: shape.headCountKv }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: headDim }],
    ['llama.rope.freq_base', { t: 'f32', v: 10_000 }],
    ...ropeScalingMeta(shape),
    ['llama.vocab_size', { t: 'u32', v: vocab.tokens.length }],
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
}

/**
 * The model's tensors in file order, each with a function that computes its data when it is written
 * (so a large model never sits in memory whole). The embedding and output matrices are drawn together
 * when the first tensor is written, then the layers in file order: the order the tiny model's bytes
 * have always been drawn in.
 */
function llamaTensors(shape: TinyLlamaShape, vocab: Vocab): TensorSpec[] {
  const nVocab = vocab.tokens.length;
  const nEmbd = shape.embeddingLength;
  const nFf = shape.feedForwardLength;
  const nEmbdKv = (nEmbd / shape.headCount) * shape.headCountKv;
  const distribution = shape.weights ?? 'normal';
  const rng = new Rng(shape.seed);
  // Deeper than the tiny model's 4 layers, the layers' writes to the residual stream shrink so the
  // stream's total variance (and so the weight of the constant dimension after the final norm) stays
  // that of the tiny model; wider, the output's random part shrinks so the logits' spread stays too.
  const residualScale = Math.min(1, 2 / Math.sqrt(shape.blockCount));
  const outputStd = 0.3 * Math.sqrt(64 / nEmbd);
  /** A [nIn, nOut] matrix of weights with variance scale^2 / nIn (unit-variance outputs at scale 1). */
  const matrix = (nIn: number, nOut: number, scale = 1): Float32Array =>
    randomWeights(rng, nIn * nOut, scale / Math.sqrt(nIn), distribution);
  const ones = (n: number) => (): Float32Array => new Float32Array(n).fill(1);
  /** Zeroes output feature 0 so no layer writes the constant dimension. */
  const sparingDim0 = (m: Float32Array, nIn: number): Float32Array => m.fill(0, 0, nIn);

  /** The embedding and output matrices, drawn together when the first of them is written. */
  let ends: { embd: Float32Array; output: Float32Array } | undefined;
  const drawEnds = () => {
    if (ends !== undefined) return ends;
    const embd = new Float32Array(nEmbd * nVocab);
    for (let t = 0; t < nVocab; t++) {
      embd[t * nEmbd] = 4;
      for (let d = 1; d < nEmbd; d++) embd[t * nEmbd + d] = rng.normal();
    }
    const output = new Float32Array(nEmbd * nVocab);
    for (let t = 0; t < nVocab; t++) {
      output[t * nEmbd] = vocab.bias[t] ?? 0;
      for (let d = 1; d < nEmbd; d++) output[t * nEmbd + d] = rng.normal() * outputStd;
    }
    ends = { embd, output };
    return ends;
  };

  const tensors: TensorSpec[] = [
    { name: 'token_embd.weight', dims: [nEmbd, nVocab], data: () => drawEnds().embd },
  ];
  for (let l = 0; l < shape.blockCount; l++) {
    const p = `blk.${l}`;
    tensors.push(
      { name: `${p}.attn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.attn_q.weight`, dims: [nEmbd, nEmbd], data: () => matrix(nEmbd, nEmbd) },
      { name: `${p}.attn_k.weight`, dims: [nEmbd, nEmbdKv], data: () => matrix(nEmbd, nEmbdKv) },
      { name: `${p}.attn_v.weight`, dims: [nEmbd, nEmbdKv], data: () => matrix(nEmbd, nEmbdKv) },
      {
        name: `${p}.attn_output.weight`,
        dims: [nEmbd, nEmbd],
        data: () => sparingDim0(matrix(nEmbd, nEmbd, residualScale), nEmbd),
      },
      { name: `${p}.ffn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.ffn_gate.weight`, dims: [nEmbd, nFf], data: () => matrix(nEmbd, nFf) },
      { name: `${p}.ffn_up.weight`, dims: [nEmbd, nFf], data: () => matrix(nEmbd, nFf) },
      {
        name: `${p}.ffn_down.weight`,
        dims: [nFf, nEmbd],
        data: () => sparingDim0(matrix(nFf, nEmbd, residualScale), nFf),
      },
    );
  }
  tensors.push(
    { name: 'output_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'output.weight', dims: [nEmbd, nVocab], data: () => drawEnds().output },
  );
  return tensors;
}

/** The model's `general.name`: a sized model's names its shape and seed (ensureSizedLlamaGguf relies on it). */
function modelName(shape: TinyLlamaShape): string {
  if (shape.weights !== 'uniform') return 'switchyard-tiny-llama';
  return `switchyard-random-llama-${shape.blockCount}x${shape.embeddingLength}-seed${shape.seed}`;
}

/** The file's pieces for a shape; the random draws happen as the pieces are taken. */
function llamaPieces(shape: TinyLlamaShape): Generator<Uint8Array> {
  const vocab = buildVocab(shape.eosBias);
  return ggufPieces(llamaMeta(shape, vocab, modelName(shape)), llamaTensors(shape, vocab));
}

/** The tiny model's GGUF bytes (or another shape's, in memory: use writeLlamaGguf for a large one). */
export function tinyLlamaGguf(shape: TinyLlamaShape = TINY_LLAMA_SHAPE): Uint8Array {
  return Buffer.concat([...llamaPieces(shape)]);
}

/** The size in bytes of the GGUF file of a shape, computed without drawing a weight. */
export function llamaGgufBytes(shape: TinyLlamaShape): number {
  const vocab = buildVocab(shape.eosBias);
  const tensors = llamaTensors(shape, vocab);
  const header = encodeHeader(llamaMeta(shape, vocab, modelName(shape)), tensors).length;
  return header + tensors.reduce((sum, t) => sum + paddedBytes(t), 0);
}

/** Fewest layers a sized model gets when its width allows (more layers, finer steps of size). */
const SIZED_LAYERS_MIN = 8;
/** Widths a sized model may take (head dimension 64 from 256 up, as in common llama shapes). */
const SIZED_WIDTHS = [64, 128, 256, 512, 1024, 2048, 4096] as const;
/** Bytes of one layer of width `w` (F32, feed-forward 3w, half as many KV heads as heads). */
function layerBytes(w: number): number {
  return 4 * (2 * w * w + w * w + 9 * w * w + 2 * w);
}

/**
 * A random-weight llama shape whose GGUF file takes about `sizeBytes` (within half a layer, at most
 * one sixteenth of the size): the widest width that still gives SIZED_LAYERS_MIN layers, and as many
 * layers as fill the size. Its weights are uniform (cheap to draw), scaled as the tiny model's.
 * Throws a RangeError below the smallest model (one layer of width 64).
 */
export function sizedLlamaShape(sizeBytes: number, seed: number = TINY_LLAMA_SHAPE.seed): TinyLlamaShape {
  let width: number = SIZED_WIDTHS[0];
  for (const w of SIZED_WIDTHS) if (layerBytes(w) * SIZED_LAYERS_MIN <= sizeBytes) width = w;
  const heads = Math.max(4, width / 64);
  const base: TinyLlamaShape = {
    embeddingLength: width,
    blockCount: 0,
    headCount: heads,
    headCountKv: heads / 2,
    feedForwardLength: 3 * width,
    contextLength: TINY_LLAMA_SHAPE.contextLength,
    seed,
    weights: 'uniform',
  };
  const fixedBytes = llamaGgufBytes(base);
  const blockCount = Math.round((sizeBytes - fixedBytes) / layerBytes(width));
  if (!Number.isFinite(sizeBytes) || blockCount < 1) {
    throw new RangeError(
      `a model of ${sizeBytes} bytes is too small: the smallest takes ${fixedBytes + layerBytes(64)} bytes`,
    );
  }
  return { ...base, blockCount };
}

/**
 * Writes a shape's GGUF file to `path` as it is drawn, one tensor in memory at a time (a 600 MB model
 * takes a few seconds and about 50 MB of memory). Writes to a temporary name first, so a concurrent
 * reader never sees a half-written model. Returns the bytes written.
 */
export function writeLlamaGguf(path: string, shape: TinyLlamaShape): number {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  let written = 0;
  try {
    for (const piece of llamaPieces(shape)) {
      let at = 0;
      while (at < piece.length) at += writeSync(fd, piece, at, piece.length - at);
      written += piece.length;
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return written;
}

/** The first `n` bytes of a file, or undefined when it cannot be read. */
function fileStart(path: string, n: number): Uint8Array | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(n);
      return buf.subarray(0, readSync(fd, buf, 0, n, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/**
 * Writes a sized model to `path` unless a file with its header and size is already there (the header
 * names the shape and seed, so the same header and size mean the same model); returns the path.
 */
export function ensureSizedLlamaGguf(path: string, shape: TinyLlamaShape): string {
  const header = llamaPieces(shape).next().value as Uint8Array;
  const there = fileStart(path, header.length);
  let size = -1;
  try {
    size = statSync(path).size;
  } catch {
    // not there yet
  }
  if (there !== undefined && Buffer.compare(there, header) === 0 && size === llamaGgufBytes(shape))
    return path;
  writeLlamaGguf(path, shape);
  return path;
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
