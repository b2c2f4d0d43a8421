/**
 * A llama P/D engine reserves its first state buffer when the model is known (`reserveStateBuffer`,
 * called at start): sized from the model's KV bytes per token x the context size, within the
 * kept-buffer bounds, and the first fetch lands in it instead of a fresh buffer (whose first touch
 * page-faults during the transfer: the decode's first 32.7 MiB fetch took 132 ms where the later
 * ones took 10 to 19, docs/benchmarks.md issue 15). The sizes of real states are checked against the
 * bound by test/e2e/engine-llama-pd-state-api.test.ts; here the llama.cpp figures measured on
 * node-llama-cpp 3.21.1 (the tiny model's and the bench's 30-layer model's states).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { closeIdleKvConnections, KvStateServer } from '../../adapters/kv-transfer/kv-transfer.ts';
import {
  kvStateBytesMax,
  kvStateShape,
  LlamaPd,
  prefaultedBuffer,
  STATE_BUFFERS_KEPT_BYTES_MAX,
  STATE_RESERVE_AUTO_BYTES_MAX,
  stateReserveBytes,
} from './pd.ts';

/** The tiny model's architecture metadata, as node-llama-cpp reads it from the GGUF. */
const TINY = { block_count: 4, embedding_length: 64, attention: { head_count: 4, head_count_kv: 2 } };
/** bench/kv-transfer.ts's larger engines (30 layers of width 256). */
const BENCH_30 = { block_count: 30, embedding_length: 256, attention: { head_count: 4, head_count_kv: 2 } };

/** A decode or prefill told it has the buffer state API (reserving only asks whether it does). */
function withBufferApi(pd: LlamaPd): LlamaPd {
  (pd as unknown as { nativeApi: { api: object } }).nativeApi = { api: {} };
  return pd;
}

describe('llama P/D state buffer reservation', () => {
  it('sizes states from the GGUF metadata as llama.cpp writes them', () => {
    const tiny = kvStateShape(TINY);
    assert.deepEqual(tiny, { layers: 4, kvBytesPerToken: 512 });
    // Measured: 652 bytes for 1 token, 528,124 for 1,000 (528 a token: 512 of KV and 16 more).
    for (const [tokens, bytes] of [
      [1, 652],
      [1000, 528_124],
    ] as const) {
      const bound = kvStateBytesMax(tiny!, tokens);
      assert.ok(bound >= bytes && bound - bytes < 256, `${tokens} tokens: bound ${bound}, state ${bytes}`);
    }
    const bench = kvStateShape(BENCH_30)!;
    assert.equal(bench.kvBytesPerToken, 15_360);
    // The bench's 2,230-token state: 34,289,228 bytes.
    const bound = kvStateBytesMax(bench, 2230);
    assert.ok(bound >= 34_289_228 && bound - 34_289_228 < 1024, String(bound));
    // Per-layer KV head counts, explicit key and value lengths.
    assert.deepEqual(
      kvStateShape({
        block_count: 2,
        attention: { head_count: [8, 8], head_count_kv: [2, 4], key_length: 32, value_length: 16 },
      }),
      { layers: 2, kvBytesPerToken: (2 + 4) * (32 + 16) * 2 },
    );
    assert.equal(kvStateShape({ attention: { head_count: 4 } }), undefined);
    assert.equal(kvStateShape({ block_count: 2, attention: {} }), undefined);
  });

  it('reserves at most STATE_RESERVE_AUTO_BYTES_MAX on auto', () => {
    // 30 layers x 131,072 tokens: 1.9 GiB of state, more than auto reserves.
    assert.equal(
      stateReserveBytes('auto', { contextSize: 131_072, architecture: BENCH_30 }),
      STATE_RESERVE_AUTO_BYTES_MAX,
    );
    assert.equal(
      stateReserveBytes('auto', { contextSize: 4096, architecture: BENCH_30 }),
      kvStateBytesMax(kvStateShape(BENCH_30)!, 4096),
    );
    assert.equal(stateReserveBytes(5, { contextSize: 4096, architecture: BENCH_30 }), 5);
    assert.equal(stateReserveBytes('auto', { contextSize: 4096, architecture: {} }), 0);
  });

  it('refuses a reservation outside its bound', () => {
    for (const stateReserve of [-1, 1.5, STATE_BUFFERS_KEPT_BYTES_MAX + 1]) {
      assert.throws(
        () => new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0, stateReserve }),
        RangeError,
      );
    }
  });

  it('prefaults a buffer of the size asked for, zeroed', () => {
    const buffer = prefaultedBuffer(3 * 4096 + 5);
    assert.equal(buffer.byteLength, 3 * 4096 + 5);
    assert.ok(buffer.every((b) => b === 0));
  });

  describe('a decode', () => {
    let server: KvStateServer;
    let port: number;
    const state = Buffer.alloc(300_000, 7);

    before(async () => {
      server = new KvStateServer({});
      port = await server.listen('127.0.0.1', 0);
    });
    after(async () => {
      closeIdleKvConnections();
      await server.close();
    });

    const fetchOne = async (pd: LlamaPd) => {
      const transferId = server.offerBuffer(state, state.length, 9);
      const got = await pd.fetchRemote({ host: '127.0.0.1', port, transferId });
      assert.ok('buffer' in got && got.buffer.subarray(0, state.length).equals(state));
      return got as { buffer: Buffer };
    };

    it('reserves one full sequence state at start and fetches the first state into it', async () => {
      const log: string[] = [];
      const pd = withBufferApi(
        new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0, log: (l) => log.push(l) }),
      );
      try {
        const expected = kvStateBytesMax(kvStateShape(TINY)!, 4096);
        assert.equal(pd.reserveStateBuffer({ contextSize: 4096, architecture: TINY }), expected);
        const stats = pd.statsJson();
        assert.equal(stats.stateBufferReservedBytes, expected);
        assert.equal(stats.stateBuffersAllocated, 0);
        const first = await fetchOne(pd);
        assert.equal(first.buffer.byteLength, expected, 'the reserved buffer');
        assert.equal(pd.stats.stateBuffersAllocated, 0, 'no fresh buffer for the first fetch');
        pd.doneWith({ ...first, bytes: state.length });
        // Reserved once: a second call adds nothing.
        assert.equal(pd.reserveStateBuffer({ contextSize: 4096, architecture: TINY }), 0);
        assert.equal(pd.statsJson().stateBufferReservedBytes, expected);
      } finally {
        await pd.close();
      }
    });

    it('reserves the bytes asked for', async () => {
      const fixed = withBufferApi(
        new LlamaPd({ role: 'prefill', kvHost: '127.0.0.1', kvPort: 0, stateReserve: 1 << 20 }),
      );
      try {
        assert.equal(fixed.reserveStateBuffer({ contextSize: 4096, architecture: TINY }), 1 << 20);
        assert.equal(fixed.statsJson().stateBufferReservedBytes, 1 << 20);
      } finally {
        await fixed.close();
      }
    });

    it('reserves nothing with stateReserve 0, on the file API, or without the KV shape', async () => {
      const off = withBufferApi(
        new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0, stateReserve: 0 }),
      );
      const files = new LlamaPd({
        role: 'decode',
        kvHost: '127.0.0.1',
        kvPort: 0,
        stateApi: 'file',
        log: () => undefined,
      });
      const unknown = withBufferApi(new LlamaPd({ role: 'decode', kvHost: '127.0.0.1', kvPort: 0 }));
      try {
        assert.equal(off.reserveStateBuffer({ contextSize: 4096, architecture: TINY }), 0);
        assert.equal(files.reserveStateBuffer({ contextSize: 4096, architecture: TINY }), 0);
        assert.equal(unknown.reserveStateBuffer({ contextSize: 4096, architecture: {} }), 0);
        for (const pd of [off, files, unknown]) assert.equal(pd.statsJson().stateBufferReservedBytes, 0);
        // Without a reservation the first fetch takes a fresh buffer, sized to the state.
        const first = await fetchOne(off);
        assert.equal(first.buffer.byteLength, state.length);
        assert.equal(off.stats.stateBuffersAllocated, 1);
      } finally {
        await off.close();
        await files.close();
        await unknown.close();
      }
    });
  });
});
