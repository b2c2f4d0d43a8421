/**
 * The link a prefill instance's KV cache travels over to its decode instance, and how long that
 * takes and how much of it lands on the time to first token. Pure: no clock, no I/O.
 *
 * Bandwidth is the line rate times the share of it a KV transfer reaches (`efficiency`); latency is
 * what one transfer pays once (handshake, notification, first byte). Figures and their sources:
 * - `nvlink`: NVLink 4 on an H100 SXM, 18 links, 900 GB/s per GPU both directions together, so
 *   450 GB/s (3,600 Gb/s) each way (NVIDIA H100 datasheet). 80% of it for a GPU-to-GPU copy.
 * - `ib-400`: one ConnectX-7 NDR InfiniBand port per GPU, 400 Gb/s (NVIDIA ConnectX-7 datasheet; the
 *   HGX/DGX H100 pairing of one NIC per GPU). 85% efficiency: Mooncake's transfer engine reports
 *   87 GB/s over 4 x 200 Gb/s RoCE (87% of line rate; 190 GB/s over 8 x 400 Gb/s, where the host's
 *   PCIe rather than the NIC limits), Mooncake FAST'25 and its transfer-engine docs.
 * - `roce-200`: 200 Gb/s RoCE v2 with GPUDirect RDMA, 87% as Mooncake measured on 200 Gb/s NICs.
 * - `tcp-100`: 100 GbE through the kernel's TCP stack and host memory. 40%: Mooncake's own TCP
 *   transport reached about 36 GB/s on the same 4 x 200 Gb/s (36% of line rate).
 * DistServe (OSDI'24) reports that with NVLink inside a node the KV transfer is a negligible share of
 * the request's latency; across nodes over slower links it is not, which is what these links model.
 *
 * Tensor parallelism on each side (an assumption, stated): the KV cache is split across the tp
 * ranks by KV head, and each rank has its own link (one NIC per GPU, one NVLink port set per GPU),
 * all ranks sending and receiving at once. A sending rank sends its share of the distinct bytes
 * (ranks holding replicated KV heads split the sending); a receiving rank receives all it holds,
 * replicated heads included. The transfer ends when the busiest rank is done.
 */
import { invalidArgument, unknownName } from '../core/errors.ts';
import { gbpsToBytesPerS, MS_PER_S } from '../core/units.ts';
import { kvBytesPerToken, kvBytesPerTokenPerGpu } from './kv.ts';
import type { ModelSpec } from './types.ts';

/** A link a KV cache moves over, per GPU (per tp rank). */
export interface KvLink {
  /** `nvlink`, `ib-400`, `roce-200`, `tcp-100` or `custom`. */
  readonly name: string;
  /** Line rate per GPU, one direction, Gb/s. */
  readonly gbps: number;
  /** Share of the line rate a KV transfer reaches, (0, 1]. */
  readonly efficiency: number;
  /** Paid once per transfer, µs. */
  readonly latencyUs: number;
  /** Where the figures come from. */
  readonly note: string;
}

/** The named links. */
export const KV_LINK_NAMES = ['nvlink', 'ib-400', 'roce-200', 'tcp-100'] as const;
export type KvLinkName = (typeof KV_LINK_NAMES)[number];

/** The named links' figures; see the module comment for sources. */
export const KV_LINKS: Readonly<Record<KvLinkName, KvLink>> = {
  nvlink: {
    name: 'nvlink',
    gbps: 3600,
    efficiency: 0.8,
    latencyUs: 10,
    note: 'NVLink 4 (H100 SXM): 450 GB/s per GPU each way',
  },
  'ib-400': {
    name: 'ib-400',
    gbps: 400,
    efficiency: 0.85,
    latencyUs: 20,
    note: 'ConnectX-7 NDR InfiniBand, GPUDirect RDMA, one NIC per GPU',
  },
  'roce-200': {
    name: 'roce-200',
    gbps: 200,
    efficiency: 0.87,
    latencyUs: 25,
    note: 'RoCE v2 200 Gb/s, GPUDirect RDMA (Mooncake: 87% of line rate)',
  },
  'tcp-100': {
    name: 'tcp-100',
    gbps: 100,
    efficiency: 0.4,
    latencyUs: 100,
    note: '100 GbE, kernel TCP through host memory (Mooncake TCP: ~36% of line rate)',
  },
};

/** A link of one's own: line rate and latency, efficiency 1 unless given. */
export interface CustomKvLink {
  readonly gbps: number;
  readonly latencyUs: number;
  readonly efficiency?: number;
}

/**
 * The link named `spec`, or a custom one. Throws SY_ERR_UNKNOWN_NAME for an unknown name and
 * SY_ERR_INVALID_ARGUMENT (param `link`) for a non-positive rate, negative latency or an efficiency
 * outside (0, 1].
 */
export function kvLink(spec: KvLinkName | string | CustomKvLink): KvLink {
  if (typeof spec === 'string') {
    const named = (KV_LINKS as Readonly<Record<string, KvLink>>)[spec];
    if (named === undefined) throw unknownName('link', spec, KV_LINK_NAMES);
    return named;
  }
  const efficiency = spec.efficiency ?? 1;
  if (!(Number.isFinite(spec.gbps) && spec.gbps > 0))
    throw invalidArgument('link', `gbps ${spec.gbps}`, 'a positive line rate in Gb/s');
  if (!(Number.isFinite(spec.latencyUs) && spec.latencyUs >= 0))
    throw invalidArgument('link', `latencyUs ${spec.latencyUs}`, 'a latency in µs >= 0');
  if (!(efficiency > 0 && efficiency <= 1))
    throw invalidArgument('link', `efficiency ${efficiency}`, 'a fraction in (0, 1]');
  return { name: 'custom', gbps: spec.gbps, efficiency, latencyUs: spec.latencyUs, note: 'custom' };
}

/** Bytes per second one rank's transfer reaches on `link`. */
export function effectiveBytesPerS(link: KvLink): number {
  return gbpsToBytesPerS(link.gbps) * link.efficiency;
}

/** How a transfer is set up. */
export interface KvTransferOptions {
  /** Tensor-parallel degree of the prefill instance; default 1. */
  readonly prefillTp?: number;
  /** Tensor-parallel degree of the decode instance; default 1. */
  readonly decodeTp?: number;
  /**
   * The engine sends each layer's KV as soon as the prefill computes it (Mooncake's layer-wise
   * prefill does); default false, as vLLM's NIXL connector, where the decode instance reads the
   * blocks once the prefill has finished.
   */
  readonly layerwise?: boolean;
  /**
   * The prefill's own duration, ms: with `layerwise`, a link slower than the compute falls behind
   * and the backlog (whole transfer minus the prefill) shows on TTFT. Unset: the link keeps up.
   */
  readonly prefillMs?: number;
}

/** One transfer's size and time. */
export interface KvTransfer {
  /** Distinct KV bytes of the prompt, all ranks together. */
  readonly bytes: number;
  /** Bytes the busiest rank moves (sends or receives). */
  readonly bytesPerRank: number;
  /** The whole transfer on its own: latency + bytesPerRank / effective bandwidth, ms. */
  readonly transferMs: number;
  /** What it adds to TTFT beyond the prefill, ms (see `kvTransfer`). */
  readonly ttftAddedMs: number;
}

function checkTp(tp: number, param: string): number {
  if (!Number.isInteger(tp) || tp < 1) throw invalidArgument(param, tp, 'a positive integer');
  return tp;
}

/**
 * Moving the KV of `tokens` prompt tokens of `model` over `link`. Without layer-wise sending the
 * whole transfer adds to TTFT. With it, only the last layer's share (plus the latency) does, or the
 * backlog when the link is slower than the prefill (`prefillMs`), whichever is larger.
 */
export function kvTransfer(
  model: ModelSpec,
  tokens: number,
  link: KvLink,
  options: KvTransferOptions = {},
): KvTransfer {
  if (!(Number.isFinite(tokens) && tokens >= 0)) throw invalidArgument('tokens', tokens, 'a count >= 0');
  const prefillTp = checkTp(options.prefillTp ?? 1, 'prefillTp');
  const decodeTp = checkTp(options.decodeTp ?? 1, 'decodeTp');
  const bytes = tokens * kvBytesPerToken(model);
  const sendBytes = bytes / prefillTp;
  const receiveBytes = tokens * kvBytesPerTokenPerGpu(model, decodeTp);
  const bytesPerRank = Math.max(sendBytes, receiveBytes);
  const latencyMs = link.latencyUs / 1000;
  const wireMs = (bytesPerRank / effectiveBytesPerS(link)) * MS_PER_S;
  const transferMs = latencyMs + wireMs;
  if (options.layerwise !== true) return { bytes, bytesPerRank, transferMs, ttftAddedMs: transferMs };
  const lastLayerMs = wireMs / model.layers;
  const backlogMs = options.prefillMs !== undefined ? wireMs - options.prefillMs : 0;
  return { bytes, bytesPerRank, transferMs, ttftAddedMs: latencyMs + Math.max(lastLayerMs, backlogMs) };
}
