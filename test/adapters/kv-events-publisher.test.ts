import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Subscriber } from 'zeromq';
import { KvEventPublisher } from '../../src/adapters/kv-events/publisher.ts';
import { decodeKvEventBatch, decodeSeq } from '../../src/adapters/kv-events/vllm-format.ts';
import type { KvEvent } from '../../src/core/kv-events.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Publishes until the subscriber has a message (PUB/SUB drops everything before the join). */
async function firstMessage(
  pub: KvEventPublisher,
  sub: Subscriber,
  events: readonly KvEvent[],
): Promise<Buffer[]> {
  const received = sub.receive();
  for (let i = 0; i < 200; i++) {
    pub.publish(events, 1, 16);
    const done = await Promise.race([received.then(() => true), sleep(25).then(() => false)]);
    if (done) break;
  }
  return received;
}

// In test/, not beside the publisher: the memory check needs a process of its own (the unit suite
// shares one process among every unit file, whose garbage would blur the measurement).
describe('KvEventPublisher', () => {
  it('binds a wildcard port and sends [topic, seq, payload] frames a raw ZMQ SUB decodes', async () => {
    const pub = await KvEventPublisher.bind('tcp://127.0.0.1:*', { topic: 'kv@engine-1' });
    const sub = new Subscriber({ linger: 0 });
    try {
      assert.match(pub.endpoint, /^tcp:\/\/127\.0\.0\.1:\d+$/);
      assert.doesNotMatch(pub.endpoint, /\*/);
      sub.connect(pub.endpoint);
      sub.subscribe('kv@');
      const events: KvEvent[] = [{ type: 'BlockStored', hashes: [11, 12], parentHash: 10 }];
      const [topic, seqFrame, payload] = await firstMessage(pub, sub, events);
      assert.equal(topic!.toString('utf8'), 'kv@engine-1');
      const firstSeq = decodeSeq(seqFrame!);
      assert.ok(firstSeq !== undefined && firstSeq >= 0n);
      assert.deepEqual(decodeKvEventBatch(payload!).events, events);
      // Later batches carry consecutive sequence numbers. firstMessage may have published several
      // batches before the subscriber joined, so read past any still in flight (a bounded number).
      pub.publish([{ type: 'AllBlocksCleared' }], 2, 16);
      let [, nextSeq, nextPayload] = await sub.receive();
      for (let i = 0; i < 200 && decodeSeq(nextSeq!) !== pub.nextSeq - 1n; i++) {
        [, nextSeq, nextPayload] = await sub.receive();
      }
      assert.equal(decodeSeq(nextSeq!), pub.nextSeq - 1n);
      assert.deepEqual(decodeKvEventBatch(nextPayload!), {
        tsSec: 2,
        events: [{ type: 'AllBlocksCleared' }],
        dpRank: null,
      });
    } finally {
      sub.close();
      await pub.close();
    }
  });

  it('never waits and keeps memory flat with nobody listening', async () => {
    const pub = await KvEventPublisher.bind('tcp://127.0.0.1:*');
    try {
      const events: KvEvent[] = [
        { type: 'BlockStored', hashes: Array.from({ length: 16 }, (_, i) => i), parentHash: 1 },
      ];
      const burst = () => {
        for (let i = 0; i < 20_000; i++) pub.publish(events, i, 16);
      };
      const retainedMb = async () => {
        await sleep(20);
        gc();
        const m = process.memoryUsage();
        return (m.heapUsed + m.external) / 2 ** 20;
      };
      burst();
      const before = await retainedMb();
      for (let round = 0; round < 10; round++) {
        burst();
        await sleep(5);
      }
      const after = await retainedMb();
      assert.equal(pub.nextSeq, 220_000n);
      assert.equal(pub.dropped, 0);
      // 200k batches of ~100 bytes would retain ~20 MB if anything queued them.
      assert.ok(after - before < 5, `retained memory grew ${(after - before).toFixed(1)} MB`);
    } finally {
      await pub.close();
    }
  });

  it('drops and counts batches for a subscriber that stopped reading, without waiting', async () => {
    const pub = await KvEventPublisher.bind('tcp://127.0.0.1:*', { sendHighWaterMark: 10 });
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 10 });
    try {
      sub.connect(pub.endpoint);
      sub.subscribe();
      await firstMessage(pub, sub, []);
      const big: KvEvent[] = [{ type: 'BlockRemoved', hashes: Array.from({ length: 4000 }, (_, i) => i) }];
      // A publish that waited for the stuck reader would never return; the test's timeout catches it.
      for (let i = 0; i < 5000; i++) pub.publish(big, i, 16);
      await sleep(200);
      assert.ok(pub.dropped > 0, `expected drops, published ${pub.published}`);
      assert.equal(pub.published + pub.dropped, Number(pub.nextSeq));
    } finally {
      sub.close();
      await pub.close();
    }
  });

  it('refuses a bad endpoint with a SwitchyardError', async () => {
    await assert.rejects(KvEventPublisher.bind('nonsense://x'), { code: 'SY_ERR_INVALID_ARGUMENT' });
  });
});
