/** The model layer's public API: catalogues, the performance model, KV sizing, loading and transfer. */
export * from './calibration.ts';
export * from './engines.ts';
export * from './gpus.ts';
export * from './kv.ts';
export * from './loading.ts';
export * from './models.ts';
export * from './operators/operators.ts';
export {
  CUDA_GRAPH_TOKENS_CAP,
  cudaGraphCaptureSizes,
  OperatorStepModel,
  operatorCoefficientsFor,
} from './operators/step.ts';
export * from './perf.ts';
export type * from './types.ts';
