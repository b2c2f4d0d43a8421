import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WARM_CACHE_BYTES_MAX_DEFAULT, warmCacheBytesDefault } from '../adapters/model-warmer.ts';
import { STANDBY_ENGINES_MAX } from '../adapters/standby-engines.ts';
import { SwitchyardError } from '../core/errors.ts';
import { MEMORY_RESERVE_MIB_MAX } from '../core/standby-reserve.ts';
import { encodeGguf, TINY_LLAMA_SHAPE, writeLlamaGguf } from '../engine-servers/llama/tiny-gguf.ts';
import { parseGatewayConfig } from '../gateway/config.ts';
import { autoscaleSettings } from './serve-autoscale.ts';
import { autoStandbyReserve, autoStandbyReserveLine, standbyArgs, warmSettingsOf } from './serve-warm.ts';

const dir = mkdtempSync(join(tmpdir(), 'sy-serve-warm-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('warm-start settings', () => {
  it('default to one standby engine and a warm cache for llama models at zero, none otherwise', () => {
    const zero = warmSettingsOf({ engine: 'llama' }, 0);
    assert.equal(zero.standbyEngines, 1);
    assert.ok(zero.warmCacheBytes > 0 && zero.warmCacheBytes <= WARM_CACHE_BYTES_MAX_DEFAULT);
    assert.equal(zero.standbyReserveMib, 0);
    const none = { standbyEngines: 0, warmCacheBytes: 0, standbyReserveMib: 0 };
    assert.deepEqual(warmSettingsOf({ engine: 'llama' }, 1), none);
    assert.deepEqual(warmSettingsOf({ engine: 'sim' }, 0), none);
    assert.deepEqual(
      warmSettingsOf({ engine: 'llama', standbyEngines: 2, warmCacheMb: 3, standbyReserveMib: 448 }, 0),
      { standbyEngines: 2, warmCacheBytes: 3 * 2 ** 20, standbyReserveMib: 448 },
    );
    assert.deepEqual(warmSettingsOf({ engine: 'llama', standbyEngines: 0, warmCacheMb: 0 }, 0), none);
  });

  it('give standby engines the reserve flag only when asked for, after sleep mode', () => {
    assert.deepEqual(standbyArgs({}), []);
    assert.deepEqual(standbyArgs({ standbyReserveMib: 0, sleep: {} }), ['--enable-sleep-mode']);
    assert.deepEqual(standbyArgs({ standbyReserveMib: 448, sleep: {} }), [
      '--enable-sleep-mode',
      '--standby-reserve-mib',
      '448',
    ]);
  });

  it('refuses them for sim engines and past the bound', () => {
    const refused = (f: () => unknown, param: string) =>
      assert.throws(
        f,
        (e: unknown) =>
          e instanceof SwitchyardError &&
          e.code === 'SY_ERR_INVALID_ARGUMENT' &&
          e.details?.['param'] === param,
      );
    refused(() => warmSettingsOf({ engine: 'sim', standbyEngines: 1 }, 0), 'standby-engines');
    refused(() => warmSettingsOf({ engine: 'sim', warmCacheMb: 1 }, 0), 'warm-cache-mb');
    refused(
      () => warmSettingsOf({ engine: 'llama', standbyEngines: STANDBY_ENGINES_MAX + 1 }, 0),
      'standby-engines',
    );
    refused(() => warmSettingsOf({ engine: 'sim', standbyReserveMib: 1 }, 0), 'standby-reserve-mib');
    for (const mib of [-1, 1.5, MEMORY_RESERVE_MIB_MAX + 1])
      refused(() => warmSettingsOf({ engine: 'llama', standbyReserveMib: mib }, 0), 'standby-reserve-mib');
    // No standby engine to hold it: none asked for, or models with a minimum (no default pool).
    refused(
      () => warmSettingsOf({ engine: 'llama', standbyEngines: 0, standbyReserveMib: 64 }, 0),
      'standby-reserve-mib',
    );
    refused(() => warmSettingsOf({ engine: 'llama', standbyReserveMib: 64 }, 1), 'standby-reserve-mib');
    assert.equal(
      warmSettingsOf({ engine: 'llama', standbyReserveMib: MEMORY_RESERVE_MIB_MAX }, 0).standbyReserveMib,
      MEMORY_RESERVE_MIB_MAX,
    );
    // `auto` as a number above 0: llama, with a standby engine, kept for the pool to size.
    assert.equal(warmSettingsOf({ engine: 'llama', standbyReserveMib: 'auto' }, 0).standbyReserveMib, 'auto');
    refused(() => warmSettingsOf({ engine: 'sim', standbyReserveMib: 'auto' }, 0), 'standby-reserve-mib');
    refused(
      () => warmSettingsOf({ engine: 'llama', standbyEngines: 0, standbyReserveMib: 'auto' }, 0),
      'standby-reserve-mib',
    );
  });

  it("sizes an auto reserve from the generated GGUFs' shapes: the largest KV cache at the default context, + 64 MiB", async () => {
    // The tiny model: 4 layers x 16,384 cells (4 x 4,096) x K+V x 2 KV heads x width 16 x F16 = 8 MiB.
    const tiny = join(dir, 'tiny.gguf');
    writeLlamaGguf(tiny, TINY_LLAMA_SHAPE);
    // 4 KV heads of width 32: 4 x 16,384 x 2 x 128 x 2 = 32 MiB, the largest.
    const wide = join(dir, 'wide.gguf');
    writeLlamaGguf(wide, { ...TINY_LLAMA_SHAPE, embeddingLength: 128, headCountKv: 4 });
    // Wider still, but trained on 512 tokens: 4 x 512 cells, 2 layers x 2 x 256 x 2 = 4 MiB.
    const short = join(dir, 'short.gguf');
    writeLlamaGguf(short, {
      ...TINY_LLAMA_SHAPE,
      embeddingLength: 256,
      headCount: 8,
      headCountKv: 8,
      blockCount: 2,
      contextLength: 512,
    });
    assert.deepEqual(await autoStandbyReserve([tiny]), { mib: 8 + 64, largest: tiny, kvBytes: 8 * 2 ** 20 });
    assert.deepEqual(await autoStandbyReserve([short]), {
      mib: 4 + 64,
      largest: short,
      kvBytes: 4 * 2 ** 20,
    });
    const both = await autoStandbyReserve([tiny, wide, short]);
    assert.deepEqual(both, { mib: 32 + 64, largest: wide, kvBytes: 32 * 2 ** 20 });
    assert.equal(
      autoStandbyReserveLine(both),
      `standby reserve auto: 96 MiB (the largest KV cache, ${wide}'s 32 MiB, + 64 MiB)`,
    );
    // Not a GGUF: its reader's error, naming the file.
    const junk = join(dir, 'junk.gguf');
    writeFileSync(junk, 'not a model');
    await assert.rejects(autoStandbyReserve([tiny, junk]), (e: SwitchyardError) => {
      assert.equal(e.code, 'SY_ERR_INVALID_ARGUMENT');
      assert.match(e.message, /junk\.gguf/);
      return true;
    });
  });

  it("sizes an auto reserve with the GGUF's own key and value widths where it gives them (Qwen3's head_dim)", async () => {
    // Qwen3-0.6B's metadata (no tensors: only the header is read): head_dim 128 where embedding /
    // heads is 64, as llama.cpp reads `qwen3.attention.key_length` / `value_length`. Its KV cache at
    // 4 x 4,096 cells is 28 x 8 x (128 + 128) x 2 B x 16,384 = 1,792 MiB; embedding / heads gave 896.
    const qwen3 = join(dir, 'qwen3-meta.gguf');
    const u32 = (v: number) => ({ t: 'u32', v }) as const;
    writeFileSync(
      qwen3,
      encodeGguf(
        [
          ['general.architecture', { t: 'str', v: 'qwen3' }],
          ['qwen3.context_length', u32(40_960)],
          ['qwen3.embedding_length', u32(1024)],
          ['qwen3.block_count', u32(28)],
          ['qwen3.feed_forward_length', u32(3072)],
          ['qwen3.attention.head_count', u32(16)],
          ['qwen3.attention.head_count_kv', u32(8)],
          ['qwen3.attention.key_length', u32(128)],
          ['qwen3.attention.value_length', u32(128)],
        ],
        [],
      ),
    );
    assert.deepEqual(await autoStandbyReserve([qwen3]), {
      mib: 1792 + 64,
      largest: qwen3,
      kvBytes: 1792 * 2 ** 20,
    });
  });

  it('the default warm cache is a quarter of MemAvailable, at most the cap', () => {
    assert.equal(warmCacheBytesDefault('MemTotal: 8000 kB\nMemAvailable:    4096 kB\n'), 1024 * 1024);
    assert.equal(warmCacheBytesDefault('MemAvailable: 1099511627776 kB\n'), WARM_CACHE_BYTES_MAX_DEFAULT);
  });

  it("come from the config's autoscaler block too, the flags overriding it", () => {
    const config = parseGatewayConfig(
      {
        autoscaler: {
          name: 'static',
          minInstances: 0,
          standbyEngines: 2,
          warmCacheMb: 5,
          standbyReserveMib: 448,
          prewarm: true,
        },
      },
      {},
    );
    const fromConfig = autoscaleSettings({ engine: 'llama' }, config, 1);
    assert.equal(fromConfig?.standbyEngines, 2);
    assert.equal(fromConfig?.warmCacheBytes, 5 * 2 ** 20);
    assert.equal(fromConfig?.standbyReserveMib, 448);
    assert.equal(fromConfig?.prewarm, true);
    const flagged = autoscaleSettings(
      { engine: 'llama', standbyEngines: 0, standbyReserveMib: 0, prewarm: false },
      config,
      1,
    );
    assert.equal(flagged?.standbyEngines, 0);
    assert.equal(flagged?.standbyReserveMib, 0);
    assert.equal(flagged?.prewarm, false);
    assert.throws(
      () => parseGatewayConfig({ autoscaler: { name: 'static', standbyEngines: 9 } }, {}),
      /standbyEngines/,
    );
    assert.throws(
      () =>
        parseGatewayConfig(
          { autoscaler: { name: 'static', standbyReserveMib: MEMORY_RESERVE_MIB_MAX + 1 } },
          {},
        ),
      /standbyReserveMib/,
    );
    assert.throws(
      () => parseGatewayConfig({ autoscaler: { name: 'static', standbyReserveMib: 'big' } }, {}),
      /standbyReserveMib/,
    );
    const auto = parseGatewayConfig(
      { autoscaler: { name: 'static', minInstances: 0, standbyReserveMib: 'auto' } },
      {},
    );
    assert.equal(autoscaleSettings({ engine: 'llama' }, auto, 1)?.standbyReserveMib, 'auto');
  });
});
