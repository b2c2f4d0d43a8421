/** The load generator behind `switchyard bench`: plans, prompt synthesis, an SSE client, the open-loop runner, metrics and reports. */
export { buildPlan, OWN_MODELS, runBench } from './bench.ts';
export type { Attempt, CompletionCall, Endpoint, ModelList, TokenSource } from './client.ts';
export { completionBody, ENDPOINTS, networkReason, OpenAiClient, parseBaseUrl } from './client.ts';
export { MetricsCollector, meetsSlo, tpotMs } from './metrics.ts';
export type { BenchFlags, BenchOptions, BenchSource } from './options.ts';
export {
  ARRIVAL_KINDS,
  BENCH_DEFAULTS,
  isWorkloadFile,
  namesOwnModels,
  resolveBenchOptions,
} from './options.ts';
export type { SyntheticPlanOptions, TokenRange, TracePlanOptions, WorkloadPlanOptions } from './plan.ts';
export { PLAN_COUNT_MAX, syntheticPlan, tracePlan, workloadPlan } from './plan.ts';
export { BLOCK_CHARS, PromptSynth } from './prompts.ts';
export { benchJson, formatBenchReport, writeBenchJson } from './report.ts';
export type { OverflowMode, RunProgress, RunSettings, Sender } from './runner.ts';
export { OVERFLOW_MODES, runPlan } from './runner.ts';
export type { OpenAiChunk, SseEvent } from './sse.ts';
export { readOpenAiChunk, SseParser } from './sse.ts';
export type { BenchPlan, BenchSummary, ModelCounts, PlannedRequest, RequestRecord } from './types.ts';
export type { WorkloadFile } from './workload-file.ts';
export { readWorkloadFile } from './workload-file.ts';
