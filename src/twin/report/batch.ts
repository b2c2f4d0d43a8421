/**
 * Offline batch jobs (`--batch-requests`, the config's `batch.jobs`) in the text and HTML
 * summaries. Their requests are not in the online figures (requests, latencies, SLO attainment,
 * throughput); the per-instance table counts them. Same figures as the JSON's `batchJobs`.
 */

import { fmtNumber } from '../../stats/format.ts';
import type { BatchJobSummary } from './types.ts';

/** Simulated seconds as the JSON has them, to one decimal: `2,204.1 s`, `3,600 s`. */
export function batchSecondsText(x: number): string {
  return `${fmtNumber(x, Number.isInteger(x) ? 0 : 1)} s`;
}

/** Jobs listed one per line in the text summary before a "... N more" line. */
export const BATCH_LINES_MAX = 8;

/** A job's status as printed: OpenAI's word, `in_progress` spelled for reading. */
export function batchStatusText(job: BatchJobSummary): string {
  return job.status === 'in_progress' ? 'in progress at the end of the run' : job.status;
}

/** When the job's last request ended, or that some were still open at the end of the run. */
export function batchFinishedText(job: BatchJobSummary): string {
  return job.finishedS >= 0 ? batchSecondsText(job.finishedS) : 'not finished';
}

/**
 * One job's line, e.g. `batch job batch: completed · 20,000 of 20,000 done, 0 failed, 0 expired ·
 * finished at 2,204.1 s, deadline 3,600 s` (`submitted at` shown when not at 0).
 */
export function formatBatchJob(job: BatchJobSummary): string {
  const submitted = job.submittedS > 0 ? `submitted at ${batchSecondsText(job.submittedS)}, ` : '';
  const finished =
    job.finishedS >= 0 ? `finished at ${batchSecondsText(job.finishedS)}` : 'requests still open';
  return (
    `batch job ${job.id}: ${batchStatusText(job)} · ${fmtNumber(job.completed)} of ${fmtNumber(job.total)} done, ` +
    `${fmtNumber(job.failed)} failed, ${fmtNumber(job.expired)} expired · ` +
    `${submitted}${finished}, deadline ${batchSecondsText(job.deadlineS)}`
  );
}

/** The text summary's batch lines: one per job (at most `max`), then how many more. Empty without jobs. */
export function formatBatchJobs(
  jobs: readonly BatchJobSummary[] | undefined,
  max = BATCH_LINES_MAX,
): string[] {
  if (jobs === undefined || jobs.length === 0) return [];
  const lines = jobs.slice(0, max).map(formatBatchJob);
  const more = jobs.length - max;
  if (more > 0) lines.push(`… ${fmtNumber(more)} more batch jobs (all in the JSON's batchJobs)`);
  return lines;
}
