/**
 * The KV-event decoder against a payload captured from a live engine (not one our encoder made):
 * `fixtures/real/sglang-qwen2.5-0.5b-blockstored.msgpack`, sources in `fixtures/real/README.md`.
 * The expected values are the ones its publishers state: two block hashes given as unsigned
 * 64-bit numbers, no parent, 128 token ids (their separate tokens file), block size 64, GPU,
 * data-parallel rank 0.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Unpackr } from 'msgpackr';
import { Publisher } from 'zeromq';
import type { KvEvent } from '../../core/kv-events.ts';
import { KvEventSubscriber } from './subscriber.ts';
import { decodeKvEventBatch, encodeSeq } from './vllm-format.ts';

const real = (name: string) => readFileSync(new URL(`./fixtures/real/${name}`, import.meta.url));
const payload = real('sglang-qwen2.5-0.5b-blockstored.msgpack');
/** The token ids as published beside the capture, comma-separated. */
const publishedTokens = real('sglang-qwen2.5-0.5b-blockstored.tokens.txt')
  .toString('utf8')
  .trim()
  .split(',')
  .map(Number);
/** The block hashes as published (uint64; the first is on the wire as a negative int64). */
const publishedHashes = [16196034758909408104n, 9213906022183458822n];
/** Their low 32 bits, worked out apart from the decoder (Python: h % 2**32). */
const hashes32 = [2393682792, 3054753798];

describe('a captured engine KV-event payload', () => {
  it('the published hashes and their low 32 bits agree (the fixture is what was published)', () => {
    assert.deepEqual(
      publishedHashes.map((h) => Number(h % 0x1_0000_0000n)),
      hashes32,
    );
    assert.equal(publishedTokens.length, 128);
  });

  it('decodes to one BlockStored with the published hashes, no parent, rank 0', () => {
    const batch = decodeKvEventBatch(payload);
    assert.equal(batch.dpRank, 0);
    assert.equal(batch.tsSec, 1790239752.5724547);
    assert.equal(batch.events.length, 1);
    const event = batch.events[0]!;
    assert.equal(event.type, 'BlockStored');
    if (event.type !== 'BlockStored') return;
    assert.deepEqual(event.hashes, hashes32);
    assert.equal(event.parentHash, undefined);
  });

  it('carries the published token ids, block size and medium under the map keys the decoder reads', () => {
    // The decoder keeps hashes only; the rest is read straight off the msgpack to pin the layout.
    const raw = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' }).unpack(
      payload,
    ) as [number, Record<string, unknown>[], number];
    assert.equal(raw.length, 3);
    const event = raw[1][0]!;
    assert.deepEqual(Object.keys(event), [
      'type',
      'block_hashes',
      'parent_block_hash',
      'token_ids',
      'block_size',
      'lora_id',
      'medium',
    ]);
    assert.deepEqual(
      (event['block_hashes'] as bigint[]).map((h) => BigInt.asUintN(64, h)),
      publishedHashes,
    );
    assert.equal(event['parent_block_hash'], null);
    assert.deepEqual(event['token_ids'], publishedTokens);
    assert.equal(event['block_size'], 64);
    assert.equal((event['token_ids'] as number[]).length, 64 * publishedHashes.length);
    assert.equal(event['lora_id'], null);
    assert.equal(event['medium'], 'GPU');
  });

  it('reaches a subscriber over a real ZMQ socket as the same events', async () => {
    const socket = new Publisher({ linger: 0 });
    await socket.bind('tcp://127.0.0.1:*');
    const got: { id: string; events: readonly KvEvent[]; tsSec: number }[] = [];
    const errors: Error[] = [];
    const sub = new KvEventSubscriber({
      onEvents: (id, events, tsSec) => got.push({ id, events, tsSec }),
      onGap: () => {},
      onError: (_id, error) => errors.push(error),
    });
    try {
      sub.connect('sglang-0', socket.lastEndpoint!, 'kv@');
      // PUB/SUB drops what is sent before the subscription lands: resend until one arrives.
      for (let seq = 0n; seq < 500n && got.length === 0; seq++) {
        await socket.send(['kv@10.128.6.102:8000@Qwen/Qwen2.5-0.5B-Instruct', encodeSeq(seq), payload]);
        await sleep(20);
      }
      assert.ok(got.length > 0, 'the captured payload never arrived');
      assert.deepEqual(errors, []);
      const first = got[0]!;
      assert.equal(first.id, 'sglang-0');
      assert.equal(first.tsSec, 1790239752.5724547);
      assert.equal(first.events.length, 1);
      assert.equal(first.events[0]!.type, 'BlockStored');
      if (first.events[0]!.type === 'BlockStored') assert.deepEqual(first.events[0]!.hashes, hashes32);
    } finally {
      await sub.close();
      socket.close();
    }
  });
});
