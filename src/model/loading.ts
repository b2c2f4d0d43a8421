import { GB, gbpsToBytesPerS, MS_PER_S } from '../core/units.ts';
import { kvBytesPerToken, weightBytesPerGpu } from './kv.ts';
import { modelWeightBytes } from './models.ts';
import type { GpuSpec, LinkKind, ModelSpec, StorageTier } from './types.ts';

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

/** A link KV blocks travel over between instances. */
export interface LinkSpec {
  /** Effective bytes per second one transfer reaches. */
  readonly bytesPerS: number;
  /** Per-transfer latency: set-up, handshake, first byte. */
  readonly latencyMs: number;
  readonly note: string;
}

/**
 * Links, at the bandwidth one transfer reaches in practice (about 80-90% of the line rate for
 * RDMA, less for TCP) and a per-transfer latency.
 */
export const LINKS: Readonly<Record<LinkKind, LinkSpec>> = {
  nvlink: {
    bytesPerS: 300 * GB,
    latencyMs: 0.01,
    note: 'GPU to GPU in one node; A100 NVLink is 300 GB/s per direction, H100 450',
  },
  pcie4: { bytesPerS: 25 * GB, latencyMs: 0.01, note: 'PCIe 4.0 x16, 32 GB/s per direction on paper' },
  pcie5: { bytesPerS: 50 * GB, latencyMs: 0.01, note: 'PCIe 5.0 x16, 64 GB/s per direction on paper' },
  'rdma-200g': {
    bytesPerS: gbpsToBytesPerS(200) * 0.9,
    latencyMs: 0.02,
    note: 'InfiniBand HDR / RoCE 200 Gb/s, GPUDirect RDMA',
  },
  'rdma-400g': {
    bytesPerS: gbpsToBytesPerS(400) * 0.9,
    latencyMs: 0.02,
    note: 'InfiniBand NDR / RoCE 400 Gb/s, GPUDirect RDMA',
  },
  'ethernet-25g': {
    bytesPerS: gbpsToBytesPerS(25) * 0.8,
    latencyMs: 0.1,
    note: '25 GbE, TCP through host memory',
  },
  'ethernet-100g': {
    bytesPerS: gbpsToBytesPerS(100) * 0.8,
    latencyMs: 0.1,
    note: '100 GbE, TCP through host memory',
  },
};

/**
 * Time to move the KV cache of `tokens` tokens of `model` over `link`. `parallelLinks` is how many
 * such links carry shards at once (for example one NIC per GPU of a tp-way instance); bytes split
 * evenly across them.
 */
export function kvTransferTimeMs(
  model: ModelSpec,
  tokens: number,
  link: LinkKind,
  parallelLinks = 1,
): number {
  const spec = LINKS[link];
  const bytes = tokens * kvBytesPerToken(model);
  return spec.latencyMs + (bytes / (spec.bytesPerS * Math.max(1, parallelLinks))) * MS_PER_S;
}
