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

/** Scraper + subscriber behind the SignalFeeds interface. */
export function adapterFeeds(options: AdapterFeedsOptions): SignalFeeds {
  let scraper: MetricsScraper | undefined;
  let subscriber: KvEventSubscriber | undefined;
  const limiter = new LogLimiter({ now: options.now, everyMs: ERROR_LOG_EVERY_MS });
  return {
    start(targets: readonly FeedTarget[], sink: FeedSink): void {
      const report = (id: string, source: 'metrics' | 'kv-events', error: Error): void => {
        limiter.report(`${source}/${id}`, (suppressed) =>
          sink.error(
            id,
            source,
            suppressed === 0 ? error : new Error(withSuppressed(error.message, suppressed)),
          ),
        );
      };
      const scraped = targets.filter((t) => t.metricsUrl !== null);
      if (scraped.length > 0) {
        scraper = new MetricsScraper({
          intervalMs: options.scrapeIntervalMs,
          timeoutMs: options.scrapeTimeoutMs ?? Math.min(1000, Math.max(options.scrapeIntervalMs, 50)),
          now: options.now,
          onSignals: (id, signals, atMs) => sink.signals(id, signals, atMs),
          onError: (id, error) => report(id, 'metrics', error),
        });
        for (const t of scraped) scraper.add(t.id, t.metricsUrl as string);
        scraper.start();
      }
      const kv = targets.filter((t) => t.kvEvents !== null);
      if (kv.length > 0) {
        subscriber = new KvEventSubscriber({
          onEvents: (id, events) => sink.kvEvents(id, events),
          onGap: (id, expected, got) =>
            report(
              id,
              'kv-events',
              new Error(`lost KV event batches (expected seq ${expected}, got ${got})`),
            ),
          onError: (id, error) => report(id, 'kv-events', error),
        });
        for (const t of kv) subscriber.connect(t.id, t.kvEvents as string, t.kvEventsTopic ?? '');
      }
    },
    async stop(): Promise<void> {
      await Promise.all([scraper?.stop(), subscriber?.close()]);
    },
  };
}
