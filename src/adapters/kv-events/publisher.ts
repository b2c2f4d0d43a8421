/**
 * Publishes KV events the way vLLM does: a ZMQ PUB socket sending `[topic, seq, payload]`, one
 * message per batch, `seq` counting batches from 0. The built-in `sim` engine uses it, so every
 * subscriber is tested against the same wire as a real vLLM.
 *
 * Publishing never waits. The socket keeps at most `sendHighWaterMark` messages per subscriber;
 * past that (a subscriber that stopped reading) the batch is dropped and counted in `dropped`.
 * `seq` still advances for a dropped batch, so the subscriber sees the gap and resynchronises.
 * With no subscriber at all ZMQ discards messages at once, so memory stays flat.
 */
import { Publisher } from 'zeromq';
import { assert } from '../../core/assert.ts';
import { invalidArgument } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import { encodeKvEventBatch, encodeSeq, type KvEventEncoding } from './vllm-format.ts';

/** Default bound on queued messages per subscriber before batches are dropped. */
export const SEND_HIGH_WATER_MARK_DEFAULT = 10_000;

/** Options for `KvEventPublisher.bind`. */
export interface KvEventPublisherOptions {
  /** Topic frame sent with every message; vLLM's default is the empty string. */
  readonly topic?: string;
  /** Messages queued per subscriber before drops (`ZMQ_SNDHWM`). */
  readonly sendHighWaterMark?: number;
  /** Data-parallel rank written into each batch; `null` (the default) omits it. */
  readonly dpRank?: number | null;
  /** Event layout: vLLM's positional arrays (default) or its newer tagged maps. */
  readonly encoding?: KvEventEncoding;
}

/** A bound ZMQ PUB socket that speaks vLLM's KV-event format. */
export class KvEventPublisher {
  /** The resolved endpoint subscribers connect to, e.g. `tcp://127.0.0.1:41234`. */
  readonly endpoint: string;
  private readonly socket: Publisher;
  private readonly topic: Buffer;
  private readonly dpRank: number | null;
  private readonly encoding: KvEventEncoding;
  private seq = 0n;
  private publishedCount = 0;
  private droppedCount = 0;
  private closed = false;

  private constructor(socket: Publisher, endpoint: string, opts: KvEventPublisherOptions) {
    this.socket = socket;
    this.endpoint = endpoint;
    this.topic = Buffer.from(opts.topic ?? '', 'utf8');
    this.dpRank = opts.dpRank ?? null;
    this.encoding = opts.encoding ?? 'array';
  }

  /**
   * Binds a PUB socket. `endpoint` may use a wildcard port (`tcp://127.0.0.1:*`); the bound
   * address is in `endpoint`.
   */
  static async bind(endpoint: string, opts: KvEventPublisherOptions = {}): Promise<KvEventPublisher> {
    const hwm = opts.sendHighWaterMark ?? SEND_HIGH_WATER_MARK_DEFAULT;
    if (!Number.isInteger(hwm) || hwm < 1) throw invalidArgument('sendHighWaterMark', hwm, 'an integer >= 1');
    // noDrop + sendTimeout 0: a full subscriber queue rejects the send at once (EAGAIN), which is
    // how drops become countable; without noDrop ZMQ drops silently.
    const socket = new Publisher({ sendHighWaterMark: hwm, noDrop: true, sendTimeout: 0, linger: 0 });
    try {
      await socket.bind(endpoint);
    } catch (error) {
      socket.close();
      throw invalidArgument('endpoint', endpoint, `a bindable ZMQ endpoint (${(error as Error).message})`);
    }
    const resolved = socket.lastEndpoint;
    assert(resolved !== null, 'a bound socket has a last endpoint');
    return new KvEventPublisher(socket, resolved, opts);
  }

  /** Batches handed to ZMQ. */
  get published(): number {
    return this.publishedCount;
  }

  /** Batches dropped because a subscriber's queue was full. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** The sequence number the next batch will carry. */
  get nextSeq(): bigint {
    return this.seq;
  }

  /**
   * Publishes one batch. Never waits: a batch that cannot be queued is dropped and counted.
   * `tokenIds[i]`, when given, are the token ids of `events[i]` (for `BlockStored`).
   */
  publish(
    events: readonly KvEvent[],
    tsSec: number,
    blockSize: number,
    tokenIds?: readonly (readonly number[] | undefined)[],
  ): void {
    assert(!this.closed, 'publish after close');
    const payload = encodeKvEventBatch(events, tsSec, {
      blockSize,
      dpRank: this.dpRank,
      encoding: this.encoding,
      ...(tokenIds === undefined ? {} : { tokenIds }),
    });
    const seq = encodeSeq(this.seq);
    this.seq++;
    this.socket.send([this.topic, seq, payload]).then(
      () => {
        this.publishedCount++;
      },
      () => {
        // EAGAIN at the high-water mark, or the socket closed under a pending send.
        this.droppedCount++;
      },
    );
  }

  /** Closes the socket; queued messages are discarded (linger 0). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
