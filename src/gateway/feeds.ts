/**
 * Where live engine signals come from: a metrics scrape per engine and an optional KV-event stream.
 * The gateway talks to this narrow interface; `adapterFeeds` (./adapter-feeds.ts) implements it with
 * the Prometheus scraper and the ZMQ KV-event subscriber, and tests may pass their own.
 */
import type { KvEvent } from '../core/kv-events.ts';
import type { EngineSignalsInput } from './live-view.ts';

/** One engine's endpoints. */
export interface FeedTarget {
  readonly id: string;
  /** Full metrics URL, or null when the engine is not scraped. */
  readonly metricsUrl: string | null;
  /** tcp://host:port of its KV-event publisher, or null. */
  readonly kvEvents: string | null;
  readonly kvEventsTopic: string | undefined;
}

/** Where feeds deliver. */
export interface FeedSink {
  signals(id: string, signals: EngineSignalsInput, atMs: number): void;
  kvEvents(id: string, events: readonly KvEvent[]): void;
  error(id: string, source: 'metrics' | 'kv-events', error: Error): void;
}

/** A source of engine signals and KV events for a set of engines. */
export interface SignalFeeds {
  start(targets: readonly FeedTarget[], sink: FeedSink): void;
  /** An engine added after `start` (the local actuator's); feeds without it leave such engines unscraped. */
  add?(target: FeedTarget): void;
  /**
   * The gateway re-admitted an engine: feed it again at once (its view shows host accounting only
   * until then, live-view.ts `forgetSignals`). Feeds without it wait out their own schedule.
   */
  readmitted?(id: string): void;
  /** Stops feeding an engine (removed from the gateway); unknown ids are ignored. */
  remove?(id: string): void;
  stop(): Promise<void>;
}

/** Feeds that deliver nothing: every instance runs on the gateway's own accounting. */
export const NO_FEEDS: SignalFeeds = {
  start() {},
  async stop() {},
};
