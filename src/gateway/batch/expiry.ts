/**
 * OpenAI's file expiration policies, as the Files API (`POST /v1/files` `expires_after`) and the
 * Batch API (`POST /v1/batches` `output_expires_after`, for the output and error files a batch
 * writes) take them: `{"anchor": "created_at", "seconds": N}`, N from 3600 (1 hour) to 2,592,000
 * (30 days), counted from the file's own creation (for a batch's results, when those files are
 * written, not when the batch was created). The file object then carries `expires_at`; once that
 * second comes the file is gone: 404 on every route, left out of the list, its bytes removed.
 *
 * Pure: the clock is the caller's (Unix seconds), so the rule runs the same under a test's clock.
 */
import { SwitchyardError } from '../../core/errors.ts';

/** `expires_after.seconds` at least: OpenAI's 1 hour. */
export const EXPIRES_AFTER_S_MIN = 3600;
/** `expires_after.seconds` at most: OpenAI's 30 days. */
export const EXPIRES_AFTER_S_MAX = 30 * 24 * 3600;

/** An expiration policy: the file expires `seconds` after its creation. */
export interface ExpiresAfter {
  readonly anchor: 'created_at';
  readonly seconds: number;
}

/**
 * The policy `value` states (an object, as a JSON body sends it), or undefined when absent or null.
 * Anything else is 400 SY_ERR_INVALID_ARGUMENT naming `param`.
 */
export function parseExpiresAfter(value: unknown, param: string): ExpiresAfter | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value))
    throw invalid(`${param}: expected an object {"anchor": "created_at", "seconds": N}`, param);
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (key !== 'anchor' && key !== 'seconds')
      throw invalid(`${param}.${key}: unknown field (expected anchor and seconds)`, param);
  if (o['anchor'] !== 'created_at')
    throw invalid(
      `${param}.anchor: expected 'created_at', got ${JSON.stringify(o['anchor'] ?? null)}`,
      param,
    );
  const seconds = o['seconds'];
  if (
    typeof seconds !== 'number' ||
    !Number.isInteger(seconds) ||
    seconds < EXPIRES_AFTER_S_MIN ||
    seconds > EXPIRES_AFTER_S_MAX
  )
    throw invalid(
      `${param}.seconds: expected an integer from ${EXPIRES_AFTER_S_MIN} (1 hour) to ${EXPIRES_AFTER_S_MAX} (30 days), got ${JSON.stringify(seconds ?? null)}`,
      param,
    );
  return { anchor: 'created_at', seconds };
}

/**
 * The policy of a multipart upload's fields, as the openai SDKs and curl send it
 * (`expires_after[anchor]`, `expires_after[seconds]`, strings), or undefined when neither came.
 */
export function parseExpiresAfterFields(
  anchor: string | undefined,
  seconds: string | undefined,
): ExpiresAfter | undefined {
  if (anchor === undefined && seconds === undefined) return undefined;
  const n = seconds !== undefined && /^\d{1,10}$/.test(seconds) ? Number(seconds) : (seconds ?? null);
  return parseExpiresAfter({ anchor: anchor ?? null, seconds: n }, 'expires_after');
}

/** When a file created at `createdAtS` expires under `policy` (Unix seconds), or undefined: never. */
export function expiresAt(createdAtS: number, policy: ExpiresAfter | undefined): number | undefined {
  return policy === undefined ? undefined : createdAtS + policy.seconds;
}

/** True once `nowS` has reached a file's `expires_at` (a file without one never expires). */
export function isExpired(file: { readonly expires_at?: number | null | undefined }, nowS: number): boolean {
  return typeof file.expires_at === 'number' && nowS >= file.expires_at;
}

function invalid(message: string, param: string): SwitchyardError {
  return new SwitchyardError('SY_ERR_INVALID_ARGUMENT', message, { param });
}
