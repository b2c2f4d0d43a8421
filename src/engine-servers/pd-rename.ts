/**
 * How a P/D front server names its answers after the client's X-Request-Id, as the colocated engine
 * does (`chatcmpl-<id>`), while the inner server only ever sees the front's own unique tags: two
 * clients sending the same id, or an id equal to a live tag, must not meet in the prefill/decode
 * bookkeeping, which is keyed by the tag.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Longest X-Request-Id that names an answer (the OpenAI server's own bound). */
const NAME_CHARS_MAX = 128;

/**
 * The client's name for a request from an X-Request-Id header or a body `request_id`: the value when
 * it is a string of 1 to 128 characters, else undefined (the OpenAI server's rule).
 */
export function clientRequestName(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= NAME_CHARS_MAX ? value : undefined;
}

/** Answer id prefixes of the OpenAI server: chat, completion, response. */
const ID_PREFIX = /^(chatcmpl-|cmpl-|resp_)/;

/** A whole JSON answer's `id` renamed to `<prefix><name>`; anything else unchanged. */
export function renameAnswerId(out: Record<string, unknown>, name: string): void {
  const id = out['id'];
  if (typeof id !== 'string') return;
  const prefix = ID_PREFIX.exec(id)?.[1];
  if (prefix !== undefined) out['id'] = `${prefix}${name}`;
}

/**
 * The bytes of a streamed answer with the tag's ids renamed: every `TAG"` (the end of a JSON string
 * that ends in the tag, which only the answer's own id does: a quote inside a text is escaped) becomes
 * `NAME"`, the name JSON-escaped. A chunk's tail that could start a match waits for the next chunk;
 * any other byte goes out at once, so a stream's events are not delayed.
 */
export class TagRenamer extends Transform {
  private readonly from: Buffer;
  private readonly to: Buffer;
  private pending: Buffer = Buffer.alloc(0);

  constructor(tag: string, name: string) {
    super();
    this.from = Buffer.from(`${tag}"`);
    this.to = Buffer.from(`${JSON.stringify(name).slice(1, -1)}"`);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const parts: Buffer[] = [];
    let start = 0;
    for (let at = buf.indexOf(this.from); at !== -1; at = buf.indexOf(this.from, start)) {
      parts.push(buf.subarray(start, at), this.to);
      start = at + this.from.length;
    }
    let keep = 0;
    for (let k = Math.min(this.from.length - 1, buf.length - start); k > 0; k--) {
      if (buf.subarray(buf.length - k).equals(this.from.subarray(0, k))) {
        keep = k;
        break;
      }
    }
    parts.push(buf.subarray(start, buf.length - keep));
    this.pending = Buffer.from(buf.subarray(buf.length - keep));
    done(null, parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  override _flush(done: TransformCallback): void {
    done(null, this.pending);
  }
}
