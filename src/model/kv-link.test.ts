import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SwitchyardError } from '../core/errors.ts';
import { KiB } from '../core/units.ts';
import { effectiveBytesPerS, KV_LINK_NAMES, kvLink, kvTransfer } from './kv-link.ts';
import { modelSpec } from './models.ts';

const llama8b = modelSpec('llama-3.1-8b'); // 128 KiB of KV per token, 32 layers
const llama70b = modelSpec('llama-3.1-70b'); // 320 KiB per token, 8 KV heads, 80 layers

describe('KV links', () => {
  it('orders the named links by effective bandwidth: nvlink > ib-400 > roce-200 > tcp-100', () => {
    const rates = KV_LINK_NAMES.map((name) => effectiveBytesPerS(kvLink(name)));
    for (let i = 1; i < rates.length; i++) assert.ok((rates[i - 1] as number) > (rates[i] as number));
    // ConnectX-7: 400 Gb/s = 50 GB/s line rate, 85% of it.
    assert.equal(effectiveBytesPerS(kvLink('ib-400')), 42.5e9);
  });

  it('transfer time is latency + bytes / effective bandwidth', () => {
    const link = kvLink({ gbps: 80, latencyUs: 50 }); // 10 GB/s, efficiency 1
    const t = kvTransfer(llama8b, 1000, link);
    assert.equal(t.bytes, 1000 * 128 * KiB);
    assert.equal(t.bytesPerRank, t.bytes);
    // 131,072,000 bytes at 10 GB/s: 13.1072 ms.
    assert.ok(Math.abs(t.transferMs - (0.05 + 13.1072)) < 1e-9);
    assert.equal(t.ttftAddedMs, t.transferMs);
  });

  it('layer-by-layer: only the last layer (plus latency) adds to TTFT, unless the link falls behind', () => {
    const link = kvLink({ gbps: 80, latencyUs: 50 });
    const whole = kvTransfer(llama8b, 1000, link);
    const overlapped = kvTransfer(llama8b, 1000, link, { layerwise: true, prefillMs: 100 });
    assert.ok(Math.abs(overlapped.ttftAddedMs - (0.05 + 13.1072 / 32)) < 1e-9);
    assert.equal(overlapped.transferMs, whole.transferMs);
    // A 2 ms prefill cannot hide a 13 ms transfer: the backlog shows.
    const behind = kvTransfer(llama8b, 1000, link, { layerwise: true, prefillMs: 2 });
    assert.ok(Math.abs(behind.ttftAddedMs - (0.05 + 13.1072 - 2)) < 1e-9);
  });

  it('splits bytes across tp ranks, each on its own link; the busier side sets the time', () => {
    const link = kvLink('ib-400');
    const one = kvTransfer(llama70b, 4096, link);
    const four = kvTransfer(llama70b, 4096, link, { prefillTp: 4, decodeTp: 4 });
    assert.equal(four.bytes, one.bytes);
    assert.equal(four.bytesPerRank, one.bytes / 4);
    assert.ok(four.transferMs < one.transferMs / 3.9);
    // Decode at tp 16 replicates 8 KV heads: each rank still receives one head's worth (1/8).
    const replicated = kvTransfer(llama70b, 4096, link, { prefillTp: 16, decodeTp: 16 });
    assert.equal(replicated.bytesPerRank, one.bytes / 8);
    // A tp-1 decode receives everything whatever the prefill's tp.
    assert.equal(kvTransfer(llama70b, 4096, link, { prefillTp: 8, decodeTp: 1 }).bytesPerRank, one.bytes);
  });

  it('refuses unknown names and bad custom links', () => {
    assert.throws(
      () => kvLink('ib-800'),
      (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_UNKNOWN_NAME',
    );
    for (const bad of [
      { gbps: 0, latencyUs: 1 },
      { gbps: 100, latencyUs: -1 },
      { gbps: 100, latencyUs: 1, efficiency: 1.5 },
    ]) {
      assert.throws(
        () => kvLink(bad),
        (e: unknown) => e instanceof SwitchyardError && e.code === 'SY_ERR_INVALID_ARGUMENT',
      );
    }
    assert.throws(() => kvTransfer(llama8b, 10, kvLink('nvlink'), { prefillTp: 0 }), /prefillTp/);
  });
});
