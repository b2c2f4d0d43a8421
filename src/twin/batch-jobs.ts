import { z } from 'zod';
import { makeRequest, NO_PREFIX } from '../core/request.ts';
import type { Rng } from '../core/rng.ts';
import type { BatchJob } from '../policies/admission/batch.ts';
import { cachedLengthsLoader, pairSampler } from '../workload/lengths.ts';
import { lengthDistSchema } from '../workload/spec.ts';
import type { TwinRequest } from '../workload/types.ts';

/**
 * An offline batch job for the twin, shaped like an OpenAI Batch: many requests and a completion
 * window. Its requests carry priority -1, the offline band, and wait in the admission queue until
 * the cluster has spare capacity.
 */
export const batchJobSpecSchema = z.strictObject({
  id: z.string().min(1),
  tenant: z.string().min(1).default('batch'),
  requests: z.number().int().min(1).max(1_000_000),
  input: lengthDistSchema,
  output: lengthDistSchema,
  /** Submission time, seconds from the start of the run. */
  submitS: z.number().nonnegative().finite().default(0),
  /** The completion window (OpenAI's is 24 h). */
  windowS: z.number().positive().finite(),
});
export type BatchJobSpec = z.output<typeof batchJobSpecSchema>;

/** The `batch:` section of a twin config. */
export const batchSectionSchema = z.strictObject({ jobs: z.array(batchJobSpecSchema).max(1000) });

/** A job of identical requests submitted at t = 0: the `--batch-*` flags' shape. */
export function fixedBatchJob(
  id: string,
  requests: number,
  inputTokens: number,
  outputTokens: number,
  windowS: number,
): BatchJobSpec {
  return {
    id,
    tenant: 'batch',
    requests,
    input: { kind: 'fixed', tokens: inputTokens },
    output: { kind: 'fixed', tokens: outputTokens },
    submitS: 0,
    windowS,
  };
}

/** The offline band's priority. */
export const BATCH_PRIORITY = -1;

/** Builds the admission layer's job from a spec; its requests are generated lazily and deterministically. */
export function buildBatchJob(spec: BatchJobSpec, rng: Rng): BatchJob {
  const submittedMs = spec.submitS * 1000;
  const lengths = pairSampler(spec.input, spec.output, rng.fork(`batch:${spec.id}`), cachedLengthsLoader());
  return {
    id: spec.id,
    tenant: spec.tenant,
    completionWindowMs: spec.windowS * 1000,
    submittedMs,
    requests: {
      count: spec.requests,
      generate(index: number): TwinRequest {
        lengths.sample();
        const { inputTokens, outputTokens } = lengths;
        // A Batch line's body carries its max_tokens; the job's lengths are its answers' lengths.
        const request = makeRequest({
          id: `${spec.id}-${index}`,
          tenant: spec.tenant,
          priority: BATCH_PRIORITY,
          inputTokens,
          maxTokens: outputTokens,
          arrivalMs: submittedMs,
          prefix: NO_PREFIX,
        });
        return { ...request, trueOutputTokens: outputTokens };
      },
    },
  };
}
