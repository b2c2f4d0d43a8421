import { unknownName } from '../core/errors.ts';
import type { GpuId } from '../core/ids.ts';
import { GB, MiB, TFLOPS } from '../core/units.ts';
import type { GpuCalibration, GpuSpec } from './types.ts';

/*
 * GPU classes. Peak figures are the vendor's dense (no sparsity) BF16 tensor-core numbers, HBM
 * bandwidth as quoted, and capacity as the driver reports it (nvidia-smi MiB), since that total is
 * what an engine's `gpu_memory_utilization` is a fraction of. `interconnectBytesPerS` is the
 * vendor's per-GPU figure (both directions together) for NVLink, or for PCIe 4.0 x16 on cards
 * without an NVLink switch. `smCount` is the vendor's streaming-multiprocessor count for the
 * part as sold (whitepapers and datasheets: A100 108, H100 SXM5 132, H200 132, L40S 142, L4 58,
 * A10G 80, A40 84). Adding a GPU is one entry here.
 *
 * Calibration factors are for a current vLLM (V1 engine, CUDA graphs, FlashAttention). Sources and
 * the fit are in docs/engine-model.md and docs/calibration.md:
 * - A100, H100, A40: GEMM factors fitted on Vidur's operator profiles; A100 and H100 all-reduce on
 *   Vidur's NCCL profiles; attention on Vidur's A100 FlashAttention profile (the same fraction of
 *   peak used for every GPU); step overheads on published vLLM decode timings (all GPUs).
 * - H200: H100 factors (same Hopper compute, more and faster HBM).
 * - L40S, L4, A10G: A40 factors (the measured GDDR6 PCIe class nearest to them).
 */

/** A100 SXM, fitted. Shared by the 40 GB and 80 GB parts (same die and clocks). */
const A100_CALIBRATION: GpuCalibration = {
  gemmComputeEfficiency: 0.69,
  memoryEfficiency: 0.78,
  attentionComputeEfficiency: 0.27,
  allReduceEfficiency: 0.3,
  allReduceLatencyUs: 50,
  allReduceHopLatencyUs: 0,
  layerOverheadUs: 0,
  stepOverheadMs: 0.3,
  kernelLatencyUs: 5.5,
  attentionLatencyUs: 16,
  seqOverheadUs: 20,
};

/** H100 SXM, fitted. */
const H100_CALIBRATION: GpuCalibration = {
  gemmComputeEfficiency: 0.68,
  memoryEfficiency: 0.9,
  attentionComputeEfficiency: 0.27,
  allReduceEfficiency: 0.39,
  allReduceLatencyUs: 30,
  allReduceHopLatencyUs: 0,
  layerOverheadUs: 0,
  stepOverheadMs: 0.3,
  kernelLatencyUs: 5.1,
  attentionLatencyUs: 16,
  seqOverheadUs: 20,
};

/** A40 (GDDR6, PCIe), fitted on GEMMs; stands in for the other PCIe cards. */
const A40_CALIBRATION: GpuCalibration = {
  gemmComputeEfficiency: 0.72,
  memoryEfficiency: 0.775,
  attentionComputeEfficiency: 0.27,
  // Not measured: the A100's NCCL fraction, with a per-hop cost for rings through PCIe switches.
  allReduceEfficiency: 0.3,
  allReduceLatencyUs: 50,
  allReduceHopLatencyUs: 5,
  layerOverheadUs: 0,
  stepOverheadMs: 0.3,
  kernelLatencyUs: 5.9,
  attentionLatencyUs: 16,
  seqOverheadUs: 20,
};

const GPU_LIST: readonly GpuSpec[] = [
  {
    id: 'a100-40gb',
    operatorTable: 'a100',
    name: 'NVIDIA A100 SXM4 40GB',
    peakFlopsPerS: 312 * TFLOPS,
    hbmBandwidthBytesPerS: 1555 * GB,
    hbmBytes: 40960 * MiB,
    interconnectBytesPerS: 600 * GB,
    smCount: 108,
    calibration: A100_CALIBRATION,
  },
  {
    id: 'a100-80gb',
    operatorTable: 'a100',
    name: 'NVIDIA A100 SXM4 80GB',
    peakFlopsPerS: 312 * TFLOPS,
    hbmBandwidthBytesPerS: 2039 * GB,
    hbmBytes: 81920 * MiB,
    interconnectBytesPerS: 600 * GB,
    smCount: 108,
    calibration: A100_CALIBRATION,
  },
  {
    id: 'h100',
    operatorTable: 'h100',
    name: 'NVIDIA H100 SXM5 80GB',
    peakFlopsPerS: 989 * TFLOPS,
    hbmBandwidthBytesPerS: 3350 * GB,
    // What PyTorch (and so vLLM's gpu_memory_utilization) sees: 79.18 GiB, as vLLM's start-up log
    // reports it (llm-d-benchmark, config_explorer/empirical-vllm-memory-results.md); nvidia-smi
    // shows 81,559 MiB.
    hbmBytes: 81_080 * MiB,
    interconnectBytesPerS: 900 * GB,
    smCount: 132,
    calibration: H100_CALIBRATION,
  },
  {
    id: 'h200',
    operatorTable: 'h200',
    name: 'NVIDIA H200 SXM 141GB',
    peakFlopsPerS: 989 * TFLOPS,
    hbmBandwidthBytesPerS: 4800 * GB,
    hbmBytes: 143771 * MiB,
    interconnectBytesPerS: 900 * GB,
    smCount: 132,
    calibration: H100_CALIBRATION,
  },
  {
    id: 'l40s',
    name: 'NVIDIA L40S 48GB',
    peakFlopsPerS: 362 * TFLOPS,
    hbmBandwidthBytesPerS: 864 * GB,
    hbmBytes: 46068 * MiB,
    interconnectBytesPerS: 64 * GB,
    smCount: 142,
    calibration: A40_CALIBRATION,
  },
  {
    id: 'l4',
    name: 'NVIDIA L4 24GB',
    peakFlopsPerS: 121 * TFLOPS,
    hbmBandwidthBytesPerS: 300 * GB,
    hbmBytes: 23034 * MiB,
    interconnectBytesPerS: 64 * GB,
    smCount: 58,
    calibration: A40_CALIBRATION,
  },
  {
    // AWS's A10 variant: the A10's 125 TFLOPS tensor figure does not hold; BF16 with FP32
    // accumulate runs at about 70 TFLOPS dense (Baseten, "NVIDIA A10 vs A10G for ML model inference").
    id: 'a10g',
    name: 'NVIDIA A10G 24GB',
    peakFlopsPerS: 70 * TFLOPS,
    hbmBandwidthBytesPerS: 600 * GB,
    hbmBytes: 23028 * MiB,
    interconnectBytesPerS: 64 * GB,
    smCount: 80,
    calibration: A40_CALIBRATION,
  },
  {
    // BF16 tensor with FP32 accumulate, dense; TP beyond an NVLink-bridged pair goes over PCIe.
    id: 'a40',
    name: 'NVIDIA A40 48GB',
    peakFlopsPerS: 149.7 * TFLOPS,
    hbmBandwidthBytesPerS: 696 * GB,
    hbmBytes: 46068 * MiB,
    interconnectBytesPerS: 64 * GB,
    smCount: 84,
    calibration: A40_CALIBRATION,
  },
];

/** The GPU catalogue by id. */
export const GPUS: ReadonlyMap<GpuId, GpuSpec> = new Map(GPU_LIST.map((g) => [g.id, Object.freeze(g)]));

/** Valid GPU ids, in catalogue order (the command line lists these). */
export function gpuIds(): GpuId[] {
  return [...GPUS.keys()];
}

/** The GPU with this id; throws SY_ERR_UNKNOWN_NAME listing the valid ids. */
export function gpuSpec(id: GpuId): GpuSpec {
  const gpu = GPUS.get(id);
  if (gpu === undefined) throw unknownName('gpu', id, gpuIds());
  return gpu;
}
