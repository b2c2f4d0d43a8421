import { z } from 'zod';
import { SwitchyardError } from '../core/errors.ts';
import { DEFAULT_ENGINE_CONFIG, type EngineConfig } from '../engine-core/types.ts';
import { vllmServeBatchDefaults } from '../model/engines.ts';
import { gpuSpec } from '../model/gpus.ts';
import { batchSectionSchema } from './batch-jobs.ts';
import { type ClusterSpec, clusterSpecSchema } from './cluster.ts';
import { FAULTS_MAX, faultEntrySchema, reliabilitySchema } from './faults.ts';

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
  })
  .partial()
  .strict();

const uniformClusterSchema = z
  .object({
    instances: z.number().int().min(1).max(100_000),
    gpu: z.string(),
    model: z.string(),
    tp: z.number().int().min(1).max(64),
  })
  .partial()
  .strict();

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
    cluster: z.union([uniformClusterSchema, clusterSpecSchema]),
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

/** Parses a value against a schema; a failure becomes SY_ERR_INVALID_CONFIG naming each bad path. */
export function parseWithSchema<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `${path}: ${issue.message}`;
  });
  throw new SwitchyardError('SY_ERR_INVALID_CONFIG', `${where}: ${problems.join('; ')}`, { problems });
}

/** Normalises either cluster form to groups. */
export function toClusterSpec(cluster: SimConfigFile['cluster']): ClusterSpec {
  if (cluster !== undefined && 'groups' in cluster) return cluster;
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
 * GPU, SY_ERR_INVALID_CONFIG when the token budget is below the block size.
 */
export function toEngineConfig(
  options: z.infer<typeof engineOptionsSchema> | undefined,
  gpu?: string,
): EngineConfig {
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
): EngineConfig[] {
  return cluster.groups.map((group) => toEngineConfig(options, group.gpu));
}
