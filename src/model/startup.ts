/**
 * An instance's start-up time, term by term: what a vLLM-style engine does between being launched
 * and answering its first request. The twin's control host (src/twin/control-host.ts) makes a
 * started instance ready only after this much time, and bills its GPUs from the launch.
 *
 * Defaults are for an 8B-class model on one H100 with vLLM V1 and come from public logs:
 * - vllm-project/vllm PR #11005: Llama-3-8B, "Graph capturing finished in 10 secs" without
 *   compilation, and with it torch.compile 19.4 s (Dynamo 4.6 s + Inductor 14.8 s) then 15 s of
 *   graph capture (Triton kernel warm-up included).
 * - vllm-project/vllm PR #16848: Llama-3-8B with a warm compile cache, Dynamo 5.0 s plus 4.2 s to
 *   load the compiled graphs.
 * - vllm-project/vllm issue #20264: a pod restart with the compile cache kept, torch.compile 7.5 s,
 *   graph capture 17 s, and about 30 s more before the first answer that no log line covers
 *   (process launch, imports, API server).
 * - vllm-project/vllm issue #19824 (start-up heavy hitters): Llama-70B-FP8 on TP 8, ~60 s P2P check
 *   (skippable), ~15 s Dynamo, ~70 s compile, ~60 s graph capture: large models and TP cost more.
 * Weights come from src/model/loading.ts (`weightLoadTimeMs`) for the tier they sit in.
 */
import { gpuSpec } from './gpus.ts';
import { weightLoadTimeMs } from './loading.ts';
import { modelSpec } from './models.ts';
import type { StorageTier } from './types.ts';

/**
 * How torch.compile runs at start-up: `cached` reuses a compile cache copied with the deployment
 * (vLLM's ~/.cache/vllm/torch_compile_cache), `cold` compiles from scratch, `off` is
 * `--enforce-eager` (no compilation and no CUDA graphs either).
 */
export type CompileMode = 'cached' | 'cold' | 'off';

/** The fixed terms of a start-up, in ms; weights are computed from the storage tier. */
export interface StartupTerms {
  /**
   * Process launch, Python imports, engine and API-server set-up, tokenizer, memory profiling: the
   * ~30 s issue #20264 finds unlogged, less the profiling run it logs. Default 20 s.
   */
  readonly processInitMs: number;
  /** torch.compile with a warm cache: Dynamo plus loading graphs (PR #16848: 9.2 s). Default 9 s. */
  readonly compileCachedMs: number;
  /** torch.compile from scratch (PR #11005: 19.4 s on Llama-3-8B). Default 20 s. */
  readonly compileColdMs: number;
  /** CUDA-graph capture, kernel warm-up included (PR #11005: 15 s; issue #20264: 17 s). Default 15 s. */
  readonly cudaGraphCaptureMs: number;
}

/** The default start-up terms (sources in the module comment and docs/autoscaling.md). */
export const STARTUP_DEFAULTS: StartupTerms = Object.freeze({
  processInitMs: 20_000,
  compileCachedMs: 9_000,
  compileColdMs: 20_000,
  cudaGraphCaptureMs: 15_000,
});

/** The tier weights are read from unless configured: a local NVMe drive. */
export const DEFAULT_WEIGHT_TIER: StorageTier = 'nvme';

/** What one start-up is of: the variant and where its weights and compile cache are. */
export interface StartupSpec {
  readonly gpu: string;
  readonly model: string;
  readonly tp: number;
  /** Where the checkpoint is read from (default nvme). */
  readonly tier?: StorageTier | undefined;
  /** Default `cached`. */
  readonly compile?: CompileMode | undefined;
  /** Overrides of the fixed terms. */
  readonly terms?: Partial<StartupTerms> | undefined;
  /**
   * The weights term when the caller computed it from its own tier figures (a node's configured
   * tiers and their queues: src/control/model-cache); `tier` is then not read. Default: computed
   * from `tier` by `weightLoadTimeMs`.
   */
  readonly weightsMs?: number | undefined;
}

/** One start-up, term by term, in ms. `totalMs` is their sum: the terms run one after another. */
export interface StartupBreakdown {
  readonly processInitMs: number;
  readonly weightsMs: number;
  readonly compileMs: number;
  readonly cudaGraphCaptureMs: number;
  readonly totalMs: number;
}

/**
 * The start-up of one instance. vLLM runs these steps in sequence (load weights, then compile and
 * profile, then capture graphs), so the total is their sum. Unknown GPU or model ids throw, as
 * `gpuSpec` and `modelSpec` do.
 */
export function startupBreakdown(spec: StartupSpec): StartupBreakdown {
  const terms = { ...STARTUP_DEFAULTS, ...spec.terms };
  const compile = spec.compile ?? 'cached';
  const weightsMs =
    spec.weightsMs ??
    weightLoadTimeMs(gpuSpec(spec.gpu), modelSpec(spec.model), spec.tp, spec.tier ?? DEFAULT_WEIGHT_TIER);
  const compileMs = compileTimeMs(compile, terms);
  // Eager mode captures no graphs: that is what --enforce-eager turns off.
  const cudaGraphCaptureMs = compile === 'off' ? 0 : terms.cudaGraphCaptureMs;
  const processInitMs = terms.processInitMs;
  return {
    processInitMs,
    weightsMs,
    compileMs,
    cudaGraphCaptureMs,
    totalMs: processInitMs + weightsMs + compileMs + cudaGraphCaptureMs,
  };
}

/** The start-up time of one instance, ms (see `startupBreakdown`). */
export function startupTimeMs(spec: StartupSpec): number {
  return startupBreakdown(spec).totalMs;
}

function compileTimeMs(mode: CompileMode, terms: StartupTerms): number {
  switch (mode) {
    case 'cached':
      return terms.compileCachedMs;
    case 'cold':
      return terms.compileColdMs;
    case 'off':
      return 0;
    default: {
      const never: never = mode;
      throw new Error(`unknown compile mode ${String(never)}`);
    }
  }
}
