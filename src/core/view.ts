import type { GpuId, InstanceId, ModelId } from './ids.ts';

/** The role an instance plays: both phases, or one side of a disaggregated pair. */
export type InstanceRole = 'both' | 'prefill' | 'decode';

/**
 * What a policy may read about one instance. Both hosts fill it, with the same meaning and the same
 * staleness, so a policy measured in the twin sees what it will see live (DESIGN.md, "The twin rule").
 * Every field is one of three kinds:
 *
 * | field                  | kind            | fresh?                          | twin source               | live source                     |
 * |------------------------|-----------------|---------------------------------|---------------------------|---------------------------------|
 * | id, models, gpu, tp, role | identity     | static                          | cluster spec              | backend config                  |
 * | healthy                | host accounting | always (the host's own verdict) | health state machine      | health checks + proxy errors    |
 * | draining               | host accounting | always                          | (never drained)           | admin API                       |
 * | inFlight               | host accounting | always                          | sent − finished/failed    | sent − finished/failed          |
 * | pendingPrefillTokens   | host accounting | always                          | input of sent requests without a first token | same, first byte live |
 * | running, waiting       | engine signal   | as of the last scrape           | scraped engine counters   | scraped Prometheus gauges       |
 * | kvUsage, prefixHitRate | engine signal   | as of the last scrape           | scraped engine counters   | scraped Prometheus metrics      |
 * | kvBlocksTotal, blockSize | engine signal | as of the last scrape           | engine config             | scraped cache config (or default) |
 * | updatedAtMs            | engine signal   | the last scrape's time          | scrape time               | scrape time                     |
 *
 * Host accounting is what the host itself sent and observed, never an engine's internals, so it is
 * fresh in both hosts. Engine signals are as scraped, every `scrapeIntervalMs`
 * (DEFAULT_SCRAPE_INTERVAL_MS in both hosts); a snapshot older than `staleAfterMs` (by default
 * SIGNAL_STALE_AFTER_SCRAPES intervals: a scrape failed, the engine is down or slow) is not trusted,
 * and both hosts then show host accounting in its place (`signalsFresh`): `running = inFlight`,
 * `waiting = 0`, while `kvUsage` and `prefixHitRate` keep their last scraped values (they move
 * slowly and have no host-side proxy). Ejection is the exception: its last scrape may describe a
 * dead process (a restart comes back empty), so when the host ejects an instance both hosts forget
 * its signals (`forgetSignals`: shown as never scraped, `kvUsage` and `prefixHitRate` 0, the sizes
 * kept) until a scrape taken after the ejection, and scrape it at once when they re-admit it. The twin's
 * `--scrape-interval-ms 0` alone shows exact engine signals, for experiments that want an oracle.
 * Read-only: policies never mutate views.
 */
export interface InstanceView {
  readonly id: InstanceId;
  readonly models: readonly ModelId[];
  readonly gpu: GpuId;
  readonly tp: number;
  readonly role: InstanceRole;
  /** Host accounting: the host's health verdict (ejected after failures, re-admitted after successes). */
  readonly healthy: boolean;
  /** Host accounting: taken out of service by an operator; finishes what it has, gets nothing new. */
  readonly draining: boolean;
  /** Host accounting: requests the host has sent and not yet seen finish or fail. */
  readonly inFlight: number;
  /** Engine signal: sequences in the engine's running batch, as scraped. */
  readonly running: number;
  /** Engine signal: sequences queued inside the engine, as scraped. */
  readonly waiting: number;
  /** Engine signal: fraction of KV blocks in use, 0..1, as scraped. */
  readonly kvUsage: number;
  /** Engine signal: KV blocks in the engine's pool. */
  readonly kvBlocksTotal: number;
  /** Engine signal: tokens per KV block. */
  readonly blockSize: number;
  /**
   * Host accounting: input tokens of requests the host sent and has not yet seen the first output
   * token (or byte) of: prefill work the host knows it queued, fresh between scrapes.
   */
  readonly pendingPrefillTokens: number;
  /** Engine signal: lifetime prefix-cache hit rate, tokens hit / tokens queried, 0..1, as scraped. */
  readonly prefixHitRate: number;
  /** Host time of the last scrape the engine signals above come from. */
  readonly updatedAtMs: number;
}

/** The fields of InstanceView that are the host's own accounting: always fresh, in both hosts. */
export const HOST_ACCOUNTING_FIELDS = ['healthy', 'draining', 'inFlight', 'pendingPrefillTokens'] as const;

/** The fields of InstanceView that are engine signals: as scraped, stale by the scrape interval. */
export const ENGINE_SIGNAL_FIELDS = [
  'running',
  'waiting',
  'kvUsage',
  'kvBlocksTotal',
  'blockSize',
  'prefixHitRate',
  'updatedAtMs',
] as const;

/** How often both hosts scrape engine signals unless configured otherwise (the gateway's default). */
export const DEFAULT_SCRAPE_INTERVAL_MS = 75;

/** A snapshot older than this many scrape intervals is not trusted (a scrape failed or lagged). */
export const SIGNAL_STALE_AFTER_SCRAPES = 3;

/**
 * Whether scraped engine signals taken at `scrapedAtMs` may still be shown at `nowMs`. When not,
 * both hosts show host accounting instead (see InstanceView).
 */
export function signalsFresh(nowMs: number, scrapedAtMs: number, staleAfterMs: number): boolean {
  return nowMs - scrapedAtMs <= staleAfterMs;
}

/** A read-only snapshot of the cluster for one decision. */
export interface ClusterView {
  readonly nowMs: number;
  readonly instances: readonly InstanceView[];
}
