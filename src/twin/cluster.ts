import { z } from 'zod';
import { HostAccounting } from '../core/host-accounting.ts';
import {
  type InstanceRole,
  type InstanceView,
  SIGNAL_STALE_AFTER_SCRAPES,
  signalsFresh,
} from '../core/view.ts';
import type { EngineCore } from '../engine-core/engine-core.ts';
import { gpuNameSchema, modelNameSchema } from '../model/names-schema.ts';

/** One group of identical instances. */
export const instanceGroupSchema = z
  .object({
    count: z.number().int().min(1).max(100_000),
    /** A catalogue GPU; a vendor name (`H100-SXM`) is read as its id. */
    gpu: gpuNameSchema,
    /** The model id the instances serve (what requests name). */
    model: z.string(),
    /**
     * The catalogue model (src/model/models.ts) whose performance and weights they have, when the
     * served id is another name for it (a fine-tune `m07` of `llama-3.1-8b`); default `model`. A
     * Hugging Face name (`meta-llama/Llama-3.1-8B-Instruct`) is read as its id.
     */
    base: modelNameSchema.optional(),
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
  prefixHitRate: number;
}

/** The host's clock as the view shows it; the twin's view object is one. */
export interface ViewClock {
  readonly nowMs: number;
}

/** An engine's counters over the run (all its starts), for the run's summary. */
export interface EngineTotals {
  readonly steps: number;
  readonly busyMs: number;
  readonly preemptions: number;
  readonly prefixHitTokens: number;
  readonly prefixQueryTokens: number;
  /** prefixHitTokens / prefixQueryTokens, 0 before any query. */
  readonly prefixHitRate: number;
}

/** Optional parts of a SimInstance. */
export interface SimInstanceExtras {
  /** The catalogue model behind the served id (default the served id). */
  readonly base?: string | undefined;
  /** Builds an empty engine of the same kind, for a restart; absent: the instance never restarts. */
  readonly newEngine?: (() => EngineCore) | undefined;
  /** Its role in a disaggregated (P/D) cluster; default 'both' (colocated). */
  readonly role?: InstanceRole | undefined;
  /**
   * The context length its engine serves (the base's catalogue `contextTokensMax`): a request past
   * it is refused where it arrives (src/model/context.ts). Default: no limit.
   */
  readonly contextTokensMax?: number | undefined;
}

/**
 * One modelled instance: an engine core plus the host's own accounting, seen by policies through
 * the read-only InstanceView with the same fields and the same staleness as the live view
 * (src/core/view.ts has the table):
 * - host accounting (`inFlight`, `pendingPrefillTokens`, `healthy`, `draining`) is what the twin, as
 *   the host, sent and observed (`sent`, `firstToken`, `ended`), never read from the engine;
 * - engine signals (`running`, `waiting`, `kvUsage`, `prefixHitRate`, `updatedAtMs`) come from the
 *   last `scrape()`, as a live gateway sees them between Prometheus scrapes; a snapshot older than
 *   `staleAfterMs` falls back to host accounting exactly as the live view does (`signalsFresh`).
 * With `scrapeIntervalMs` 0 (the twin's oracle mode) engine signals are read live from the core.
 */
export class SimInstance extends HostAccounting implements InstanceView {
  readonly models: readonly string[];
  readonly role: InstanceRole;
  healthy = true;
  draining = false;
  /** Requests routed here over the run. */
  routed = 0;
  /** Virtual time the current step ends; NaN when idle. */
  stepEndMs = Number.NaN;
  /**
   * Requests held here while their prefix loads from a KV store (src/twin/kv-store.ts), kept by the
   * twin. vLLM keeps such a request in its scheduler's waiting queue (WAITING_FOR_REMOTE_KVS), so
   * `vllm:num_requests_waiting` counts it: `waiting` adds them to the engine's queue.
   */
  fetching = 0;
  /** The engine core; a restart replaces it with an empty one (`restartEngine`). */
  engine: EngineCore;
  /** The catalogue model whose performance and weights it has (`model` is the served id). */
  readonly base: string;
  /** The context length its engine enforces on each request (Infinity: none). */
  readonly contextTokensMax: number;
  private readonly newEngine: (() => EngineCore) | undefined;
  /** The counters of engines dropped at restarts. */
  private retired = { steps: 0, busyMs: 0, preemptions: 0, prefixHitTokens: 0, prefixQueryTokens: 0 };
  kvUsageSum = 0;
  kvUsageMax = 0;
  kvUsageSamples = 0;
  /** Never scraped: stale until the first scrape, as live. */
  private scrapedAtMs = Number.NEGATIVE_INFINITY;
  private scrapedAtOrZeroMs = 0;
  private readonly snapshot: SignalSnapshot = { running: 0, waiting: 0, kvUsage: 0, prefixHitRate: 0 };
  private readonly exact: boolean;
  private readonly staleAfterMs: number;

  constructor(
    readonly index: number,
    readonly id: string,
    readonly gpu: string,
    readonly model: string,
    readonly tp: number,
    engine: EngineCore,
    readonly blockSize: number,
    /** The view's clock, read to judge the snapshot's age. */
    private readonly clock: ViewClock,
    /** Scrape period; 0: policies read exact engine signals (no staleness at all). */
    scrapeIntervalMs: number,
    more: SimInstanceExtras = {},
  ) {
    super();
    this.engine = engine;
    this.base = more.base ?? model;
    this.contextTokensMax = more.contextTokensMax ?? Number.POSITIVE_INFINITY;
    this.role = more.role ?? 'both';
    this.newEngine = more.newEngine;
    this.models = [model];
    this.exact = scrapeIntervalMs === 0;
    this.staleAfterMs = SIGNAL_STALE_AFTER_SCRAPES * scrapeIntervalMs;
  }

  /**
   * A stopped instance starts again: a new process with an empty engine (no prefix cache, no KV
   * held), as a restarted vLLM is, and no snapshot until its first scrape. Its signals start over;
   * the run's summary keeps counting across starts (`engineTotals`).
   */
  restartEngine(): void {
    if (this.newEngine === undefined) throw new RangeError(`instance ${this.id} cannot restart its engine`);
    // (Its last step may still be winding down in the twin's loop: that engine is simply dropped.)
    if (this.inFlight !== 0) throw new RangeError(`instance ${this.id} restarted with work in flight`);
    this.retired = { ...this.engineTotals };
    this.engine = this.newEngine();
    this.forgetSignals();
  }

  /**
   * The host ejected this instance: its last snapshot may describe a dead process, so the view shows
   * it as never scraped (host accounting, `kvUsage` and `prefixHitRate` 0; the sizes are the
   * engine's configuration and stay) until the next scrape: the live view's `forgetSignals` rule
   * (src/core/view.ts). Scrapes here are taken and applied at once, so none can arrive late.
   */
  forgetSignals(): void {
    const s = this.snapshot;
    s.running = 0;
    s.waiting = 0;
    s.kvUsage = 0;
    s.prefixHitRate = 0;
    this.scrapedAtMs = Number.NEGATIVE_INFINITY;
  }

  /** The engine's counters summed over every start of the run. */
  get engineTotals(): EngineTotals {
    const e = this.engine;
    const r = this.retired;
    const prefixHitTokens = r.prefixHitTokens + e.prefixHitTokens;
    const prefixQueryTokens = r.prefixQueryTokens + e.prefixQueryTokens;
    return {
      steps: r.steps + e.steps,
      busyMs: r.busyMs + e.busyMs,
      preemptions: r.preemptions + e.preemptions,
      prefixHitTokens,
      prefixQueryTokens,
      // Unchanged for an instance never restarted: the engine's own ratio.
      prefixHitRate: r.prefixQueryTokens === 0 ? e.prefixHitRate : prefixHitTokens / prefixQueryTokens,
    };
  }

  /** Copies the engine's signals, as a metrics scrape would. */
  scrape(nowMs: number): void {
    const s = this.snapshot;
    const e = this.engine;
    s.running = e.running;
    s.waiting = e.waiting + this.fetching;
    s.kvUsage = e.kvUsage;
    s.prefixHitRate = e.prefixHitRate;
    this.scrapedAtMs = nowMs;
    this.scrapedAtOrZeroMs = nowMs;
  }

  // ---- engine signals, as scraped ----

  /** Whether the last snapshot may still be shown (always, in exact mode). */
  private get fresh(): boolean {
    return this.exact || signalsFresh(this.clock.nowMs, this.scrapedAtMs, this.staleAfterMs);
  }

  get running(): number {
    if (this.exact) return this.engine.running;
    return this.fresh ? this.snapshot.running : this.inFlight;
  }
  get waiting(): number {
    if (this.exact) return this.engine.waiting + this.fetching;
    return this.fresh ? this.snapshot.waiting : 0;
  }
  get kvUsage(): number {
    return this.exact ? this.engine.kvUsage : this.snapshot.kvUsage;
  }
  get kvBlocksTotal(): number {
    return this.engine.kvBlocksTotal;
  }
  get prefixHitRate(): number {
    return this.exact ? this.engine.prefixHitRate : this.snapshot.prefixHitRate;
  }
  get updatedAtMs(): number {
    return this.exact ? this.clock.nowMs : this.scrapedAtOrZeroMs;
  }
}
