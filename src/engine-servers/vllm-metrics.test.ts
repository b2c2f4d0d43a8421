/**
 * The engines' /metrics page is written without prom-client (loading it cost every engine start
 * about 0.13 s of CPU): these tests hold it byte for byte to the page prom-client writes for the
 * same metrics, observations and scrapes, so every scraper reads what it read before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BackendSignals, FinishReason } from './backend.ts';
import { E2E_BUCKETS_S, TTFT_BUCKETS_S, VllmMetrics } from './vllm-metrics.ts';

/** The same metrics through prom-client, as the engines built them up to stop 34. */
class PromClientReference {
  readonly registry = new Registry();
  private readonly gauges: Gauge[];
  private readonly cacheConfig: Gauge<'block_size' | 'num_gpu_blocks'>;
  private cacheConfigSet = false;
  private readonly totals: { counter: Counter; last: number; read: (s: BackendSignals) => number }[];
  private readonly ttft: Histogram;
  private readonly e2e: Histogram;
  private readonly success: Counter<'finished_reason'>;

  constructor(modelName: string) {
    const registers = [this.registry];
    this.rename(modelName);
    const gauge = (name: string, help: string): Gauge => new Gauge({ name, help, registers });
    this.gauges = [
      gauge('vllm:num_requests_running', 'Number of requests in model execution batches.'),
      gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.'),
      gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.'),
      gauge(
        'vllm:gpu_cache_usage_perc',
        'GPU KV-cache usage. 1 means 100 percent usage (legacy name of vllm:kv_cache_usage_perc).',
      ),
    ];
    this.cacheConfig = new Gauge({
      name: 'vllm:cache_config_info',
      help: 'Information of the LLMEngine CacheConfig',
      labelNames: ['block_size', 'num_gpu_blocks'],
      registers,
    });
    const total = (name: string, help: string, read: (s: BackendSignals) => number) => ({
      counter: new Counter({ name, help, registers }),
      last: 0,
      read,
    });
    this.totals = [
      total(
        'vllm:prefix_cache_queries_total',
        'Prefix cache queries, in terms of number of queried tokens.',
        (s) => s.prefixQueriesTokens,
      ),
      total(
        'vllm:prefix_cache_hits_total',
        'Prefix cache hits, in terms of number of cached tokens.',
        (s) => s.prefixHitsTokens,
      ),
      total('vllm:prompt_tokens_total', 'Number of prefill tokens processed.', (s) => s.promptTokensTotal),
      total(
        'vllm:generation_tokens_total',
        'Number of generation tokens processed.',
        (s) => s.generationTokensTotal,
      ),
      total(
        'vllm:num_preemptions_total',
        'Cumulative number of preemption from the engine.',
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
    this.success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['finished_reason'],
      registers,
    });
  }

  rename(modelName: string): void {
    this.registry.setDefaultLabels({ model_name: modelName, engine: '0' });
  }

  firstToken(seconds: number): void {
    this.ttft.observe(seconds);
  }

  finish(reason: FinishReason, seconds: number): void {
    this.success.labels({ finished_reason: reason }).inc();
    if (reason !== 'abort') this.e2e.observe(seconds);
  }

  render(s: BackendSignals): Promise<string> {
    const [running, waiting, kv, gpu] = this.gauges as [Gauge, Gauge, Gauge, Gauge];
    running.set(s.running);
    waiting.set(s.waiting);
    kv.set(s.kvUsage);
    gpu.set(s.kvUsage);
    if (!this.cacheConfigSet) {
      this.cacheConfigSet = true;
      this.cacheConfig
        .labels({ block_size: String(s.blockSize), num_gpu_blocks: String(s.kvBlocksTotal) })
        .set(1);
    }
    for (const t of this.totals) {
      const value = t.read(s);
      if (value > t.last) t.counter.inc(value - t.last);
      t.last = Math.max(t.last, value);
    }
    return this.registry.metrics();
  }
}

/** A seeded generator (a 32-bit LCG): the same script on every run. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function signals(step: number, kvUsage: number): BackendSignals {
  return {
    running: step % 5,
    waiting: step % 3,
    kvUsage,
    kvBlocksTotal: 4096,
    blockSize: 16,
    prefixQueriesTokens: step * 37.5,
    prefixHitsTokens: step * 11,
    promptTokensTotal: step * 129,
    generationTokensTotal: step * 0.1 * 3,
    // A total that goes back (a reset the counter must not follow) and then grows again.
    preemptionsTotal: step === 4 ? 1 : step < 4 ? step * 2 : step,
  };
}

test('the page is byte for byte the page prom-client writes, from the first scrape through many', async () => {
  const ours = new VllmMetrics('llama-3.1-8b');
  const reference = new PromClientReference('llama-3.1-8b');
  assert.equal(ours.contentType, reference.registry.contentType);
  // Before any request: zeroed histograms, no request_success_total series yet.
  assert.equal(await ours.render(signals(0, 0)), await reference.render(signals(0, 0)));
  const random = lcg(34);
  const reasons: FinishReason[] = ['length', 'stop', 'abort'];
  // Exact bounds, zero and values past the last bound of each histogram, then seeded ones.
  const fixed = [0, 0.001, 0.1, 1, 2560, 7680, 9000.5, 1e-9];
  for (let step = 1; step <= 40; step++) {
    const values = step <= fixed.length ? [fixed[step - 1] as number] : [random() ** 3 * 200, random()];
    for (const value of values) {
      ours.observeFirstToken(value);
      reference.firstToken(value);
      const reason = reasons[Math.floor(random() * 3)] as FinishReason;
      ours.observeFinish(reason, value * 3);
      reference.finish(reason, value * 3);
    }
    // The model renamed midway, to a name whose label value needs escaping.
    if (step === 20) {
      ours.renameModel('odd "name"\\ with\na newline');
      reference.rename('odd "name"\\ with\na newline');
    }
    const kvUsage = step === 30 ? Number.NaN : random();
    const page = await ours.render(signals(step, kvUsage));
    assert.equal(page, await reference.render(signals(step, kvUsage)), `scrape ${step}`);
  }
});

test('the counts and the cache config are what the engine saw', async () => {
  const metrics = new VllmMetrics('m');
  metrics.observeFirstToken(0.03);
  metrics.observeFinish('stop', 0.4);
  metrics.observeFinish('stop', 0.2);
  metrics.observeFinish('abort', 1);
  await metrics.render(signals(3, 0.5));
  // The config is the first scrape's: a later page keeps it.
  const page = await metrics.render({ ...signals(4, 0.25), blockSize: 32 });
  assert.match(
    page,
    /^vllm:cache_config_info\{block_size="16",num_gpu_blocks="4096",model_name="m",engine="0"\} 1$/m,
  );
  assert.match(page, /^vllm:request_success_total\{finished_reason="stop",model_name="m",engine="0"\} 2$/m);
  assert.match(page, /^vllm:request_success_total\{finished_reason="abort",model_name="m",engine="0"\} 1$/m);
  assert.match(page, /^vllm:e2e_request_latency_seconds_bucket\{le="0.3",model_name="m",engine="0"\} 1$/m);
  assert.match(page, /^vllm:e2e_request_latency_seconds_count\{model_name="m",engine="0"\} 2$/m);
  assert.match(page, /^vllm:time_to_first_token_seconds_bucket\{le="0.04",model_name="m",engine="0"\} 1$/m);
  // The preemption total went from 6 back to 1: the counter holds 6.
  assert.match(page, /^vllm:num_preemptions_total\{model_name="m",engine="0"\} 6$/m);
  assert.match(page, /^vllm:kv_cache_usage_perc\{model_name="m",engine="0"\} 0.25$/m);
});

test('an observation that is no finite number is refused, as prom-client refuses it', () => {
  const metrics = new VllmMetrics('m');
  assert.throws(() => metrics.observeFirstToken(Number.NaN), TypeError);
  assert.throws(() => metrics.observeFinish('stop', Number.POSITIVE_INFINITY), TypeError);
});
