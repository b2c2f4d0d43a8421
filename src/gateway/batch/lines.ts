/**
 * The pure part of the Batch API's input: splitting an uploaded JSONL file into request lines and
 * checking each one. Two kinds of fault, as OpenAI's Batch API has them:
 *
 * - A file that is not a batch file (a line that is not JSON, has no `custom_id`, repeats one, more
 *   lines than allowed, no lines at all) fails the whole batch at validation, with `errors` naming
 *   each bad line. Without a unique `custom_id` a result could not be matched to its request.
 * - A line that is a well-formed envelope around a bad request (wrong `method` or `url`, a body
 *   the endpoint would refuse, `stream: true`) is one failed request: it goes to the error file
 *   with a stable code and the batch runs the rest.
 *
 * No I/O here: the host layer (service.ts) reads the file and writes the results.
 */
import { SwitchyardError } from '../../core/errors.ts';
import { fieldsOf } from '../request-build.ts';

/**
 * The endpoints a batch may target (OpenAI's Batch API's, but moderations and images, which the
 * gateway does not serve), and the gateway's name for each.
 */
export const BATCH_ENDPOINTS = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
} as const;
export type BatchEndpoint = keyof typeof BATCH_ENDPOINTS;

/** True when `value` names an endpoint batches can target. */
export function isBatchEndpoint(value: unknown): value is BatchEndpoint {
  return typeof value === 'string' && Object.hasOwn(BATCH_ENDPOINTS, value);
}

/** One request of a batch, ready to send. */
export interface BatchLine {
  /** 1-based line number in the input file. */
  readonly line: number;
  readonly customId: string;
  /** The request body, re-serialized (what goes to the engine). */
  readonly body: Buffer;
}

/** A line refused before it ran: it goes to the error file. */
export interface RefusedLine {
  readonly line: number;
  readonly customId: string;
  readonly code: string;
  readonly message: string;
}

/** A fault that fails the whole batch (OpenAI's `errors.data[]` entry). */
export interface FileError {
  readonly code: string;
  readonly message: string;
  readonly param: string | null;
  readonly line: number | null;
}

/** What validating a file gives. */
export type ValidationResult =
  | { readonly kind: 'ok'; readonly lines: readonly BatchLine[]; readonly refused: readonly RefusedLine[] }
  | { readonly kind: 'failed'; readonly errors: readonly FileError[] };

/** Bounds of one input file's validation. */
export interface LineLimits {
  /** Requests in one batch, at most (OpenAI: 50,000). */
  readonly linesMax: number;
  /** File errors reported, at most (the rest are counted in the last message). */
  readonly errorsMax: number;
}

/** Length of a `custom_id`, at most (OpenAI's limit is 512 characters). */
export const CUSTOM_ID_CHARS_MAX = 512;

/**
 * Splits `text` into lines and checks each against `endpoint`. Blank lines are skipped (a trailing
 * newline is usual); line numbers count every line of the file.
 */
export function validateInput(text: string, endpoint: BatchEndpoint, limits: LineLimits): ValidationResult {
  const errors: FileError[] = [];
  const lines: BatchLine[] = [];
  const refused: RefusedLine[] = [];
  const seen = new Set<string>();
  const raw = text.split('\n');
  let requests = 0;
  for (let i = 0; i < raw.length; i++) {
    const source = (raw[i] as string).trim();
    if (source.length === 0) continue;
    const lineNo = i + 1;
    requests++;
    if (requests > limits.linesMax) {
      errors.push({
        code: 'SY_ERR_REQUEST_TOO_LARGE',
        message: `the file has more than ${limits.linesMax} requests (batch.linesMax)`,
        param: null,
        line: lineNo,
      });
      break;
    }
    const checked = checkLine(source, lineNo, endpoint, seen);
    if ('body' in checked) lines.push(checked);
    else if ('customId' in checked) refused.push(checked);
    else errors.push(checked);
  }
  if (requests === 0)
    errors.push({
      code: 'SY_ERR_INVALID_ARGUMENT',
      message: 'the file has no requests',
      param: null,
      line: null,
    });
  if (errors.length > 0) return { kind: 'failed', errors: capErrors(errors, limits.errorsMax) };
  return { kind: 'ok', lines, refused };
}

function capErrors(errors: FileError[], max: number): FileError[] {
  if (errors.length <= max) return errors;
  const kept = errors.slice(0, Math.max(0, max - 1));
  kept.push({
    code: 'SY_ERR_INVALID_ARGUMENT',
    message: `${errors.length - kept.length} more invalid lines not listed`,
    param: null,
    line: null,
  });
  return kept;
}

function fileError(line: number, param: string | null, message: string): FileError {
  return { code: 'SY_ERR_INVALID_ARGUMENT', message: `line ${line}: ${message}`, param, line };
}

/** One line: a request to run, a refused request, or a file error. */
function checkLine(
  source: string,
  line: number,
  endpoint: BatchEndpoint,
  seen: Set<string>,
): BatchLine | RefusedLine | FileError {
  let json: unknown;
  try {
    json = JSON.parse(source);
  } catch (error) {
    return fileError(line, null, `not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    return fileError(line, null, 'expected a JSON object');
  const o = json as Record<string, unknown>;
  const customId = o['custom_id'];
  if (typeof customId !== 'string' || customId.length === 0 || customId.length > CUSTOM_ID_CHARS_MAX)
    return fileError(
      line,
      'custom_id',
      `custom_id: expected a string of 1 to ${CUSTOM_ID_CHARS_MAX} characters`,
    );
  if (seen.has(customId))
    return fileError(line, 'custom_id', `custom_id '${customId}' repeats an earlier line`);
  seen.add(customId);
  const refuse = (code: string, message: string): RefusedLine => ({ line, customId, code, message });
  if (o['method'] !== 'POST')
    return refuse('SY_ERR_INVALID_ARGUMENT', `method: expected 'POST', got ${JSON.stringify(o['method'])}`);
  if (o['url'] !== endpoint)
    return refuse(
      'SY_ERR_INVALID_ARGUMENT',
      `url: expected the batch's endpoint '${endpoint}', got ${JSON.stringify(o['url'])}`,
    );
  const body = o['body'];
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return refuse('SY_ERR_INVALID_ARGUMENT', 'body: expected a JSON object');
  if ((body as Record<string, unknown>)['stream'] === true)
    return refuse('SY_ERR_INVALID_ARGUMENT', 'body.stream: batch requests cannot stream');
  try {
    // The checks the gateway makes of a client's body on that endpoint (an engine may refuse more).
    fieldsOf(BATCH_ENDPOINTS[endpoint], body);
  } catch (error) {
    if (!(error instanceof SwitchyardError)) throw error;
    return refuse(error.code, `body: ${error.message}`);
  }
  return { line, customId, body: Buffer.from(JSON.stringify(body)) };
}
