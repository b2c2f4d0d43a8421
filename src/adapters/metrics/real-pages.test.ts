/**
 * The adapters against /metrics pages published from real vLLM, SGLang and llama.cpp servers
 * (`fixtures/real/`, sources in its README), not pages written from documentation. Each expected
 * value is read off the published page by eye, so a misreading shared by our fixtures and our
 * parser cannot pass here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ENGINE_SIGNAL_METRICS, engineSignalsFromMetrics } from './engine-signals.ts';
import { parsePrometheusText } from './prometheus-text.ts';

const real = (name: string) => readFileSync(new URL(`./fixtures/real/${name}`, import.meta.url), 'utf8');
const keep = (name: string) => ENGINE_SIGNAL_METRICS.has(name);

/** Signals as the scraper computes them (filtered parse) and from a full parse; both must agree. */
function signalsOf(name: string) {
  const text = real(name);
  const filtered = engineSignalsFromMetrics(parsePrometheusText(text, { keep }));
  assert.deepEqual(engineSignalsFromMetrics(parsePrometheusText(text)), filtered);
  return filtered;
}

describe('real SGLang pages', () => {
  it("SGLang's production-metrics page: running, queue, token usage, prompt tokens, hit rate", () => {
    assert.deepEqual(signalsOf('sglang-docs-production-metrics.prom'), {
      family: 'sglang',
      running: 162,
      waiting: 2826,
      kvUsage: 0.28,
      prefixQueries: 8_128_902,
      // No cached_tokens_total on this page: the rate is SGLang's own gauge.
      prefixHitRate: 0.007507552643049313,
    });
  });

  it('parses every sample of that page (histograms included) with its labels', () => {
    const samples = parsePrometheusText(real('sglang-docs-production-metrics.prom'));
    // 115 lines, 24 of them # HELP / # TYPE.
    assert.equal(samples.length, 91);
    const ttftInf = samples.find(
      (s) => s.name === 'sglang:time_to_first_token_seconds_bucket' && s.labels['le'] === '+Inf',
    );
    assert.equal(ttftInf?.value, 11008);
    assert.equal(ttftInf?.labels['model_name'], 'meta-llama/Llama-3.1-8B-Instruct');
    const func = samples.find((s) => s.name === 'sglang:func_latency_seconds_sum');
    assert.equal(func?.labels['name'], 'generate_request');
    assert.equal(func?.value, 4.514771912145079);
  });

  it('an early SGLang page (label `name`, not `model_name`): capacity in tokens and prompt tokens', () => {
    assert.deepEqual(signalsOf('sglang-pr1853-excerpt.prom'), {
      family: 'sglang',
      kvBlocksTotal: 570_979,
      blockSize: 1,
      prefixQueries: 230_794,
    });
  });
});

describe('real vLLM pages', () => {
  it("vLLM's metrics design doc: the running count", () => {
    assert.deepEqual(signalsOf('vllm-docs-design-metrics.prom'), { family: 'vllm', running: 8 });
  });

  it('a vLLM V1 page behind a router: zeros read as zeros, process_* series ignored, legacy KV gauge used', () => {
    assert.deepEqual(signalsOf('vllm-v1-production-stack-318-excerpt.prom'), {
      family: 'vllm',
      running: 0,
      waiting: 0,
      kvUsage: 0,
    });
  });

  it('a vLLM 0.10.0 page: tiny KV usage kept, _created timestamps not read as counters', () => {
    const signals = signalsOf('vllm-0.10.0-production-stack-617-excerpt.prom');
    assert.deepEqual(signals, {
      family: 'vllm',
      kvUsage: 9.75010481363281e-6,
      prefixQueries: 32,
      // prefix_cache_hits_total is past the end of the published excerpt; the deprecated
      // gpu_prefix_cache_hits_total on the same page says 0.
      prefixHits: 0,
      prefixHitRate: 0,
    });
  });
});

describe('real llama.cpp pages', () => {
  it('a llama.cpp server page: requests processing and deferred', () => {
    assert.deepEqual(signalsOf('llamacpp-pr11512-excerpt.prom'), {
      family: 'llamacpp',
      running: 0,
      waiting: 0,
    });
  });

  it('a llama.cpp page with unlabelled counters and decimals parses to the published values', () => {
    const values = Object.fromEntries(
      parsePrometheusText(real('llamacpp-pr13196-excerpt.prom')).map((s) => [s.name, s.value]),
    );
    assert.deepEqual(values, {
      'llamacpp:prompt_tokens_total': 143,
      'llamacpp:prompt_seconds_total': 8.168,
      'llamacpp:tokens_predicted_total': 673,
      'llamacpp:tokens_predicted_seconds_total': 29.567,
    });
  });
});

describe('engine sentinels', () => {
  it("vLLM v0's -1 prefix hit rate (prefix caching off) is no rate, not a rate of 0", () => {
    // Not a captured page: two lines in vLLM v0's format with the value its naive block
    // allocator reports ("-1 means not supported or disabled", vllm/core/block/interfaces.py).
    const text = [
      'vllm:num_requests_running{model_name="m"} 0.0',
      'vllm:gpu_prefix_cache_hit_rate{model_name="m"} -1.0',
    ].join('\n');
    assert.deepEqual(engineSignalsFromMetrics(parsePrometheusText(text)), { family: 'vllm', running: 0 });
  });
});
