/** The gateway's `batch:` section: where the Batch API keeps its state, and its bounds. */
import { z } from 'zod';

export const batchConfigSchema = z.strictObject({
  /** Directory for uploaded files, batch records and results; created if missing. State survives restarts. */
  dir: z.string().min(1),
  /** Size of one uploaded file, at most (OpenAI allows 200 MB). */
  fileBytesMax: z
    .number()
    .int()
    .min(1)
    .max(1024 * 1024 * 1024)
    .default(32 * 1024 * 1024),
  /** Requests in one batch, at most (OpenAI's limit: 50,000). */
  linesMax: z.number().int().min(1).max(1_000_000).default(50_000),
  /** Files kept (uploads and results), at most; an upload beyond it is refused until some are deleted. */
  filesMax: z.number().int().min(1).max(1_000_000).default(1000),
  /**
   * Uploads (`POST /v1/files`) being received at once, at most. `filesMax` bounds files stored, not
   * files arriving: each upload in progress holds a connection, an open temp file and up to
   * fileBytesMax of disk until its body ends, so without this any number of clients could each
   * stream fileBytesMax at once. The next one is refused at once (its body dropped, not stored), 429
   * SY_ERR_OVERLOADED with Retry-After. 4 by default: uploads are rare and one is limited by the
   * client's bandwidth, not the gateway's; a few at once keep a slow client from blocking the rest.
   */
  uploadsInFlightMax: z.number().int().min(1).max(1000).default(4),
  /** Batch records kept, at most; the oldest finished ones are forgotten first to make room. */
  batchesMax: z.number().int().min(1).max(1_000_000).default(1000),
  /** Batches validating, running or cancelling at once, at most (their requests are held in memory: up to this times fileBytesMax). */
  activeBatchesMax: z.number().int().min(1).max(10_000).default(8),
  /** Batch requests offered to admission and not yet finished, across all batches, at most. */
  inFlightMax: z.number().int().min(1).max(100_000).default(16),
  /** A request admission refused for lack of room is offered again after this long. */
  retryDelayMs: z.number().int().min(1).max(600_000).default(500),
  /**
   * A request that timed out (limits.requestTimeoutMs, counted from its offer to admission, so
   * waiting in the offline band counts) is offered again at most this many times before its timeout
   * is its result.
   */
  timeoutRetriesMax: z.number().int().min(0).max(100).default(3),
  /** Entries of a failed batch's `errors`, at most. */
  errorsMax: z.number().int().min(1).max(10_000).default(100),
});
export type BatchConfig = z.output<typeof batchConfigSchema>;
