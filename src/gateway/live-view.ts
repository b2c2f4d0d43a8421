/**
 * The live ClusterView: what policies read about each engine, built from three sources.
 *
 * - The gateway's own accounting, always fresh: `inFlight` (sent, not yet finished),
 *   `pendingPrefillTokens` (input tokens of requests sent and still waiting for their first byte),
 *   `healthy` (health checks and proxy connection errors) and `draining` (admin API).
 * - Each engine's Prometheus metrics, scraped every `scrapeIntervalMs`: `running`, `waiting`,
 *   `kvUsage`, `kvBlocksTotal`, `blockSize`, `prefixHitRate`. `updatedAtMs` is the scrape time.
 * - KV events, which go straight to the active policy's `onKvEvent` hook, not through the view.
 *
 * The field kinds, and the rule below, are the same in the twin's view (src/core/view.ts has the
 * table; test/conformance/views.ts checks both views agree field by field).
 *
 * Staleness: scraped signals older than `staleAfterMs` (or never scraped, or an engine without a
 * metrics endpoint) are not trusted (`signalsFresh`). Such an instance is marked `stale` and shows the gateway's own
 * accounting instead: `running = inFlight`, `waiting = 0` (everything sent is assumed admitted),
 * `kvUsage` keeps its last scraped value (0 if none: KV usage moves slowly and has no host-side
 * proxy). Fresh scraped values are shown as scraped, as the twin's scraped view does; requests sent
 * since the scrape show in `inFlight`.
 *
 * Ejection: the gateway calls `forgetSignals` when it ejects an instance. Its last scrape describes a
 * process that may be dead or replaced by a restarted one with an empty cache, so the view shows it as
 * never scraped (host accounting, `kvUsage` 0) until a scrape taken after the ejection arrives.
 * Without this a restarted engine came back showing the KV usage of its killed predecessor for as
 * long as the scraper's error backoff lasted, and a KV-aware cost sent it nothing. On re-admission the
 * gateway has it scraped at once (feeds `readmitted`). The twin applies the same rule
 * (src/twin/cluster.ts `forgetSignals`, src/core/view.ts).
 */
import { HostAccounting } from '../core/host-accounting.ts';
import { type InstanceRole, type InstanceView, signalsFresh } from '../core/view.ts';

/** Engine signals as the metrics scraper reports them (every field optional: engines differ). */
export interface EngineSignalsInput {
  readonly running?: number | undefined;
  readonly waiting?: number | undefined;
  readonly kvUsage?: number | undefined;
  readonly kvBlocksTotal?: number | undefined;
  readonly blockSize?: number | undefined;
  readonly prefixQueries?: number | undefined;
  readonly prefixHits?: number | undefined;
  /** The engine's own hit-rate gauge, used when it reports no query and hit counters. */
  readonly prefixHitRate?: number | undefined;
}

/** What the view needs to know about an instance when it is added. */
export interface LiveInstanceSpec {
  readonly id: string;
  readonly models: readonly string[];
  readonly gpu: string;
  readonly tp: number;
  readonly role: InstanceRole;
  /** Defaults until an engine reports its own. */
  readonly kvBlocksTotal: number;
  readonly blockSize: number;
}

function finite(v: number | undefined): v is number {
  return v !== undefined && Number.isFinite(v);
}

/** One instance as policies see it; the gateway mutates it, policies only read. */
export class LiveInstance extends HostAccounting implements InstanceView {
  readonly id: string;
  readonly models: readonly string[];
  readonly gpu: string;
  readonly tp: number;
  readonly role: InstanceRole;
  healthy = true;
  draining = false;
  running = 0;
  waiting = 0;
  kvUsage = 0;
  kvBlocksTotal: number;
  blockSize: number;
  prefixHitRate = 0;
  updatedAtMs = 0;
  /** True while the view shows host accounting instead of scraped signals. */
  stale = true;
  /** Last scraped values (NaN: never reported). */
  private scrapedRunning = Number.NaN;
  private scrapedWaiting = Number.NaN;
  private scrapedAtMs = Number.NEGATIVE_INFINITY;
  /** Scrapes taken before this are ignored: the last scrape's, or the last ejection's time. */
  private signalsFloorMs = Number.NEGATIVE_INFINITY;

  constructor(spec: LiveInstanceSpec) {
    super();
    this.id = spec.id;
    this.models = spec.models;
    this.gpu = spec.gpu;
    this.tp = spec.tp;
    this.role = spec.role;
    this.kvBlocksTotal = spec.kvBlocksTotal;
    this.blockSize = spec.blockSize;
  }

  /** Applies one scrape. Fields the engine did not report keep their previous value. */
  applySignals(signals: EngineSignalsInput, atMs: number): void {
    if (atMs < this.signalsFloorMs) return;
    this.signalsFloorMs = atMs;
    this.scrapedAtMs = atMs;
    this.updatedAtMs = atMs;
    this.scrapedRunning = finite(signals.running) ? Math.max(0, signals.running) : Number.NaN;
    this.scrapedWaiting = finite(signals.waiting) ? Math.max(0, signals.waiting) : Number.NaN;
    if (finite(signals.kvUsage)) this.kvUsage = Math.min(1, Math.max(0, signals.kvUsage));
    if (finite(signals.kvBlocksTotal) && signals.kvBlocksTotal > 0)
      this.kvBlocksTotal = signals.kvBlocksTotal;
    if (finite(signals.blockSize) && signals.blockSize > 0) this.blockSize = signals.blockSize;
    if (finite(signals.prefixQueries) && finite(signals.prefixHits) && signals.prefixQueries > 0)
      this.prefixHitRate = Math.min(1, Math.max(0, signals.prefixHits / signals.prefixQueries));
    else if (finite(signals.prefixHitRate))
      this.prefixHitRate = Math.min(1, Math.max(0, signals.prefixHitRate));
  }

  /**
   * The host ejected this instance at `atMs`: drops the scraped `running`, `waiting`, `kvUsage` and
   * `prefixHitRate` (a restarted engine starts with none), keeps the sizes (`kvBlocksTotal`,
   * `blockSize`: the same engine configuration), and ignores scrapes taken before `atMs`.
   */
  forgetSignals(atMs: number): void {
    this.scrapedRunning = Number.NaN;
    this.scrapedWaiting = Number.NaN;
    this.kvUsage = 0;
    this.prefixHitRate = 0;
    this.scrapedAtMs = Number.NEGATIVE_INFINITY;
    this.signalsFloorMs = Math.max(this.signalsFloorMs, atMs);
  }

  /** Settles what the view shows at `nowMs`: scraped signals when fresh, host accounting when stale. */
  settle(nowMs: number, staleAfterMs: number): void {
    const fresh = signalsFresh(nowMs, this.scrapedAtMs, staleAfterMs);
    const running = fresh ? this.scrapedRunning : Number.NaN;
    const waiting = fresh ? this.scrapedWaiting : Number.NaN;
    this.stale = !fresh || Number.isNaN(running);
    this.running = Number.isNaN(running) ? this.inFlight : running;
    this.waiting = Number.isNaN(waiting) ? 0 : waiting;
  }

  /** Milliseconds since the last scrape (Infinity: never). */
  signalAgeMs(nowMs: number): number {
    return nowMs - this.scrapedAtMs;
  }
}

/** The cluster as the live policies see it. `at(nowMs)` settles every instance for one decision. */
export class LiveView {
  nowMs = 0;
  readonly instances: LiveInstance[] = [];
  private readonly byId = new Map<string, LiveInstance>();

  constructor(readonly staleAfterMs: number) {}

  add(spec: LiveInstanceSpec): LiveInstance {
    if (this.byId.has(spec.id)) throw new RangeError(`duplicate instance id '${spec.id}'`);
    const instance = new LiveInstance(spec);
    this.instances.push(instance);
    this.byId.set(spec.id, instance);
    return instance;
  }

  get(id: string): LiveInstance | undefined {
    return this.byId.get(id);
  }

  /** Takes an instance out of the view (a backend removed at run time); false for an unknown id. */
  remove(id: string): boolean {
    const instance = this.byId.get(id);
    if (instance === undefined) return false;
    this.byId.delete(id);
    this.instances.splice(this.instances.indexOf(instance), 1);
    return true;
  }

  /** Feeds a scrape to its instance; unknown ids (an instance removed meanwhile) are ignored. */
  applySignals(id: string, signals: EngineSignalsInput, atMs: number): void {
    this.byId.get(id)?.applySignals(signals, atMs);
  }

  /** Settles the view at `nowMs` and returns it (no allocation). */
  at(nowMs: number): this {
    this.nowMs = nowMs;
    const staleAfterMs = this.staleAfterMs;
    for (const instance of this.instances) instance.settle(nowMs, staleAfterMs);
    return this;
  }
}
