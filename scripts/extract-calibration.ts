/**
 * Extracts a small calibration set from the public profiling data in ../shared/data/profiles and
 * writes it as JSON under data/samples/calibration/. Run once by hand; the report script
 * (scripts/calibrate.ts) reads only the committed JSON.
 *
 *   node --import tsx scripts/extract-calibration.ts [profilesDir]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CalibrationFile, CalibrationPoint } from '../src/model/calibration.ts';
import { median } from '../src/model/calibration.ts';
import { modelSpec } from '../src/model/models.ts';
import type { StepShape } from '../src/model/types.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const profilesDir = resolve(repoRoot, process.argv[2] ?? '../shared/data/profiles');
const outDir = join(repoRoot, 'data/samples/calibration');

/** Parses a CSV without quoted fields (true of every file used here) into records. */
function readCsv(path: string): Record<string, string>[] {
  const lines = readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.length > 0);
  const header = (lines[0] ?? '').split(',');
  return lines.slice(1).map((line) => {
    const cells = line.split(',');
    const row: Record<string, string> = {};
    header.forEach((name, i) => {
      row[name] = cells[i] ?? '';
    });
    return row;
  });
}

function num(row: Record<string, string>, key: string): number {
  const v = Number(row[key]);
  if (!Number.isFinite(v)) throw new Error(`bad number in column ${key}: '${row[key]}'`);
  return v;
}

/** Rounds to 4 significant digits so the JSON stays small and readable. */
function sig(x: number): number {
  return Number(x.toPrecision(4));
}

function prefillShape(seqs: number, promptTokens: number): StepShape {
  return {
    prefillSeqs: seqs,
    prefillTokens: seqs * promptTokens,
    prefillAttentionPairs: (seqs * promptTokens * (promptTokens + 1)) / 2,
    decodeSeqs: 0,
    decodeContextTokens: 0,
    commonPrefixTokens: 0,
  };
}

function decodeShape(batch: number, meanContextTokens: number): StepShape {
  return {
    prefillSeqs: 0,
    prefillTokens: 0,
    prefillAttentionPairs: 0,
    decodeSeqs: batch,
    decodeContextTokens: batch * meanContextTokens,
    commonPrefixTokens: 0,
  };
}

// ---------------------------------------------------------------- Splitwise
function splitwise(): CalibrationFile {
  const rows = readCsv(join(profilesDir, 'splitwise-sim/perf_model.csv'));
  const models: Record<string, string> = { 'llama2-70b': 'llama-2-70b', 'bloom-176b': 'bloom-176b' };
  // The power-capped H100 runs are left out: no catalogue GPU runs at capped clocks.
  const gpus: Record<string, string> = { 'a100-80gb': 'a100-80gb', 'h100-80gb': 'h100' };
  const prompt = new Map<
    string,
    { gpu: string; model: string; tp: number; p: number; b: number; t: number[] }
  >();
  const token = new Map<
    string,
    { gpu: string; model: string; tp: number; p: number; b: number; n: number; t: number[] }
  >();
  for (const r of rows) {
    const gpu = gpus[r['hardware'] ?? ''];
    const model = models[r['model'] ?? ''];
    if (gpu === undefined || model === undefined) continue;
    const tp = num(r, 'tensor_parallel');
    const p = num(r, 'prompt_size');
    const b = num(r, 'batch_size');
    const n = num(r, 'token_size');
    // Prompt time does not depend on how many tokens are generated afterwards: pool those runs.
    const pk = `${gpu}|${model}|${tp}|${p}|${b}`;
    const pe = prompt.get(pk) ?? { gpu, model, tp, p, b, t: [] };
    pe.t.push(num(r, 'prompt_time'));
    prompt.set(pk, pe);
    const tk = `${pk}|${n}`;
    const te = token.get(tk) ?? { gpu, model, tp, p, b, n, t: [] };
    te.t.push(num(r, 'token_time'));
    token.set(tk, te);
  }
  const points: CalibrationPoint[] = [];
  for (const e of prompt.values()) {
    const point: CalibrationPoint = {
      group: 'prefill',
      source: 'splitwise',
      engine: 'legacy-2023',
      gpu: e.gpu,
      tp: e.tp,
      model: e.model,
      op: 'step',
      shape: prefillShape(e.b, e.p),
      measuredMs: sig(median(e.t)),
      label: `prompt ${e.p} x batch ${e.b}`,
    };
    // Batch 64 at TP2 finished faster than batch 32 on both GPUs; it cannot have prefilled 32768
    // tokens in that time (it would exceed peak FLOP/s), so the run is kept but not scored.
    const anomalous = e.tp === 2 && e.b === 64;
    points.push(anomalous ? { ...point, excluded: 'faster than batch 32; above peak FLOP/s' } : point);
  }
  for (const e of token.values()) {
    // token_time is the mean step time over the generation: the context grows from p to p + n.
    points.push({
      group: 'decode',
      source: 'splitwise',
      engine: 'legacy-2023',
      gpu: e.gpu,
      tp: e.tp,
      model: e.model,
      op: 'step',
      shape: decodeShape(e.b, e.p + e.n / 2),
      measuredMs: sig(median(e.t)),
      label: `batch ${e.b}, prompt ${e.p}, ${e.n} tokens out`,
    });
  }
  return {
    source: 'splitwise',
    description:
      'Splitwise perf_model.csv: measured prompt (prefill) and per-iteration token (decode) times, median of the runs per configuration',
    licence: 'MIT',
    url: 'https://github.com/Mutinifni/splitwise-sim (data/perf_model.csv @8f99e7d)',
    points,
  };
}

// ---------------------------------------------------------------- Vidur GEMMs
const VIDUR_MODELS: readonly { path: string; model: string; devices: readonly string[] }[] = [
  { path: 'meta-llama/Llama-2-7b-hf', model: 'llama-2-7b', devices: ['a100', 'h100', 'a40'] },
  { path: 'meta-llama/Llama-2-70b-hf', model: 'llama-2-70b', devices: ['a100', 'h100', 'a40'] },
  { path: 'codellama/CodeLlama-34b-Instruct-hf', model: 'codellama-34b', devices: ['a100', 'h100', 'a40'] },
  // Llama 3 and 3.1 share the architecture; Vidur profiled Llama 3 on the A100 only.
  { path: 'meta-llama/Meta-Llama-3-8B', model: 'llama-3.1-8b', devices: ['a100'] },
  { path: 'meta-llama/Meta-Llama-3-70B', model: 'llama-3.1-70b', devices: ['a100'] },
];
const VIDUR_GPU: Record<string, string> = { a100: 'a100-80gb', h100: 'h100', a40: 'a40' };
const GEMM_TOKENS = [1, 16, 64, 256, 1024, 4096];
const GEMM_OPS = ['attn_pre_proj', 'attn_post_proj', 'mlp_up_proj', 'mlp_down_proj'];

function vidurGemm(): CalibrationFile {
  const points: CalibrationPoint[] = [];
  for (const entry of VIDUR_MODELS) {
    const spec = modelSpec(entry.model);
    for (const device of entry.devices) {
      const rows = readCsv(join(profilesDir, 'vidur/data/profiling/compute', device, entry.path, 'mlp.csv'));
      for (const row of rows.slice(0, 1)) {
        // The profile's shape must be the catalogue's, or the comparison means nothing.
        const ok =
          num(row, 'n_embd') === spec.hiddenSize &&
          num(row, 'n_head') === spec.heads &&
          num(row, 'n_kv_head') === spec.kvHeads &&
          num(row, 'n_expanded_embd') === spec.ffnSize;
        if (!ok) throw new Error(`Vidur ${entry.path} shape differs from catalogue ${entry.model}`);
      }
      for (const tp of [1, 2, 4, 8]) {
        for (const tokens of GEMM_TOKENS) {
          const matches = rows.filter(
            (r) => num(r, 'num_tokens') === tokens && num(r, 'num_tensor_parallel_workers') === tp,
          );
          if (matches.length === 0) continue;
          const totals = matches.map((r) =>
            GEMM_OPS.reduce((s, op) => s + num(r, `time_stats.${op}.median`), 0),
          );
          points.push({
            group: 'gemm',
            source: 'vidur',
            engine: 'vllm',
            gpu: VIDUR_GPU[device]!,
            tp,
            model: entry.model,
            op: 'gemm',
            tokens,
            measuredMs: sig(median(totals)),
            label: `${tokens} tokens, QKV+O+up+down per layer`,
          });
        }
      }
    }
  }
  return {
    source: 'vidur',
    description:
      'Vidur operator profiles (sarathi-serve kernels, CUDA time): sum of the four projection GEMMs of one layer, median column',
    licence: 'MIT',
    url: 'https://github.com/microsoft/vidur (data/profiling/compute/*/mlp.csv @7d47513)',
    points,
  };
}

// ---------------------------------------------------------------- Vidur all-reduce
const ALL_REDUCE_BYTES = [16384, 131072, 1048576, 4194304, 16777216, 67108864];

function vidurAllReduce(): CalibrationFile {
  const points: CalibrationPoint[] = [];
  for (const [dir, gpu] of [
    ['a100_dgx', 'a100-80gb'],
    ['h100_dgx', 'h100'],
  ] as const) {
    const rows = readCsv(join(profilesDir, 'vidur/data/profiling/network', dir, 'all_reduce.csv'));
    for (const tp of [2, 4, 8]) {
      // One node: every worker on the same NVLink switch.
      const sameNode = rows.filter(
        (r) =>
          num(r, 'num_workers') === tp &&
          num(r, 'devices_per_node') === tp &&
          r['collective'] === 'all_reduce',
      );
      for (const target of ALL_REDUCE_BYTES) {
        // Each size was timed once; pool the sizes within 10% to damp the noise.
        const near = sameNode.filter((r) => Math.abs(num(r, 'size') / target - 1) <= 0.1);
        if (near.length === 0) continue;
        points.push({
          group: 'all-reduce',
          source: 'vidur',
          engine: 'vllm',
          gpu,
          tp,
          op: 'all-reduce',
          bytes: sig(median(near.map((r) => num(r, 'size')))),
          measuredMs: sig(median(near.map((r) => num(r, 'time_stats.all_reduce.median')))),
          label: `${(target / 1024).toFixed(0)} KiB, ${near.length} sizes pooled`,
        });
      }
    }
  }
  return {
    source: 'vidur',
    description: 'Vidur NCCL all-reduce profiles within one DGX node (A100 and H100), median column',
    licence: 'MIT',
    url: 'https://github.com/microsoft/vidur (data/profiling/network/*_dgx/all_reduce.csv @7d47513)',
    points,
  };
}

// ---------------------------------------------------------------- Vidur attention (legacy A100 file)
function vidurAttention(): CalibrationFile {
  const rows = readCsv(join(profilesDir, 'vidur/legacy_e2d00e9/data/profiling/a100/attention.csv'));
  const points: CalibrationPoint[] = [];
  // The file's shape (8192 hidden, 64 query and 8 KV heads, TP2) is CodeLlama-34B's attention.
  for (const chunk of [128, 512, 1024, 2048, 4096]) {
    for (const kv of [0, 1024, 2048]) {
      const m = rows.filter(
        (r) =>
          r['is_prefill'] === 'True' &&
          num(r, 'prefill_chunk_size') === chunk &&
          num(r, 'kv_cache_size') === kv,
      );
      if (m.length === 0) continue;
      points.push({
        group: 'attention',
        source: 'vidur-attention',
        engine: 'vllm',
        gpu: 'a100-80gb',
        tp: 2,
        model: 'codellama-34b',
        op: 'attention-prefill',
        pairs: chunk * kv + (chunk * (chunk + 1)) / 2,
        measuredMs: sig(median(m.map((r) => num(r, 'time_stats.attn_prefill.median')))),
        label: `prefill chunk ${chunk} after ${kv} cached`,
      });
    }
  }
  for (const batch of [1, 8, 32, 128]) {
    for (const kv of [512, 1024, 2048, 4032]) {
      const m = rows.filter(
        (r) => r['is_prefill'] !== 'True' && num(r, 'batch_size') === batch && num(r, 'kv_cache_size') === kv,
      );
      if (m.length === 0) continue;
      points.push({
        group: 'attention',
        source: 'vidur-attention',
        engine: 'vllm',
        gpu: 'a100-80gb',
        tp: 2,
        model: 'codellama-34b',
        op: 'attention-decode',
        contextTokens: batch * kv,
        measuredMs: sig(median(m.map((r) => num(r, 'time_stats.attn_decode.median')))),
        label: `decode batch ${batch} x ${kv} context`,
      });
    }
  }
  return {
    source: 'vidur-attention',
    description:
      'Vidur FlashAttention profile (legacy commit e2d00e9, A100, 64/8 heads at TP2, Kineto timing): one layer of prefill or decode attention',
    licence: 'MIT',
    url: 'https://github.com/microsoft/vidur (data/profiling/a100/attention.csv @e2d00e9)',
    points,
  };
}

// ---------------------------------------------------------------- DistServe (derived)
interface DistServeCoefficients {
  readonly decoding_large_small_bs_threshold: number;
  readonly prefill: readonly [number, number, number];
  readonly decoding_smallbs: readonly [number, number, number];
  readonly decoding_largebs: readonly [number, number, number];
}

function distServe(): CalibrationFile {
  const path = join(profilesDir, 'distserve/profiler-a100-80g.vllm.json');
  const data = JSON.parse(readFileSync(path, 'utf8')) as Record<
    string,
    Record<string, DistServeCoefficients>
  >;
  const models: Record<string, string> = { 'facebook/opt-13b': 'opt-13b', 'facebook/opt-66b': 'opt-66b' };
  const points: CalibrationPoint[] = [];
  for (const [hfName, byTp] of Object.entries(data)) {
    const model = models[hfName];
    if (model === undefined) continue;
    for (const [tpText, c] of Object.entries(byTp)) {
      const tp = Number(tpText);
      const [pa, pb, pc] = c.prefill;
      for (const len of [128, 512, 1024, 2048]) {
        points.push({
          group: 'derived-prefill',
          source: 'distserve',
          engine: 'legacy-2023',
          gpu: 'a100-80gb',
          tp,
          model,
          op: 'step',
          shape: prefillShape(1, len),
          measuredMs: sig(pa + pb * len + pc * len * len),
          label: `prompt ${len} (fitted formula)`,
        });
      }
      for (const batch of [1, 8, 32, 128]) {
        for (const ctx of [512, 1536]) {
          const [da, db, dc] =
            batch < c.decoding_large_small_bs_threshold ? c.decoding_smallbs : c.decoding_largebs;
          points.push({
            group: 'derived-decode',
            source: 'distserve',
            engine: 'legacy-2023',
            gpu: 'a100-80gb',
            tp,
            model,
            op: 'step',
            shape: decodeShape(batch, ctx),
            measuredMs: sig(da + db * batch * ctx + dc * batch),
            label: `batch ${batch} x ${ctx} context (fitted formula)`,
          });
        }
      }
    }
  }
  return {
    source: 'distserve',
    description:
      "DistServe's fitted latency formulas for vLLM on A100-80GB (OPT-13B, OPT-66B), evaluated on a grid: derived, not measured",
    licence: 'Apache-2.0',
    url: 'https://github.com/LLMServe/DistServe (simdistserve/estimators/profile_data/profiler-a100-80g.vllm.json @82831f1)',
    points,
  };
}

// ---------------------------------------------------------------- published vLLM numbers
function published(): CalibrationFile {
  const points: CalibrationPoint[] = [
    {
      group: 'decode',
      source: 'vllm-h100-sweep',
      engine: 'vllm',
      gpu: 'h100',
      tp: 1,
      model: 'llama-3.1-8b',
      op: 'step',
      // "chatbot-short" prompt lengths are not published; a short chat context (~300 tokens) is
      // assumed. At batch 1 the KV read is under 1% of the weight read, so the guess barely matters.
      shape: decodeShape(1, 300),
      measuredMs: 6.48,
      label: 'vLLM 0.21.0, concurrency 1, TPOT p50',
    },
    {
      group: 'decode',
      source: 'vllm-h100-sweep',
      engine: 'vllm',
      gpu: 'h100',
      tp: 1,
      model: 'llama-3.1-8b',
      op: 'step',
      shape: decodeShape(4, 300),
      measuredMs: 6.59,
      label: 'vLLM 0.21.0, concurrency 4, TPOT p50',
    },
    {
      group: 'decode',
      source: 'vllm-a100-sweep',
      engine: 'vllm',
      gpu: 'a100-40gb',
      tp: 1,
      model: 'llama-3.1-8b',
      op: 'step',
      // 1024 tokens in, 128 out: the mean context over the generation is 1088.
      shape: decodeShape(1, 1088),
      measuredMs: sig(1000 / 75),
      label: 'vLLM 0.23.0, concurrency 1, ~75 tok/s',
    },
  ];
  return {
    source: 'published',
    description:
      'Published third-party vLLM benchmark results (decode time per output token at low concurrency)',
    licence: 'quoted figures (facts), see README',
    url: 'yobitelcomm.github.io/bench/recipes/concurrency-sweep/ ; johnmusgrave.com/p/vllm-throughput-latency-sweep-on',
    points,
  };
}

/** One point per line: small, and diffs line up with points. */
function formatFile(file: CalibrationFile): string {
  const { points, ...header } = file;
  const head = Object.entries(header)
    .map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)},`)
    .join('\n');
  const body = points.map((p) => `    ${JSON.stringify(p)}`).join(',\n');
  return `{\n${head}\n  "points": [\n${body}\n  ]\n}\n`;
}

mkdirSync(outDir, { recursive: true });
const files: Record<string, CalibrationFile> = {
  'splitwise.json': splitwise(),
  'vidur-gemm.json': vidurGemm(),
  'vidur-all-reduce.json': vidurAllReduce(),
  'vidur-attention.json': vidurAttention(),
  'distserve-derived.json': distServe(),
  'published-vllm.json': published(),
};
let total = 0;
for (const [name, file] of Object.entries(files)) {
  writeFileSync(join(outDir, name), formatFile(file));
  total += file.points.length;
  console.log(`${name}: ${file.points.length} points`);
}
console.log(`${total} points written to ${outDir}`);
