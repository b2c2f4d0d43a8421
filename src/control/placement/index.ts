/** Placement of model instances on cluster nodes: see README.md in this folder. */
export {
  CLUSTER_NODES_MAX,
  type ClusterNode,
  clusterNodeSchema,
  clusterNodesSchema,
  clusterNodesSectionSchema,
  GPUS_PER_NODE_MAX,
  parseClusterNodes,
} from './nodes.ts';
export {
  DEFAULT_GPU_MEMORY_UTILIZATION,
  formatGpus,
  type ModelWant,
  PLACEMENTS_MAX,
  type Placement,
  type PlacementAction,
  type PlacementOptions,
  type PlacementPlan,
  placeReplicas,
  type Unplaced,
  unfitReason,
} from './placement.ts';
