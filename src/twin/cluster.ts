import { z } from 'zod';
import type { InstanceRole, InstanceView } from '../core/view.ts';
import type { EngineCore } from '../engine-core/engine-core.ts';

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

/** The engine signals a router reads, as last scraped. */
interface SignalSnapshot {
  running: number;
  waiting: number;
  kvUsage: number;
  pendingPrefillTokens: number;
  prefixHitRate: number;
}

/**
 * One modelled instance: an engine core plus the host's own accounting, seen by policies through
 * the read-only InstanceView. By default every signal is exact and fresh. With a scrape interval
 * (`stale = true`), the engine's signals come from the last `scrape()`, as a live gateway sees them
 * between Prometheus scrapes, while `inFlight`, the host's own count, stays fresh.
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
  private readonly snapshot: SignalSnapshot = {
    running: 0,
    waiting: 0,
    kvUsage: 0,
    pendingPrefillTokens: 0,
    prefixHitRate: 0,
  };

  constructor(
    readonly index: number,
    readonly id: string,
    readonly gpu: string,
    readonly model: string,
    readonly tp: number,
    readonly engine: EngineCore,
    readonly blockSize: number,
    /** Whether policies see scraped (possibly stale) engine signals instead of live ones. */
    readonly stale = false,
  ) {
    this.models = [model];
  }

  /** Copies the engine's signals, as a metrics scrape would. */
  scrape(nowMs: number): void {
    const s = this.snapshot;
    const e = this.engine;
    s.running = e.running;
    s.waiting = e.waiting;
    s.kvUsage = e.kvUsage;
    s.pendingPrefillTokens = e.pendingPrefillTokens;
    s.prefixHitRate = e.prefixHitRate;
    this.updatedAtMs = nowMs;
  }

  get running(): number {
    return this.stale ? this.snapshot.running : this.engine.running;
  }
  get waiting(): number {
    return this.stale ? this.snapshot.waiting : this.engine.waiting;
  }
  get kvUsage(): number {
    return this.stale ? this.snapshot.kvUsage : this.engine.kvUsage;
  }
  get kvBlocksTotal(): number {
    return this.engine.kvBlocksTotal;
  }
  get pendingPrefillTokens(): number {
    return this.stale ? this.snapshot.pendingPrefillTokens : this.engine.pendingPrefillTokens;
  }
  get prefixHitRate(): number {
    return this.stale ? this.snapshot.prefixHitRate : this.engine.prefixHitRate;
  }
}
