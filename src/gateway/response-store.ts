/**
 * The gateway's store of Responses API answers (`POST /v1/responses` with `store` not false), so a
 * client's next turn may name `previous_response_id` and land on any instance: the gateway expands it
 * to the whole conversation before routing, and answers `GET`/`DELETE /v1/responses/{id}` and
 * `GET /v1/responses/{id}/input_items` itself. An engine's own store cannot be promised behind a
 * router (the next turn may go elsewhere); SGLang's model gateway keeps its store in the router too.
 *
 * In memory, per tenant (a response stored under one API key is not found under another), bounded by
 * count and by bytes with least-recently-used eviction, and by an optional age on the gateway's clock.
 * Lost on restart.
 */
import { StringDecoder } from 'node:string_decoder';
import { SwitchyardError } from '../core/errors.ts';

/** One stored answer: what `GET /v1/responses/{id}` and the next turn's expansion read. */
export interface StoredResponse {
  readonly id: string;
  /** The response object as the client was answered (`store: true`). */
  readonly response: Record<string, unknown>;
  /** The whole conversation the engine was sent as input (a chained turn's expanded input), as items. */
  readonly inputItems: readonly unknown[];
  /** The answer's output items. */
  readonly outputItems: readonly unknown[];
  /** What it is counted as against the byte bound: its heap estimate (`heldBytesOf`). */
  readonly bytes: number;
  /** When it was stored, on the gateway's clock. */
  readonly storedAtMs: number;
}

/** The store's bounds (config `limits.responseStore*`). */
export interface ResponseStoreLimits {
  /** Most responses held, all tenants together; 0 turns the store off. */
  readonly countMax: number;
  /** Most bytes held, all tenants together; one larger response is not stored. */
  readonly bytesMax: number;
  /** Age past which a response is gone; 0: no age bound (count and bytes only). */
  readonly ttlMs: number;
}

/** What the store has done, for /stats. */
export interface ResponseStoreStats {
  count: number;
  bytes: number;
  stored: number;
  evicted: number;
  expired: number;
  /** Answers not stored: larger than the byte bound, or too large to capture. */
  tooLarge: number;
}

/** A bounded, tenant-scoped, least-recently-used store of Responses API answers. */
export class ResponseStore {
  /** Insertion order is recency order: a read moves an entry to the end. Keyed tenant NUL id. */
  private readonly entries = new Map<string, StoredResponse>();
  /**
   * The items with an `id` (input and output) that `item_reference` inputs name, keyed tenant NUL item
   * id: the entries holding one (a chained turn holds its predecessors' items too), in the order
   * stored, each with its item. Bounded with `entries`: an entry's removal takes its items out.
   */
  private readonly items = new Map<string, Map<string, unknown>>();
  /** Each entry's keys in `items`, so its removal finds them. */
  private readonly itemKeysOf = new Map<string, string[]>();
  readonly stats: ResponseStoreStats = { count: 0, bytes: 0, stored: 0, evicted: 0, expired: 0, tooLarge: 0 };

  constructor(
    readonly limits: ResponseStoreLimits,
    private readonly nowMs: () => number,
  ) {}

  /** Whether anything is ever stored (countMax > 0). */
  get enabled(): boolean {
    return this.limits.countMax > 0;
  }

  /** Stores `entry` for `tenant` (replacing one of the same id), evicting the least recent to fit. */
  put(tenant: string, entry: Omit<StoredResponse, 'storedAtMs'>): boolean {
    if (!this.enabled || entry.bytes > this.limits.bytesMax) {
      this.stats.tooLarge += this.enabled ? 1 : 0;
      return false;
    }
    const key = keyOf(tenant, entry.id);
    this.remove(key);
    while (
      this.entries.size > 0 &&
      (this.entries.size >= this.limits.countMax || this.stats.bytes + entry.bytes > this.limits.bytesMax)
    ) {
      const oldest = this.entries.keys().next().value as string;
      this.remove(oldest);
      this.stats.evicted++;
    }
    this.entries.set(key, { ...entry, storedAtMs: this.nowMs() });
    this.indexItems(tenant, key, entry);
    this.stats.count = this.entries.size;
    this.stats.bytes += entry.bytes;
    this.stats.stored++;
    return true;
  }

  /** The tenant's response `id` (now the most recently used), or undefined: never stored, evicted, expired. */
  get(tenant: string, id: string): StoredResponse | undefined {
    return this.live(keyOf(tenant, id));
  }

  /**
   * The item with this `id` (an input or output item) in one of the tenant's stored responses, the
   * most recently stored holding it first (that response now the most recently used); undefined when
   * none live holds it.
   */
  item(tenant: string, id: string): unknown {
    const holders = this.items.get(keyOf(tenant, id));
    if (holders === undefined) return undefined;
    // A copy: an expired holder is removed from `holders` while this walks it.
    for (const [key, item] of [...holders].reverse()) if (this.live(key) !== undefined) return item;
    return undefined;
  }

  /** Items held (for tests): the index is bounded with the entries. */
  get itemCount(): number {
    return this.items.size;
  }

  private live(key: string): StoredResponse | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.limits.ttlMs > 0 && this.nowMs() - entry.storedAtMs >= this.limits.ttlMs) {
      this.remove(key);
      this.stats.expired++;
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  /** Deletes the tenant's response `id`; false when it holds none of that id. */
  delete(tenant: string, id: string): boolean {
    if (this.get(tenant, id) === undefined) return false;
    this.remove(keyOf(tenant, id));
    return true;
  }

  private indexItems(tenant: string, key: string, entry: Omit<StoredResponse, 'storedAtMs'>): void {
    const itemKeys: string[] = [];
    for (const item of [...entry.inputItems, ...entry.outputItems]) {
      if (!isObject(item) || typeof item['id'] !== 'string') continue;
      const itemKey = keyOf(tenant, item['id']);
      const holders = this.items.get(itemKey) ?? new Map<string, unknown>();
      holders.set(key, item);
      this.items.set(itemKey, holders);
      itemKeys.push(itemKey);
    }
    if (itemKeys.length > 0) this.itemKeysOf.set(key, itemKeys);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    for (const itemKey of this.itemKeysOf.get(key) ?? []) {
      const holders = this.items.get(itemKey);
      holders?.delete(key);
      if (holders?.size === 0) this.items.delete(itemKey);
    }
    this.itemKeysOf.delete(key);
    this.stats.bytes -= entry.bytes;
    this.stats.count = this.entries.size;
  }
}

function keyOf(tenant: string, id: string): string {
  return `${tenant}\u0000${id}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A Responses `input` as items: a string is one user message, as OpenAI lists it. */
export function inputItemsOf(input: unknown): unknown[] {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }];
  return Array.isArray(input) ? input : [];
}

/** OpenAI's answer to a `previous_response_id` it holds none of (400, its message). */
export function previousNotFound(id: string): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND',
    `Previous response with id '${id}' not found.`,
    {
      param: 'previous_response_id',
    },
  );
}

/**
 * OpenAI's answer to an `item_reference` input naming an item it holds none of: 404, its message
 * ("Item with id '...' not found."), `param` the input item's index.
 */
export function itemNotFound(id: string, index: number): SwitchyardError {
  return new SwitchyardError('SY_ERR_ITEM_NOT_FOUND', `Item with id '${id}' not found.`, {
    param: `input[${index}]`,
  });
}

/**
 * `body` (a Responses request) made self-contained from `store`, so routing sees the whole
 * conversation and any engine gets a body it can serve alone:
 * - `previous_response_id`: the previous response's input items, then its output items, then this
 *   request's input, as `input`; the field removed. `instructions` are not carried over (OpenAI's
 *   rule: only this request's apply).
 * - each `item_reference` input item (`{"type": "item_reference", "id"}`, what the Vercel AI SDK
 *   sends for earlier answers while `store` is true) replaced by the item of that id in one of the
 *   tenant's stored responses (an output item, or an input item sent with an id).
 *
 * Undefined when the body needs neither (or is no JSON object: the ordinary parse answers that).
 * With the store off, item references pass as sent (the engine answers them). Throws 400 for an id
 * that is no string, or a `previous_response_id` this tenant has not stored; 404 for a referenced
 * item it holds none of; 413 when the body comes to more than `bytesMax` (limits.bodyBytesMax, the
 * bound a body sent whole has).
 */
export function expandPrevious(
  body: Buffer,
  tenant: string,
  store: ResponseStore,
  bytesMax: number,
): Buffer | undefined {
  const expanded = expandedBody(body, tenant, store);
  if (expanded !== undefined && expanded.body.length > bytesMax) {
    const what =
      expanded.previousId === undefined
        ? 'its item_reference inputs expand'
        : `the conversation previous_response_id '${expanded.previousId}' expands`;
    throw new SwitchyardError(
      'SY_ERR_REQUEST_TOO_LARGE',
      `${what} to ${expanded.body.length} bytes, over limits.bodyBytesMax ${bytesMax}; start a new conversation`,
      { param: expanded.previousId === undefined ? 'input' : 'previous_response_id' },
    );
  }
  if (expanded?.previousId !== undefined) previousOf.set(expanded.body, expanded.previousId);
  return expanded?.body;
}

/**
 * The `previous_response_id` an expanded body was made from (expandPrevious), which the engine no
 * longer sees: the stored and answered response says it, as OpenAI's does. Weak: gone with the body.
 */
const previousOf = new WeakMap<Buffer, string>();

function expandedBody(
  body: Buffer,
  tenant: string,
  store: ResponseStore,
): { body: Buffer; previousId: string | undefined } | undefined {
  // Most bodies name neither: no parse for them.
  const references = store.enabled && body.includes('"item_reference"');
  if (!references && !body.includes('"previous_response_id"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(parsed)) return undefined;
  const id = parsed['previous_response_id'];
  const resolved = references ? resolvedReferences(parsed['input'], tenant, store) : undefined;
  if (id === undefined || id === null) {
    if (resolved === undefined) return undefined;
    return { body: Buffer.from(JSON.stringify({ ...parsed, input: resolved })), previousId: undefined };
  }
  if (typeof id !== 'string' || id.length === 0)
    throw new SwitchyardError(
      'SY_ERR_INVALID_ARGUMENT',
      'invalid request body: previous_response_id: expected a non-empty string',
      { param: 'previous_response_id' },
    );
  const previous = store.enabled ? store.get(tenant, id) : undefined;
  if (previous === undefined) throw previousNotFound(id);
  const { previous_response_id: _named, ...rest } = parsed;
  const input = resolved ?? inputItemsOf(parsed['input']);
  rest['input'] = [...previous.inputItems, ...previous.outputItems, ...input];
  return { body: Buffer.from(JSON.stringify(rest)), previousId: id };
}

/**
 * `input` with each `item_reference` item replaced by the stored item it names, or undefined when it
 * has none. Throws 400 for a reference whose id is no non-empty string, 404 for one not held.
 */
function resolvedReferences(input: unknown, tenant: string, store: ResponseStore): unknown[] | undefined {
  if (!Array.isArray(input)) return undefined;
  let resolved: unknown[] | undefined;
  for (let i = 0; i < input.length; i++) {
    const item: unknown = input[i];
    if (!isObject(item) || item['type'] !== 'item_reference') continue;
    const id = item['id'];
    if (typeof id !== 'string' || id.length === 0)
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `invalid request body: input[${i}].id: expected a non-empty string`,
        { param: `input[${i}].id` },
      );
    const stored = store.item(tenant, id);
    if (stored === undefined) throw itemNotFound(id, i);
    resolved ??= [...input];
    resolved[i] = stored;
  }
  return resolved;
}

/** A response status whose answer is stored (a failed or cancelled one is not: there is nothing to continue). */
function storable(response: Record<string, unknown>): boolean {
  return (
    typeof response['id'] === 'string' &&
    (response['status'] === 'completed' || response['status'] === 'incomplete')
  );
}

/**
 * One `POST /v1/responses` exchange's capture of its answer for the store (proxy.ts feeds it): a JSON
 * answer is held whole (at most `bytesMax`) and rewritten to say `store: true` when stored; a stream's
 * `response.completed` (or `response.incomplete`) event is read as it passes, the stream itself
 * untouched and not delayed (its events say what the engine said of `store`).
 */
export class ResponseCapture {
  private sse: SseFinalEvent | undefined = undefined;

  constructor(
    private readonly store: ResponseStore,
    private readonly tenant: string,
    /** The request body as forwarded (a chained turn's expanded one). */
    private readonly body: Buffer,
    /** The most bytes of an answer held to store it. */
    readonly bytesMax: number,
  ) {}

  /** A 2xx answer begins (each attempt anew). */
  begin(sse: boolean): void {
    this.sse = sse ? new SseFinalEvent(this.bytesMax) : undefined;
  }

  /** A streamed answer's bytes as they pass. */
  sseChunk(chunk: Buffer): void {
    this.sse?.push(chunk);
  }

  /** A streamed answer completed: stores its final response, if it had one. */
  sseEnded(): void {
    const response = this.sse?.response();
    if (response !== undefined) this.keep(response, this.sse?.bytes ?? 0);
  }

  /** A JSON answer arrived whole: the bytes to send instead (saying `store: true`) when it was stored. */
  json(whole: Buffer): Buffer | undefined {
    let response: unknown;
    try {
      response = JSON.parse(whole.toString('utf8'));
    } catch {
      return undefined;
    }
    if (!isObject(response) || !this.keep(response, whole.length)) return undefined;
    return Buffer.from(JSON.stringify(response));
  }

  /** The answer was larger than the capture holds: not stored. */
  tooLarge(): void {
    this.store.stats.tooLarge++;
  }

  /** Stores `response` (marked `store: true`) when the request asked and its status allows. */
  private keep(response: Record<string, unknown>, answerBytes: number): boolean {
    if (!storable(response)) return false;
    let request: unknown;
    try {
      request = JSON.parse(this.body.toString('utf8'));
    } catch {
      return false;
    }
    if (!isObject(request) || request['store'] === false) return false;
    response['store'] = true;
    const previousId = previousOf.get(this.body);
    if (previousId !== undefined) response['previous_response_id'] = previousId;
    const outputItems = Array.isArray(response['output']) ? (response['output'] as unknown[]) : [];
    const inputItems = inputItemsOf(request['input']);
    return this.store.put(this.tenant, {
      id: response['id'] as string,
      response,
      inputItems,
      outputItems,
      bytes: heldBytesOf(this.body.length + answerBytes, [...inputItems, ...outputItems]),
    });
  }
}

/** Heap bytes a stored entry is charged per byte of its JSON: the parsed objects, not the text. */
const HELD_BYTES_PER_JSON_BYTE = 2;
/** Heap bytes a stored entry is charged whatever its size: its maps' entries, keys and wrapper objects. */
const HELD_BYTES_PER_ENTRY = 4096;
/** Heap bytes each indexed item (one with a string id) is charged: its index key, holder map and entry. */
const HELD_BYTES_PER_INDEXED_ITEM = 320;

/**
 * What an entry is counted as against `limits.responseStoreBytesMax`: an estimate of the heap it
 * holds, not its JSON length. Parsed, the JSON takes about 1.5x its text, and each item with an id
 * adds an index entry (a chained turn re-sends, and so re-indexes, every earlier item): counting the
 * JSON alone let an item-heavy load hold 5-7x the bound (measured by heap after GC, 2,000 entries).
 * The constants round those measurements up.
 */
export function heldBytesOf(jsonBytes: number, items: readonly unknown[]): number {
  let indexed = 0;
  for (const item of items) if (isObject(item) && typeof item['id'] === 'string') indexed++;
  return HELD_BYTES_PER_JSON_BYTE * jsonBytes + HELD_BYTES_PER_ENTRY + HELD_BYTES_PER_INDEXED_ITEM * indexed;
}

/**
 * Reads a Responses stream's final event (`response.completed` / `response.incomplete`) as its bytes
 * pass: only the event in progress is held, at most `bytesMax` characters (a larger one is dropped).
 */
class SseFinalEvent {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  /** Where the next search for a blank line starts: `pending` before it holds none (one large event
   * in many chunks is scanned once, not once per chunk). */
  private scanned = 0;
  private final: string | undefined = undefined;
  /** Characters of the final event's data (its share of the store's byte bound). */
  bytes = 0;

  constructor(private readonly bytesMax: number) {}

  push(chunk: Buffer): void {
    this.pending += this.decoder.write(chunk);
    for (;;) {
      const end = this.pending.indexOf('\n\n', this.scanned);
      if (end < 0) break;
      const event = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 2);
      this.scanned = 0;
      if (event.includes('response.completed') || event.includes('response.incomplete')) this.final = event;
    }
    // The last character may be the first of a blank line the next chunk completes.
    this.scanned = Math.max(0, this.pending.length - 1);
    // One event larger than the bound is not held; what follows realigns at the next blank line.
    if (this.pending.length > this.bytesMax) {
      this.pending = '';
      this.scanned = 0;
    }
  }

  /** The final event's response object, if the stream carried one. */
  response(): Record<string, unknown> | undefined {
    if (this.final === undefined) return undefined;
    const data = this.final
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    this.bytes = data.length;
    try {
      const event: unknown = JSON.parse(data);
      if (!isObject(event)) return undefined;
      const type = event['type'];
      if (type !== 'response.completed' && type !== 'response.incomplete') return undefined;
      return isObject(event['response']) ? event['response'] : undefined;
    } catch {
      return undefined;
    }
  }
}
