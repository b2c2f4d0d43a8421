/**
 * Sizing the memory a standby llama engine touches while it waits for its model
 * (`--standby-reserve-mib`, src/engine-servers/llama/memory-reserve.ts): enough for the KV cache the
 * model it is handed allocates when its context is created, plus the compute margin the cold-start
 * bench uses (bench/cold-start.ts). `serve --standby-reserve-mib auto` sizes it for the largest KV
 * cache among the models it serves, since a standby engine may be handed any of them. Pure: the
 * caller reads the GGUF shapes (src/engine-servers/llama/gguf-shape.ts).
 */
import { MiB } from './units.ts';

/** Most MiB a reserve may hold (64 GiB): a bound on what a typo can make a standby engine take. */
export const MEMORY_RESERVE_MIB_MAX = 64 * 1024;

/**
 * MiB added to the KV cache: llama.cpp's compute and output buffers, created with the context (30 MiB
 * of compute buffer for the 606 MB bench model; docs/benchmarks.md, "Where the context stage goes").
 */
export const STANDBY_RESERVE_MARGIN_MIB = 64;

/** Bytes of one K or V element in llama.cpp's default KV cache (F16). */
export const KV_TYPE_BYTES_DEFAULT = 2;

/** What a model's KV cache size depends on, as its GGUF metadata gives it. */
export interface KvCacheShape {
  /** `<arch>.block_count`. */
  readonly layers: unknown;
  /** `<arch>.embedding_length`. */
  readonly embedding: unknown;
  /** `<arch>.attention.head_count`. */
  readonly heads: unknown;
  /** `<arch>.attention.head_count_kv`: one number, or one per layer. */
  readonly kvHeads: unknown;
  /**
   * `<arch>.attention.key_length` and `value_length`: a key's and a value's width per head, where the
   * GGUF gives them (llama.cpp reads them over its default of embedding / heads: Qwen3's and Gemma's
   * head_dim is not that). Absent or null: embedding / heads.
   */
  readonly keyWidth?: unknown;
  /** `<arch>.attention.value_length`, as `keyWidth`. */
  readonly valueWidth?: unknown;
}

/** `value` as a positive integer, or undefined. */
function count(value: unknown): number | undefined {
  const n = typeof value === 'bigint' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * A per-head width: the GGUF's (`keyWidth`/`valueWidth`) when it gives one, else `fallback`
 * (embedding / heads, as llama.cpp defaults it); undefined when given but not a positive integer.
 */
function headWidth(given: unknown, fallback: number): number | undefined {
  return given === undefined || given === null ? fallback : count(given);
}

/**
 * Bytes of the KV cache of a model of `shape` over `cells` cells (sequences x context tokens): every
 * layer keeps a key of `kvHeads x keyWidth` and a value of `kvHeads x valueWidth` elements per cell
 * (each width embedding / heads unless the GGUF gives it), each `typeBytes`. Undefined when the shape
 * lacks a field (the size cannot be told).
 */
export function kvCacheBytes(
  shape: KvCacheShape,
  cells: number,
  typeBytes: number = KV_TYPE_BYTES_DEFAULT,
): number | undefined {
  const layers = count(shape.layers);
  const embedding = count(shape.embedding);
  const heads = count(shape.heads);
  if (layers === undefined || embedding === undefined || heads === undefined) return undefined;
  const keyWidth = headWidth(shape.keyWidth, embedding / heads);
  const valueWidth = headWidth(shape.valueWidth, embedding / heads);
  if (keyWidth === undefined || valueWidth === undefined) return undefined;
  const kvHeadsSum = kvHeadsOverLayers(shape.kvHeads, layers);
  if (kvHeadsSum === undefined) return undefined;
  return kvHeadsSum * (keyWidth + valueWidth) * typeBytes * cells;
}

/**
 * KV heads summed over the layers: one positive count for every layer, or a list of one count per
 * layer (some architectures vary them), where 0 is a layer with no KV cache (a hybrid model's
 * recurrent layers: Granite 4 hybrid, Nemotron-H, LFM2). Undefined for anything else.
 */
function kvHeadsOverLayers(kvHeads: unknown, layers: number): number | undefined {
  if (!Array.isArray(kvHeads)) {
    const n = count(kvHeads);
    return n === undefined ? undefined : n * layers;
  }
  if (kvHeads.length !== layers) return undefined;
  let sum = 0;
  for (const h of kvHeads) {
    const n = typeof h === 'bigint' ? Number(h) : h;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) return undefined;
    sum += n;
  }
  return sum;
}

/**
 * Cells of the context a llama engine creates by default: `sequences` x min(training context, `contextMax`)
 * (llama-backend.ts; a model that names no training context counts `contextMax`).
 */
export function defaultContextCells(trainedContext: number, sequences: number, contextMax: number): number {
  const perSequence = trainedContext > 0 ? Math.min(trainedContext, contextMax) : contextMax;
  return sequences * perSequence;
}

/**
 * MiB of reserve for KV caches of `kvBytes` bytes (one per model a standby engine may be handed): the
 * largest, rounded up to whole MiB, plus STANDBY_RESERVE_MARGIN_MIB, at most MEMORY_RESERVE_MIB_MAX.
 */
export function standbyReserveMibFor(kvBytes: readonly number[]): number {
  const largest = Math.max(0, ...kvBytes);
  return Math.min(Math.ceil(largest / MiB) + STANDBY_RESERVE_MARGIN_MIB, MEMORY_RESERVE_MIB_MAX);
}
