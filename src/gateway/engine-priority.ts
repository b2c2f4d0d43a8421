/**
 * The gateway's request priority in each engine's own convention.
 *
 * Switchyard's `priority` (admission bands, the twin's engine core): HIGHER is more important; the
 * Batch API's requests carry -1 (BATCH_PRIORITY). Engines disagree:
 * - vLLM (`--scheduling-policy priority`; SamplingParams and the request's `priority`): LOWER is
 *   served first, absent means 0, and without that flag a non-zero value is refused ("Got priority
 *   N but Priority scheduling is not enabled", vllm/v1/engine/processor.py). The built-in engines
 *   (`sim`, `llama`) take vLLM's sign and accept any integer under either policy.
 * - SGLang (`--enable-priority-scheduling`): HIGHER first by default
 *   (`--schedule-low-priority-values-first` flips it), and a request without `priority` is ranked
 *   last (its scheduler gives it the least important value: python/sglang/srt/managers/scheduler.py
 *   `_set_or_validate_priority`), so it must always be sent.
 *
 * A backend declares its engine's convention (config `enginePriority`, defaulted by type by
 * `enginePriorityOf`) and the gateway rewrites the forwarded body's top-level `priority` to the
 * request's effective priority (after the tenant rule and the batch band) in that convention.
 * `none`: the engine does not schedule by priority; the body goes as sent. The bytes are edited in
 * place (one value replaced, or one member inserted), never re-serialised, so every other field
 * (integers past 2^53 included) reaches the engine as the client wrote it; a body that needs no
 * change is the client's own Buffer (the common case: priority 0 and no `priority` in the body).
 */

/** The orders an engine's scheduler may read a body's `priority` in. */
export const ENGINE_PRIORITY_ORDERS = ['none', 'lower-first', 'higher-first'] as const;
export type EnginePriorityOrder = (typeof ENGINE_PRIORITY_ORDERS)[number];

/**
 * A backend's order: its configured one, else its type's default: `lower-first` for the built-in
 * engines (vLLM's sign; they take any integer, so sending one costs nothing under fcfs), `none` for
 * the rest (a vLLM without `--scheduling-policy priority` refuses a non-zero priority; SGLang only
 * orders by it with `--enable-priority-scheduling`; llama.cpp and hosted APIs have no such field).
 */
export function enginePriorityOf(config: {
  readonly type: string;
  readonly enginePriority?: EnginePriorityOrder | undefined;
}): EnginePriorityOrder {
  if (config.enginePriority !== undefined) return config.enginePriority;
  return config.type === 'sim' || config.type === 'llama' ? 'lower-first' : 'none';
}

/**
 * The body `priority` an engine of `order` must see for the gateway's `priority`: a number, or
 * undefined where an absent field (or 0) already means it (`none`, and vLLM's 0).
 */
export function enginePriorityValue(order: EnginePriorityOrder, priority: number): number | undefined {
  switch (order) {
    case 'none':
      return undefined;
    case 'lower-first':
      return priority === 0 ? undefined : -priority;
    case 'higher-first':
      return priority === 0 ? 0 : priority;
    default: {
      const never: never = order;
      return never;
    }
  }
}

/**
 * The top-level `priority` each client body was parsed with (null: none), noted where the gateway
 * parses it (request-build.ts bodyFields, parse-pool.ts), so the common case needs no look at the
 * bytes. Keyed by the body Buffer itself: it goes upstream as that same object.
 */
const PARSED_PRIORITY = new WeakMap<Buffer, number | null>();
/** Values at or past this were clamped by a parse (responses-fields.ts): not the body's own. */
const NOTED_ABS_MAX = 1_000_000;

/** Notes the top-level `priority` `body` was parsed with (undefined: it has none). */
export function noteBodyPriority(body: Buffer, priority: number | undefined): void {
  PARSED_PRIORITY.set(body, priority ?? null);
}

const PRIORITY_KEY = Buffer.from('"priority"');
// A key may spell a letter as \u00XX: p r i o t y are \u0070 \u0072 \u0069 \u006f \u0074 \u0079.
const ESCAPED_6 = Buffer.from('\\u006');
const ESCAPED_7 = Buffer.from('\\u007');

/**
 * `body` with its top-level `priority` set to what an engine of `order` must see for the gateway's
 * `priority` (enginePriorityValue); `body` itself when it already says that. `body` is a JSON
 * object the gateway has parsed and accepted; one it cannot walk goes unchanged.
 */
export function bodyWithEnginePriority(body: Buffer, order: EnginePriorityOrder, priority: number): Buffer {
  if (order === 'none') return body;
  const wanted = enginePriorityValue(order, priority);
  const noted = PARSED_PRIORITY.get(body);
  if (noted === null) return wanted === undefined ? body : insertMember(body, wanted);
  if (noted !== undefined && Math.abs(noted) < NOTED_ABS_MAX && noted === (wanted ?? 0)) return body;
  // Not parsed here (a P/D leg's rebuilt body), or a value to replace: look at the bytes.
  const mayHaveKey =
    body.indexOf(PRIORITY_KEY) !== -1 || body.indexOf(ESCAPED_6) !== -1 || body.indexOf(ESCAPED_7) !== -1;
  if (!mayHaveKey) return wanted === undefined ? body : insertMember(body, wanted);
  const span = topLevelMember(body, 'priority');
  if (span === 'unreadable') return body;
  if (span === undefined) return wanted === undefined ? body : insertMember(body, wanted);
  const current = Number(body.toString('latin1', span.start, span.end));
  if (current === (wanted ?? 0)) return body;
  return Buffer.concat([
    body.subarray(0, span.start),
    Buffer.from(String(wanted ?? 0)),
    body.subarray(span.end),
  ]);
}

/** `body` with `"priority":value` as its object's first member. */
function insertMember(body: Buffer, value: number): Buffer {
  const open = skipWs(body, bomLength(body));
  if (body[open] !== 0x7b) return body;
  const empty = body[skipWs(body, open + 1)] === 0x7d;
  return Buffer.concat([
    body.subarray(0, open + 1),
    Buffer.from(`"priority":${value}${empty ? '' : ','}`),
    body.subarray(open + 1),
  ]);
}

/** Byte span of a member's value. */
interface Span {
  readonly start: number;
  readonly end: number;
}

/**
 * The value span of the LAST top-level member named `name` (JSON.parse and Python's json both keep
 * the last of duplicate keys), undefined when there is none, 'unreadable' when `body` is not an
 * object this walk understands.
 */
function topLevelMember(body: Buffer, name: string): Span | undefined | 'unreadable' {
  let i = skipWs(body, bomLength(body));
  if (body[i] !== 0x7b) return 'unreadable';
  i = skipWs(body, i + 1);
  if (body[i] === 0x7d) return undefined;
  let found: Span | undefined;
  for (;;) {
    if (body[i] !== 0x22) return 'unreadable';
    const keyEnd = stringEnd(body, i);
    if (keyEnd < 0) return 'unreadable';
    const key = keyOf(body, i, keyEnd);
    i = skipWs(body, keyEnd);
    if (body[i] !== 0x3a) return 'unreadable';
    const start = skipWs(body, i + 1);
    const end = valueEnd(body, start);
    if (end < 0) return 'unreadable';
    if (key === name) found = { start, end };
    i = skipWs(body, end);
    if (body[i] === 0x2c) {
      i = skipWs(body, i + 1);
      continue;
    }
    return body[i] === 0x7d ? found : 'unreadable';
  }
}

/** The key whose string token spans [start, end) (quotes included), its escapes decoded. */
function keyOf(body: Buffer, start: number, end: number): string | undefined {
  const raw = body.toString('utf8', start, end);
  if (!raw.includes('\\')) return raw.slice(1, -1);
  try {
    return JSON.parse(raw) as string;
  } catch {
    return undefined;
  }
}

/**
 * 3 when `body` opens with a UTF-8 BOM, else 0: the gateway reads such a body (request-build.ts
 * jsonText) and so do the engines (Python's json.loads, the built-in engines), so its priority is
 * edited past the BOM, which stays.
 */
function bomLength(body: Buffer): number {
  return body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
}

function skipWs(body: Buffer, i: number): number {
  while (i < body.length) {
    const c = body[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/** The index just past the string token opening at `i` (a `"`), or -1. */
function stringEnd(body: Buffer, i: number): number {
  let at = i + 1;
  for (;;) {
    const q = body.indexOf(0x22, at);
    if (q < 0) return -1;
    let backslashes = 0;
    while (body[q - 1 - backslashes] === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return q + 1;
    at = q + 1;
  }
}

/** The index just past the JSON value starting at `i`, or -1. */
function valueEnd(body: Buffer, i: number): number {
  const c = body[i];
  if (c === 0x22) return stringEnd(body, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (i < body.length) {
      const b = body[i];
      if (b === 0x22) {
        i = stringEnd(body, i);
        if (i < 0) return -1;
        continue;
      }
      if (b === 0x7b || b === 0x5b) depth++;
      else if (b === 0x7d || b === 0x5d) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  // A number, true, false or null: up to the next structural character or whitespace.
  const start = i;
  while (i < body.length) {
    const b = body[i];
    if (b === 0x2c || b === 0x7d || b === 0x5d || b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) break;
    i++;
  }
  return i > start ? i : -1;
}
