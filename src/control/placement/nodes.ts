/**
 * Cluster nodes as data: an id, a GPU type from the catalogue (src/model/gpus.ts, which gives its
 * memory) and a GPU count. Validated with zod so that a bad cluster config fails at start-up with
 * the field's path, never with a silent default.
 */
import { z } from 'zod';
import { SwitchyardError } from '../../core/errors.ts';
import type { GpuId } from '../../core/ids.ts';
import { catalogueGpuSchema } from '../../model/names-schema.ts';

/** Most nodes one cluster config may list (bounds the placement's state and its work per call). */
export const CLUSTER_NODES_MAX = 10_000;
/** Most GPUs one node may hold (the largest HGX/DGX-style boxes hold 8; room for larger ones). */
export const GPUS_PER_NODE_MAX = 64;

/** One machine: `gpus` GPUs of one type. */
export interface ClusterNode {
  readonly id: string;
  readonly gpu: GpuId;
  readonly gpus: number;
}

/** One node in a cluster config; unknown keys are refused. */
export const clusterNodeSchema = z
  .object({
    id: z.string().min(1).max(200),
    /** A catalogue GPU, by id or vendor name (`NVIDIA H100 80GB HBM3`), read as its id. */
    gpu: catalogueGpuSchema,
    gpus: z.number().int().min(1).max(GPUS_PER_NODE_MAX),
  })
  .strict();

/** A node list: at least one node, ids unique. */
export const clusterNodesSchema = z
  .array(clusterNodeSchema)
  .min(1)
  .max(CLUSTER_NODES_MAX)
  .superRefine((nodes, ctx) => {
    const seen = new Set<string>();
    nodes.forEach((node, i) => {
      if (seen.has(node.id)) {
        ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate node id '${node.id}'` });
      }
      seen.add(node.id);
    });
  });

/**
 * The part of a cluster config section that placement reads: its `nodes` list. Other keys of the
 * section (the twin's `groups`, a uniform `instances`) belong to other readers and are left alone.
 */
export const clusterNodesSectionSchema = z.object({ nodes: clusterNodesSchema });

/**
 * Reads the nodes from a cluster config section (`{ nodes: [{ id, gpu, gpus }, ...] }`, as parsed
 * from YAML or JSON). Throws SY_ERR_INVALID_CONFIG naming each bad field, e.g.
 * `cluster.nodes.1.gpus: Too small: expected number to be >=1`.
 */
export function parseClusterNodes(section: unknown, where = 'cluster'): ClusterNode[] {
  const result = clusterNodesSectionSchema.safeParse(section);
  if (result.success) return result.data.nodes;
  const problems = result.error.issues.map((issue) => {
    const path = [where, ...issue.path.map(String)].join('.');
    return `${path}: ${issue.message}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', problems.join('; '), {
    param: `${where}.nodes`,
    problems,
  });
}
