/**
 * Length-prefixed frames for moving an engine's KV state over a TCP socket: one type byte, a
 * little-endian uint32 payload length, the payload. DATA payloads are handed on piece by piece as
 * the socket delivers them (never reassembled), so a frame's size does not cost memory on the
 * receiving side; control frames (small JSON) are assembled, within CONTROL_BYTES_MAX.
 */

/** Frame types. */
export const FrameType = {
  /** client -> server: `{transferId}`, the state it wants. */
  hello: 1,
  /** server -> client: `{bytes, tokens}`, what follows. */
  meta: 2,
  /** server -> client: a slice of the state. */
  data: 3,
  /** server -> client: the state is complete. */
  end: 4,
  /** either way: `{message}`, then the connection closes. */
  error: 5,
  /** client -> server: the state is stored; the server may release it. */
  done: 6,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 5;
/** Largest control frame payload (a JSON object of a few fields). */
export const CONTROL_BYTES_MAX = 64 << 10;
/** Largest DATA payload a receiver accepts (the sender's chunk size is at most this). */
export const DATA_FRAME_BYTES_MAX = 16 << 20;

/** The header of a frame of `type` carrying `payloadBytes`. */
export function frameHeader(type: FrameType, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32LE(payloadBytes, 1);
  return header;
}

/** A whole control frame with a JSON payload. */
export function controlFrame(type: FrameType, value: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(value));
  return Buffer.concat([frameHeader(type, payload.length), payload]);
}

/** What a decoder hands on. */
export interface FrameHandlers {
  /**
   * A piece of a DATA frame's payload: a view into the chunk pushed, not a copy, valid until the
   * caller reuses that chunk's memory.
   */
  onData(piece: Buffer): void;
  /** A whole control frame; `payload` is its JSON text's bytes (empty for END and DONE). */
  onControl(type: FrameType, payload: Buffer): void;
}

/**
 * A push decoder: feed it the socket's chunks in order. Throws on a frame it does not know or one
 * over its bound (the caller ends the connection).
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private type: FrameType | undefined;
  private remaining = 0;
  private control: Buffer[] = [];

  constructor(private readonly handlers: FrameHandlers) {}

  /** Consumes one chunk. */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.type === undefined) {
        const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - at);
        chunk.copy(this.header, this.headerFill, at, at + n);
        this.headerFill += n;
        at += n;
        if (this.headerFill === FRAME_HEADER_BYTES) this.startFrame();
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - at);
      const piece = chunk.subarray(at, at + n);
      at += n;
      this.remaining -= n;
      if (this.type === FrameType.data) this.handlers.onData(piece);
      // A copy: the caller may reuse its chunk's memory for the next read (control frames are small).
      else this.control.push(Buffer.from(piece));
      if (this.remaining === 0) this.endFrame();
    }
  }

  /** Payload bytes left in the DATA frame under way (0 between frames or in a control frame). */
  get dataRemaining(): number {
    return this.type === FrameType.data ? this.remaining : 0;
  }

  /** Header bytes still wanted before the next frame starts (0 inside a frame). */
  get headerWanted(): number {
    return this.type === undefined ? FRAME_HEADER_BYTES - this.headerFill : 0;
  }

  /**
   * Counts `bytes` of the DATA frame under way as received without seeing them: the caller read them
   * straight to where they belong (a receiver that reads into its destination).
   */
  skipData(bytes: number): void {
    if (this.type !== FrameType.data || bytes > this.remaining) {
      throw new Error(`${bytes} DATA bytes skipped outside a DATA frame or past its end`);
    }
    this.remaining -= bytes;
    if (this.remaining === 0) this.endFrame();
  }

  /** True between frames (a clean place for the stream to end). */
  get idle(): boolean {
    return this.type === undefined && this.headerFill === 0;
  }

  private startFrame(): void {
    const type = this.header.readUInt8(0);
    const bytes = this.header.readUInt32LE(1);
    this.headerFill = 0;
    if (type < FrameType.hello || type > FrameType.done) throw new Error(`unknown frame type ${type}`);
    const max = type === FrameType.data ? DATA_FRAME_BYTES_MAX : CONTROL_BYTES_MAX;
    if (bytes > max) throw new Error(`frame of type ${type} carries ${bytes} bytes, over its bound ${max}`);
    this.type = type as FrameType;
    this.remaining = bytes;
    if (bytes === 0) this.endFrame();
  }

  private endFrame(): void {
    const type = this.type as FrameType;
    this.type = undefined;
    if (type === FrameType.data) return;
    const payload = Buffer.concat(this.control);
    this.control = [];
    this.handlers.onControl(type, payload);
  }
}
