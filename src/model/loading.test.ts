import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gpuSpec } from './gpus.ts';
import { kvTransferTimeMs, LINKS, STORAGE_TIERS, weightLoadTimeMs } from './loading.ts';
import { modelSpec } from './models.ts';
import type { LinkKind, StorageTier } from './types.ts';

describe('loading and transfer', () => {
  const gpu = gpuSpec('h100');
  const model = modelSpec('llama-3.1-8b');

  it('loads faster from faster tiers', () => {
    const order: StorageTier[] = ['hbm', 'dram', 'network', 'nvme', 'ssd-sata'];
    const times = order.map((tier) => weightLoadTimeMs(gpu, model, 1, tier));
    for (let i = 1; i < times.length; i++)
      assert.ok(times[i]! > times[i - 1]!, `${order[i]} vs ${order[i - 1]}`);
    // 16 GB from host memory over ~25 GB/s of PCIe: well under a second.
    assert.ok(times[1]! > 500 && times[1]! < 1000, `dram ${times[1]}`);
    assert.equal(Object.keys(STORAGE_TIERS).length, 5);
  });

  it('loads a sharded model in parallel from host memory', () => {
    const big = modelSpec('llama-3.1-70b');
    assert.ok(weightLoadTimeMs(gpu, big, 8, 'dram') < weightLoadTimeMs(gpu, big, 2, 'dram'));
  });

  it('moves KV in proportion to tokens, faster over faster links', () => {
    const t1 = kvTransferTimeMs(model, 1000, 'rdma-200g');
    const t2 = kvTransferTimeMs(model, 2000, 'rdma-200g');
    assert.ok(Math.abs(t2 - LINKS['rdma-200g'].latencyMs - 2 * (t1 - LINKS['rdma-200g'].latencyMs)) < 1e-9);
    const order: LinkKind[] = [
      'nvlink',
      'pcie5',
      'rdma-400g',
      'pcie4',
      'rdma-200g',
      'ethernet-100g',
      'ethernet-25g',
    ];
    const times = order.map((link) => kvTransferTimeMs(model, 4096, link));
    for (let i = 1; i < times.length; i++)
      assert.ok(times[i]! > times[i - 1]!, `${order[i]} vs ${order[i - 1]}`);
    assert.ok(kvTransferTimeMs(model, 4096, 'rdma-200g', 4) < kvTransferTimeMs(model, 4096, 'rdma-200g'));
  });
});
