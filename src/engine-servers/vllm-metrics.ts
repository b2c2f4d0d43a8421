/**
 * The built-in engines' Prometheus metrics under vLLM's names and labels (`model_name`, and
 * `engine="0"` as vLLM v1 adds), so every scraper that reads a vLLM reads these too. Gauges and
 * totals come from the backend's signals at scrape time; the request histograms and the finish
 * counter from the server as requests end.
 *
 * Kept in plain numbers and written out here in the text format prom-client 0.0.4 writes (same
 * order, labels, number formatting and escaping; vllm-metrics.test.ts checks the pages byte for
 * byte against prom-client's), rather than through prom-client: loading prom-client cost about
 * 0.13 s of CPU on every engine's path to its ready line (docs/benchmarks.md, "CLI start-up (stop
 * 34)"), and loading it later would make the first scrape wait for it, past the gateway's 75 ms
 * scrape deadline.
 */
import type { BackendSignals, FinishReason } from './backend.ts';

/** vLLM's buckets for `vllm:time_to_first_token_seconds`. */
export const TTFT_BUCKETS_S = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
  80.0, 160.0, 640.0, 2560.0,
];
/** vLLM's buckets for `vllm:e2e_request_latency_seconds`. */
export const E2E_BUCKETS_S = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
  960.0, 1920.0, 7680.0,
];

/** The content type of the Prometheus text format 0.0.4 (prom-client's Registry default). */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A sample value as the text format writes it (prom-client's spelling of NaN included). */
function valueText(value: number): string {
  if (Number.isNaN(value)) return 'Nan';
  if (!Number.isFinite(value)) return value < 0 ? '-Inf' : '+Inf';
  return `${value}`;
}

/** Help text: backslash and newline escaped. */
function escapeText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label set, `{a="x",b="y"}`; values escaped as the text format requires. */
function labelsText(labels: readonly (readonly [string, string])[]): string {
  if (labels.length === 0) return '';
  return `{${labels.map(([name, value]) => `${name}="${escapeText(value).replace(/"/g, '\\"')}"`).join(',')}}`;
}

/** A finite number, as prom-client demands of an observation (a TypeError otherwise). */
function checkedNumber(value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new TypeError(`Value is not a valid number: ${String(value)}`);
  }
  return value;
}

/** A gauge's value: any number, NaN and infinities included, as prom-client's `set` takes. */
function gaugeValue(value: number): number {
  if (typeof value !== 'number') throw new TypeError(`Value is not a valid number: ${String(value)}`);
  return value;
}

/** One histogram without labels of its own: the count in each bucket (not cumulative), sum, count. */
class HistogramValues {
  readonly inBucket: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.inBucket = bounds.map(() => 0);
  }

  observe(value: number): void {
    checkedNumber(value);
    const i = this.bounds.findIndex((bound) => value <= bound);
    this.sum += value;
    this.count += 1;
    // Past the last bound the value counts in +Inf alone, which is `count`.
    if (i >= 0) this.inBucket[i] = (this.inBucket[i] as number) + 1;
  }
}

/** A backend total exported as a counter: advanced by the signal's growth at each scrape. */
class TotalFromSignal {
  private last = 0;
  value = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: (s: BackendSignals) => number,
  ) {}

  update(signals: BackendSignals): void {
    const value = this.read(signals);
    if (value > this.last) this.value += value - this.last;
    this.last = Math.max(this.last, value);
  }
}

/** The finish reasons in the order vLLM's counter series are first written (the first finish of each). */
type SuccessSeries = Map<FinishReason, number>;

/** One server's metrics. */
export class VllmMetrics {
  private defaultLabels: [string, string][];
  private running = 0;
  private waiting = 0;
  private kvUsage = 0;
  /** `vllm:cache_config_info`'s labels, fixed at the first scrape. */
  private cacheConfig: [string, string][] | undefined;
  private readonly totals: TotalFromSignal[] = [
    new TotalFromSignal(
      'vllm:prefix_cache_queries_total',
      'Prefix cache queries, in terms of number of queried tokens.',
      (s) => s.prefixQueriesTokens,
    ),
    new TotalFromSignal(
      'vllm:prefix_cache_hits_total',
      'Prefix cache hits, in terms of number of cached tokens.',
      (s) => s.prefixHitsTokens,
    ),
    new TotalFromSignal(
      'vllm:prompt_tokens_total',
      'Number of prefill tokens processed.',
      (s) => s.promptTokensTotal,
    ),
    new TotalFromSignal(
      'vllm:generation_tokens_total',
      'Number of generation tokens processed.',
      (s) => s.generationTokensTotal,
    ),
    new TotalFromSignal(
      'vllm:num_preemptions_total',
      'Cumulative number of preemption from the engine.',
      (s) => s.preemptionsTotal,
    ),
  ];
  private readonly ttft = new HistogramValues(TTFT_BUCKETS_S);
  private readonly e2e = new HistogramValues(E2E_BUCKETS_S);
  /** `vllm:request_success_total` by reason; a reason's series appears at its first finish. */
  private readonly success: SuccessSeries = new Map();

  constructor(modelName: string) {
    this.defaultLabels = VllmMetrics.labelsFor(modelName);
  }

  private static labelsFor(modelName: string): [string, string][] {
    return [
      ['model_name', modelName],
      ['engine', '0'],
    ];
  }

  /** The model served changed (a weight swap): every series is labelled with the new name from now on. */
  renameModel(modelName: string): void {
    this.defaultLabels = VllmMetrics.labelsFor(modelName);
  }

  /** A generation produced its first token `seconds` after the request arrived. */
  observeFirstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  /** A generation ended `seconds` after the request arrived. */
  observeFinish(reason: FinishReason, seconds: number): void {
    this.success.set(reason, (this.success.get(reason) ?? 0) + 1);
    if (reason !== 'abort') this.e2e.observe(seconds);
  }

  /** The exposition text, with gauges and totals read from `signals` now. */
  async render(signals: BackendSignals): Promise<string> {
    this.running = gaugeValue(signals.running);
    this.waiting = gaugeValue(signals.waiting);
    this.kvUsage = gaugeValue(signals.kvUsage);
    this.cacheConfig ??= [
      ['block_size', String(signals.blockSize)],
      ['num_gpu_blocks', String(signals.kvBlocksTotal)],
    ];
    for (const total of this.totals) total.update(signals);
    return this.text();
  }

  /** The page: the metrics in the order prom-client registered them, blank lines between. */
  private text(): string {
    const defaults = this.defaultLabels;
    const metric = (name: string, help: string, type: string, samples: string[]): string =>
      [
        `# HELP ${escapeText(name)} ${escapeText(help)}`,
        `# TYPE ${escapeText(name)} ${type}`,
        ...samples,
      ].join('\n');
    const sample = (name: string, own: [string, string][], value: number): string =>
      `${name}${labelsText([...own, ...defaults])} ${valueText(value)}`;
    const gauge = (name: string, help: string, value: number): string =>
      metric(name, help, 'gauge', [sample(name, [], value)]);
    const histogram = (name: string, help: string, h: HistogramValues): string => {
      let below = 0;
      const buckets = h.bounds.map((bound, i) => {
        below += h.inBucket[i] as number;
        return sample(`${name}_bucket`, [['le', String(bound)]], below);
      });
      return metric(name, help, 'histogram', [
        ...buckets,
        sample(`${name}_bucket`, [['le', '+Inf']], h.count),
        sample(`${name}_sum`, [], h.sum),
        sample(`${name}_count`, [], h.count),
      ]);
    };
    const pages = [
      gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', this.running),
      gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', this.waiting),
      gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', this.kvUsage),
      gauge(
        'vllm:gpu_cache_usage_perc',
        'GPU KV-cache usage. 1 means 100 percent usage (legacy name of vllm:kv_cache_usage_perc).',
        this.kvUsage,
      ),
      metric(
        'vllm:cache_config_info',
        'Information of the LLMEngine CacheConfig',
        'gauge',
        this.cacheConfig === undefined ? [] : [sample('vllm:cache_config_info', this.cacheConfig, 1)],
      ),
      ...this.totals.map((t) => metric(t.name, t.help, 'counter', [sample(t.name, [], t.value)])),
      histogram(
        'vllm:time_to_first_token_seconds',
        'Histogram of time to first token in seconds.',
        this.ttft,
      ),
      histogram('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', this.e2e),
      metric(
        'vllm:request_success_total',
        'Count of successfully processed requests.',
        'counter',
        [...this.success].map(([reason, n]) =>
          sample('vllm:request_success_total', [['finished_reason', reason]], n),
        ),
      ),
    ];
    return `${pages.join('\n\n')}\n`;
  }

  /** The page's content type (Prometheus text format 0.0.4). */
  get contentType(): string {
    return CONTENT_TYPE;
  }
}
