/**
 * vLLM's KV-event wire format (`vllm/distributed/kv_events.py`), encoded and decoded.
 *
 * One ZMQ PUB message is three frames: `[topic, seq, payload]`. `seq` is an unsigned 64-bit
 * big-endian counter that advances once per batch; `payload` is msgpack of `KVEventBatch`, a
 * msgspec struct encoded as an array: `[ts (float seconds), events, data_parallel_rank?]`
 * (msgspec's `omit_defaults` drops a trailing `None` rank, so older batches have two elements).
 *
 * Each event is a msgspec tagged struct. Up to vLLM PR #42892 (2026) events were `array_like`,
 * the tag first:
 *   - `["BlockStored", block_hashes, parent_block_hash|nil, token_ids, block_size, lora_id|nil,
 *      medium?, lora_name?, extra_keys?, group_idx?, ...]`
 *   - `["BlockRemoved", block_hashes, medium?, group_idx?, ...]`
 *   - `["AllBlocksCleared"]`
 * Since that PR each event is a map with the tag under `type` (`{type: 'BlockStored',
 * block_hashes, parent_block_hash, token_ids, block_size, ...}`). The decoder takes both shapes,
 * ignores fields it does not know (trailing array elements, unknown map keys), and also takes a
 * map-shaped batch (`{ts, events, data_parallel_rank}`).
 *
 * Block hashes are ints (older vLLM: 64-bit, signed or unsigned) or bytes (vLLM >= 0.10.2 with
 * sha256 hashing). Switchyard's block hashes are 32-bit (`core/hash.ts`), so every hash becomes
 * its low 32 bits: an int's two's-complement low word, bytes' last four bytes read big-endian.
 * The two agree: an int and its 8-byte big-endian encoding give the same number (llm-d's decoder
 * likewise reads the last 8 bytes of a bytes hash).
 */
import { Packr, Unpackr } from 'msgpackr';
import { SwitchyardError } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';

/** The three event tags vLLM publishes. */
export const KV_EVENT_TAGS = ['BlockStored', 'BlockRemoved', 'AllBlocksCleared'] as const;

/** How each event is laid out: vLLM's positional arrays (before PR #42892) or tagged maps (after). */
export type KvEventEncoding = 'array' | 'map';

/** What `encodeKvEventBatch` needs besides the events. */
export interface EncodeKvEventOptions {
  /** Tokens per block, written into every `BlockStored`. */
  readonly blockSize: number;
  /**
   * Token ids per event, aligned with `events` (`tokenIds[i]` for `events[i]`, `block_size` ids
   * per stored block). Missing entries encode as an empty list.
   */
  readonly tokenIds?: readonly (readonly number[] | undefined)[];
  /** Data-parallel rank; `null` (the default) omits it, as msgspec does for `None`. */
  readonly dpRank?: number | null;
  /** Event layout; `'array'` (the default) is what every vLLM consumer reads. */
  readonly encoding?: KvEventEncoding;
}

/** A decoded batch. */
export interface DecodedKvEventBatch {
  readonly tsSec: number;
  readonly events: KvEvent[];
  readonly dpRank: number | null;
}

/** The storage medium vLLM names for device memory. */
const MEDIUM_GPU = 'GPU';

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });

/** Encodes events as one vLLM `KVEventBatch` msgpack payload. */
export function encodeKvEventBatch(
  events: readonly KvEvent[],
  tsSec: number,
  opts: EncodeKvEventOptions,
): Buffer {
  const encoding = opts.encoding ?? 'array';
  const wire: unknown[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const tokens = opts.tokenIds?.[i] ?? [];
    wire[i] =
      encoding === 'array'
        ? eventAsArray(events[i]!, opts.blockSize, tokens)
        : eventAsMap(events[i]!, opts.blockSize, tokens);
  }
  const dpRank = opts.dpRank ?? null;
  const batch = dpRank === null ? [tsSec, wire] : [tsSec, wire, dpRank];
  return packr.pack(batch);
}

function eventAsArray(event: KvEvent, blockSize: number, tokenIds: readonly number[]): unknown[] {
  switch (event.type) {
    case 'BlockStored':
      return ['BlockStored', event.hashes, event.parentHash ?? null, tokenIds, blockSize, null, MEDIUM_GPU];
    case 'BlockRemoved':
      return ['BlockRemoved', event.hashes, MEDIUM_GPU];
    case 'AllBlocksCleared':
      return ['AllBlocksCleared'];
    default:
      return unreachable(event);
  }
}

function eventAsMap(event: KvEvent, blockSize: number, tokenIds: readonly number[]): Record<string, unknown> {
  switch (event.type) {
    case 'BlockStored':
      return {
        type: 'BlockStored',
        block_hashes: event.hashes,
        parent_block_hash: event.parentHash ?? null,
        token_ids: tokenIds,
        block_size: blockSize,
        lora_id: null,
        medium: MEDIUM_GPU,
        lora_name: null,
      };
    case 'BlockRemoved':
      return { type: 'BlockRemoved', block_hashes: event.hashes, medium: MEDIUM_GPU };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
    default:
      return unreachable(event);
  }
}

function unreachable(event: never): never {
  throw new SwitchyardError('SY_ERR_INTERNAL', `unknown KV event ${JSON.stringify(event)}`);
}

/**
 * Decodes one vLLM `KVEventBatch` payload (either event layout). Throws a `SwitchyardError`
 * (`SY_ERR_INVALID_ARGUMENT`) naming what was wrong when the payload is not a valid batch.
 */
export function decodeKvEventBatch(payload: Uint8Array): DecodedKvEventBatch {
  let raw: unknown;
  try {
    raw = unpackr.unpack(payload);
  } catch (error) {
    throw malformed(`not msgpack (${(error as Error).message})`);
  }
  let ts: unknown;
  let rawEvents: unknown;
  let rank: unknown;
  if (Array.isArray(raw)) {
    if (raw.length < 2) throw malformed(`batch array has ${raw.length} elements, expected at least 2`);
    [ts, rawEvents, rank] = raw;
  } else if (isRecord(raw)) {
    ts = raw['ts'];
    rawEvents = raw['events'];
    rank = raw['data_parallel_rank'];
  } else {
    throw malformed(`batch is ${describe(raw)}, expected an array [ts, events, dp_rank]`);
  }
  const tsSec = typeof ts === 'bigint' ? Number(ts) : ts;
  if (typeof tsSec !== 'number' || !Number.isFinite(tsSec))
    throw malformed(`ts is ${describe(ts)}, expected a number`);
  if (!Array.isArray(rawEvents)) throw malformed(`events is ${describe(rawEvents)}, expected an array`);
  const events: KvEvent[] = new Array(rawEvents.length);
  for (let i = 0; i < rawEvents.length; i++) events[i] = decodeEvent(rawEvents[i], i);
  return { tsSec, events, dpRank: decodeRank(rank) };
}

function decodeRank(rank: unknown): number | null {
  if (rank === null || rank === undefined) return null;
  const n = typeof rank === 'bigint' ? Number(rank) : rank;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw malformed(`data_parallel_rank is ${describe(rank)}, expected an int or nil`);
  }
  return n;
}

function decodeEvent(raw: unknown, index: number): KvEvent {
  let tag: unknown;
  let hashes: unknown;
  let parent: unknown;
  if (Array.isArray(raw)) {
    [tag, hashes, parent] = raw;
  } else if (isRecord(raw)) {
    tag = raw['type'];
    hashes = raw['block_hashes'];
    parent = raw['parent_block_hash'];
  } else {
    throw malformed(`events[${index}] is ${describe(raw)}, expected a tagged array or map`);
  }
  switch (tag) {
    case 'BlockStored':
      return {
        type: 'BlockStored',
        hashes: decodeHashes(hashes, index),
        parentHash: parent === null || parent === undefined ? undefined : decodeHash(parent, index),
      };
    case 'BlockRemoved':
      return { type: 'BlockRemoved', hashes: decodeHashes(hashes, index) };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
    default:
      throw malformed(
        `events[${index}] has tag ${describe(tag)}, expected one of ${KV_EVENT_TAGS.join(', ')}`,
      );
  }
}

function decodeHashes(raw: unknown, index: number): number[] {
  if (!Array.isArray(raw))
    throw malformed(`events[${index}].block_hashes is ${describe(raw)}, expected an array`);
  const out: number[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = decodeHash(raw[i], index);
  return out;
}

function decodeHash(raw: unknown, index: number): number {
  const hash = blockHashTo32(raw);
  if (hash === undefined) {
    throw malformed(`events[${index}] has block hash ${describe(raw)}, expected an int or non-empty bytes`);
  }
  return hash;
}

const TWO_POW_32 = 0x1_0000_0000;

/**
 * A wire block hash as Switchyard's 32-bit hash, or `undefined` when it is neither an integer nor
 * non-empty bytes. Ints keep their low 32 bits (two's complement for negatives); bytes give their
 * last four bytes read big-endian (zero-padded on the left when shorter).
 */
export function blockHashTo32(raw: unknown): number | undefined {
  if (typeof raw === 'number') {
    if (!Number.isInteger(raw)) return undefined;
    if (raw >= 0 && raw < TWO_POW_32) return raw;
    if (Number.isSafeInteger(raw)) return ((raw % TWO_POW_32) + TWO_POW_32) % TWO_POW_32;
    return Number(BigInt.asUintN(32, BigInt(raw)));
  }
  if (typeof raw === 'bigint') return Number(BigInt.asUintN(32, raw));
  if (raw instanceof Uint8Array) {
    if (raw.length === 0) return undefined;
    let h = 0;
    for (let i = Math.max(0, raw.length - 4); i < raw.length; i++) h = h * 256 + raw[i]!;
    return h;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)
  );
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${String(value)}`;
}

function malformed(what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `malformed vLLM KV event batch: ${what}`, {
    param: 'payload',
    expected: 'msgpack [ts, events, dp_rank]',
  });
}

/** Encodes a batch sequence number as vLLM does: 8 bytes, big-endian, unsigned. */
export function encodeSeq(seq: bigint): Buffer {
  const buf = Buffer.allocUnsafe(8);
  buf.writeBigUInt64BE(BigInt.asUintN(64, seq));
  return buf;
}

/** Decodes an 8-byte big-endian sequence frame, or `undefined` when the frame is not 8 bytes. */
export function decodeSeq(frame: Uint8Array): bigint | undefined {
  if (frame.length !== 8) return undefined;
  return Buffer.from(frame.buffer, frame.byteOffset, 8).readBigUInt64BE(0);
}
