import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gpuSpec } from './gpus.ts';
import { STORAGE_TIERS, weightLoadTimeMs } from './loading.ts';
import { modelSpec } from './models.ts';
import type { StorageTier } from './types.ts';

describe('loading', () => {
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
});
