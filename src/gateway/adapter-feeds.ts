/**
 * The gateway's real signal feeds: engine /metrics scraped by `MetricsScraper` every
 * `scrapeIntervalMs`, and vLLM-format KV events received by `KvEventSubscriber` over ZMQ.
 */
import { KvEventSubscriber } from '../adapters/kv-events/subscriber.ts';
import { LogLimiter, withSuppressed } from '../adapters/log-limiter.ts';
import { MetricsScraper } from '../adapters/metrics/scraper.ts';
import type { FeedSink, FeedTarget, SignalFeeds } from './feeds.ts';

/** Options of the adapter feeds. */
export interface AdapterFeedsOptions {
  readonly scrapeIntervalMs: number;
  /** Deadline of one scrape; default: the interval (never more than 1 s). */
  readonly scrapeTimeoutMs?: number;
  /** The host clock the gateway uses for `atMs` (performance.now). */
  readonly now: () => number;
}

/** Errors of one source and instance are logged at most this often (with a count of the rest). */
const ERROR_LOG_EVERY_MS = 30_000;

/** Scraper + subscriber behind the SignalFeeds interface; engines may come and go after `start`. */
export function adapterFeeds(options: AdapterFeedsOptions): SignalFeeds {
  let scraper: MetricsScraper | undefined;
  let subscriber: KvEventSubscriber | undefined;
  let sink: FeedSink | undefined;
  const limiter = new LogLimiter({ now: options.now, everyMs: ERROR_LOG_EVERY_MS });
  const report = (id: string, source: 'metrics' | 'kv-events', error: Error): void => {
    limiter.report(`${source}/${id}`, (suppressed) =>
      sink?.error(
        id,
        source,
        suppressed === 0 ? error : new Error(withSuppressed(error.message, suppressed)),
      ),
    );
  };
  // Built on the first engine that needs one: a gateway without KV events opens no ZMQ socket.
  const scraperFor = (): MetricsScraper => {
    scraper ??= new MetricsScraper({
      intervalMs: options.scrapeIntervalMs,
      timeoutMs: options.scrapeTimeoutMs ?? Math.min(1000, Math.max(options.scrapeIntervalMs, 50)),
      now: options.now,
      onSignals: (id, signals, atMs) => sink?.signals(id, signals, atMs),
      onError: (id, error) => report(id, 'metrics', error),
    });
    return scraper;
  };
  const subscriberFor = (): KvEventSubscriber => {
    subscriber ??= new KvEventSubscriber({
      onEvents: (id, events) => sink?.kvEvents(id, events),
      onGap: (id, expected, got) =>
        report(id, 'kv-events', new Error(`lost KV event batches (expected seq ${expected}, got ${got})`)),
      onError: (id, error) => report(id, 'kv-events', error),
    });
    return subscriber;
  };
  const add = (t: FeedTarget): void => {
    if (t.metricsUrl !== null) scraperFor().add(t.id, t.metricsUrl);
    if (t.kvEvents !== null) subscriberFor().connect(t.id, t.kvEvents, t.kvEventsTopic ?? '');
  };
  return {
    start(targets: readonly FeedTarget[], to: FeedSink): void {
      sink = to;
      for (const t of targets) add(t);
      scraper?.start();
    },
    add(target: FeedTarget): void {
      add(target);
      // Idempotent: starts a scraper built by this add, schedules nothing twice.
      if (sink !== undefined) scraper?.start();
    },
    readmitted(id: string): void {
      // Not its backoff from the dead predecessor: one scrape now (a restarted engine is fresh).
      scraper?.scrapeNow(id);
    },
    remove(id: string): void {
      scraper?.remove(id);
      subscriber?.disconnect(id);
    },
    async stop(): Promise<void> {
      await Promise.all([scraper?.stop(), subscriber?.close()]);
    },
  };
}
