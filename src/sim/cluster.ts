import { z } from 'zod';
import type { InstanceRole, InstanceView } from '../core/view.ts';
import type { EngineCore } from '../engine/engine-core.ts';

/** One group of identical instances. */
export const instanceGroupSchema = z
  .object({
    count: z.number().int().min(1).max(100_000),
    gpu: z.string(),
    model: z.string(),
    tp: z.number().int().min(1).max(64).default(1),
  })
  .strict();

/** The modelled cluster: groups of instances, possibly of mixed GPU types and TP. */
export const clusterSpecSchema = z.object({ groups: z.array(instanceGroupSchema).min(1) }).strict();
export type InstanceGroup = z.infer<typeof instanceGroupSchema>;
export type ClusterSpec = z.infer<typeof clusterSpecSchema>;

/**
 * One modelled instance: an engine core plus the host's own accounting, seen by policies through
 * the read-only InstanceView. In the twin every signal is exact and fresh.
 */
export class SimInstance implements InstanceView {
  readonly models: readonly string[];
  readonly role: InstanceRole = 'both';
  healthy = true;
  draining = false;
  inFlight = 0;
  /** Requests routed here over the run. */
  routed = 0;
  /** Virtual time the current step ends; NaN when idle. */
  stepEndMs = Number.NaN;
  updatedAtMs = 0;
  kvUsageSum = 0;
  kvUsageMax = 0;
  kvUsageSamples = 0;

  constructor(
    readonly index: number,
    readonly id: string,
    readonly gpu: string,
    readonly model: string,
    readonly tp: number,
    readonly engine: EngineCore,
    readonly blockSize: number,
  ) {
    this.models = [model];
  }

  get running(): number {
    return this.engine.running;
  }
  get waiting(): number {
    return this.engine.waiting;
  }
  get kvUsage(): number {
    return this.engine.kvUsage;
  }
  get kvBlocksTotal(): number {
    return this.engine.kvBlocksTotal;
  }
  get pendingPrefillTokens(): number {
    return this.engine.pendingPrefillTokens;
  }
  get prefixHitRate(): number {
    return this.engine.prefixHitRate;
  }
}
