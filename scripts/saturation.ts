/**
 * Saturation analysis (docs/engine-model.md, "Saturation"): one engine core of the twin under
 * constant-rate arrivals, every step's time split by term from the operator model, and the
 * steady-state figures (TTFT, per-token time, batch, KV, preemptions) per rate.
 *
 *   node --import tsx scripts/saturation.ts [--rates 8,20] [--seconds 120] [--models a:tp,b:tp]
 *
 * The setup is the one issue 12 describes (vLLM v0.15.1 on H100: prompts of 570-790 tokens, ~250
 * output tokens, max_num_batched_tokens 2048, max_num_seqs 128, constant-rate arrivals); the
 * measured figures are not read.
 */
import { parseArgs } from 'node:util';
import { EngineCore } from '../src/engine-core/engine-core.ts';
import type { EngineConfig, EngineRequest, FinishedRequest } from '../src/engine-core/types.ts';
import { DEFAULT_ENGINE_CONFIG } from '../src/engine-core/types.ts';
import { kvBlocksThatFit, kvBytesPerTokenPerGpu, weightBytesPerGpu } from '../src/model/kv.ts';
import type { StepBreakdown } from '../src/model/operators/step.ts';
import { perfModelFor } from '../src/model/perf.ts';
import type { StepShape } from '../src/model/types.ts';
import { scriptArgs } from './script-args.ts';

const USAGE = `Usage: node --import tsx scripts/saturation.ts [options]

Saturation analysis (docs/engine-model.md, "Saturation"): one engine core of the twin under
constant-rate arrivals, every step's time split by term, and the steady-state figures per rate.

Options:
  --rates LIST                   arrival rates, req/s, comma-separated (default 8,20)
  --seconds S                    length of each run, seconds (default 120)
  --gpu ID                       GPU from the catalogue (default h100)
  --models LIST                  model:tp pairs, comma-separated
                                 (default llama-2-7b:1,llama-2-70b:4,codellama-34b:2)
  --max-num-seqs N               vLLM's max_num_seqs (default 128)
  --max-num-batched-tokens N     vLLM's max_num_batched_tokens (default 2048)
  -h, --help                     this text

Example:
  node --import tsx scripts/saturation.ts --rates 5,10,20 --models llama-2-7b:1 --seconds 60`;

// parseArgs, not a lookup of known names: a mistyped flag (--rate 8) ran the defaults silently.
const { values: args } = scriptArgs('saturation', USAGE, () =>
  parseArgs({
    options: {
      rates: { type: 'string', default: '8,20' },
      seconds: { type: 'string', default: '120' },
      gpu: { type: 'string', default: 'h100' },
      models: { type: 'string', default: 'llama-2-7b:1,llama-2-70b:4,codellama-34b:2' },
      'max-num-seqs': { type: 'string', default: '128' },
      'max-num-batched-tokens': { type: 'string', default: '2048' },
    },
  }),
);
const rates = args.rates.split(',').map(Number);
const seconds = Number(args.seconds);
const gpu = args.gpu;
const models = args.models.split(',');
const engine: EngineConfig = {
  ...DEFAULT_ENGINE_CONFIG,
  maxNumSeqs: Number(args['max-num-seqs']),
  maxNumBatchedTokens: Number(args['max-num-batched-tokens']),
};
/** Steps before this fraction of the run are warm-up; figures are over requests arriving after it. */
const WARMUP_FRACTION = 0.25;

/** A small deterministic LCG, so every run draws the same lengths. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const KEYS = [
  'gemmMs',
  'elementwiseMs',
  'allReduceMs',
  'prefillAttentionMs',
  'decodeAttentionMs',
  'overheadMs',
] as const;

function run(modelId: string, tp: number, rate: number): void {
  const perf = perfModelFor(gpu, modelId, tp, undefined, { maxNumSeqs: engine.maxNumSeqs });
  const ops = perf.operators;
  if (ops === undefined) throw new Error(`${gpu} has no operator table`);
  const blocks = kvBlocksThatFit(perf.gpu, perf.model, tp, engine.gpuMemoryUtilization, engine.blockSize, {
    maxNumSeqs: engine.maxNumSeqs,
    maxNumBatchedTokens: engine.maxNumBatchedTokens,
  });
  const sums: Record<string, number> = {};
  for (const k of KEYS) sums[k] = 0;
  let steps = 0;
  let stepMsTotal = 0;
  let decodeSeqsTotal = 0;
  let prefillTokensTotal = 0;
  let ctxTotal = 0;
  let eagerSteps = 0;
  let measuring = false;
  const recording = {
    gpu: perf.gpu,
    model: perf.model,
    tp,
    stepTimeMs(shape: StepShape): number {
      const ms = perf.stepTimeMs(shape);
      if (measuring) {
        const b: StepBreakdown = ops.stepBreakdownMs(shape);
        for (const k of KEYS) sums[k]! += b[k];
        steps++;
        stepMsTotal += ms;
        decodeSeqsTotal += shape.decodeSeqs;
        prefillTokensTotal += shape.prefillTokens;
        ctxTotal += shape.decodeContextTokens;
        if (!b.graph) eagerSteps++;
      }
      return ms;
    },
    prefillTimeMs: perf.prefillTimeMs.bind(perf),
    decodeStepTimeMs: perf.decodeStepTimeMs.bind(perf),
    kvBytesPerToken: perf.kvBytesPerToken.bind(perf),
    weightBytes: perf.weightBytes.bind(perf),
  };
  const done: FinishedRequest[] = [];
  const core = new EngineCore(engine, recording, blocks, { onFinish: (r) => done.push(r) });
  const rnd = lcg(12);
  const gapMs = 1000 / rate;
  const n = Math.round(rate * seconds);
  const warmupMs = seconds * 1000 * WARMUP_FRACTION;
  let next = 0;
  let nowMs = 0;
  let peakRunning = 0;
  while (next < n || core.hasWork) {
    while (next < n && next * gapMs <= nowMs) {
      const req: EngineRequest = {
        id: `r${next}`,
        inputTokens: 570 + Math.floor(rnd() * 221),
        outputTokens: 250,
        arrivalMs: next * gapMs,
        blockHashes: [],
      };
      core.add(req, nowMs);
      next++;
    }
    measuring = nowMs >= warmupMs && nowMs < seconds * 1000;
    const ms = core.startStep(nowMs);
    if (ms === undefined) {
      nowMs = next * gapMs;
      continue;
    }
    peakRunning = Math.max(peakRunning, core.running);
    nowMs += ms;
    core.finishStep(nowMs);
  }
  const steady = done.filter((r) => r.arrivalMs >= warmupMs && r.arrivalMs < seconds * 1000);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const ttft = mean(steady.map((r) => r.firstTokenMs - r.arrivalMs));
  const tpot = mean(steady.map((r) => (r.finishMs - r.firstTokenMs) / (r.request.outputTokens - 1)));
  const lateTtft = mean(steady.slice(-Math.ceil(steady.length / 5)).map((r) => r.firstTokenMs - r.arrivalMs));
  const preempted = done.reduce((a, r) => a + r.preemptions, 0);
  const per = (k: string) => (sums[k]! / steps).toFixed(2);
  // First principles at this rate, GPU-seconds per second on one GPU of the group: every token's
  // GEMM FLOPs at dense peak, every decode token's KV read at peak HBM bandwidth, and the two
  // all-reduces a layer at the fitted large-message rate (2048-token messages).
  const m = perf.model;
  const meanPrompt = 680;
  const out = 250;
  // Weights less the embedding and the LM head (vocab-parallel; the head runs on sampled rows only).
  const gemmParams = weightBytesPerGpu(m, tp) / m.dtypeBytes - (2 * m.vocabSize * m.hiddenSize) / tp;
  const gemmFlopsPerToken = 2 * gemmParams;
  const gemmFloor = (rate * (meanPrompt + out) * gemmFlopsPerToken) / perf.gpu.peakFlopsPerS;
  const kvFloor =
    (rate * out * (meanPrompt + out / 2) * kvBytesPerTokenPerGpu(m, tp)) / perf.gpu.hbmBandwidthBytesPerS;
  const bigMsg = 2048 * m.hiddenSize * m.dtypeBytes;
  const arPerToken = tp > 1 ? (2 * m.layers * ops.allReduceOfBytesMs(bigMsg)) / 2048 / 1000 : 0;
  const arFloor = rate * (meanPrompt + out) * arPerToken;
  console.log(
    `  floor at ${rate} req/s (GPU-s per s): GEMM at peak ${gemmFloor.toFixed(2)}, KV read at peak HBM ${kvFloor.toFixed(2)}, ` +
      `all-reduce ${arFloor.toFixed(2)}, sum ${(gemmFloor + kvFloor + arFloor).toFixed(2)}; ` +
      `decode-only step at ${engine.maxNumSeqs} seqs x 805 ctx: twin ${perf.decodeStepTimeMs(engine.maxNumSeqs, 805).toFixed(1)} ms, ` +
      `HBM floor ${(((weightBytesPerGpu(m, tp) + engine.maxNumSeqs * 805 * kvBytesPerTokenPerGpu(m, tp)) / perf.gpu.hbmBandwidthBytesPerS) * 1000).toFixed(1)} ms`,
  );
  console.log(
    `${modelId} TP${tp} @${rate} req/s: TTFT ${ttft.toFixed(0)} ms (last fifth ${lateTtft.toFixed(0)}), ` +
      `per-token ${tpot.toFixed(2)} ms, KV ${blocks} blocks (${((blocks * engine.blockSize) / 1000).toFixed(0)}k tokens), ` +
      `preemptions ${preempted}, peak running ${peakRunning}`,
  );
  console.log(
    `  mean step ${(stepMsTotal / steps).toFixed(2)} ms: GEMM ${per('gemmMs')}, elementwise ${per('elementwiseMs')}, ` +
      `all-reduce ${per('allReduceMs')}, prefill attn ${per('prefillAttentionMs')}, decode attn ${per('decodeAttentionMs')}, ` +
      `overhead ${per('overheadMs')}; decode seqs ${(decodeSeqsTotal / steps).toFixed(1)}, prefill tokens ` +
      `${(prefillTokensTotal / steps).toFixed(0)}, mean ctx ${(ctxTotal / Math.max(1, decodeSeqsTotal)).toFixed(0)}, ` +
      `eager steps ${((100 * eagerSteps) / steps).toFixed(0)}%, busy ${((stepMsTotal / (seconds * 1000 * (1 - WARMUP_FRACTION))) * 100).toFixed(0)}%`,
  );
}

for (const m of models) {
  const [id, tp] = m.split(':');
  for (const rate of rates) run(id!, Number(tp), rate);
}
