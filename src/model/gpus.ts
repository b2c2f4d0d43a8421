import type { GpuId } from '../core/ids.ts';
import { GB, MiB, TFLOPS } from '../core/units.ts';
import { NAME_CHARS_MAX, normalizeName, unknownCatalogueName } from './names.ts';
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

/** How nvidia-smi and vendors name a catalogue GPU: its chip, its memory and its form factor. */
interface GpuNaming {
  /** The product name without memory or form factor, lower case (`a100`, `h100`, `l40s`). */
  family: string;
  /** Memory as marketed, GB (what `-80gb` in a name says). */
  memoryGb: number;
  /** SXM module on an NVLink baseboard, or PCIe card (figures above: NVLink 900 / 600 GB/s or PCIe 64). */
  form: 'sxm' | 'pcie';
}

/** The naming of each catalogue GPU, read off its `name` above. */
const GPU_NAMING: Readonly<Record<GpuId, GpuNaming>> = {
  'a100-40gb': { family: 'a100', memoryGb: 40, form: 'sxm' },
  'a100-80gb': { family: 'a100', memoryGb: 80, form: 'sxm' },
  h100: { family: 'h100', memoryGb: 80, form: 'sxm' },
  h200: { family: 'h200', memoryGb: 141, form: 'sxm' },
  l40s: { family: 'l40s', memoryGb: 48, form: 'pcie' },
  l4: { family: 'l4', memoryGb: 24, form: 'pcie' },
  a10g: { family: 'a10g', memoryGb: 24, form: 'pcie' },
  a40: { family: 'a40', memoryGb: 48, form: 'pcie' },
};
for (const id of GPUS.keys())
  if (GPU_NAMING[id] === undefined) throw new Error(`GPU catalogue: no naming for ${id}`);

/**
 * Parts often named that the catalogue does not model, and why (a near id would be a wrong guess).
 * Sources: NVIDIA's L40 and A10 datasheets (BF16 dense 181 and 125 TFLOPS) against the L40S and A10G
 * entries above.
 */
const GPU_NOT_MODELLED: Readonly<Record<string, string>> = {
  l40: "the L40 is not the L40S (about half the L40S's BF16 tensor rate); it is not in the catalogue",
  a10: "the A10 is not AWS's A10G (the a10g entry's 70 TFLOPS BF16 figure is A10G-specific); it is not in the catalogue",
};

/** Words in GPU names that say nothing the catalogue distinguishes (vendor, memory type). */
const GPU_NOISE_WORDS = new Set([
  'nvidia',
  'tesla',
  'hbm',
  'hbm2',
  'hbm2e',
  'hbm3',
  'hbm3e',
  'gpu',
  // NVIDIA's product pages: "NVIDIA H100 Tensor Core GPU".
  'tensor',
  'core',
]);

/**
 * A GPU name's words, normalised: brackets, commas and slashes read as separators, a memory size
 * written apart from its unit joined (`80 GB`: `80gb`), and a form factor written onto the chip split
 * off (`H100SXM5`: `h100`, `sxm5`).
 */
function gpuWords(name: string): string[] {
  const spaced = normalizeName(name.replace(/[()[\],/]+/g, ' '));
  const words = spaced.replace(/(^|-)(\d+)-(gb?)(?=-|$)/g, '$1$2$3').split(/-+/);
  return words.flatMap((word) => {
    const glued = /^([a-z]+\d+[a-z]?)(sxm\d?|pcie\d?|nvl)$/.exec(word);
    return glued === null ? [word] : [glued[1] as string, glued[2] as string];
  });
}

/** A count of GPUs written into a name (`8x H100`, `8xH100`, `H100 x8`), and the rest of the name. */
function gpuCount(name: string): { count: number; rest: string } | undefined {
  const words = gpuWords(name);
  // `4 x H100`: the count and the `x` as words of their own.
  const apart = words.findIndex((w, i) => /^\d+$/.test(w) && words[i + 1] === 'x');
  if (apart >= 0)
    return {
      count: Number(words[apart]),
      rest: [...words.slice(0, apart), ...words.slice(apart + 2)].join('-'),
    };
  for (const [i, word] of words.entries()) {
    const m = /^(?:(\d+)x([a-z].*)?|x(\d+)|([a-z]+\d+[a-z]?)x(\d+))$/.exec(word);
    if (m === null) continue;
    const count = Number(m[1] ?? m[3] ?? m[5]);
    const left = m[2] ?? m[4];
    const rest = [...words.slice(0, i), ...(left !== undefined ? [left] : []), ...words.slice(i + 1)];
    return { count, rest: rest.join('-') };
  }
  return undefined;
}

/**
 * Catalogue GPUs whose chip name is the one written with letters added or dropped at its end
 * (`h100x`: h100; `l4x`: l4), for "did you mean". Not by edit distance nor when the difference has
 * a digit: one letter or digit apart is another chip (B200, H200; A100, H100; H20, H200; A4, A40),
 * which a suggestion must not pass off as close.
 */
function gpuIdsNear(family: string | undefined): GpuId[] {
  if (family === undefined || family.length < 2) return [];
  return gpuIds().filter((id) => {
    const f = GPU_NAMING[id]?.family ?? id;
    const [shorter, longer] = f.length <= family.length ? [f, family] : [family, f];
    return longer.startsWith(shorter) && !/\d/.test(longer.slice(shorter.length));
  });
}

/**
 * The catalogue id a user's GPU name means: the id itself or in any case, or a vendor name read as
 * its words: chip (`h100`), memory (`80gb`, `80g`), form factor (`sxm`, `sxm4`, `sxm5`, `pcie`,
 * `nvl`), with `NVIDIA`, `Tesla` and the memory type (`HBM3`) ignored, in any order and separated by
 * spaces, `-` or `_`. So `H100`, `H100-SXM`, `h100-80gb` and nvidia-smi's `NVIDIA H100 80GB HBM3`
 * give `h100`; `A100-SXM4-80GB` and `A100 40GB` give the A100 of that memory. Refused with a reason
 * rather than mapped to a near entry: a PCIe or NVL part of an SXM entry (other clocks, bandwidth and
 * interconnect; e.g. `H100 PCIe`, `H100 NVL`), a memory size the catalogue lacks, a name that fits
 * several entries (`A100`: give the memory). Throws SY_ERR_UNKNOWN_NAME listing the ids.
 */
export function resolveGpuId(name: string): GpuId {
  if (GPUS.has(name)) return name;
  const refuse = (options: Parameters<typeof unknownCatalogueName>[3] = {}): never => {
    throw unknownCatalogueName('gpu', name, gpuIds(), options);
  };
  const normalized = normalizeName(name);
  if (GPUS.has(normalized)) return normalized;
  if (normalized.length > NAME_CHARS_MAX) refuse();
  const counted = gpuCount(name);
  if (counted !== undefined) {
    const one = findGpuId(counted.rest);
    refuse({
      detail:
        `a GPU name names one GPU, not ${counted.count}: write gpu: ${one ?? 'the GPU alone'} and the ` +
        'count as tp (GPUs per engine) times instances (engines)',
    });
  }
  let memoryGb: number | undefined;
  let form: 'sxm' | 'pcie' | 'nvl' | undefined;
  const rest: string[] = [];
  for (const word of gpuWords(name)) {
    const memory = /^(\d+)gb?$/.exec(word);
    if (word === '' || GPU_NOISE_WORDS.has(word)) continue;
    if (memory !== null) memoryGb = Number(memory[1]);
    else if (/^sxm\d?$/.test(word)) form = 'sxm';
    else if (/^pcie\d?$/.test(word)) form = 'pcie';
    else if (word === 'nvl') form = 'nvl';
    else rest.push(word);
  }
  const family = rest.length === 1 ? rest[0] : undefined;
  const notModelled = family === undefined ? undefined : GPU_NOT_MODELLED[family];
  if (notModelled !== undefined) refuse({ detail: notModelled });
  const ofFamily = gpuIds().filter((id) => family !== undefined && GPU_NAMING[id]?.family === family);
  if (ofFamily.length === 0) refuse({ suggestions: gpuIdsNear(family) });
  const ofForm = ofFamily.filter((id) => form === undefined || GPU_NAMING[id]?.form === form);
  if (ofForm.length === 0) {
    const entries = ofFamily.map((id) => `${id} (${GPUS.get(id)?.name})`).join(', ');
    refuse({
      detail:
        form === 'sxm'
          ? `the catalogue's ${entries} is a PCIe card, not an SXM module`
          : `the catalogue models ${entries}; ${form === 'nvl' ? 'an NVL' : 'a PCIe'} card has other clocks, memory bandwidth and interconnect, so it is not modelled`,
    });
  }
  const ofMemory = ofForm.filter((id) => memoryGb === undefined || GPU_NAMING[id]?.memoryGb === memoryGb);
  if (ofMemory.length === 0) {
    const sizes = ofForm.map((id) => `${id}: ${GPU_NAMING[id]?.memoryGb} GB`).join(', ');
    refuse({ detail: `the catalogue has no ${memoryGb} GB ${family} (${sizes})` });
  }
  if (ofMemory.length > 1) refuse({ ambiguous: true, detail: 'give the memory size', suggestions: ofMemory });
  return ofMemory[0] as GpuId;
}

/** resolveGpuId without the throw: the id a name means, or undefined when it means none (or is refused). */
export function findGpuId(name: string): GpuId | undefined {
  if (GPUS.has(name)) return name;
  try {
    return resolveGpuId(name);
  } catch {
    return undefined;
  }
}

/** The GPU a name means (resolveGpuId's rules); throws SY_ERR_UNKNOWN_NAME listing the valid ids. */
export function gpuSpec(id: GpuId): GpuSpec {
  const gpu = GPUS.get(id) ?? GPUS.get(resolveGpuId(id));
  if (gpu === undefined) throw unknownCatalogueName('gpu', id, gpuIds());
  return gpu;
}
