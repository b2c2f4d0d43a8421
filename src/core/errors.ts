/**
 * The one error catalogue. Every handled error carries a stable `SY_ERR_*` code, the HTTP status a
 * live host answers with, and a message that names the bad value and what was expected.
 */

/** Stable error codes, their HTTP status and OpenAI-style error type. */
export const ERRORS = {
  SY_ERR_INVALID_ARGUMENT: { status: 400, type: 'invalid_request_error' },
  SY_ERR_INVALID_CONFIG: { status: 400, type: 'invalid_request_error' },
  SY_ERR_UNKNOWN_NAME: { status: 400, type: 'invalid_request_error' },
  SY_ERR_TRACE_PARSE: { status: 400, type: 'invalid_request_error' },
  SY_ERR_NOT_FOUND: { status: 404, type: 'not_found_error' },
  SY_ERR_REQUEST_TOO_LARGE: { status: 413, type: 'invalid_request_error' },
  SY_ERR_CAPACITY: { status: 507, type: 'server_error' },
  SY_ERR_RATE_LIMITED: { status: 429, type: 'rate_limit_error' },
  /**
   * A request whose token cost (input + expected output) is more than its tenant's whole TPM bucket:
   * no wait can admit it, so it is not a 429 (which clients retry) but a 413 saying to shorten the
   * request or raise the tenant's `tpm`.
   */
  SY_ERR_REQUEST_OVER_TPM: { status: 413, type: 'invalid_request_error' },
  SY_ERR_OVERLOADED: { status: 429, type: 'rate_limit_error' },
  SY_ERR_SLO_UNREACHABLE: { status: 429, type: 'rate_limit_error' },
  SY_ERR_NO_INSTANCE: { status: 503, type: 'server_error' },
  SY_ERR_UPSTREAM: { status: 502, type: 'server_error' },
  SY_ERR_TIMEOUT: { status: 504, type: 'server_error' },
  SY_ERR_INTERNAL: { status: 500, type: 'server_error' },
  /** A live host's API key (tenant or admin) is missing or wrong. */
  SY_ERR_UNAUTHORIZED: { status: 401, type: 'authentication_error' },
  /** The live host is shutting down: it finishes what it has and takes nothing new. */
  SY_ERR_DRAINING: { status: 503, type: 'server_error' },
  /** The client took longer than the host's limit to send its request. */
  SY_ERR_REQUEST_TIMEOUT: { status: 408, type: 'invalid_request_error' },
  /** A valid OpenAI parameter this host does not implement (a built-in engine); `param` names it. */
  SY_ERR_UNSUPPORTED_PARAMETER: { status: 400, type: 'invalid_request_error' },
  /** The path exists but not for this method; the answer's Allow header lists the methods. */
  SY_ERR_METHOD_NOT_ALLOWED: { status: 405, type: 'invalid_request_error' },
  /** The gateway already holds limits.queuedBytesMax of queued request bodies: retry later. */
  SY_ERR_QUEUE_BYTES_FULL: { status: 503, type: 'server_error' },
  /** The tenant's queued request bodies would pass limits.tenantQueuedBytesMax: retry later. */
  SY_ERR_TENANT_QUEUE_BYTES_FULL: { status: 429, type: 'rate_limit_error' },
  /**
   * The client address already holds limits.connectionsPerClientMax connections to the gateway, or all
   * clients together hold limits.connectionsMax.
   */
  SY_ERR_TOO_MANY_CONNECTIONS: { status: 429, type: 'rate_limit_error' },
  /** Bodies being read already hold limits.readingBytesMax: this one was read and dropped; retry later. */
  SY_ERR_READING_BYTES_FULL: { status: 503, type: 'server_error' },
  /** Large bodies waiting for a parse worker already hold their bound: this one was dropped; retry later. */
  SY_ERR_PARSE_QUEUE_FULL: { status: 503, type: 'server_error' },
  /**
   * A model with no instance already holds limits.scaleFromZeroBufferMax requests while it starts, or all
   * models together hold limits.scaleFromZeroHeldMax: retry later.
   */
  SY_ERR_SCALE_BUFFER_FULL: { status: 429, type: 'rate_limit_error' },
  /** A request for a model with no instance waited limits.scaleFromZeroWaitMs and none became ready. */
  SY_ERR_COLD_START_TIMEOUT: { status: 503, type: 'server_error' },
  /** The engine started for a model with no instance failed to start; the requests waiting for it get this. */
  SY_ERR_COLD_START_FAILED: { status: 503, type: 'server_error' },
  /**
   * Prefill/decode disaggregation: the prefill leg of a request failed on every prefill instance
   * tried (its one retry included), so no decode instance could be given the KV.
   */
  SY_ERR_PD_PREFILL_FAILED: { status: 502, type: 'server_error' },
  /**
   * A decode engine could not obtain a request's KV from its prefill engine (the bootstrap room
   * failed or never came, or the prefill engine is unreachable); the gateway retries the pair.
   */
  SY_ERR_KV_TRANSFER_FAILED: { status: 502, type: 'server_error' },
  /**
   * An engine in sleep mode (vLLM's `POST /sleep`) was sent work: it serves nothing until
   * `POST /wake_up` (a built-in engine; vLLM itself crashed here, issue #15483).
   */
  SY_ERR_ENGINE_ASLEEP: { status: 503, type: 'server_error' },
  /** `POST /sleep` while the engine still runs requests: drain it first (in-flight work would be lost). */
  SY_ERR_ENGINE_BUSY: { status: 409, type: 'invalid_request_error' },
  /**
   * `POST /update_weights_from_disk` named a checkpoint of another architecture or other shapes
   * (layers, width, heads, KV heads, FFN, vocabulary) than the engine's model: only a fine-tune of
   * the same base loads in place; the engine keeps its model.
   */
  SY_ERR_MODEL_MISMATCH: { status: 400, type: 'invalid_request_error' },
  /**
   * A request body in a content coding the host does not decode (`Content-Encoding: gzip`): RFC
   * 9110's 415, with `Accept-Encoding: identity` saying what it takes; or one whose Content-Type is
   * not application/json (none, text/plain, a form), which vLLM refuses too (`param` content-type).
   */
  SY_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'invalid_request_error' },
  /**
   * An endpoint the named model is not served on here: the Responses API for a model only
   * prefill/decode pools serve. 404, as OpenAI answers a model on an endpoint it does not serve and
   * as vLLM's P/D proxy answers any route but chat and completions.
   */
  SY_ERR_UNSUPPORTED_ENDPOINT: { status: 404, type: 'invalid_request_error' },
  /**
   * `POST /v1/responses` named a `previous_response_id` the gateway's response store does not hold
   * for this tenant (never stored, evicted, expired, deleted, or another tenant's): OpenAI's 400
   * `previous_response_not_found`, with its message.
   */
  SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND: { status: 400, type: 'invalid_request_error' },
  /** `GET`/`DELETE /v1/responses/{id}` (or its input items) for a response this tenant has not stored: OpenAI's 404. */
  SY_ERR_RESPONSE_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
  /**
   * `POST /v1/responses` input had an `item_reference` to an item none of this tenant's stored
   * responses holds: OpenAI's 404 "Item with id '...' not found." (its `param` is `input`; ours names
   * the item, `input[i]`).
   */
  SY_ERR_ITEM_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
} as const satisfies Record<string, { status: number; type: string }>;

/** One of the stable error codes. */
export type ErrorCode = keyof typeof ERRORS;

/** A handled error: what the world did wrong, with a stable code. */
export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Optional structured details (the bad field, the valid choices). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }

  /** OpenAI-style JSON error body. */
  toJSON(): { error: { message: string; type: string; code: ErrorCode; param: string | null } } {
    const param = typeof this.details?.['param'] === 'string' ? (this.details['param'] as string) : null;
    return { error: { message: this.message, type: ERRORS[this.code].type, code: this.code, param } };
  }
}

/** Error for a value outside a fixed set: names the value and lists the valid choices. */
export function unknownName(kind: string, value: string, valid: readonly string[]): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_UNKNOWN_NAME',
    `unknown ${kind} '${value}'; valid: ${[...valid].sort().join(', ')}`,
    { param: kind, value, valid: [...valid] },
  );
}

/** Error for an argument that is out of range or malformed. */
export function invalidArgument(param: string, value: unknown, expected: string): SwitchyardError {
  return new SwitchyardError(
    'SY_ERR_INVALID_ARGUMENT',
    `invalid ${param} '${String(value)}': expected ${expected}`,
    { param, value, expected },
  );
}
