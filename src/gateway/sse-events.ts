/**
 * What the proxy reads of an upstream's 2xx body as it passes through, without holding it:
 *
 * - `SseScanner`: an incremental Server-Sent Events parser (the WHATWG event-stream rules) that
 *   knows whether an event whose data is exactly `[DONE]` arrived, how many other data events came,
 *   and the `completion_tokens` of the usage object in the last event. Events may be split
 *   anywhere across chunks; lines end with CRLF, LF or CR; `data:` takes one optional space;
 *   comments and other fields are skipped. It copies nothing: a few counters carry over between
 *   chunks, and the usage is read at the end from the last event's data line, kept as references to
 *   its chunks (bounded by SSE_LINE_BYTES_MAX).
 * - With `responses` set, the same scanner reads OpenAI's Responses API stream instead: typed events
 *   (an `event:` line naming the type, then `data:` JSON carrying it as `type` too) and no `[DONE]`.
 *   The stream is complete at a `response.completed` or `response.incomplete` event, each
 *   `response.output_text.delta` is a token event (`deltas`: the first one is the first token), and
 *   the usage is `output_tokens` of the completed event's `response.usage`. The type comes from the
 *   `event:` line, else from the data (`"type":"..."`), so a server that sends data lines only is
 *   read too.
 * - `JsonFraming`: whether a JSON body arrived whole (every object and array closed, no string left
 *   open). It tracks nesting and string state only; it does not build or fully validate the value.
 *
 * Both scan with Buffer.indexOf (native, single bytes: a multi-byte needle costs far more) where
 * they can, and byte by byte only where they must: the first bytes of a line, and a JSON body's
 * structure outside strings.
 */

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const COLON = 0x3a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const DATA = Buffer.from('data');
const EVENT = Buffer.from('event');
const DONE = Buffer.from('[DONE]');
/**
 * The usage field. Inside a JSON string a quote is escaped (`\"`), so this exact byte sequence,
 * closing quote directly followed by a colon, only matches a real key.
 */
const NEEDLE = Buffer.from('"completion_tokens":');
/** The Responses API's usage field (`response.usage.output_tokens`); the same quoting argument. */
const OUTPUT_TOKENS_NEEDLE = Buffer.from('"output_tokens":');
/** Bytes of an `event:` value kept: the longest Responses event type is shorter; a longer one is no type. */
const EVENT_TYPE_BYTES_MAX = 64;

/** The Responses stream's event types the gateway acts on. */
export const RESPONSES_EVENT = {
  /** One text delta: a token event (the first one is the first token). */
  delta: 'response.output_text.delta',
  /** The response finished: the stream is complete; its `response.usage` has the counts. */
  completed: 'response.completed',
  /** The response stopped early (max_output_tokens): complete too, with usage. */
  incomplete: 'response.incomplete',
  /** The server's own error (a drain, a failed generation): not complete, but the error is told. */
  error: 'error',
  /** The response failed: the same. */
  failed: 'response.failed',
} as const;

/** `"type":"<t>"` and `"type": "<t>"` for each type: the data-line fallback when no `event:` line names it. */
const TYPE_NEEDLES: readonly (readonly [string, readonly Buffer[]])[] = Object.values(RESPONSES_EVENT).map(
  (t) => [t, [Buffer.from(`"type":"${t}"`), Buffer.from(`"type": "${t}"`)]] as const,
);
/** Digits read of a token count (a bound, not a real limit). */
const DIGITS_MAX = 12;
/** Bytes of one data line kept (references to its chunks) to read usage from; a longer one is not kept. */
export const SSE_LINE_BYTES_MAX = 64 * 1024;

/** Where the scanner is within the current line. */
enum Line {
  /** No byte of the line yet. */
  Start = 0,
  /** Reading a field name that so far matches `data`. */
  Field = 1,
  /** Just past `data:`: one space may follow. */
  ValueStart = 2,
  /** In a data value. */
  Value = 3,
  /** A comment or another field: skipped to the end of the line. */
  Skip = 4,
  /** Responses only: reading a field name that so far matches `event`. */
  EventField = 5,
  /** Just past `event:`: one space may follow. */
  EventValueStart = 6,
  /** In an event value (kept up to EVENT_TYPE_BYTES_MAX bytes). */
  EventValue = 7,
}

/**
 * Incremental SSE parser of one response body: feed every chunk to `push`, in order. Usage is read
 * once, on demand, from the last data line of the last event (where OpenAI-compatible servers put
 * the usage object): the scanner keeps a reference to that line's bytes, not a copy, and searches
 * nothing per chunk but line breaks.
 */
export class SseScanner {
  /** Dispatched data events other than `[DONE]` (the generated-token estimate without usage). */
  events = 0;
  /**
   * The stream is complete: an event whose data is exactly `[DONE]` was dispatched (a Responses
   * stream: a `response.completed` or `response.incomplete` event).
   */
  done = false;
  /** Responses: `response.output_text.delta` events dispatched (tokens, when usage is missing). */
  deltas = 0;
  /**
   * Responses: the last event dispatched was the server's own `error` or `response.failed`. The
   * stream is not complete, but its client was told why: the gateway appends no second error.
   */
  endedWithError = false;

  private line = Line.Start;
  /** Bytes of `data` matched in the field name. */
  private fieldMatched = 0;
  /** Bytes of the current data value so far. */
  private valueBytes = 0;
  /** The current data value so far is a prefix of `[DONE]`. */
  private valueIsDone = true;
  /** The last chunk ended with CR: an LF starting the next one belongs to it. */
  private afterCr = false;
  /** Data lines of the event being built. */
  private eventDataLines = 0;
  /** Its one data line is exactly `[DONE]`. */
  private eventDone = false;
  /** The current data line's value: a range of one chunk, or parts when it spans chunks. */
  private readonly cur = new LineBytes();
  /** The last data line of the event being built, and of the last dispatched event. */
  private readonly eventLine = new LineBytes();
  private readonly lastLine = new LineBytes();
  /** Cached positions in the chunk being pushed (-2: not searched yet; -1: none). */
  private lfAt = -2;
  private crAt = -2;
  /** Responses: the current event's `event:` value so far, and its length (past the max: no type). */
  private readonly typeBytes = Buffer.alloc(EVENT_TYPE_BYTES_MAX);
  private typeLength = 0;
  /** Responses: the `event:` value of the event being built, once its line ended. */
  private eventType: string | undefined = undefined;

  /**
   * `responses`: read a Responses API stream (module comment) rather than a chat or completion one.
   */
  constructor(readonly responses = false) {}

  /** Token events so far: data events for chat and completion streams, text deltas for Responses. */
  get tokenEvents(): number {
    return this.responses ? this.deltas : this.events;
  }

  /** Scans the next chunk of the body. */
  push(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    if (this.afterCr) {
      this.afterCr = false;
      if (n > 0 && chunk[0] === LF) i = 1;
    }
    this.lfAt = -2;
    this.crAt = -2;
    while (i < n) {
      // A blank line right after a line break (the end of most events): no search needed.
      if (chunk[i] === LF && this.line === Line.Start) {
        this.dispatch();
        i++;
        continue;
      }
      if (this.lfAt !== -1 && this.lfAt < i) this.lfAt = chunk.indexOf(LF, i);
      if (this.crAt !== -1 && this.crAt < i) this.crAt = chunk.indexOf(CR, i);
      const lf = this.lfAt;
      const cr = this.crAt;
      let end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (end < 0) end = n;
      if (end > i) this.segment(chunk, i, end);
      if (end === n) return;
      if (chunk[end] === CR) {
        if (end + 1 === n) this.afterCr = true;
        else if (chunk[end + 1] === LF) end++;
      }
      this.endLine();
      i = end + 1;
    }
  }

  /**
   * `completion_tokens` of the usage object in the last data line of the last dispatched event
   * (other than `[DONE]`), or undefined when it has none (or was longer than SSE_LINE_BYTES_MAX).
   */
  get usageTokens(): number | undefined {
    const line = this.lastLine;
    const needle = this.responses ? OUTPUT_TOKENS_NEEDLE : NEEDLE;
    if (line.chunk !== undefined) return readCount(line.chunk, line.start, line.end, needle);
    if (line.parts !== undefined) {
      const joined = Buffer.concat(line.parts);
      return readCount(joined, 0, joined.length, needle);
    }
    return undefined;
  }

  /**
   * What to write before an error event appended to this stream so that it parses as its own event:
   * '' at an event boundary, else the line breaks that end the partial line and event the upstream
   * left (the client then sees that partial event, which cannot be taken back, and then the error).
   */
  resync(): string {
    if (this.line !== Line.Start) return '\n\n';
    return this.eventDataLines > 0 ? '\n' : '';
  }

  /** Bytes [s, e) of the current line (no line break among them). */
  private segment(chunk: Buffer, s: number, e: number): void {
    let p = s;
    while (p < e && this.line !== Line.Value) {
      const c = chunk[p] as number;
      switch (this.line) {
        case Line.Start:
          if (c === DATA[0]) {
            this.line = Line.Field;
            this.fieldMatched = 1;
          } else if (this.responses && c === EVENT[0]) {
            this.line = Line.EventField;
            this.fieldMatched = 1;
          } else this.line = Line.Skip;
          p++;
          break;
        case Line.EventField:
          if (this.fieldMatched < EVENT.length && c === EVENT[this.fieldMatched]) this.fieldMatched++;
          else if (this.fieldMatched === EVENT.length && c === COLON) {
            this.line = Line.EventValueStart;
            this.typeLength = 0;
          } else this.line = Line.Skip;
          p++;
          break;
        case Line.EventValueStart:
          this.line = Line.EventValue;
          if (c === SPACE) p++;
          break;
        case Line.EventValue:
          // Short values (event types): byte by byte; one past the max is no type at all.
          if (this.typeLength < EVENT_TYPE_BYTES_MAX) this.typeBytes[this.typeLength] = c;
          this.typeLength++;
          p++;
          break;
        case Line.Field:
          if (this.fieldMatched < DATA.length && c === DATA[this.fieldMatched]) this.fieldMatched++;
          else if (this.fieldMatched === DATA.length && c === COLON) this.line = Line.ValueStart;
          else this.line = Line.Skip;
          p++;
          break;
        case Line.ValueStart:
          this.line = Line.Value;
          if (c === SPACE) p++;
          break;
        default:
          // Line.Skip: nothing more of this line matters.
          return;
      }
    }
    if (p < e) this.value(chunk, p, e);
  }

  /** Bytes [p, e) of a data value. */
  private value(chunk: Buffer, p: number, e: number): void {
    const before = this.valueBytes;
    // Only the first bytes can differ from `[DONE]`; its length is checked at the end of the line.
    if (this.valueIsDone && before < DONE.length) {
      const upto = Math.min(e, p + DONE.length - before);
      for (let k = p; k < upto; k++)
        if (chunk[k] !== DONE[before + (k - p)]) {
          this.valueIsDone = false;
          break;
        }
    }
    this.valueBytes = before + (e - p);
    const cur = this.cur;
    if (this.valueBytes > SSE_LINE_BYTES_MAX) cur.clear();
    else if (before === 0) cur.set(chunk, p, e);
    else if (cur.chunk !== undefined) {
      cur.parts = [cur.chunk.subarray(cur.start, cur.end), chunk.subarray(p, e)];
      cur.chunk = undefined;
    } else cur.parts?.push(chunk.subarray(p, e));
  }

  /** A line break: finish the line, and dispatch the event at a blank line. */
  private endLine(): void {
    const line = this.line;
    if (line === Line.Start) {
      this.dispatch();
      return;
    }
    if (line === Line.EventValue || line === Line.EventValueStart) {
      this.eventType =
        this.typeLength <= EVENT_TYPE_BYTES_MAX ? this.typeBytes.toString('latin1', 0, this.typeLength) : '';
    }
    const data =
      line === Line.Value ||
      line === Line.ValueStart ||
      (line === Line.Field && this.fieldMatched === DATA.length);
    if (data) {
      this.eventDataLines++;
      this.eventDone = this.eventDataLines === 1 && this.valueIsDone && this.valueBytes === DONE.length;
      this.eventLine.copy(this.cur);
    }
    this.line = Line.Start;
    this.fieldMatched = 0;
    this.valueBytes = 0;
    this.valueIsDone = true;
    this.cur.clear();
  }

  private dispatch(): void {
    if (this.eventDataLines === 0) {
      this.eventType = undefined;
      return;
    }
    if (this.responses) this.dispatchResponses();
    else if (this.eventDone) this.done = true;
    else {
      this.events++;
      this.lastLine.copy(this.eventLine);
    }
    this.eventDataLines = 0;
    this.eventDone = false;
    this.eventType = undefined;
    this.eventLine.clear();
  }

  /** A Responses event: its type from the `event:` line, else from its data. */
  private dispatchResponses(): void {
    const type = this.eventType ?? typeInData(this.eventLine);
    this.events++;
    this.lastLine.copy(this.eventLine);
    this.endedWithError = type === RESPONSES_EVENT.error || type === RESPONSES_EVENT.failed;
    if (type === RESPONSES_EVENT.delta) this.deltas++;
    else if (type === RESPONSES_EVENT.completed || type === RESPONSES_EVENT.incomplete) this.done = true;
  }
}

/**
 * Where a data line's value is: `chunk` [start, end), or `parts` when it spans chunks; neither when
 * it is not kept. Mutable, so that following lines costs no allocation per event.
 */
class LineBytes {
  chunk: Buffer | undefined = undefined;
  start = 0;
  end = 0;
  parts: Buffer[] | undefined = undefined;

  set(chunk: Buffer, start: number, end: number): void {
    this.chunk = chunk;
    this.start = start;
    this.end = end;
    this.parts = undefined;
  }

  copy(other: LineBytes): void {
    this.chunk = other.chunk;
    this.start = other.start;
    this.end = other.end;
    this.parts = other.parts;
  }

  clear(): void {
    this.chunk = undefined;
    this.parts = undefined;
  }
}

/**
 * The Responses event type a data line names (`"type":"..."` with a type the gateway acts on), or
 * undefined: a line not kept (past SSE_LINE_BYTES_MAX) names none.
 */
function typeInData(line: LineBytes): string | undefined {
  let buf: Buffer;
  let start: number;
  let end: number;
  if (line.chunk !== undefined) {
    buf = line.chunk;
    start = line.start;
    end = line.end;
  } else if (line.parts !== undefined) {
    buf = Buffer.concat(line.parts);
    start = 0;
    end = buf.length;
  } else return undefined;
  for (const [type, needles] of TYPE_NEEDLES)
    for (const needle of needles) {
      const at = buf.indexOf(needle, start);
      if (at >= 0 && at + needle.length <= end) return type;
    }
  return undefined;
}

/** The count after the last `needle` in buf [start, end) (spaces allowed before it), if any. */
function readCount(buf: Buffer, start: number, end: number, needle: Buffer = NEEDLE): number | undefined {
  if (end - start < needle.length) return undefined;
  const at = buf.lastIndexOf(needle, end - needle.length);
  if (at < start) return undefined;
  let i = at + needle.length;
  while (i < end && buf[i] === SPACE) i++;
  let n = 0;
  let digits = 0;
  for (; i < end && digits < DIGITS_MAX; i++, digits++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  return digits > 0 ? n : undefined;
}

/** Where a JSON framing check stands. */
enum Json {
  /** Before the first byte that is not whitespace. */
  Before = 0,
  /** Inside the top-level object or array. */
  Inside = 1,
  /** The top-level value closed. */
  Closed = 2,
  /** Not a complete JSON object or array (cut, unbalanced, or something after the value). */
  Broken = 3,
}

function isJsonSpace(c: number): boolean {
  return c === SPACE || c === LF || c === CR || c === 0x09;
}

/**
 * Whether a JSON body arrived whole: feed every chunk to `push`, then read `complete`. Constant
 * memory: a depth counter and whether the scan is inside a string (strings are skipped with
 * indexOf, escapes counted across chunk boundaries). Brackets are counted, not matched by kind.
 */
export class JsonFraming {
  private state = Json.Before;
  private depth = 0;
  private inString = false;
  /** Inside a string, the next byte is escaped (the last chunk ended with an odd run of `\`). */
  private escaped = false;

  /** The body so far is one complete JSON object or array (whitespace around it allowed). */
  get complete(): boolean {
    return this.state === Json.Closed;
  }

  push(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n && this.state !== Json.Broken) {
      if (this.inString) {
        i = this.skipString(chunk, i);
        continue;
      }
      const c = chunk[i++] as number;
      if (this.state === Json.Inside) this.structural(c);
      else if (!isJsonSpace(c)) {
        if (this.state === Json.Before && (c === 0x7b || c === 0x5b)) {
          this.state = Json.Inside;
          this.depth = 1;
        } else this.state = Json.Broken;
      }
    }
  }

  private structural(c: number): void {
    if (c === QUOTE) this.inString = true;
    else if (c === 0x7b || c === 0x5b) this.depth++;
    else if (c === 0x7d || c === 0x5d) {
      this.depth--;
      if (this.depth === 0) this.state = Json.Closed;
    }
  }

  /** From `i` inside a string: returns the index after its closing quote, or the chunk's end. */
  private skipString(chunk: Buffer, i: number): number {
    const n = chunk.length;
    for (;;) {
      const q = chunk.indexOf(QUOTE, i);
      if (q < 0) {
        this.escaped = oddBackslashes(chunk, i, n, this.escaped);
        return n;
      }
      const escapedQuote = oddBackslashes(chunk, i, q, this.escaped);
      this.escaped = false;
      if (!escapedQuote) {
        this.inString = false;
        return q + 1;
      }
      i = q + 1;
    }
  }
}

/**
 * Whether the byte at `end` is escaped: the run of backslashes just before it, within [start, end),
 * is odd, counting one more when the run reaches `start` and the byte at `start` was escaped itself.
 */
function oddBackslashes(chunk: Buffer, start: number, end: number, startEscaped: boolean): boolean {
  let k = end;
  while (k > start && chunk[k - 1] === BACKSLASH) k--;
  let run = end - k;
  if (k === start && startEscaped) run++;
  return run % 2 === 1;
}
