import { GB, MS_PER_S } from '../core/units.ts';
import { weightBytesPerGpu } from './kv.ts';
import { modelWeightBytes } from './models.ts';
import type { GpuSpec, ModelSpec, StorageTier } from './types.ts';

/** Where a checkpoint is read from, as the loader sees it. */
export interface StorageTierSpec {
  /**
   * Bytes per second the tier delivers to one instance, all its GPUs together (a node's drives or
   * NIC are shared by the instance's shards). Infinity where each GPU's own host link is the limit.
   */
  readonly sourceBytesPerS: number;
  /** Fixed cost before the first byte: opening files, metadata, connection set-up. */
  readonly latencyMs: number;
  readonly note: string;
}

/**
 * Effective host-to-GPU bandwidth per GPU: PCIe 4.0 x16 is 32 GB/s per direction on paper and
 * pinned-memory copies reach about 25 GB/s of it.
 */
export const HOST_TO_GPU_BYTES_PER_S = 25 * GB;

/**
 * Checkpoint tiers. Each shard streams its slice through its own PCIe link, so a load takes the
 * larger of (instance bytes / source bandwidth) and (shard bytes / host-to-GPU bandwidth), the two
 * stages overlapping as the loaders pipeline them.
 */
export const STORAGE_TIERS: Readonly<Record<StorageTier, StorageTierSpec>> = {
  hbm: {
    sourceBytesPerS: Number.POSITIVE_INFINITY,
    latencyMs: 0,
    note: 'weights already resident in GPU memory (a sleeping engine woken up); a device-local copy',
  },
  dram: {
    sourceBytesPerS: Number.POSITIVE_INFINITY,
    latencyMs: 5,
    note: 'pinned host memory; each GPU limited by its PCIe link (~25 GB/s effective)',
  },
  nvme: {
    sourceBytesPerS: 6 * GB,
    latencyMs: 20,
    note: 'one local PCIe 4.0 NVMe drive, sequential safetensors reads (~6 GB/s of its ~7 GB/s)',
  },
  'ssd-sata': {
    sourceBytesPerS: 0.5 * GB,
    latencyMs: 20,
    note: 'SATA SSD (6 Gb/s link, ~0.5 GB/s sequential)',
  },
  network: {
    sourceBytesPerS: 10 * GB,
    latencyMs: 100,
    note: 'remote checkpoint store over a 100 Gb/s NIC (~10 GB/s effective), plus connection set-up',
  },
};

/**
 * Time to bring `model`'s weights onto a `tp`-way instance of `gpu` from `tier`. Excludes engine
 * start-up work that is not data movement (process launch, CUDA-graph capture, compilation).
 */
export function weightLoadTimeMs(gpu: GpuSpec, model: ModelSpec, tp: number, tier: StorageTier): number {
  const spec = STORAGE_TIERS[tier];
  if (tier === 'hbm') {
    // A device-to-device copy reads and writes every byte once.
    return (
      spec.latencyMs +
      ((2 * weightBytesPerGpu(model, tp)) / (gpu.hbmBandwidthBytesPerS * gpu.calibration.memoryEfficiency)) *
        MS_PER_S
    );
  }
  const sourceMs = (modelWeightBytes(model) / spec.sourceBytesPerS) * MS_PER_S;
  const linkMs = (weightBytesPerGpu(model, tp) / HOST_TO_GPU_BYTES_PER_S) * MS_PER_S;
  return spec.latencyMs + Math.max(sourceMs, linkMs);
}
