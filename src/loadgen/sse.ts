/**
 * Incremental server-sent events (the WHATWG event-stream format) and the OpenAI streaming chunks
 * they carry. The parser takes text in whatever pieces the network delivers (a line, an event, half
 * a line, a CR in one piece and its LF in the next) and hands back each event once its blank line
 * has arrived.
 */

/** One event: its data lines joined by "\n", and its `event:` name ('message' when none). */
export interface SseEvent {
  readonly event: string;
  readonly data: string;
}

/** The longest line the parser holds while waiting for its end (a server streaming junk). */
export const SSE_LINE_CHARS_MAX = 16 << 20;

/** Thrown when a line outgrows SSE_LINE_CHARS_MAX. */
export class SseLineTooLongError extends Error {
  constructor() {
    super(`event-stream line longer than ${SSE_LINE_CHARS_MAX} characters`);
    this.name = 'SseLineTooLongError';
  }
}

/** Splits an event stream into events. Feed it decoded text; call end() when the stream ends. */
export class SseParser {
  private pending = '';
  /** The previous piece ended in CR: a LF at the start of the next belongs to it. */
  private skipLf = false;
  private data: string[] = [];
  private eventName = '';

  /** Feeds a piece of the stream; returns the events it completed. */
  feed(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let s = text;
    if (this.skipLf && s.length > 0) {
      if (s.charCodeAt(0) === 10) s = s.slice(1);
      this.skipLf = false;
    }
    const buf = this.pending.length > 0 ? this.pending + s : s;
    let start = 0;
    let cr = buf.indexOf('\r');
    let lf = buf.indexOf('\n');
    while (cr >= 0 || lf >= 0) {
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      this.line(buf.slice(start, end), events);
      if (end === cr) {
        if (end + 1 === buf.length) {
          this.skipLf = true;
          start = end + 1;
        } else start = buf.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
      } else start = end + 1;
      if (cr >= 0 && cr < start) cr = buf.indexOf('\r', start);
      if (lf >= 0 && lf < start) lf = buf.indexOf('\n', start);
    }
    this.pending = start === 0 ? buf : buf.slice(start);
    if (this.pending.length > SSE_LINE_CHARS_MAX) throw new SseLineTooLongError();
    return events;
  }

  /**
   * The stream ended. A last event without its blank line is handed back too (strict parsers drop
   * it; servers that close right after the data line mean it).
   */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.pending.length > 0) this.line(this.pending, events);
    this.pending = '';
    this.dispatch(events);
    return events;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line.length === 0) {
      this.dispatch(events);
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.eventName = value;
    // id and retry do not matter to a benchmark client; unknown fields are ignored, as the spec says.
  }

  private dispatch(events: SseEvent[]): void {
    if (this.data.length > 0) events.push({ event: this.eventName || 'message', data: this.data.join('\n') });
    this.data = [];
    this.eventName = '';
  }
}

/** What one OpenAI stream chunk says, as far as a benchmark cares. */
export type OpenAiChunk =
  | { readonly kind: 'done' }
  | {
      readonly kind: 'data';
      /** New output text ('' when the chunk carries none: a role delta, a finish reason, usage). */
      readonly text: string;
      readonly promptTokens: number | undefined;
      readonly completionTokens: number | undefined;
    }
  | { readonly kind: 'error'; readonly code: string | undefined; readonly message: string };

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Reads one `data:` payload of a chat or completions stream. Output text is the chat delta's
 * `content` (or `reasoning_content` / `reasoning` for reasoning models) or the completion's
 * `text`. An `{"error": ...}` payload (what vLLM sends when a stream fails midway) and a payload
 * that is not JSON both come back as errors.
 */
export function readOpenAiChunk(data: string): OpenAiChunk {
  if (data.trim() === '[DONE]') return { kind: 'done' };
  let body: unknown;
  try {
    body = JSON.parse(data);
  } catch {
    return { kind: 'error', code: 'bad_json', message: `not JSON: ${data.slice(0, 80)}` };
  }
  if (typeof body !== 'object' || body === null) {
    return { kind: 'error', code: 'bad_json', message: `not a JSON object: ${data.slice(0, 80)}` };
  }
  const o = body as Record<string, unknown>;
  if (o['error'] !== undefined && o['error'] !== null) return errorOf(o['error']);
  let text = '';
  const choices = o['choices'];
  if (Array.isArray(choices)) {
    for (const choice of choices) {
      if (typeof choice !== 'object' || choice === null) continue;
      const c = choice as Record<string, unknown>;
      const delta = c['delta'];
      if (typeof delta === 'object' && delta !== null) {
        const d = delta as Record<string, unknown>;
        text += str(d['content']) || str(d['reasoning_content']) || str(d['reasoning']);
      } else text += str(c['text']);
    }
  }
  const usage = o['usage'];
  const u = typeof usage === 'object' && usage !== null ? (usage as Record<string, unknown>) : {};
  return {
    kind: 'data',
    text,
    promptTokens: count(u['prompt_tokens']),
    completionTokens: count(u['completion_tokens']),
  };
}

/** An OpenAI-style error value (`{message, code, type}` or a bare string) as a chunk. */
export function errorOf(error: unknown): OpenAiChunk & { kind: 'error' } {
  if (typeof error === 'string') return { kind: 'error', code: undefined, message: error };
  if (typeof error === 'object' && error !== null) {
    const e = error as Record<string, unknown>;
    const code = e['code'];
    return {
      kind: 'error',
      code:
        typeof code === 'string' && code.length > 0
          ? code
          : typeof code === 'number'
            ? String(code)
            : undefined,
      message: str(e['message']) || JSON.stringify(error).slice(0, 200),
    };
  }
  return { kind: 'error', code: undefined, message: String(error) };
}
