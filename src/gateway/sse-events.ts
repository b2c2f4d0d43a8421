/**
 * What the proxy reads of an upstream's 2xx body as it passes through, without holding it:
 *
 * - `SseScanner`: an incremental Server-Sent Events parser (the WHATWG event-stream rules) that
 *   knows whether an event whose data is exactly `[DONE]` arrived, how many other data events came,
 *   and the `completion_tokens` of the last event that carries a usage object. Events may be split
 *   anywhere across chunks; lines end with CRLF, LF or CR; `data:` takes one optional space;
 *   comments and other fields are skipped. It keeps no line buffer: a few counters and a matcher
 *   state carry over between chunks, so its memory is constant whatever the line length.
 * - `JsonFraming`: whether a JSON body arrived whole (every object and array closed, no string left
 *   open). It tracks nesting and string state only; it does not build or fully validate the value.
 *
 * Both scan with Buffer.indexOf (native) where they can and byte by byte only where they must: the
 * first bytes of a line, the bytes around a chunk boundary, and a JSON body's structure.
 */

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const COLON = 0x3a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const DATA = Buffer.from('data');
const DONE = Buffer.from('[DONE]');
/**
 * The usage field. Inside a JSON string a quote is escaped (`\"`), so this exact byte sequence,
 * closing quote directly followed by a colon, only matches a real key.
 */
const NEEDLE = Buffer.from('"completion_tokens":');
/** KMP failure table of NEEDLE: the matcher state to fall back to after a mismatch. */
const NEEDLE_FAIL = failureTable(NEEDLE);
/** Digits read of a token count (a bound, not a real limit). */
const DIGITS_MAX = 12;

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
}

function failureTable(needle: Buffer): Uint8Array {
  const fail = new Uint8Array(needle.length);
  let k = 0;
  for (let i = 1; i < needle.length; i++) {
    while (k > 0 && needle[i] !== needle[k]) k = fail[k - 1] as number;
    if (needle[i] === needle[k]) k++;
    fail[i] = k;
  }
  return fail;
}

/** Incremental SSE parser of one response body: feed every chunk to `push`, in order. */
export class SseScanner {
  /** Dispatched data events other than `[DONE]` (the generated-token estimate without usage). */
  events = 0;
  /** An event whose data is exactly `[DONE]` was dispatched. */
  done = false;
  /** `completion_tokens` of the last dispatched event that had one. */
  usageTokens: number | undefined = undefined;

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
  private eventUsage: number | undefined = undefined;
  /** Bytes of NEEDLE matched at the end of what was scanned (it may continue in the next chunk). */
  private needleMatched = 0;
  /** Digits of a token count read so far, or -1 when not reading one. */
  private digits = -1;
  private number = 0;
  /** Cached positions in the chunk being pushed (-2: not searched yet; -1: none). */
  private lfAt = -2;
  private crAt = -2;
  private needleAt = -2;

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
    this.needleAt = -2;
    while (i < n) {
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
          } else this.line = Line.Skip;
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
        case Line.Skip:
          return;
        default:
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
    let q = p;
    // A count or a match begun in the previous chunk is finished byte by byte.
    if (this.needleMatched > 0 || this.digits >= 0) q = this.scanBytes(chunk, q, e, true);
    while (q < e) {
      if (this.needleAt !== -1 && this.needleAt < q) this.needleAt = chunk.indexOf(NEEDLE, q);
      const at = this.needleAt;
      if (at < 0 || at >= e) break;
      this.digits = 0;
      this.number = 0;
      q = this.scanBytes(chunk, at + NEEDLE.length, e, true);
    }
    // The line goes on in the next chunk: a match may begin in its last bytes.
    if (e === chunk.length && q < e && this.digits < 0)
      this.scanBytes(chunk, Math.max(q, e - (NEEDLE.length - 1)), e, false);
  }

  /**
   * Advances the NEEDLE matcher and the count reader over [from, to). With `untilIdle`, stops after
   * the first byte that leaves neither a partial match nor a count in progress; returns where it
   * stopped.
   */
  private scanBytes(chunk: Buffer, from: number, to: number, untilIdle: boolean): number {
    for (let i = from; i < to; i++) {
      const c = chunk[i] as number;
      if (this.digits >= 0) {
        if (this.digits === 0 && c === SPACE) continue;
        if (c >= 0x30 && c <= 0x39 && this.digits < DIGITS_MAX) {
          this.number = this.number * 10 + (c - 0x30);
          this.digits++;
          continue;
        }
        this.endCount();
        if (untilIdle) return i;
        continue;
      }
      let m = this.needleMatched;
      while (m > 0 && c !== NEEDLE[m]) m = NEEDLE_FAIL[m - 1] as number;
      if (c === NEEDLE[m]) m++;
      if (m === NEEDLE.length) {
        m = 0;
        this.digits = 0;
        this.number = 0;
      }
      this.needleMatched = m;
      if (untilIdle && m === 0 && this.digits < 0) return i + 1;
    }
    return to;
  }

  private endCount(): void {
    if (this.digits > 0) this.eventUsage = this.number;
    this.digits = -1;
  }

  /** A line break: finish the line, and dispatch the event at a blank line. */
  private endLine(): void {
    const line = this.line;
    if (line === Line.Start) {
      this.dispatch();
      return;
    }
    const data =
      line === Line.Value ||
      line === Line.ValueStart ||
      (line === Line.Field && this.fieldMatched === DATA.length);
    if (data) {
      if (this.digits >= 0) this.endCount();
      this.eventDataLines++;
      this.eventDone = this.eventDataLines === 1 && this.valueIsDone && this.valueBytes === DONE.length;
    }
    this.line = Line.Start;
    this.fieldMatched = 0;
    this.valueBytes = 0;
    this.valueIsDone = true;
    this.needleMatched = 0;
    this.digits = -1;
  }

  private dispatch(): void {
    if (this.eventDataLines === 0) return;
    if (this.eventDone) this.done = true;
    else {
      this.events++;
      if (this.eventUsage !== undefined) this.usageTokens = this.eventUsage;
    }
    this.eventDataLines = 0;
    this.eventDone = false;
    this.eventUsage = undefined;
  }
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
