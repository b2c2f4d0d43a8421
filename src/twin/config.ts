import { z } from 'zod';
import { autoscalerNames } from '../control/autoscalers/registry.ts';
import { clusterNodesSchema } from '../control/placement/index.ts';
import { SwitchyardError } from '../core/errors.ts';
import { DEFAULT_ENGINE_CONFIG, type EngineConfig } from '../engine-core/types.ts';
import { vllmServeBatchDefaults } from '../model/engines.ts';
import { gpuSpec } from '../model/gpus.ts';
import { findModelId, modelIds, resolveModelId } from '../model/models.ts';
import { gpuNameSchema, modelNameSchema } from '../model/names-schema.ts';
import { batchSectionSchema } from './batch-jobs.ts';
import { type ClusterSpec, clusterSpecSchema } from './cluster.ts';
import { FAULTS_MAX, faultEntrySchema, reliabilitySchema } from './faults.ts';
import { kvStoreSchema, type TwinEngineOptions } from './kv-store.ts';
import { PLACED_MODELS_MAX, type PlacementSettings, placementCluster } from './placement-host.ts';

/** Defaults of the twin's command line and config file. */
export const SIM_DEFAULTS = {
  seed: 1,
  policy: 'round-robin',
  instances: 4,
  gpu: 'h100',
  model: 'llama-3.1-8b',
  tp: 1,
  /** Interactive chat targets in the spirit of DistServe's chatbot SLOs, relaxed for long prompts. */
  sloTtftMs: 2000,
  sloTpotMs: 100,
} as const;

/** Engine options in a config file, named like the engine flags in camelCase. */
export const engineOptionsSchema = z
  .object({
    blockSize: z.number().int().min(1).max(1024),
    maxNumSeqs: z.number().int().min(1).max(65_536),
    maxNumBatchedTokens: z.number().int().min(1).max(1_048_576),
    gpuMemoryUtilization: z.number().gt(0).max(1),
    enablePrefixCaching: z.boolean(),
    numGpuBlocksOverride: z.number().int().min(1),
    schedulingPolicy: z.enum(['fcfs', 'priority']),
    asyncScheduling: z.boolean(),
    /** vLLM's --disable-cascade-attn (default false: cascade attention on, src/model/cascade.ts). */
    disableCascadeAttn: z.boolean(),
    /**
     * The engine's KV connector to a store it fetches cached prefixes from (Mooncake store, LMCache
     * P2P): `{ kind: 'peer', link, minTokens? }`, src/twin/kv-store.ts. Absent: none.
     */
    kvStore: kvStoreSchema,
  })
  .partial()
  .strict();

const uniformClusterSchema = z
  .object({
    instances: z.number().int().min(1).max(100_000),
    /** Catalogue GPU and model; vendor and Hugging Face names are read as their ids. */
    gpu: gpuNameSchema,
    model: modelNameSchema,
    tp: z.number().int().min(1).max(64),
  })
  .partial()
  .strict();

/** One model of a multi-model cluster: served id, catalogue base, variant, priority, autoscaler. */
const placedModelSchema = z.strictObject({
  /** The served id requests name. */
  id: z.string().min(1).max(200),
  /**
   * The catalogue model it runs as; default `id` (which must then be a catalogue model). A Hugging
   * Face name is read as its id.
   */
  base: z.string().min(1).pipe(modelNameSchema).optional(),
  /** Its GPU type; may be left out when every node has the same type. A vendor name is read as its id. */
  gpu: z.string().min(1).pipe(gpuNameSchema).optional(),
  tp: z.number().int().min(1).max(64).default(1),
  /** Higher is served first and may take GPUs from lower ones. */
  priority: z.number().int().min(-1_000_000).max(1_000_000).default(0),
  /** What its loop plans for and its attainment measures (default: the run's SLO). */
  slo: z.strictObject({ ttftMs: z.number().positive(), tpotMs: z.number().positive() }).optional(),
  autoscaler: z.strictObject({
    name: z.string().min(1),
    minInstances: z.number().int().min(0).default(1),
    maxInstances: z.number().int().min(1).max(10_000),
    params: z.record(z.string(), z.unknown()).default({}),
  }),
});

/**
 * The multi-model form of `cluster:`: nodes, an optional GPU budget, and the models sharing them,
 * each with its own autoscaler (src/twin/placement-host.ts). Ids unique, bases from the catalogue,
 * each model's GPU type present on some node, min <= max.
 */
export const placementClusterSchema = z
  .strictObject({
    nodes: clusterNodesSchema,
    /** Most GPUs all instances together may hold (default: every node's). */
    gpuBudget: z.number().int().min(0).optional(),
    /** How often every model's loop runs, ms (one tick for all). */
    intervalMs: z.number().positive().finite().optional(),
    /** Requests each model's scale-from-zero buffer holds at most (0: off). */
    heldMax: z.number().int().min(0).max(1_000_000).optional(),
    /** Longest a held request waits for a ready instance, ms. */
    heldWaitMs: z.number().positive().finite().optional(),
    models: z.array(placedModelSchema).min(1).max(PLACED_MODELS_MAX),
  })
  .superRefine((cluster, ctx) => {
    const types = [...new Set(cluster.nodes.map((n) => n.gpu))].sort();
    // A budget below every model's TP starts nothing: the run rejected every request, silently.
    const smallestTp = Math.min(...cluster.models.map((m) => m.tp));
    if (cluster.gpuBudget !== undefined && cluster.gpuBudget < smallestTp)
      ctx.addIssue({
        code: 'custom',
        path: ['gpuBudget'],
        message: `${cluster.gpuBudget} GPUs hold no instance (the smallest model's TP is ${smallestTp}): every request would be rejected; raise it or leave it out (default: every node's GPUs)`,
      });
    const seen = new Set<string>();
    const autoscalers = autoscalerNames();
    cluster.models.forEach((m, i) => {
      const issue = (path: (string | number)[], message: string): void =>
        ctx.addIssue({ code: 'custom', path: ['models', i, ...path], message });
      if (seen.has(m.id)) issue(['id'], `duplicate model id '${m.id}'`);
      seen.add(m.id);
      if (m.base === undefined && findModelId(m.id) === undefined) {
        issue(['id'], `'${m.id}' is not a catalogue model: give a base; valid: ${modelIds().join(', ')}`);
      } else if (m.base !== undefined) {
        try {
          resolveModelId(m.base);
        } catch (error) {
          issue(['base'], (error as Error).message);
        }
      }
      if (m.gpu === undefined && types.length > 1) {
        issue(['gpu'], `required: the nodes have several GPU types (${types.join(', ')})`);
      } else if (m.gpu !== undefined && !types.includes(m.gpu)) {
        issue(['gpu'], `no node has '${m.gpu}' GPUs; present: ${types.join(', ')}`);
      }
      if (!autoscalers.includes(m.autoscaler.name)) {
        issue(
          ['autoscaler', 'name'],
          `unknown autoscaler '${m.autoscaler.name}'; valid: ${autoscalers.join(', ')}`,
        );
      }
      if (m.autoscaler.minInstances > m.autoscaler.maxInstances) {
        issue(['autoscaler', 'minInstances'], `above maxInstances (${m.autoscaler.maxInstances})`);
      }
    });
  });
export type PlacementClusterFile = z.infer<typeof placementClusterSchema>;

/** Whether a `cluster:` section is the multi-model form. */
export function isPlacementCluster(cluster: SimConfigFile['cluster']): cluster is PlacementClusterFile {
  return cluster !== undefined && 'models' in cluster;
}

/**
 * `cluster:` in one of three forms: uniform (`instances`, `gpu`, ...), `groups`, or multi-model
 * (`nodes` and `models`). The last is told apart by its keys and parsed alone, so its errors name
 * their paths (a plain union would only say "Invalid input").
 */
const clusterSectionSchema = z.unknown().transform((value, ctx) => {
  const multi = typeof value === 'object' && value !== null && ('models' in value || 'nodes' in value);
  const schema = multi ? placementClusterSchema : z.union([uniformClusterSchema, clusterSpecSchema]);
  const result = (schema as z.ZodType<ClusterSection>).safeParse(value);
  if (result.success) return result.data;
  for (const issue of explainIssues(result.error.issues))
    ctx.addIssue({ code: 'custom', message: issue.message, path: [...issue.path] });
  return z.NEVER;
});
type ClusterSection = z.infer<typeof uniformClusterSchema> | ClusterSpec | PlacementClusterFile;

/** The run's placement settings from the multi-model `cluster:` section. */
export function toPlacementSettings(cluster: PlacementClusterFile): PlacementSettings {
  const onlyType = cluster.nodes[0]?.gpu ?? SIM_DEFAULTS.gpu;
  return {
    nodes: cluster.nodes,
    gpuBudget: cluster.gpuBudget,
    intervalMs: cluster.intervalMs,
    heldMax: cluster.heldMax,
    heldWaitMs: cluster.heldWaitMs,
    models: cluster.models.map((m) => ({
      id: m.id,
      base: m.base ?? findModelId(m.id) ?? m.id,
      gpu: m.gpu ?? onlyType,
      tp: m.tp,
      priority: m.priority,
      ...(m.slo !== undefined ? { slo: m.slo } : {}),
      autoscaler: m.autoscaler.name,
      params: m.autoscaler.params,
      minInstances: m.autoscaler.minInstances,
      maxInstances: m.autoscaler.maxInstances,
    })),
  };
}

/** A `switchyard sim --config FILE.yaml` file. The workload is validated by its own schema. */
export const simConfigFileSchema = z
  .object({
    seed: z.number().int().min(0).max(0xffffffff),
    /** The active routing policy: a registered type or a name from `policies`. */
    policy: z.string(),
    /** Named policy instances: a type and its parameters (see docs/results/routing.md for examples). */
    policies: z.record(
      z.string(),
      z.strictObject({ type: z.string(), params: z.record(z.string(), z.unknown()).default({}) }),
    ),
    cluster: clusterSectionSchema,
    engine: engineOptionsSchema,
    workload: z.record(z.string(), z.unknown()),
    slo: z.object({ ttftMs: z.number().positive(), tpotMs: z.number().positive() }).partial().strict(),
    /** The admission queue (bands, tenants, limits); validated by its own schema. Present: enabled. */
    admission: z.record(z.string(), z.unknown()),
    /** Offline batch jobs that fill spare capacity. */
    batch: batchSectionSchema,
    /** Policies see engine signals scraped this often (0: exact). */
    scrapeIntervalMs: z.number().nonnegative().finite(),
    /**
     * The shared early-rejection step in front of the policy (see src/policies/admission/early-reject.ts);
     * present: enabled, with these parameters. Validated by its own schema when the run starts.
     */
    earlyReject: z.record(z.string(), z.unknown()),
    /** Faults to inject: `kind:instance@start+duration` strings or objects (src/twin/faults.ts). */
    faults: z.array(faultEntrySchema).max(FAULTS_MAX),
    /** Retries and health rules under faults (defaults: the gateway's). */
    reliability: reliabilitySchema,
    /** Goodput's attainment target for --goodput, a fraction in (0, 1] (default 0.9). */
    goodputTarget: z.number().gt(0).max(1),
    output: z.object({ json: z.string(), html: z.string() }).partial().strict(),
    /**
     * An autoscaler over the cluster (flags override each field): its name (or several,
     * comma-separated, to compare), the pool's bounds, the loop's interval, and parameters per
     * autoscaler name (each validated by that autoscaler's own schema when the run starts).
     */
    autoscaler: z
      .strictObject({
        name: z.string().min(1),
        minInstances: z.number().int().min(0),
        maxInstances: z.number().int().min(1),
        intervalMs: z.number().positive().finite(),
        params: z.record(z.string(), z.record(z.string(), z.unknown())),
      })
      .partial(),
  })
  .partial()
  .strict();
export type SimConfigFile = z.infer<typeof simConfigFileSchema>;

/** A schema issue as reported: where, and what is wrong there. */
interface Issue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** A branch the value does not even begin to match: one wrong type or value at the branch's root. */
function rootMismatch(branch: readonly z.core.$ZodIssue[]): boolean {
  return branch.every(
    (i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value'),
  );
}

/**
 * Issues with each union's replaced by those of the branch the value came closest to. Zod reports a
 * value that matches no branch of a union as "Invalid input" and nothing else: `faults: [{ kind:
 * crash, instance: i0, atS: 5 }]` said `faults.0: Invalid input`, not that `forS` is missing, and
 * `cluster: { instances: '4' }` said `cluster: Invalid input`. The closest branch is one the value's
 * shape matches (not a type or value mismatch at its root) with the fewest issues; when there is
 * none, the branches' own messages are joined ("expected string" or "expected object").
 */
export function explainIssues(issues: readonly z.core.$ZodIssue[]): Issue[] {
  return issues.flatMap((issue): Issue[] => {
    if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [issue];
    const shaped = issue.errors.filter((branch) => !rootMismatch(branch));
    const candidates = shaped.length > 0 ? shaped : issue.errors;
    const closest = candidates.reduce((a, b) => (b.length < a.length ? b : a));
    const inner = explainIssues(closest).map((i) => ({
      path: [...issue.path, ...i.path],
      message: i.message,
    }));
    if (shaped.length > 0) return inner;
    const messages = [...new Set(issue.errors.flat().map((i) => i.message))];
    const joined = messages
      .map((m, i) => (i === 0 ? m : m.replace(/^Invalid (input|option): /, '')))
      .join(', or ');
    return [{ path: issue.path, message: joined }];
  });
}

/** Parses a value against a schema; a failure becomes SY_ERR_INVALID_CONFIG naming each bad path. */
export function parseWithSchema<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = explainIssues(result.error.issues).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `${path}: ${issue.message}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `${where}: ${problems.join('; ')}`, { problems });
}

/** Normalises either cluster form to groups. */
export function toClusterSpec(cluster: SimConfigFile['cluster']): ClusterSpec {
  if (cluster !== undefined && 'groups' in cluster) return cluster;
  if (isPlacementCluster(cluster)) return placementCluster(toPlacementSettings(cluster));
  const uniform = cluster ?? {};
  return {
    groups: [
      {
        count: uniform.instances ?? SIM_DEFAULTS.instances,
        gpu: uniform.gpu ?? SIM_DEFAULTS.gpu,
        model: uniform.model ?? SIM_DEFAULTS.model,
        tp: uniform.tp ?? SIM_DEFAULTS.tp,
      },
    ],
  };
}

/**
 * Fills engine options over vLLM's defaults. With a GPU, unset `maxNumSeqs` / `maxNumBatchedTokens`
 * take what `vllm serve` picks on that GPU (`vllmServeBatchDefaults`: 1024 / 8192 on H100 and H200,
 * 256 / 2048 elsewhere), so the twin models the server as launched without flags; explicit options
 * win. Without one, DEFAULT_ENGINE_CONFIG's limits apply. Throws SY_ERR_UNKNOWN_NAME for an unknown
 * GPU, SY_ERR_INVALID_CONFIG when the token budget is below the block size. `kvStore` rides along
 * for the twin host, which alone acts on it (the engine core ignores it).
 */
export function toEngineConfig(
  options: z.infer<typeof engineOptionsSchema> | undefined,
  gpu?: string,
): EngineConfig & TwinEngineOptions {
  const merged = {
    ...DEFAULT_ENGINE_CONFIG,
    ...(gpu === undefined ? {} : vllmServeBatchDefaults(gpuSpec(gpu))),
  };
  for (const [key, value] of Object.entries(options ?? {})) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  if (merged.maxNumBatchedTokens < merged.blockSize) {
    throw new SwitchyardError(
      'SY_ERR_INVALID_CONFIG',
      `maxNumBatchedTokens (${merged.maxNumBatchedTokens}) must be at least blockSize (${merged.blockSize})`,
    );
  }
  return merged;
}

/** Engine options resolved per cluster group, in order: each group's GPU picks its batch defaults. */
export function engineConfigsFor(
  options: z.infer<typeof engineOptionsSchema> | undefined,
  cluster: ClusterSpec,
): (EngineConfig & TwinEngineOptions)[] {
  return cluster.groups.map((group) => toEngineConfig(options, group.gpu));
}
