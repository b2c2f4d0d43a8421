/**
 * Subscribes to the KV events of many engines (vLLM or the built-in `sim` engine), one ZMQ SUB
 * socket per instance so every message is attributed to its instance without trusting topics.
 *
 * ZMQ reconnects by itself (backing off from `reconnectIntervalMs` to `reconnectIntervalMaxMs`);
 * what was published meanwhile is lost, and the subscriber notices from the sequence numbers.
 * A lost batch may have stored or removed blocks, so the instance's index can no longer be
 * trusted: the subscriber calls `onGap` and delivers `AllBlocksCleared` ahead of the next batch's
 * events, and the consumer rebuilds from there. A sequence that goes backwards (the engine
 * restarted) counts as a gap too. A message that cannot be decoded is reported through `onError`
 * and skipped; since it, too, may have carried changes, the next batch also starts with
 * `AllBlocksCleared`. Nothing a peer sends can throw out of the subscriber.
 *
 * Not covered: batches published before the first message this subscriber saw (vLLM's replay
 * socket could fill them in; the gateway instead starts each instance's index empty).
 */
import { Subscriber } from 'zeromq';
import { SwitchyardError } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import { decodeKvEventBatch, decodeSeq } from './vllm-format.ts';

/** Default bound on messages queued per instance before ZMQ drops (`ZMQ_RCVHWM`). */
export const RECEIVE_HIGH_WATER_MARK_DEFAULT = 10_000;
/** Default first reconnect delay. */
export const RECONNECT_INTERVAL_MS_DEFAULT = 100;
/** Default ceiling on the reconnect delay. */
export const RECONNECT_INTERVAL_MAX_MS_DEFAULT = 5_000;

/** Callbacks and bounds for `KvEventSubscriber`. */
export interface KvEventSubscriberOptions {
  /** One decoded batch; after a gap, `events` starts with `AllBlocksCleared`. */
  onEvents(instanceId: string, events: readonly KvEvent[], tsSec: number): void;
  /** Batches were lost: `gotSeq` arrived where `expectedSeq` was due. */
  onGap?(instanceId: string, expectedSeq: bigint, gotSeq: bigint): void;
  /** A malformed message (skipped) or a callback that threw. */
  onError?(instanceId: string, error: Error): void;
  readonly receiveHighWaterMark?: number;
  readonly reconnectIntervalMs?: number;
  readonly reconnectIntervalMaxMs?: number;
}

const CLEARED: KvEvent = { type: 'AllBlocksCleared' };

interface Connection {
  readonly instanceId: string;
  readonly socket: Subscriber;
  /** The last sequence number seen, or undefined before the first message. */
  lastSeq: bigint | undefined;
  /** Set when batches were lost: the next delivery starts with AllBlocksCleared. */
  resync: boolean;
  closed: boolean;
  loop: Promise<void>;
}

/** Receives vLLM-format KV events from many instances. */
export class KvEventSubscriber {
  private readonly opts: KvEventSubscriberOptions;
  private readonly connections = new Map<string, Connection>();

  constructor(opts: KvEventSubscriberOptions) {
    this.opts = opts;
  }

  /** The instances currently connected. */
  get instanceIds(): string[] {
    return [...this.connections.keys()];
  }

  /**
   * Subscribes to one instance's publisher at `endpoint` (e.g. `tcp://10.0.0.5:5557`), keeping
   * messages whose topic starts with `topic` (default: all). Connecting is asynchronous and
   * retried by ZMQ until the publisher is up.
   */
  connect(instanceId: string, endpoint: string, topic = ''): void {
    if (this.connections.has(instanceId)) {
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `KV events of instance '${instanceId}' are already subscribed`,
        {
          param: 'instanceId',
          value: instanceId,
        },
      );
    }
    const socket = new Subscriber({
      linger: 0,
      receiveHighWaterMark: this.opts.receiveHighWaterMark ?? RECEIVE_HIGH_WATER_MARK_DEFAULT,
      reconnectInterval: this.opts.reconnectIntervalMs ?? RECONNECT_INTERVAL_MS_DEFAULT,
      reconnectMaxInterval: this.opts.reconnectIntervalMaxMs ?? RECONNECT_INTERVAL_MAX_MS_DEFAULT,
    });
    try {
      socket.connect(endpoint);
    } catch (error) {
      socket.close();
      throw new SwitchyardError(
        'SY_ERR_INVALID_ARGUMENT',
        `invalid KV event endpoint '${endpoint}': expected a ZMQ endpoint such as tcp://host:5557 (${(error as Error).message})`,
        { param: 'endpoint', value: endpoint },
      );
    }
    socket.subscribe(topic);
    const conn: Connection = {
      instanceId,
      socket,
      lastSeq: undefined,
      resync: false,
      closed: false,
      loop: Promise.resolve(),
    };
    conn.loop = this.receiveLoop(conn);
    this.connections.set(instanceId, conn);
  }

  /** Stops receiving from one instance; unknown ids are ignored. */
  disconnect(instanceId: string): void {
    const conn = this.connections.get(instanceId);
    if (conn === undefined) return;
    this.connections.delete(instanceId);
    conn.closed = true;
    conn.socket.close();
  }

  /** Disconnects every instance and waits for their receive loops to end. */
  async close(): Promise<void> {
    const loops = [...this.connections.values()].map((c) => c.loop);
    for (const id of [...this.connections.keys()]) this.disconnect(id);
    await Promise.all(loops);
  }

  private async receiveLoop(conn: Connection): Promise<void> {
    while (!conn.closed) {
      let frames: Buffer[];
      try {
        frames = await conn.socket.receive();
      } catch (error) {
        if (conn.closed || conn.socket.closed) return;
        this.report(conn, error as Error);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (conn.closed) return;
      this.handle(conn, frames);
    }
  }

  private handle(conn: Connection, frames: readonly Buffer[]): void {
    if (frames.length !== 3) {
      conn.resync = true;
      this.report(conn, malformed(`${frames.length} frames, expected 3 [topic, seq, payload]`));
      return;
    }
    const seq = decodeSeq(frames[1]!);
    if (seq === undefined) {
      conn.resync = true;
      this.report(conn, malformed(`sequence frame of ${frames[1]!.length} bytes, expected 8`));
      return;
    }
    if (conn.lastSeq !== undefined && seq !== conn.lastSeq + 1n) {
      conn.resync = true;
      this.callGap(conn, conn.lastSeq + 1n, seq);
    }
    conn.lastSeq = seq;
    let batch: ReturnType<typeof decodeKvEventBatch>;
    try {
      batch = decodeKvEventBatch(frames[2]!);
    } catch (error) {
      conn.resync = true;
      this.report(conn, error as Error);
      return;
    }
    const events = conn.resync ? [CLEARED, ...batch.events] : batch.events;
    conn.resync = false;
    try {
      this.opts.onEvents(conn.instanceId, events, batch.tsSec);
    } catch (error) {
      this.report(conn, error as Error);
    }
  }

  private callGap(conn: Connection, expected: bigint, got: bigint): void {
    try {
      this.opts.onGap?.(conn.instanceId, expected, got);
    } catch (error) {
      this.report(conn, error as Error);
    }
  }

  private report(conn: Connection, error: Error): void {
    try {
      this.opts.onError?.(conn.instanceId, error);
    } catch {
      // An error handler that throws has nowhere left to report to.
    }
  }
}

function malformed(what: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', `malformed KV event message: ${what}`, {
    param: 'message',
  });
}
