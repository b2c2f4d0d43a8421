import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  defaultContextCells,
  kvCacheBytes,
  MEMORY_RESERVE_MIB_MAX,
  STANDBY_RESERVE_MARGIN_MIB,
  standbyReserveMibFor,
} from './standby-reserve.ts';

const MiB = 2 ** 20;

describe('standby reserve sizing', () => {
  it("gives the bench model's KV cache as llama.cpp allocated it: 384 MiB, reserve 448 MiB", () => {
    // The 606 MB bench model (scripts/make-tiny-gguf.ts --size-mb 600): 12 layers of width 1024,
    // 16 heads, 8 KV heads; llama.cpp's log said 384 MiB for 4 x 4,096 cells (docs/benchmarks.md).
    const shape = { layers: 12, embedding: 1024, heads: 16, kvHeads: 8 };
    const cells = defaultContextCells(32_768, 4, 4096);
    assert.equal(cells, 16_384);
    assert.equal(kvCacheBytes(shape, cells), 384 * MiB);
    assert.equal(standbyReserveMibFor([kvCacheBytes(shape, cells) as number]), 448);
  });

  it("takes the key and value widths the GGUF gives (llama.cpp's key_length / value_length) over embedding / heads", () => {
    // Qwen3-0.6B: 28 layers, width 1024, 16 heads but head_dim 128 (not 1024 / 16 = 64), 8 KV heads:
    // 28 x 8 x (128 + 128) x 2 B = 112 KiB a token, 1,792 MiB at 4 x 4,096 cells (stop 33 review:
    // embedding / heads gave half, 896).
    const qwen3 = { layers: 28, embedding: 1024, heads: 16, kvHeads: 8, keyWidth: 128, valueWidth: 128 };
    assert.equal(kvCacheBytes(qwen3, 1), 112 * 1024);
    assert.equal(kvCacheBytes(qwen3, 16_384), 1792 * MiB);
    // Keys and values of different widths count each; absent or null: embedding / heads.
    assert.equal(kvCacheBytes({ ...qwen3, keyWidth: 192, valueWidth: 128 }, 1), 28 * 8 * (192 + 128) * 2);
    assert.equal(kvCacheBytes({ ...qwen3, keyWidth: null, valueWidth: undefined }, 1), 28 * 8 * 128 * 2);
    // Present but not a width: the cache cannot be told.
    assert.equal(kvCacheBytes({ ...qwen3, keyWidth: 0 }, 1), undefined);
    assert.equal(kvCacheBytes({ ...qwen3, valueWidth: 'x' }, 1), undefined);
  });

  it('counts the context a model is trained on when shorter, and the default when it names none', () => {
    assert.equal(defaultContextCells(512, 4, 4096), 2048);
    assert.equal(defaultContextCells(0, 4, 4096), 16_384);
    assert.equal(defaultContextCells(4096, 1, 2048), 2048);
  });

  it('sums per-layer KV heads, and cannot size a shape that lacks a field', () => {
    assert.equal(
      kvCacheBytes({ layers: 3, embedding: 64, heads: 4, kvHeads: [4, 2, 2] }, 10, 2),
      8 * 16 * 4 * 10,
    );
    // A hybrid model's recurrent layers list 0 KV heads (Granite 4 hybrid, Nemotron-H, LFM2): they
    // hold no KV cache, and the model is still sized. The list must name every layer.
    assert.equal(
      kvCacheBytes({ layers: 4, embedding: 64, heads: 4, kvHeads: [0, 2, 0, 2] }, 10, 2),
      4 * 16 * 2 * 2 * 10,
    );
    assert.equal(kvCacheBytes({ layers: 4, embedding: 64, heads: 4, kvHeads: [2, 2] }, 10), undefined);
    assert.equal(kvCacheBytes({ layers: 2, embedding: 64, heads: 4, kvHeads: [2, -1] }, 10), undefined);
    assert.equal(
      kvCacheBytes({ layers: 2, embedding: 64n, heads: 4n, kvHeads: 2n }, 10, 1),
      2 * 2 * 16 * 2 * 10,
    );
    for (const broken of [
      { layers: null, embedding: 64, heads: 4, kvHeads: 2 },
      { layers: 2, embedding: 64, heads: 0, kvHeads: 2 },
      { layers: 2, embedding: 64, heads: 4, kvHeads: [2, 'x'] },
      { layers: 2.5, embedding: 64, heads: 4, kvHeads: 2 },
    ])
      assert.equal(kvCacheBytes(broken, 10), undefined, JSON.stringify(broken));
  });

  it('takes the largest cache, whole MiB up, plus the margin, within the bound', () => {
    assert.equal(standbyReserveMibFor([MiB, 3 * MiB + 1, 2 * MiB]), 4 + STANDBY_RESERVE_MARGIN_MIB);
    assert.equal(standbyReserveMibFor([]), STANDBY_RESERVE_MARGIN_MIB);
    assert.equal(standbyReserveMibFor([MEMORY_RESERVE_MIB_MAX * MiB]), MEMORY_RESERVE_MIB_MAX);
  });
});
