/** Admission: the gateway-side queue that decides when each request may go to the cluster. */
export {
  admissionStep,
  type BatchJob,
  type BatchJobSnapshot,
  type BatchSink,
  type BatchStatus,
  type BatchSubmitResult,
  BatchTracker,
  type BatchTrackerConfig,
  batchTrackerConfigSchema,
  type LazyRequests,
} from './batch.ts';
export {
  type AdmissionConfig,
  type AdmissionConfigInput,
  admissionConfigSchema,
  type BandConfig,
  bandConfigSchema,
  DEFAULT_BANDS,
  type GateConfig,
  parseAdmissionConfig,
  type SheddingConfig,
  type TenantConfig,
  tenantConfigSchema,
} from './config.ts';
export { createAdmissionController } from './controller.ts';
export type {
  AdmissionController,
  AdmissionQueue,
  AdmissionStats,
  BandSnapshot,
  CompletionUsage,
  DrainResult,
  OfferHints,
  OfferResult,
  QueueRejection,
} from './types.ts';
