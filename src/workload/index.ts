/** Workloads: trace replay and synthetic generators, behind one spec and createWorkload. */
export type { ArrivalProcess } from './arrivals.ts';
export { constantArrivals, gammaArrivals, poissonArrivals } from './arrivals.ts';
export type { RequestDefaults } from './common.ts';
export { createWorkload, parseWorkloadSpec } from './create.ts';
export type { DeclaredMaxTokens } from './declared.ts';
export {
  DEFAULT_DECLARED_MAX_TOKENS,
  declaredMaxTokens,
  declaredMaxTokensSchema,
  formatDeclaredMaxTokens,
  generatedTokens,
  parseDeclaredMaxTokens,
} from './declared.ts';
export type { LengthRole, LengthSampler, LengthsLoader, PairSampler } from './lengths.ts';
export { cachedLengthsLoader, lengthSampler, pairSampler } from './lengths.ts';
export type { MultiModelSpec, RosterEntry } from './multi-model.ts';
export {
  DEFAULT_BASE_MIX,
  describeMultiModel,
  multiModelId,
  multiModelRatesRps,
  multiModelRequests,
  multiModelRoster,
  scaleMultiModel,
} from './multi-model.ts';
export { parseRateCurve, RATE_CURVE_POINTS_MAX, readRateCurve } from './rate-curve-file.ts';
export type { RatePoint, RateProfile, RateSegment } from './rate-profile.ts';
export { burstRate, PiecewiseLinearRate, rateCurve, repeating, sinusoidRate } from './rate-profile.ts';
export type { ServegenClient, ServegenData, ServegenReplay, ServegenWindow } from './servegen.ts';
export {
  checkReplay,
  parseServegen,
  readServegen,
  SERVEGEN_WINDOW_S,
  servegenArrivalTimesMs,
  servegenRateRps,
  servegenRequests,
} from './servegen.ts';
export { sessionRequests, systemPromptRequests, ZipfSampler } from './shared-prefix.ts';
export type {
  LengthDist,
  LengthDistInput,
  RateStage,
  WorkloadSpec,
  WorkloadSpecInput,
  WorkloadSpecOf,
} from './spec.ts';
export {
  idleStagesProblem,
  lengthDistSchema,
  MULTI_MODEL_MAX,
  meanStageRateRps,
  multiModelSpecSchema,
  rateStageSchema,
  STAGES_MAX,
  traceFormatSchema,
  WORKLOAD_KINDS,
  workloadSpecSchema,
} from './spec.ts';
export type { RenewalSpec, StreamLimits } from './synthetic.ts';
export {
  arrivalTimesMs,
  describeRate,
  formatStages,
  independentRequests,
  limitsOf,
  parseStages,
  renewalRequests,
  scaleRenewalRate,
  timedRequests,
} from './synthetic.ts';
export type { TimeVaryingSpec } from './time-varying.ts';
export {
  describeTimeVarying,
  modulatedArrivalTimesMs,
  profileOf,
  scaleTimeVarying,
  timeVaryingRequests,
} from './time-varying.ts';
export type { TraceRequestOptions } from './trace-source.ts';
export { traceRequests } from './trace-source.ts';
export type { RequestSource, Trace, TraceFormat, TraceRecord, TwinRequest } from './types.ts';
