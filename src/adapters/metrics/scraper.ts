/**
 * Scrapes engines' /metrics pages on a short interval and hands the gateway `EngineSignals`.
 *
 * One keep-alive undici `Client` (one connection) per target. A target's scrapes never overlap:
 * the next starts `intervalMs` after the previous one started, or at once when it ran longer.
 * Each scrape has its own deadline (`timeoutMs`); failures (refused, timed out, non-200, an
 * oversized or malformed page) go to `onError` and never throw. After consecutive failures the
 * target is retried at a doubling delay, capped at `errorBackoffMaxMs`, so a dead engine costs
 * little; `scrapeNow` ends that wait when the host re-admits the engine. Pages are parsed with a name filter, so only the handful of series that feed the
 * signals are decoded (about 0.1 ms for a 300-line vLLM page).
 */
import { Client } from 'undici';
import { invalidArgument, SwitchyardError } from '../../core/errors.ts';
import { ENGINE_SIGNAL_METRICS, type EngineSignals, engineSignalsFromMetrics } from './engine-signals.ts';
import { parsePrometheusText } from './prometheus-text.ts';

/** Default cap on a /metrics body; vLLM's page is ~30 KB. */
export const METRICS_BODY_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
/** Default cap on the retry delay of a failing target. */
export const ERROR_BACKOFF_MAX_MS_DEFAULT = 2_000;

/** Options for `MetricsScraper`. */
export interface MetricsScraperOptions {
  /** Time between the starts of two scrapes of one target (50-100 ms for routing). */
  readonly intervalMs: number;
  /** Deadline of one scrape, connect to last byte. */
  readonly timeoutMs: number;
  onSignals(id: string, signals: EngineSignals, atMs: number): void;
  onError(id: string, error: Error): void;
  /** Host clock for `atMs`; defaults to `Date.now`. */
  readonly now?: () => number;
  readonly bodyBytesMax?: number;
  readonly errorBackoffMaxMs?: number;
}

interface Target {
  readonly id: string;
  readonly origin: string;
  readonly path: string;
  client: Client | undefined;
  timer: NodeJS.Timeout | undefined;
  controller: AbortController | undefined;
  inFlight: Promise<void> | undefined;
  failures: number;
  removed: boolean;
}

const isSignalMetric = (name: string) => ENGINE_SIGNAL_METRICS.has(name);

/** Polls many engines' /metrics endpoints. */
export class MetricsScraper {
  private readonly opts: MetricsScraperOptions;
  private readonly now: () => number;
  private readonly bodyBytesMax: number;
  private readonly errorBackoffMaxMs: number;
  private readonly targets = new Map<string, Target>();
  private running = false;

  constructor(opts: MetricsScraperOptions) {
    if (!Number.isFinite(opts.intervalMs) || opts.intervalMs < 10) {
      throw invalidArgument('intervalMs', opts.intervalMs, 'a number of milliseconds >= 10');
    }
    if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) {
      throw invalidArgument('timeoutMs', opts.timeoutMs, 'a positive number of milliseconds');
    }
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.bodyBytesMax = opts.bodyBytesMax ?? METRICS_BODY_BYTES_MAX_DEFAULT;
    this.errorBackoffMaxMs = opts.errorBackoffMaxMs ?? ERROR_BACKOFF_MAX_MS_DEFAULT;
  }

  /** The ids being scraped. */
  get ids(): string[] {
    return [...this.targets.keys()];
  }

  /** Starts scraping `metricsUrl` (e.g. `http://10.0.0.5:8000/metrics`) as `id`. */
  add(id: string, metricsUrl: string): void {
    if (this.targets.has(id)) throw invalidArgument('id', id, 'an id not already scraped');
    let url: URL;
    try {
      url = new URL(metricsUrl);
    } catch {
      throw invalidArgument('metricsUrl', metricsUrl, 'an http(s) URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw invalidArgument('metricsUrl', metricsUrl, 'an http(s) URL');
    }
    const target: Target = {
      id,
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      client: undefined,
      timer: undefined,
      controller: undefined,
      inFlight: undefined,
      failures: 0,
      removed: false,
    };
    this.targets.set(id, target);
    if (this.running) this.schedule(target, 0);
  }

  /** Stops scraping `id` (an in-flight scrape is aborted and not reported); unknown ids are ignored. */
  remove(id: string): void {
    const target = this.targets.get(id);
    if (target === undefined) return;
    this.targets.delete(id);
    target.removed = true;
    this.halt(target);
  }

  /**
   * Scrapes `id` at once and forgets its failures: the host re-admitted it, and a restarted engine
   * should not wait out its dead predecessor's backoff (up to `errorBackoffMaxMs`) before the view
   * sees its signals again. Replaces the pending timer, so it adds no timer and `stop` still clears
   * everything; a scrape in flight is left to finish and the next follows at the plain interval.
   * Unknown ids, and a scraper not started, are ignored.
   */
  scrapeNow(id: string): void {
    const target = this.targets.get(id);
    if (target === undefined || !this.running) return;
    target.failures = 0;
    if (target.inFlight !== undefined) return;
    if (target.timer !== undefined) clearTimeout(target.timer);
    this.schedule(target, 0);
  }

  /** Starts the scrape loops (idempotent). */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const target of this.targets.values()) this.schedule(target, 0);
  }

  /** Stops every loop, aborts scrapes in flight, waits for them and closes the connections. */
  async stop(): Promise<void> {
    this.running = false;
    const pending: Promise<void>[] = [];
    for (const target of this.targets.values()) {
      if (target.inFlight !== undefined) pending.push(target.inFlight);
      this.halt(target);
    }
    await Promise.all(pending);
  }

  private halt(target: Target): void {
    if (target.timer !== undefined) clearTimeout(target.timer);
    target.timer = undefined;
    target.controller?.abort();
    const client = target.client;
    target.client = undefined;
    client?.destroy().catch(() => {});
  }

  private schedule(target: Target, delayMs: number): void {
    target.timer = setTimeout(() => {
      target.timer = undefined;
      void this.loopOnce(target);
    }, delayMs);
  }

  private async loopOnce(target: Target): Promise<void> {
    if (!this.running || target.removed) return;
    const startedMs = performance.now();
    const scrape = this.scrape(target);
    target.inFlight = scrape;
    await scrape;
    target.inFlight = undefined;
    if (!this.running || target.removed) return;
    const elapsedMs = performance.now() - startedMs;
    const intervalMs = scrapeIntervalAfterMs(target.failures, this.opts.intervalMs, this.errorBackoffMaxMs);
    this.schedule(target, Math.max(0, intervalMs - elapsedMs));
  }

  private async scrape(target: Target): Promise<void> {
    const controller = new AbortController();
    target.controller = controller;
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.opts.timeoutMs);
    try {
      target.client ??= new Client(target.origin, {
        pipelining: 1,
        connectTimeout: this.opts.timeoutMs,
        keepAliveTimeout: Math.max(4_000, 4 * this.opts.intervalMs),
      });
      const res = await target.client.request({
        method: 'GET',
        path: target.path,
        headers: { accept: 'text/plain;version=0.0.4' },
        signal: controller.signal,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new SwitchyardError(
          'SY_ERR_UPSTREAM',
          `metrics of '${target.id}' answered HTTP ${res.statusCode}`,
          {
            status: res.statusCode,
          },
        );
      }
      const text = await readBounded(res.body, this.bodyBytesMax, target.id);
      const signals = engineSignalsFromMetrics(parsePrometheusText(text, { keep: isSignalMetric }));
      if (target.removed || !this.running) return;
      target.failures = 0;
      this.deliver(target, signals);
    } catch (error) {
      if (target.removed || !this.running) return;
      target.failures++;
      this.report(target, timedOut ? timeoutError(target, this.opts.timeoutMs) : asError(error, target));
    } finally {
      clearTimeout(deadline);
      if (target.controller === controller) target.controller = undefined;
    }
  }

  private deliver(target: Target, signals: EngineSignals): void {
    try {
      this.opts.onSignals(target.id, signals, this.now());
    } catch (error) {
      this.report(target, error as Error);
    }
  }

  private report(target: Target, error: Error): void {
    try {
      this.opts.onError(target.id, error);
    } catch {
      // An error handler that throws has nowhere left to report to.
    }
  }
}

async function readBounded(
  body: AsyncIterable<Buffer> & { destroy(): void },
  bytesMax: number,
  id: string,
): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > bytesMax) {
      body.destroy();
      throw new SwitchyardError('SY_ERR_UPSTREAM', `metrics page of '${id}' exceeds ${bytesMax} bytes`, {
        bytesMax,
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, bytes).toString('utf8');
}

function timeoutError(target: Target, timeoutMs: number): SwitchyardError {
  return new SwitchyardError('SY_ERR_TIMEOUT', `scrape of '${target.id}' timed out after ${timeoutMs} ms`, {
    timeoutMs,
  });
}

function asError(error: unknown, target: Target): Error {
  if (error instanceof SwitchyardError) return error;
  const cause = error instanceof Error ? error : new Error(String(error));
  const code = (cause as { code?: string }).code;
  const wrapped = new SwitchyardError(
    'SY_ERR_UPSTREAM',
    `scrape of '${target.id}' at ${target.origin}${target.path} failed: ${code ?? cause.name}: ${cause.message}`,
    { cause: code ?? cause.name },
  );
  return wrapped;
}

/**
 * The wait before a target's next scrape: the interval while it answers; after `failures`
 * consecutive failures, the interval doubled per failure beyond the first, capped at `backoffMaxMs`.
 */
export function scrapeIntervalAfterMs(failures: number, intervalMs: number, backoffMaxMs: number): number {
  if (failures === 0) return intervalMs;
  return Math.min(backoffMaxMs, intervalMs * 2 ** Math.min(failures - 1, 20));
}
