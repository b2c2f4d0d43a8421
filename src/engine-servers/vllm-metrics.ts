/**
 * The built-in engines' Prometheus metrics under vLLM's names and labels (`model_name`, and
 * `engine="0"` as vLLM v1 adds), so every scraper that reads a vLLM reads these too. Gauges and
 * totals come from the backend's signals at scrape time; the request histograms and the finish
 * counter from the server as requests end.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
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

/** A backend total exported as a counter: advanced by the signal's growth at each scrape. */
class TotalFromSignal {
  private last = 0;
  constructor(
    private readonly counter: Counter,
    private readonly read: (s: BackendSignals) => number,
  ) {}

  update(signals: BackendSignals): void {
    const value = this.read(signals);
    if (value > this.last) this.counter.inc(value - this.last);
    this.last = Math.max(this.last, value);
  }
}

/** One server's metrics registry. */
export class VllmMetrics {
  readonly registry = new Registry();
  private readonly running: Gauge;
  private readonly waiting: Gauge;
  private readonly kvUsage: Gauge;
  private readonly gpuCacheUsage: Gauge;
  private readonly cacheConfig: Gauge<'block_size' | 'num_gpu_blocks'>;
  private cacheConfigSet = false;
  private readonly totals: TotalFromSignal[];
  private readonly ttft: Histogram;
  private readonly e2e: Histogram;
  private readonly success: Record<FinishReason, Counter.Internal>;

  /** The model served changed (a weight swap): every series is labelled with the new name from now on. */
  renameModel(modelName: string): void {
    this.registry.setDefaultLabels({ model_name: modelName, engine: '0' });
  }

  constructor(modelName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ model_name: modelName, engine: '0' });
    const gauge = (name: string, help: string): Gauge => new Gauge({ name, help, registers });
    const counter = (name: string, help: string): Counter => new Counter({ name, help, registers });
    this.running = gauge('vllm:num_requests_running', 'Number of requests in model execution batches.');
    this.waiting = gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.');
    this.kvUsage = gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.');
    this.gpuCacheUsage = gauge(
      'vllm:gpu_cache_usage_perc',
      'GPU KV-cache usage. 1 means 100 percent usage (legacy name of vllm:kv_cache_usage_perc).',
    );
    this.cacheConfig = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the LLMEngine CacheConfig',
      labelNames: ['block_size', 'num_gpu_blocks'],
      registers,
    });
    this.totals = [
      new TotalFromSignal(
        counter(
          'vllm:prefix_cache_queries_total',
          'Prefix cache queries, in terms of number of queried tokens.',
        ),
        (s) => s.prefixQueriesTokens,
      ),
      new TotalFromSignal(
        counter('vllm:prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.'),
        (s) => s.prefixHitsTokens,
      ),
      new TotalFromSignal(
        counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.'),
        (s) => s.promptTokensTotal,
      ),
      new TotalFromSignal(
        counter('vllm:generation_tokens_total', 'Number of generation tokens processed.'),
        (s) => s.generationTokensTotal,
      ),
      new TotalFromSignal(
        counter('vllm:num_preemptions_total', 'Cumulative number of preemption from the engine.'),
        (s) => s.preemptionsTotal,
      ),
    ];
    this.ttft = new Histogram({
      name: 'vllm:time_to_first_token_seconds',
      help: 'Histogram of time to first token in seconds.',
      buckets: TTFT_BUCKETS_S,
      registers,
    });
    this.e2e = new Histogram({
      name: 'vllm:e2e_request_latency_seconds',
      help: 'Histogram of e2e request latency in seconds.',
      buckets: E2E_BUCKETS_S,
      registers,
    });
    const success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['finished_reason'],
      registers,
    });
    this.success = {
      stop: success.labels({ finished_reason: 'stop' }),
      length: success.labels({ finished_reason: 'length' }),
      abort: success.labels({ finished_reason: 'abort' }),
    };
  }

  /** A generation produced its first token `seconds` after the request arrived. */
  observeFirstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  /** A generation ended `seconds` after the request arrived. */
  observeFinish(reason: FinishReason, seconds: number): void {
    this.success[reason].inc();
    if (reason !== 'abort') this.e2e.observe(seconds);
  }

  /** The exposition text, with gauges and totals read from `signals` now. */
  async render(signals: BackendSignals): Promise<string> {
    this.running.set(signals.running);
    this.waiting.set(signals.waiting);
    this.kvUsage.set(signals.kvUsage);
    this.gpuCacheUsage.set(signals.kvUsage);
    if (!this.cacheConfigSet) {
      this.cacheConfigSet = true;
      this.cacheConfig
        .labels({ block_size: String(signals.blockSize), num_gpu_blocks: String(signals.kvBlocksTotal) })
        .set(1);
    }
    for (const total of this.totals) total.update(signals);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
