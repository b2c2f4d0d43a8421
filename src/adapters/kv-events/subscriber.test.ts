import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Publisher } from 'zeromq';
import type { KvEvent } from '../../core/kv-events.ts';
import { KvEventPublisher } from './publisher.ts';
import { KvEventSubscriber } from './subscriber.ts';
import { encodeKvEventBatch, encodeSeq } from './vllm-format.ts';

interface Received {
  readonly id: string;
  readonly events: readonly KvEvent[];
  readonly tsSec: number;
}

/** A subscriber that records everything it is told. */
function recorder() {
  const batches: Received[] = [];
  const gaps: [string, bigint, bigint][] = [];
  const errors: [string, Error][] = [];
  const sub = new KvEventSubscriber({
    onEvents: (id, events, tsSec) => batches.push({ id, events, tsSec }),
    onGap: (id, expected, got) => gaps.push([id, expected, got]),
    onError: (id, error) => errors.push([id, error]),
    reconnectIntervalMs: 20,
    reconnectIntervalMaxMs: 200,
  });
  return { sub, batches, gaps, errors };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A hand-driven vLLM-style publisher: the test picks every sequence number. */
class RawPublisher {
  seq = 0n;
  private constructor(
    readonly socket: Publisher,
    readonly endpoint: string,
  ) {}
  static async bind(endpoint = 'tcp://127.0.0.1:*'): Promise<RawPublisher> {
    const socket = new Publisher({ linger: 0 });
    await socket.bind(endpoint);
    return new RawPublisher(socket, socket.lastEndpoint!);
  }
  send(payload: Uint8Array, seq = this.seq++): Promise<void> {
    return this.socket.send(['', encodeSeq(seq), payload]);
  }
  batch(events: readonly KvEvent[], tsSec: number): Buffer {
    return encodeKvEventBatch(events, tsSec, { blockSize: 16 });
  }
  /** Sends consecutive empty batches until `delivered` says one arrived (PUB/SUB slow joiner). */
  async join(delivered: () => boolean): Promise<void> {
    for (let i = 0; i < 500 && !delivered(); i++) {
      await this.send(this.batch([], 0));
      await sleep(20);
    }
    assert.ok(delivered(), 'subscription never joined');
    await sleep(50);
  }
  close(): void {
    this.socket.close();
  }
}

describe('KvEventSubscriber', () => {
  it('receives what KvEventPublisher publishes, attributed to each instance', async () => {
    const pubA = await KvEventPublisher.bind('tcp://127.0.0.1:*', { topic: 'kv' });
    const pubB = await KvEventPublisher.bind('tcp://127.0.0.1:*', { encoding: 'map' });
    const { sub, batches, gaps, errors } = recorder();
    try {
      sub.connect('a', pubA.endpoint, 'kv');
      sub.connect('b', pubB.endpoint);
      assert.deepEqual(sub.instanceIds.sort(), ['a', 'b']);
      // Joining: publish empty batches until each instance's first one lands.
      await waitFor('both joined', () => {
        pubA.publish([], 0, 16);
        pubB.publish([], 0, 16);
        return new Set(batches.map((b) => b.id)).size === 2;
      });
      await sleep(50);
      batches.length = 0;
      const stored: KvEvent[] = [
        { type: 'BlockStored', hashes: [0xffff_fffe, 2], parentHash: undefined },
        { type: 'BlockStored', hashes: [3], parentHash: 2 },
      ];
      const removed: KvEvent[] = [{ type: 'BlockRemoved', hashes: [2, 3] }];
      pubA.publish(stored, 100.5, 16);
      pubB.publish(removed, 200.25, 16);
      pubA.publish([{ type: 'AllBlocksCleared' }], 101, 16);
      // Empty join probes still in flight may land after the clear: only the real batches count.
      const real = () => batches.filter((b) => b.events.length > 0);
      await waitFor('three batches', () => real().length >= 3);
      assert.equal(real().length, 3);
      assert.deepEqual(
        real().filter((b) => b.id === 'a'),
        [
          { id: 'a', events: stored, tsSec: 100.5 },
          { id: 'a', events: [{ type: 'AllBlocksCleared' }], tsSec: 101 },
        ],
      );
      assert.deepEqual(
        real().filter((b) => b.id === 'b'),
        [{ id: 'b', events: removed, tsSec: 200.25 }],
      );
      assert.deepEqual(gaps, []);
      assert.deepEqual(errors, []);
    } finally {
      await sub.close();
      await pubA.close();
      await pubB.close();
    }
  });

  it('turns a sequence gap into onGap and an AllBlocksCleared ahead of the next events', async () => {
    const pub = await RawPublisher.bind();
    const { sub, batches, gaps, errors } = recorder();
    try {
      sub.connect('e1', pub.endpoint);
      await pub.join(() => batches.length > 0);
      const expected = pub.seq;
      batches.length = 0;
      const events: KvEvent[] = [{ type: 'BlockStored', hashes: [9], parentHash: 8 }];
      await pub.send(pub.batch(events, 5), expected + 3n);
      await waitFor('the batch after the gap', () => batches.length === 1);
      assert.deepEqual(gaps, [['e1', expected, expected + 3n]]);
      assert.deepEqual(batches[0]!.events, [{ type: 'AllBlocksCleared' }, ...events]);
      // Consecutive again: no clear, no gap.
      await pub.send(pub.batch(events, 6), expected + 4n);
      await waitFor('the next batch', () => batches.length === 2);
      assert.deepEqual(batches[1]!.events, events);
      assert.equal(gaps.length, 1);
      assert.deepEqual(errors, []);
    } finally {
      await sub.close();
      pub.close();
    }
  });

  it('reports garbage via onError, skips it, and clears before the next good batch', async () => {
    const pub = await RawPublisher.bind();
    const { sub, batches, gaps, errors } = recorder();
    try {
      sub.connect('e1', pub.endpoint);
      await pub.join(() => batches.length > 0);
      batches.length = 0;
      await pub.send(Buffer.from('definitely not msgpack'));
      await pub.socket.send(['', Buffer.from([1, 2, 3]), pub.batch([], 1)]);
      await pub.socket.send(['only-one-frame']);
      await waitFor('three errors', () => errors.length === 3);
      assert.ok(
        errors.every(([id, e]) => id === 'e1' && (e as { code?: string }).code === 'SY_ERR_INVALID_ARGUMENT'),
      );
      assert.match(errors[0]![1].message, /not msgpack/);
      assert.match(errors[1]![1].message, /sequence frame of 3 bytes/);
      assert.match(errors[2]![1].message, /1 frames/);
      const events: KvEvent[] = [{ type: 'BlockRemoved', hashes: [1] }];
      await pub.send(pub.batch(events, 2));
      await waitFor('the good batch', () => batches.length === 1);
      assert.deepEqual(batches[0]!.events, [{ type: 'AllBlocksCleared' }, ...events]);
      assert.deepEqual(gaps, []);
    } finally {
      await sub.close();
      pub.close();
    }
  });

  it('survives a consumer callback that throws, reporting it', async () => {
    const pub = await RawPublisher.bind();
    const errors: Error[] = [];
    let calls = 0;
    const sub = new KvEventSubscriber({
      onEvents: () => {
        calls++;
        throw new Error('consumer bug');
      },
      onError: (_id, e) => errors.push(e),
    });
    try {
      sub.connect('e1', pub.endpoint);
      await pub.join(() => calls > 0);
      const before = calls;
      await pub.send(pub.batch([], 1));
      await waitFor('another call', () => calls > before);
      assert.ok(errors.length >= 2 && errors.every((e) => e.message === 'consumer bug'));
    } finally {
      await sub.close();
      pub.close();
    }
  });

  it('reconnects to a restarted engine and treats its new sequence as a gap', async () => {
    let pub = await RawPublisher.bind();
    const { sub, batches, gaps } = recorder();
    try {
      // A long-running engine: its sequence is far from 0.
      pub.seq = 1000n;
      sub.connect('e1', pub.endpoint);
      await pub.join(() => batches.length > 0);
      const lastSeq = pub.seq - 1n;
      const endpoint = pub.endpoint;
      pub.close();
      await sleep(100);
      pub = await RawPublisher.bind(endpoint);
      batches.length = 0;
      await pub.join(() => batches.length > 0);
      // The restarted engine counts from 0 again (how many are lost while rejoining depends on
      // timing, so only the direction is asserted: a sequence that went backwards is a gap).
      assert.equal(gaps.length, 1);
      const [id, expected, got] = gaps[0]!;
      assert.equal(id, 'e1');
      assert.equal(expected, lastSeq + 1n);
      assert.ok(got < expected, `got seq ${got}, expected ${expected}`);
      assert.deepEqual(batches[0]!.events, [{ type: 'AllBlocksCleared' }]);
    } finally {
      await sub.close();
      pub.close();
    }
  });

  it('stops delivering after disconnect and refuses a duplicate connect', async () => {
    const pub = await RawPublisher.bind();
    const { sub, batches } = recorder();
    try {
      sub.connect('e1', pub.endpoint);
      assert.throws(() => sub.connect('e1', pub.endpoint), { code: 'SY_ERR_INVALID_ARGUMENT' });
      assert.throws(() => sub.connect('e2', 'bogus'), { code: 'SY_ERR_INVALID_ARGUMENT' });
      await pub.join(() => batches.length > 0);
      sub.disconnect('e1');
      sub.disconnect('unknown');
      assert.deepEqual(sub.instanceIds, []);
      const count = batches.length;
      for (let i = 0; i < 5; i++) await pub.send(pub.batch([], 1));
      await sleep(200);
      assert.equal(batches.length, count);
    } finally {
      await sub.close();
      pub.close();
    }
  });
});
