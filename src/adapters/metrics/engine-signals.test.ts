import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ENGINE_SIGNAL_METRICS, engineSignalsFromMetrics } from './engine-signals.ts';
import { parsePrometheusText } from './prometheus-text.ts';

const signalsOf = (text: string) => engineSignalsFromMetrics(parsePrometheusText(text));
const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

describe('engineSignalsFromMetrics', () => {
  it('maps a current vLLM page', () => {
    assert.deepEqual(signalsOf(fixture('vllm.prom')), {
      family: 'vllm',
      running: 23,
      waiting: 4,
      kvUsage: 0.6218,
      kvBlocksTotal: 27503,
      blockSize: 16,
      prefixQueries: 2394112,
      prefixHits: 1536000,
      prefixHitRate: 1536000 / 2394112,
    });
  });

  it('maps a vLLM page with the legacy gpu_* names', () => {
    assert.deepEqual(signalsOf(fixture('vllm-legacy.prom')), {
      family: 'vllm',
      running: 23,
      waiting: 4,
      kvUsage: 0.4137,
      kvBlocksTotal: 7281,
      blockSize: 16,
      prefixQueries: 1184512,
      prefixHits: 402176,
      prefixHitRate: 402176 / 1184512,
    });
  });

  it('maps an SGLang page (capacity in tokens, hits over every cache source)', () => {
    assert.deepEqual(signalsOf(fixture('sglang.prom')), {
      family: 'sglang',
      running: 17,
      waiting: 6,
      kvUsage: 0.37,
      kvBlocksTotal: 165504,
      blockSize: 1,
      prefixQueries: 8128902,
      prefixHits: 3.75e6,
      prefixHitRate: 3.75e6 / 8128902,
    });
  });

  it('maps a llama.cpp server page', () => {
    assert.deepEqual(signalsOf(fixture('llamacpp.prom')), {
      family: 'llamacpp',
      running: 3,
      waiting: 1,
      kvUsage: 0.21875,
    });
  });

  it('sums counts and averages fractions over data-parallel engines', () => {
    const text = [
      'vllm:num_requests_running{engine="0",model_name="m"} 3',
      'vllm:num_requests_running{engine="1",model_name="m"} 5',
      'vllm:num_requests_waiting{engine="0",model_name="m"} 1',
      'vllm:num_requests_waiting{engine="1",model_name="m"} 0',
      'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2',
      'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6',
      'vllm:cache_config_info{block_size="32",engine="0",num_gpu_blocks="1000"} 1',
      'vllm:cache_config_info{block_size="32",engine="1",num_gpu_blocks="1000"} 1',
      'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100',
      'vllm:prefix_cache_queries_total{engine="1",model_name="m"} 300',
      'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 50',
      'vllm:prefix_cache_hits_total{engine="1",model_name="m"} 50',
    ].join('\n');
    assert.deepEqual(signalsOf(text), {
      family: 'vllm',
      running: 8,
      waiting: 1,
      kvUsage: 0.4,
      kvBlocksTotal: 2000,
      blockSize: 32,
      prefixQueries: 400,
      prefixHits: 100,
      prefixHitRate: 0.25,
    });
  });

  it('prefers the current name when both are served, ignores NaN and unsized caches, clamps fractions', () => {
    const text = [
      'vllm:kv_cache_usage_perc{engine="0"} 1.3',
      'vllm:gpu_cache_usage_perc{engine="0"} 0.1',
      'vllm:num_requests_running{engine="0"} NaN',
      'vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1',
      'vllm:prefix_cache_queries_total 0',
      'vllm:prefix_cache_hits_total 0',
    ].join('\n');
    assert.deepEqual(signalsOf(text), {
      family: 'vllm',
      kvUsage: 1,
      blockSize: 16,
      prefixQueries: 0,
      prefixHits: 0,
    });
  });

  it("falls back to an engine's own hit-rate gauge when it has no counters", () => {
    assert.deepEqual(signalsOf('vllm:gpu_prefix_cache_hit_rate{model_name="m"} 0.3'), {
      family: 'vllm',
      prefixHitRate: 0.3,
    });
    assert.deepEqual(signalsOf('sglang:cache_hit_rate{tp_rank="0"} 0.45\nsglang:num_running_reqs 2'), {
      family: 'sglang',
      running: 2,
      prefixHitRate: 0.45,
    });
  });

  it('says unknown for a page from no engine it knows', () => {
    assert.deepEqual(signalsOf('process_cpu_seconds_total 12\nhttp_requests_total{code="200"} 7'), {
      family: 'unknown',
    });
    assert.deepEqual(signalsOf(''), { family: 'unknown' });
  });

  it('reads only names listed in ENGINE_SIGNAL_METRICS, so the filtered parse gives the same answer', () => {
    for (const name of ['vllm.prom', 'vllm-legacy.prom', 'sglang.prom', 'llamacpp.prom']) {
      const text = fixture(name);
      const filtered = parsePrometheusText(text, { keep: (n) => ENGINE_SIGNAL_METRICS.has(n) });
      assert.deepEqual(engineSignalsFromMetrics(filtered), signalsOf(text), name);
    }
  });
});
