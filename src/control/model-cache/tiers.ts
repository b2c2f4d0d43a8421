/**
 * The storage tiers of one node that may hold a model's weights, with their capacity, read
 * bandwidth, per-load latency and number of lanes (loads served at once). Defaults come from
 * src/model/loading.ts (one set of figures for the whole project) and public hardware figures; a
 * config section overrides them for all nodes or per node, validated with zod so that a bad value
 * fails at start-up with SY_ERR_INVALID_CONFIG naming the field. Sources: README.md here.
 */
import { z } from 'zod';
import { SwitchyardError } from '../../core/errors.ts';
import type { GpuId } from '../../core/ids.ts';
import { gbpsToBytesPerS, TB } from '../../core/units.ts';
import { HOST_TO_GPU_BYTES_PER_S, STORAGE_TIERS } from '../../model/loading.ts';
import type { StorageTier } from '../../model/types.ts';
import { type ClusterNode, GPUS_PER_NODE_MAX } from '../placement/nodes.ts';

/**
 * Where a model's weights may be on a node. `gpu` holds the weights of the node's running
 * instances (a model there is loaded); the others are caches a load reads from.
 */
export type CacheTier = 'gpu' | 'dram' | 'ssd' | 'remote';

/** The tiers a load reads weights from (GPU memory is where they go, not where they come from). */
export type SourceTier = Exclude<CacheTier, 'gpu'>;

/** The source tiers, nearest the GPU first: ties between equally fast tiers go to the nearer one. */
export const SOURCE_TIERS: readonly SourceTier[] = Object.freeze(['dram', 'ssd', 'remote']);

/** The loading.ts tier whose figures each source tier's defaults take. */
export const STORAGE_TIER_OF: Readonly<Record<SourceTier, StorageTier>> = Object.freeze({
  dram: 'dram',
  ssd: 'nvme',
  remote: 'network',
});

/** One source tier of one node. */
export interface TierSpec {
  /** Bytes of weights the tier caches (LRU); Infinity for the remote store, which holds every model. */
  readonly capacityBytes: number;
  /**
   * Bytes per second one load reads from the tier, all the instance's GPUs together. Infinity where
   * the tier is not the limit (host DRAM: each GPU's PCIe link is, see `hostLinkBytesPerS`).
   */
  readonly readBytesPerS: number;
  /** Fixed cost before the first byte: opening files, metadata, connection set-up. */
  readonly latencyMs: number;
  /**
   * Loads the tier serves at once, each at the full `readBytesPerS`; more wait FIFO for the first
   * free lane. One for a drive or a NIC (a second load would only share the bandwidth), one per GPU
   * for host DRAM (each GPU reads through its own PCIe link).
   */
  readonly lanes: number;
}

/** One node's tiers, resolved: the cluster node plus every figure a start-up estimate reads. */
export interface NodeTiers {
  readonly id: string;
  readonly gpu: GpuId;
  readonly gpus: number;
  /** Host-to-GPU bandwidth of one GPU's PCIe link: each shard streams through its own. */
  readonly hostLinkBytesPerS: number;
  readonly tiers: Readonly<Record<SourceTier, TierSpec>>;
}

/** Most lanes one tier may have (a lane per GPU at most is what DRAM needs). */
export const TIER_LANES_MAX = GPUS_PER_NODE_MAX;
/** Longest per-load latency a config may give a tier (10 minutes: anything longer is a typo). */
export const TIER_LATENCY_MS_MAX = 600_000;

/**
 * Host DRAM given to the checkpoint cache: 1 TB, half of a DGX H100's 2 TB of system memory (the
 * rest is the OS's and the engines' own).
 */
export const DRAM_CACHE_BYTES_DEFAULT = 1 * TB;
/** Local SSD given to the checkpoint cache: one 3.84 TB NVMe drive (a DGX H100 has eight). */
export const SSD_CACHE_BYTES_DEFAULT = 3.84 * TB;

/** The default tiers of a node with `gpus` GPUs (DRAM gets one lane per GPU). */
export function defaultTiers(gpus: number): Record<SourceTier, TierSpec> {
  return {
    dram: fromLoading('dram', DRAM_CACHE_BYTES_DEFAULT, gpus),
    ssd: fromLoading('ssd', SSD_CACHE_BYTES_DEFAULT, 1),
    remote: {
      ...fromLoading('remote', Number.POSITIVE_INFINITY, 1),
      readBytesPerS: REMOTE_READ_BYTES_PER_S_DEFAULT,
    },
  };
}

/**
 * What one node reads from the remote checkpoint store: a 25 Gb/s NIC at the ~80% of line rate
 * TCP reaches (2.5 GB/s). loading.ts's own `network` tier
 * assumes a 100 Gb/s NIC (10 GB/s), which would make the store faster than the local NVMe drive;
 * set `remote.readBytesPerS: 10e9` for such a node.
 */
export const REMOTE_READ_BYTES_PER_S_DEFAULT = gbpsToBytesPerS(25) * 0.8;

function fromLoading(tier: SourceTier, capacityBytes: number, lanes: number): TierSpec {
  const spec = STORAGE_TIERS[STORAGE_TIER_OF[tier]];
  return { capacityBytes, readBytesPerS: spec.sourceBytesPerS, latencyMs: spec.latencyMs, lanes };
}

const bytesPerS = z.number().positive().finite();
const tierFields = {
  readBytesPerS: bytesPerS.optional(),
  latencyMs: z.number().min(0).max(TIER_LATENCY_MS_MAX).optional(),
  lanes: z.number().int().min(1).max(TIER_LANES_MAX).optional(),
};

/** Overrides of a cache tier (DRAM, SSD); capacity 0 means the node has no such cache. */
export const cacheTierOverrideSchema = z
  .object({ capacityBytes: z.number().min(0).finite().optional(), ...tierFields })
  .strict();

/** Overrides of the remote store: it holds every model, so it has no capacity to set. */
export const remoteTierOverrideSchema = z.object(tierFields).strict();

/** Overrides of one node's figures; unknown keys are refused. */
export const nodeTiersOverrideSchema = z
  .object({
    hostLinkBytesPerS: bytesPerS.optional(),
    dram: cacheTierOverrideSchema.optional(),
    ssd: cacheTierOverrideSchema.optional(),
    remote: remoteTierOverrideSchema.optional(),
  })
  .strict();

/** Overrides of one node's figures, as parsed. */
export type NodeTiersOverride = z.infer<typeof nodeTiersOverrideSchema>;

/**
 * The model-cache config section: `defaults` for every node, then `nodes` by node id (the nodes
 * themselves, with their GPU type and count, come from the cluster's `nodes:` list).
 */
export const modelCacheConfigSchema = z
  .object({
    defaults: nodeTiersOverrideSchema.optional(),
    nodes: z.record(z.string().min(1).max(200), nodeTiersOverrideSchema).optional(),
  })
  .strict();

/** The model-cache config section, as parsed. */
export type ModelCacheConfig = z.infer<typeof modelCacheConfigSchema>;

/**
 * Reads a model-cache config section (as parsed from YAML or JSON). Throws SY_ERR_INVALID_CONFIG
 * naming each bad field, e.g. `modelCache.nodes.node-1.ssd.readBytesPerS: Too small: expected
 * number to be >0`.
 */
export function parseModelCacheConfig(section: unknown, where = 'modelCache'): ModelCacheConfig {
  const result = modelCacheConfigSchema.safeParse(section);
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (issue) => `${[where, ...issue.path.map(String)].join('.')}: ${issue.message}`,
  );
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', problems.join('; '), { param: where, problems });
}

/**
 * Every node's tiers: defaults, then the section's `defaults`, then its entry for the node. A
 * `nodes` entry naming no cluster node fails with SY_ERR_INVALID_CONFIG (a typo would otherwise
 * leave that node on defaults silently).
 */
export function resolveNodeTiers(
  nodes: readonly ClusterNode[],
  config: ModelCacheConfig = {},
  where = 'modelCache',
): NodeTiers[] {
  const known = new Set(nodes.map((n) => n.id));
  const unknown = Object.keys(config.nodes ?? {}).filter((id) => !known.has(id));
  if (unknown.length > 0) {
    const problems = unknown.map((id) => `${where}.nodes.${id}: no such node in the cluster's nodes`);
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `${problems.join('; ')} (known: ${[...known].join(', ')})`,
      {
        param: `${where}.nodes`,
        problems,
      },
    );
  }
  return nodes.map((node) => resolveNode(node, config.defaults, config.nodes?.[node.id]));
}

function resolveNode(
  node: ClusterNode,
  defaults: NodeTiersOverride | undefined,
  own: NodeTiersOverride | undefined,
): NodeTiers {
  const base = defaultTiers(node.gpus);
  const tiers = {} as Record<SourceTier, TierSpec>;
  for (const tier of SOURCE_TIERS) tiers[tier] = overlay(overlay(base[tier], defaults?.[tier]), own?.[tier]);
  const hostLinkBytesPerS = own?.hostLinkBytesPerS ?? defaults?.hostLinkBytesPerS ?? HOST_TO_GPU_BYTES_PER_S;
  return { id: node.id, gpu: node.gpu, gpus: node.gpus, hostLinkBytesPerS, tiers };
}

/** `spec` with the override's set fields (an explicit `undefined` does not erase a default). */
function overlay(
  spec: TierSpec,
  override: Partial<Record<keyof TierSpec, number | undefined>> | undefined,
): TierSpec {
  if (override === undefined) return spec;
  return {
    capacityBytes: override.capacityBytes ?? spec.capacityBytes,
    readBytesPerS: override.readBytesPerS ?? spec.readBytesPerS,
    latencyMs: override.latencyMs ?? spec.latencyMs,
    lanes: override.lanes ?? spec.lanes,
  };
}
