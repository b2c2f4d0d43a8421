/**
 * The pure part of a batch's life: its record (OpenAI's batch object plus its owner) and the state
 * machine over OpenAI's statuses. Every change of status goes through `advance`, which refuses a
 * move the machine does not have and stamps the matching `*_at` field.
 *
 *   validating --validated--> in_progress --drained--> finalizing --finalized--> completed
 *   validating --invalid----> failed
 *   validating | in_progress --cancel--> cancelling --stopped--> cancelled
 *   validating | in_progress --expire--> expired
 */
import type { ExpiresAfter } from './expiry.ts';
import type { BatchEndpoint, FileError } from './lines.ts';

/** OpenAI's batch statuses. */
export type BatchStatus =
  | 'validating'
  | 'failed'
  | 'in_progress'
  | 'finalizing'
  | 'completed'
  | 'expired'
  | 'cancelling'
  | 'cancelled';

/** What moves a batch from one status to the next. */
export type BatchEvent = 'validated' | 'invalid' | 'drained' | 'finalized' | 'cancel' | 'stopped' | 'expire';

/** A batch as stored and served (`owner` and `output_expires_after` are stripped from answers). */
export interface BatchRecord {
  readonly id: string;
  readonly object: 'batch';
  readonly endpoint: BatchEndpoint;
  readonly input_file_id: string;
  readonly completion_window: '24h';
  readonly status: BatchStatus;
  readonly output_file_id: string | null;
  readonly error_file_id: string | null;
  readonly created_at: number;
  readonly in_progress_at: number | null;
  readonly expires_at: number;
  readonly finalizing_at: number | null;
  readonly completed_at: number | null;
  readonly failed_at: number | null;
  readonly expired_at: number | null;
  readonly cancelling_at: number | null;
  readonly cancelled_at: number | null;
  readonly request_counts: { readonly total: number; readonly completed: number; readonly failed: number };
  readonly errors: { readonly object: 'list'; readonly data: readonly FileError[] } | null;
  readonly metadata: Readonly<Record<string, string>> | null;
  /** The tenant that created it ('default' without tenants). */
  readonly owner: string;
  /**
   * The create's `output_expires_after`: its output and error files expire this long after they are
   * written (expiry.ts). Kept with the record (a restart writes them too), not served: OpenAI's
   * batch object has no such field.
   */
  readonly output_expires_after?: ExpiresAfter;
}

/** The completion window OpenAI offers, and the only one here. */
export const COMPLETION_WINDOW_S = 24 * 3600;

/** A new batch, validating. `nowS` is Unix seconds. */
export function newBatch(
  id: string,
  owner: string,
  endpoint: BatchEndpoint,
  inputFileId: string,
  metadata: Readonly<Record<string, string>> | null,
  nowS: number,
  outputExpiresAfter?: ExpiresAfter,
): BatchRecord {
  return {
    id,
    object: 'batch',
    endpoint,
    input_file_id: inputFileId,
    completion_window: '24h',
    status: 'validating',
    output_file_id: null,
    error_file_id: null,
    created_at: nowS,
    in_progress_at: null,
    expires_at: nowS + COMPLETION_WINDOW_S,
    finalizing_at: null,
    completed_at: null,
    failed_at: null,
    expired_at: null,
    cancelling_at: null,
    cancelled_at: null,
    request_counts: { total: 0, completed: 0, failed: 0 },
    errors: null,
    metadata,
    owner,
    ...(outputExpiresAfter === undefined ? {} : { output_expires_after: outputExpiresAfter }),
  };
}

const MOVES: Readonly<Record<BatchStatus, Partial<Record<BatchEvent, BatchStatus>>>> = {
  validating: { validated: 'in_progress', invalid: 'failed', cancel: 'cancelling', expire: 'expired' },
  in_progress: { drained: 'finalizing', cancel: 'cancelling', expire: 'expired' },
  finalizing: { finalized: 'completed' },
  cancelling: { stopped: 'cancelled' },
  failed: {},
  completed: {},
  expired: {},
  cancelled: {},
};

/** The timestamp field each status stamps when entered. */
const STAMP: Readonly<Record<BatchStatus, keyof BatchRecord | undefined>> = {
  validating: undefined,
  in_progress: 'in_progress_at',
  finalizing: 'finalizing_at',
  completed: 'completed_at',
  failed: 'failed_at',
  expired: 'expired_at',
  cancelling: 'cancelling_at',
  cancelled: 'cancelled_at',
};

/** The status `event` leads to from `status`, or undefined where the machine has no such move. */
export function nextStatus(status: BatchStatus, event: BatchEvent): BatchStatus | undefined {
  return MOVES[status][event];
}

/** True for a status no event leaves. */
export function isTerminal(status: BatchStatus): boolean {
  return Object.keys(MOVES[status]).length === 0;
}

/** True while the batch's requests may still be sent. */
export function isRunnable(status: BatchStatus): boolean {
  return status === 'in_progress';
}

/**
 * The record after `event` at `nowS`, with `changes` merged in; undefined where the move is not
 * allowed (the caller decides whether that is the client's fault or a no-op).
 */
export function advance(
  record: BatchRecord,
  event: BatchEvent,
  nowS: number,
  changes: Partial<Pick<BatchRecord, 'output_file_id' | 'error_file_id' | 'errors' | 'request_counts'>> = {},
): BatchRecord | undefined {
  const status = nextStatus(record.status, event);
  if (status === undefined) return undefined;
  const stamp = STAMP[status];
  return { ...record, ...changes, status, ...(stamp === undefined ? {} : { [stamp]: nowS }) };
}

/** The batch object a client sees. */
export function publicBatch(record: BatchRecord): Omit<BatchRecord, 'owner' | 'output_expires_after'> {
  const { owner: _owner, output_expires_after: _expiry, ...rest } = record;
  return rest;
}

/** Batch requests' priority: the offline band, as the twin's batch jobs (src/twin/batch-jobs.ts). */
export const BATCH_PRIORITY = -1;
