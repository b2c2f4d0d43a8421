/**
 * What a policy needs from an engine's /metrics page, in one shape whatever the engine:
 *
 * | signal          | vLLM                                                        | SGLang                           | llama.cpp server                 |
 * |-----------------|-------------------------------------------------------------|----------------------------------|----------------------------------|
 * | running         | `vllm:num_requests_running`                                 | `sglang:num_running_reqs`        | `llamacpp:requests_processing`   |
 * | waiting         | `vllm:num_requests_waiting`                                 | `sglang:num_queue_reqs`          | `llamacpp:requests_deferred`     |
 * | kvUsage (0..1)  | `vllm:kv_cache_usage_perc`, else `vllm:gpu_cache_usage_perc` | `sglang:token_usage`             | `llamacpp:kv_cache_usage_ratio`  |
 * | kvBlocksTotal   | `vllm:cache_config_info{num_gpu_blocks}`                    | `sglang:max_total_num_tokens`    | -                                |
 * | blockSize       | `vllm:cache_config_info{block_size}`                        | 1 (capacity counted in tokens)   | -                                |
 * | prefixQueries   | `vllm:prefix_cache_queries_total`, else `gpu_prefix_…`      | `sglang:prompt_tokens_total`     | -                                |
 * | prefixHits      | `vllm:prefix_cache_hits_total`, else `gpu_prefix_…`         | `sglang:cached_tokens_total`     | -                                |
 * | prefixHitRate   | hits / queries, else `vllm:gpu_prefix_cache_hit_rate` (v0)  | hits / queries, else `sglang:cache_hit_rate` | -                    |
 *
 * vLLM's `*_perc` gauges are fractions (0..1) despite the name. Counts are summed over every
 * label set (vLLM's `engine` for data parallelism, `model_name`, SGLang's ranks); fractions are
 * averaged; vLLM's blocks are summed over engines and the block size is the first one seen.
 * NaN samples are ignored, and so is a negative hit-rate gauge: vLLM v0 reports
 * `vllm:gpu_prefix_cache_hit_rate` -1 when prefix caching is off ("-1 means not supported or
 * disabled", `vllm/core/block/interfaces.py`), which is "no rate", not a rate of 0. llama.cpp's
 * `n_busy_slots_per_decode` is a lifetime average, not the current load, so it is not mapped; its
 * `kv_cache_usage_ratio` was dropped from the server in llama.cpp PR #13660 (2025), so current
 * llama.cpp pages carry no kvUsage. Pages captured from real servers, with their sources, are in
 * `fixtures/real/` (see its README).
 */
import type { Sample } from './prometheus-text.ts';

/** The engine that served a page, told by its metric prefix. */
export type EngineFamily = 'vllm' | 'sglang' | 'llamacpp' | 'unknown';

/** Engine signals in one shape; a field is absent when the page did not carry it. */
export interface EngineSignals {
  readonly family: EngineFamily;
  /** Sequences in the running batch. */
  readonly running?: number;
  /** Requests queued inside the engine. */
  readonly waiting?: number;
  /** Fraction of KV cache in use, 0..1. */
  readonly kvUsage?: number;
  /** KV cache capacity in blocks of `blockSize` tokens. */
  readonly kvBlocksTotal?: number;
  readonly blockSize?: number;
  /** Lifetime prompt tokens looked up in the prefix cache. */
  readonly prefixQueries?: number;
  /** Lifetime prompt tokens found in the prefix cache. */
  readonly prefixHits?: number;
  /** Prefix-cache hit rate, 0..1: hits / queries, or the engine's own rate gauge. */
  readonly prefixHitRate?: number;
}

/** Every metric name `engineSignalsFromMetrics` reads: pass it as the parser's `keep` filter. */
export const ENGINE_SIGNAL_METRICS: ReadonlySet<string> = new Set([
  'vllm:num_requests_running',
  'vllm:num_requests_waiting',
  'vllm:kv_cache_usage_perc',
  'vllm:gpu_cache_usage_perc',
  'vllm:cache_config_info',
  'vllm:prefix_cache_queries_total',
  'vllm:prefix_cache_hits_total',
  'vllm:gpu_prefix_cache_queries_total',
  'vllm:gpu_prefix_cache_hits_total',
  'vllm:gpu_prefix_cache_hit_rate',
  'sglang:num_running_reqs',
  'sglang:num_queue_reqs',
  'sglang:token_usage',
  'sglang:max_total_num_tokens',
  'sglang:prompt_tokens_total',
  'sglang:cached_tokens_total',
  'sglang:cache_hit_rate',
  'llamacpp:requests_processing',
  'llamacpp:requests_deferred',
  'llamacpp:kv_cache_usage_ratio',
]);

/** Rate gauges whose negative value is the engine's "not available" sentinel. */
const RATE_GAUGES: ReadonlySet<string> = new Set(['vllm:gpu_prefix_cache_hit_rate', 'sglang:cache_hit_rate']);

/** A running sum or mean over the label sets of one metric. */
class Acc {
  sum = 0;
  n = 0;
  add(value: number): void {
    if (Number.isNaN(value)) return;
    this.sum += value;
    this.n++;
  }
  total(): number | undefined {
    return this.n === 0 ? undefined : this.sum;
  }
  mean(): number | undefined {
    return this.n === 0 ? undefined : this.sum / this.n;
  }
}

/** Maps a parsed /metrics page to `EngineSignals`. */
export function engineSignalsFromMetrics(samples: readonly Sample[]): EngineSignals {
  const acc = new Map<string, Acc>();
  let family: EngineFamily = 'unknown';
  let rank = 3;
  const vllmBlocks = new Acc();
  let vllmBlockSize: number | undefined;
  for (const sample of samples) {
    const name = sample.name;
    if (!ENGINE_SIGNAL_METRICS.has(name)) continue;
    const r = name.charCodeAt(0) === 0x76 /* v */ ? 0 : name.charCodeAt(0) === 0x73 /* s */ ? 1 : 2;
    if (r < rank) {
      rank = r;
      family = r === 0 ? 'vllm' : r === 1 ? 'sglang' : 'llamacpp';
    }
    if (name === 'vllm:cache_config_info') {
      const blocks = labelNumber(sample.labels['num_gpu_blocks']);
      if (blocks !== undefined) vllmBlocks.add(blocks);
      vllmBlockSize ??= labelNumber(sample.labels['block_size']);
      continue;
    }
    if (sample.value < 0 && RATE_GAUGES.has(name)) continue;
    let a = acc.get(name);
    if (a === undefined) {
      a = new Acc();
      acc.set(name, a);
    }
    a.add(sample.value);
  }
  const total = (name: string) => acc.get(name)?.total();
  const mean = (name: string) => acc.get(name)?.mean();
  switch (family) {
    case 'vllm': {
      const queries =
        total('vllm:prefix_cache_queries_total') ?? total('vllm:gpu_prefix_cache_queries_total');
      const hits = total('vllm:prefix_cache_hits_total') ?? total('vllm:gpu_prefix_cache_hits_total');
      return compact({
        family,
        running: total('vllm:num_requests_running'),
        waiting: total('vllm:num_requests_waiting'),
        kvUsage: fraction(mean('vllm:kv_cache_usage_perc') ?? mean('vllm:gpu_cache_usage_perc')),
        kvBlocksTotal: vllmBlocks.total(),
        blockSize: vllmBlockSize,
        prefixQueries: queries,
        prefixHits: hits,
        prefixHitRate: fraction(hitRate(queries, hits) ?? mean('vllm:gpu_prefix_cache_hit_rate')),
      });
    }
    case 'sglang': {
      const queries = total('sglang:prompt_tokens_total');
      const hits = total('sglang:cached_tokens_total');
      const capacity = total('sglang:max_total_num_tokens');
      return compact({
        family,
        running: total('sglang:num_running_reqs'),
        waiting: total('sglang:num_queue_reqs'),
        kvUsage: fraction(mean('sglang:token_usage')),
        kvBlocksTotal: capacity,
        blockSize: capacity === undefined ? undefined : 1,
        prefixQueries: queries,
        prefixHits: hits,
        prefixHitRate: fraction(hitRate(queries, hits) ?? mean('sglang:cache_hit_rate')),
      });
    }
    case 'llamacpp':
      return compact({
        family,
        running: total('llamacpp:requests_processing'),
        waiting: total('llamacpp:requests_deferred'),
        kvUsage: fraction(mean('llamacpp:kv_cache_usage_ratio')),
      });
    case 'unknown':
      return { family };
    default: {
      const never: never = family;
      return never;
    }
  }
}

type Loose<T> = { -readonly [K in keyof T]: T[K] | undefined };

/** Drops undefined fields (the shape uses absent, not undefined, for "not reported"). */
function compact(signals: Loose<EngineSignals> & { family: EngineFamily }): EngineSignals {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(signals) as (keyof EngineSignals)[]) {
    const value = signals[key];
    if (value !== undefined) out[key] = value;
  }
  return out as unknown as EngineSignals;
}

function hitRate(queries: number | undefined, hits: number | undefined): number | undefined {
  return queries === undefined || hits === undefined || queries <= 0 ? undefined : hits / queries;
}

function fraction(value: number | undefined): number | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  return Math.min(1, Math.max(0, value));
}

/** A label that carries a count ("27503"); vLLM writes "None" before the cache is sized. */
function labelNumber(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}
