/** Cost-aware choice of GPU types and TP degrees (Mélange-style): see README.md in this folder. */
export {
  type BucketAssignment,
  cheapestVariantFor,
  type GpuPlan,
  type GpuPlanRequest,
  type PlannedVariant,
  planGpuMix,
  type VariantChoice,
  type VariantQuery,
} from './choose.ts';
export { type GpuPrices, type GpuPriceTable, parseGpuPrices, priceTable } from './prices.ts';
export {
  type BucketCapacity,
  type CapacityLimit,
  isProfiled,
  type PlanObjectives,
  type ProfileOptions,
  profileVariant,
  SATURATION_SHARE_MAX,
  type SkippedVariant,
  TP_DEGREES,
  type VariantProfile,
} from './profile.ts';
export {
  bucketize,
  INPUT_TOKEN_EDGES,
  type LengthBucket,
  type LengthSample,
  OUTPUT_TOKEN_EDGES,
} from './workload.ts';
