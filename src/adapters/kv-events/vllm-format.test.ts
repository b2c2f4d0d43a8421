import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { SwitchyardError } from '../../core/errors.ts';
import type { KvEvent } from '../../core/kv-events.ts';
import {
  blockHashTo32,
  decodeKvEventBatch,
  decodeSeq,
  encodeKvEventBatch,
  encodeSeq,
} from './vllm-format.ts';

/** A plain msgpack encoder, standing in for msgspec on the Python side. */
const msgpack = new Packr({ useRecords: false, variableMapSize: true });

const hash32 = fc.integer({ min: 0, max: 0xffff_ffff });
const kvEvent: fc.Arbitrary<KvEvent> = fc.oneof(
  fc.record({
    type: fc.constant('BlockStored' as const),
    hashes: fc.array(hash32, { maxLength: 8 }),
    parentHash: fc.option(hash32, { nil: undefined }),
  }),
  fc.record({ type: fc.constant('BlockRemoved' as const), hashes: fc.array(hash32, { maxLength: 8 }) }),
  fc.constant({ type: 'AllBlocksCleared' as const }),
);

describe('vLLM KV event format', () => {
  it('round-trips any batch in both event layouts', () => {
    fc.assert(
      fc.property(
        fc.array(kvEvent, { maxLength: 10 }),
        fc.double({ min: 0, max: 2e9, noNaN: true }),
        fc.option(fc.integer({ min: 0, max: 64 }), { nil: null }),
        fc.constantFrom('array' as const, 'map' as const),
        (events, tsSec, dpRank, encoding) => {
          const decoded = decodeKvEventBatch(
            encodeKvEventBatch(events, tsSec, { blockSize: 16, dpRank, encoding }),
          );
          // fast-check records have a null prototype; compare plain copies.
          assert.deepEqual(decoded, { tsSec, events: events.map((e) => ({ ...e })), dpRank });
        },
      ),
    );
  });

  it('writes the positional layout vLLM consumers read', () => {
    const payload = encodeKvEventBatch(
      [
        { type: 'BlockStored', hashes: [7, 8], parentHash: 3 },
        { type: 'BlockRemoved', hashes: [9] },
        { type: 'AllBlocksCleared' },
      ],
      1.5,
      { blockSize: 2, tokenIds: [[1, 2, 3, 4]], dpRank: 0 },
    );
    assert.deepEqual(new Packr({ useRecords: false }).unpack(payload), [
      1.5,
      [
        ['BlockStored', [7, 8], 3, [1, 2, 3, 4], 2, null, 'GPU'],
        ['BlockRemoved', [9], 'GPU'],
        ['AllBlocksCleared'],
      ],
      0,
    ]);
  });

  it('omits a nil data-parallel rank, as msgspec omit_defaults does', () => {
    const raw = new Packr({ useRecords: false }).unpack(encodeKvEventBatch([], 2, { blockSize: 16 }));
    assert.deepEqual(raw, [2, []]);
  });

  it('accepts newer vLLM trailing fields, unknown map keys and map-shaped batches', () => {
    const arrayShaped = msgpack.pack([
      10.25,
      [
        ['BlockStored', [1], null, [5, 6], 2, null, 'GPU', null, [null], 0, 'full_attention', null, 'x'],
        ['BlockRemoved', [1], 'GPU', 0, 'extra'],
        ['AllBlocksCleared', 'extra'],
      ],
      3,
      'extra batch field',
    ]);
    assert.deepEqual(decodeKvEventBatch(arrayShaped), {
      tsSec: 10.25,
      events: [
        { type: 'BlockStored', hashes: [1], parentHash: undefined },
        { type: 'BlockRemoved', hashes: [1] },
        { type: 'AllBlocksCleared' },
      ],
      dpRank: 3,
    });
    const mapShaped = msgpack.pack({
      ts: 4,
      events: [
        {
          type: 'BlockStored',
          block_hashes: [2],
          parent_block_hash: 1,
          token_ids: [],
          block_size: 16,
          group_idx: 0,
          kv_cache_spec_kind: 'full_attention',
          cache_salt: 'tenant-a',
        },
      ],
    });
    assert.deepEqual(decodeKvEventBatch(mapShaped), {
      tsSec: 4,
      events: [{ type: 'BlockStored', hashes: [2], parentHash: 1 }],
      dpRank: null,
    });
  });

  it('turns 64-bit int and bytes hashes into the same 32-bit number', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (h) => {
        const bytes = Buffer.alloc(32);
        bytes.writeBigUInt64BE(h, 24);
        const fromBytes = blockHashTo32(bytes);
        const fromInt = blockHashTo32(h);
        assert.equal(fromBytes, fromInt);
        assert.equal(fromInt, Number(h & 0xffff_ffffn));
        // Signed 64-bit producers (older vLLM) agree with unsigned ones.
        assert.equal(blockHashTo32(BigInt.asIntN(64, h)), fromInt);
      }),
    );
    assert.equal(blockHashTo32(-1), 0xffff_ffff);
    assert.equal(blockHashTo32(2 ** 40 + 5), 5);
    assert.equal(blockHashTo32(Buffer.from([1, 2])), 0x0102);
    assert.equal(blockHashTo32(Buffer.alloc(0)), undefined);
    assert.equal(blockHashTo32(1.5), undefined);
    assert.equal(blockHashTo32('12'), undefined);
  });

  it('decodes real-size uint64 and sha256 bytes hashes off the wire', () => {
    const big = 15760518052499183552n;
    const sha = Buffer.alloc(32, 0xab);
    const payload = msgpack.pack([1, [['BlockStored', [big, sha], big, [], 16, null, 'GPU']]]);
    const { events } = decodeKvEventBatch(payload);
    assert.deepEqual(events, [
      {
        type: 'BlockStored',
        hashes: [Number(big & 0xffff_ffffn), 0xabababab],
        parentHash: Number(big & 0xffff_ffffn),
      },
    ]);
  });

  it('rejects malformed payloads with a SwitchyardError naming the problem', () => {
    const cases: [Uint8Array, RegExp][] = [
      [Buffer.from([0x92]), /not msgpack/],
      [Buffer.from([0xc1]), /malformed/],
      [Buffer.from('garbage that is not msgpack at all'), /malformed/],
      [msgpack.pack(5), /batch is number 5/],
      [msgpack.pack([1]), /at least 2/],
      [msgpack.pack(['x', []]), /ts is "x"/],
      [msgpack.pack([1, 'nope']), /events is "nope"/],
      [msgpack.pack([1, [['Nope']]]), /tag "Nope"/],
      [msgpack.pack([1, [7]]), /events\[0\] is number 7/],
      [msgpack.pack([1, [['BlockRemoved', 'x']]]), /block_hashes is "x"/],
      [msgpack.pack([1, [['BlockRemoved', [1.5]]]]), /block hash number 1.5/],
      [msgpack.pack([1, [], 'rank']), /data_parallel_rank/],
    ];
    for (const [payload, message] of cases) {
      assert.throws(
        () => decodeKvEventBatch(payload),
        (error: unknown) =>
          error instanceof SwitchyardError &&
          error.code === 'SY_ERR_INVALID_ARGUMENT' &&
          message.test(error.message),
        `expected ${message} for ${Buffer.from(payload).toString('hex')}`,
      );
    }
  });

  it('never throws anything but a SwitchyardError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeKvEventBatch(bytes);
        } catch (error) {
          assert.ok(error instanceof SwitchyardError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('encodes sequence numbers as 8 big-endian bytes', () => {
    assert.deepEqual([...encodeSeq(258n)], [0, 0, 0, 0, 0, 0, 1, 2]);
    assert.equal(decodeSeq(encodeSeq(2n ** 64n - 1n)), 2n ** 64n - 1n);
    assert.equal(decodeSeq(Buffer.alloc(4)), undefined);
  });
});
